"""Where the Telegram bot connects and with which token, from ``M2I_TELEGRAM_*`` variables.

The token is a :class:`~pydantic.SecretStr`: it prints as ``**********`` and is only unwrapped
when the application is built. Pointing ``base_url``/``base_file_url`` at a self-hosted Bot API
server (and setting ``local_mode`` when it runs with ``--local``) lifts the 20 MB download limit.
The flood limits and the progress timings are explained in :mod:`bot.telegram.flood` and
:mod:`bot.telegram.progress`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TelegramSettings(BaseSettings):
    """Every field can be set as ``M2I_TELEGRAM_<NAME>`` (the token: ``M2I_TELEGRAM_TOKEN``)."""

    model_config = SettingsConfigDict(env_prefix="M2I_TELEGRAM_", env_file=".env", extra="ignore")

    token: SecretStr | None = Field(None, description="Bot token from @BotFather.")
    base_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API URL; the token is appended (or replaces {token}).",
    )
    base_file_url: str = Field("https://api.telegram.org/file/bot", description="Bot API file URL.")
    local_mode: bool = Field(False, description="The Bot API server runs with --local (no 20 MB limit).")
    poll_timeout_s: float = Field(30.0, ge=0, description="Long-polling timeout of getUpdates.")
    concurrent_updates: int = Field(64, ge=1, description="Updates handled at the same time.")
    retries_on_429: int = Field(3, ge=0, description="Retries of a request Telegram answered with 429.")
    overall_per_second: float = Field(
        30.0, gt=0, description="Messages the bot sends per second, all chats together (Telegram: about 30)."
    )
    chat_per_second: float = Field(
        1.0,
        gt=0,
        description="Progress calls per second in one private chat "
        "(Telegram: about 1, short bursts allowed).",
    )
    group_per_minute: float = Field(20.0, gt=0, description="Messages a minute in one group (Telegram: 20).")
    chat_action_after_s: float = Field(
        0.5, ge=0, description="Show 'typing…' once a request has been worked on this long without an answer."
    )
    progress_after_s: float = Field(
        1.0, ge=0, description="Show a status message only when the answer isn't out after this long."
    )
    progress_interval_s: float = Field(
        1.0, ge=0, description="Least time between two edits of one status message."
    )
    connection_pool_size: int = Field(
        128, ge=2, description="HTTP connections to the Bot API, shared by every call and download."
    )
    keepalive_s: float = Field(
        5.0,
        ge=0,
        description="How long an idle connection is kept for the next call (longer saves TLS "
        "handshakes between sporadic songs, but risks 'server disconnected' if "
        "Telegram closes it first).",
    )
    send_retries: int = Field(2, ge=0, description="Retries of sending the image after a network error.")
    drop_pending_updates: bool = Field(False, description="Ignore messages sent while the bot was off.")
    register_commands: bool = Field(True, description="Publish /start, /help, /visualize on startup.")

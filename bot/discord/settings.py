"""Which Discord bot to run and how it registers its commands, from ``M2I_DISCORD_*`` variables.

The token is a :class:`~pydantic.SecretStr`: it prints as ``**********`` and is unwrapped only when
the client logs in. ``guild_ids`` syncs the commands to those servers only (they appear at once —
handy while developing); otherwise they are synced globally.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DiscordSettings(BaseSettings):
    """Every field can be set as ``M2I_DISCORD_<NAME>`` (the token: ``M2I_DISCORD_TOKEN``)."""

    model_config = SettingsConfigDict(env_prefix="M2I_DISCORD_", env_file=".env", extra="ignore")

    token: SecretStr | None = Field(None, description="Bot token from the Developer Portal (Bot → Token).")
    sync_commands: bool = Field(True, description="Register /visualize and the Visualize menu on startup.")
    guild_ids: list[int] = Field(
        default_factory=list,
        description="Sync commands to these servers only (JSON list, e.g. [123, 456]); empty: globally.",
    )
    message_content: bool = Field(
        True,
        description="Ask for the Message Content intent (needed to find a song in a message that "
        "doesn't mention the bot: replies, the Visualize menu's buttons).",
    )
    progress_interval_s: float = Field(
        1.0, ge=0, description="Least time between two progress edits of one message (rate limits)."
    )

"""Why a bot could not start on its platform, said once for every adapter.

The CLI prints an :class:`~m2i_engine.errors.M2IError`'s message and exits with its family's code
(3: the service can't run right now), so an operator reads "Telegram rejected the token" instead of
a network library's traceback. Messages never contain the token.
"""

from __future__ import annotations

from pydantic import SecretStr

from m2i_engine.errors import ServiceError


class MissingTokenError(ValueError):
    """A platform's settings carry no (or a blank) token."""


def require_token(token: SecretStr | None, variable: str) -> str:
    """The bot token, stripped; :class:`MissingTokenError` naming ``variable`` when there is none."""
    value = token.get_secret_value().strip() if token is not None else ""
    if not value:
        raise MissingTokenError(f"no bot token: set {variable}")
    return value


class PlatformStartError(ServiceError):
    code = "platform_unavailable"
    default_message = "The bot could not connect to its chat platform."


def rejected_token(platform: str, variable: str, where: str) -> PlatformStartError:
    return PlatformStartError(
        f"{platform} rejected the bot token in {variable}: get a valid one from {where}."
    )


def unreachable(platform: str, url: str) -> PlatformStartError:
    return PlatformStartError(
        f"Could not reach {platform} at {url}: check the network (and any proxy or "
        "base-URL setting), then start the bot again."
    )

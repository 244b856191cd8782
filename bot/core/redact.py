"""Keeps bot tokens out of every log line, including the ones third-party libraries write.

A Telegram token is part of every Bot API URL, and libraries log URLs (httpx logs each request at
INFO; PTB logs its base URL at DEBUG). Rather than trusting each library, :func:`install` wraps the
process's log-record factory once so that every record — message, arguments and traceback text —
is scrubbed of the registered secrets and of anything shaped like a Telegram token (plain or
URL-encoded) before any handler (file, console, pytest's caplog) sees it.

Discord: the bot token is registered by the adapter; discord.py also logs interaction tokens as part
of webhook URLs (``/webhooks/<app id>/<token>``, even at WARNING on a 429) and of gateway events
(``"token": …`` at DEBUG), and each one lets its holder post as the bot for 15 minutes, so those are
masked too, as are Discord-shaped bot tokens.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote

__all__ = ["MASK", "install", "redact"]

MASK = "[REDACTED]"
#: ``<bot id>:<35 characters>``, the shape of every Telegram bot token (also with ``:`` URL-encoded,
#: as it appears in file download URLs)
_TELEGRAM_TOKEN = re.compile(r"(?<!\d)\d{5,}(?::|%3[Aa])[A-Za-z0-9_-]{30,}")
#: the token part of Discord webhook and interaction-callback URLs
_DISCORD_URL_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.-]{20,}")
#: a ``token`` field in a logged payload (discord.py logs gateway events, interactions included, at DEBUG)
_TOKEN_FIELD = re.compile(r"""(["']token["']\s*:\s*["'])[^"']{8,}""")
#: ``<base64 user id>.<timestamp>.<hmac>``, the shape of a Discord bot token
_DISCORD_TOKEN = re.compile(
    r"(?<![\w.-])[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}(?![\w-])"
)

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def redact(text: str) -> str:
    """``text`` with every registered secret and token-shaped string replaced by :data:`MASK`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _DISCORD_URL_TOKEN.sub(lambda m: m.group(1) + MASK, text)
    text = _TOKEN_FIELD.sub(lambda m: m.group(1) + MASK, text)
    text = _DISCORD_TOKEN.sub(MASK, text)
    return _TELEGRAM_TOKEN.sub(MASK, text)


def install(*secrets: str | None) -> None:
    """Register ``secrets`` and make sure every future log record is redacted (idempotent)."""
    global _installed
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= 8:
                _secrets.update({secret, quote(secret, safe=""), quote(secret)})
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to the handler to report
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean

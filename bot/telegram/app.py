"""Telegram ↔ m2i, the process: a python-telegram-bot ``Application`` carrying m2i's handlers.

:func:`build_application` wires the pieces — one pooled, kept-alive HTTP client for every call and
download, the :class:`~bot.telegram.flood.FloodLimiter` that keeps the bot inside Telegram's flood
limits with answers first (and retries requests answered with 429 after ``retry_after``), and the
handlers (:mod:`bot.telegram.handlers`). :class:`TelegramBot` is the :mod:`bot.runner` platform
around it: check the token once, long-poll (the polling loop survives network errors and timeouts:
PTB's retry loop, logged as one line), stop cleanly. The token only ever reaches PTB; logs are
scrubbed by :mod:`bot.core.redact`.

The rest of the adapter: :mod:`bot.telegram.handlers` (updates → requests),
:mod:`bot.telegram.sources` (the audio of a message), :mod:`bot.telegram.progress` (chat actions and
the status message), :mod:`bot.telegram.layout` (the photo, its caption and buttons).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from telegram import Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder
from telegram.request import HTTPXRequest

from bot.core import messages, redact
from bot.core.errors import rejected_token, require_token, unreachable
from bot.core.service import BotService
from bot.telegram.flood import FloodLimiter
from bot.telegram.handlers import TelegramHandlers
from bot.telegram.settings import TelegramSettings

__all__ = ["TelegramBot", "build_application", "create_platform", "flood_limiter"]

log = logging.getLogger(__name__)

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def build_application(settings: TelegramSettings, service: BotService) -> AnyApplication:
    """A ready-to-start PTB ``Application`` with m2i's handlers, for ``settings`` and ``service``."""
    token = require_token(settings.token, "M2I_TELEGRAM_TOKEN")
    redact.install(token)
    limiter = flood_limiter(settings)
    pool = settings.connection_pool_size
    request = HTTPXRequest(  # one pool for every call and download; a burst waits for a connection
        connection_pool_size=pool,
        read_timeout=30.0,
        media_write_timeout=60.0,
        pool_timeout=10.0,
        httpx_kwargs={
            "limits": httpx.Limits(
                max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=settings.keepalive_s
            )
        },
    )
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .local_mode(settings.local_mode)
        .rate_limiter(limiter)
        .concurrent_updates(settings.concurrent_updates)
        .request(request)
        .build()
    )
    TelegramHandlers(service, settings, limiter).register(app)
    return app


def flood_limiter(settings: TelegramSettings) -> FloodLimiter:
    """Telegram's flood limits as ``settings`` state them, answers first."""
    return FloodLimiter(
        overall_per_second=settings.overall_per_second,
        chat_per_second=settings.chat_per_second,
        group_per_minute=settings.group_per_minute,
        max_retries=settings.retries_on_429,
    )


class TelegramBot:
    """The Telegram platform for :mod:`bot.runner`: start polling, stop cleanly."""

    name = "telegram"

    def __init__(self, service: BotService, settings: TelegramSettings | None = None) -> None:
        self.settings = settings or TelegramSettings()
        self.application = build_application(self.settings, service)

    async def start(self) -> None:
        app = self.application
        try:
            await app.initialize()  # getMe: checks the token and the connection once, before polling
        except InvalidToken as exc:
            raise rejected_token("Telegram", "M2I_TELEGRAM_TOKEN", "@BotFather") from exc
        except NetworkError as exc:
            raise unreachable("the Telegram Bot API", self.settings.base_url) from exc
        if self.settings.register_commands:
            try:
                await app.bot.set_my_commands(list(messages.COMMANDS.items()))
            except TelegramError as exc:
                log.warning("could not publish the command list: %s", exc)
        assert app.updater is not None
        await app.updater.start_polling(
            timeout=int(self.settings.poll_timeout_s),
            allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
            drop_pending_updates=self.settings.drop_pending_updates,
            bootstrap_retries=-1,
            error_callback=_on_polling_error,
        )
        await app.start()
        log.info("Telegram bot @%s is polling", app.bot.username)

    async def stop(self) -> None:
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()


def create_platform(service: BotService) -> TelegramBot:
    """Factory used by :mod:`bot.runner` (settings from the environment)."""
    return TelegramBot(service)


def _on_polling_error(exc: TelegramError) -> None:
    """PTB retries polling on its own; one line per failure is enough."""
    log.warning("Telegram polling failed: %s: %s (retrying)", type(exc).__name__, exc)

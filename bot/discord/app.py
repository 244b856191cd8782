"""The Discord bot process: a discord.py client carrying m2i's cog, started and stopped by the runner.

:class:`M2IBot` is a ``commands.Bot`` without prefix commands (everything is an application command,
a listener or a button) that loads :class:`~bot.discord.cog.VisualizeCog` and syncs the commands on
startup. :class:`DiscordBot` is the :mod:`bot.runner` platform around it: log in, connect to the
gateway (discord.py reconnects and resumes by itself, and waits out 429s), stop cleanly.

Intents: the defaults (guilds, guild and DM messages) plus Message Content, which the bot asks for
unless ``M2I_DISCORD_MESSAGE_CONTENT=false``: DMs and messages that mention the bot carry their
attachments without it, but finding a song in other messages (a mention replying to someone's
upload, the buttons under a Visualize-menu answer) needs it. The token only reaches discord.py;
logs are scrubbed by :mod:`bot.core.redact`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.core import BotService, redact
from bot.core.errors import rejected_token, require_token, unreachable
from bot.discord.cog import VisualizeCog
from bot.discord.settings import DiscordSettings

__all__ = ["DiscordBot", "M2IBot", "create_platform", "intents_for"]

log = logging.getLogger(__name__)


class _NoVoiceWarnings(logging.Filter):
    """m2i never joins voice channels: discord.py's "PyNaCl/davey is not installed" lines are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


def _quiet_voice_warnings() -> None:
    client_log = logging.getLogger("discord.client")
    if not any(isinstance(f, _NoVoiceWarnings) for f in client_log.filters):
        client_log.addFilter(_NoVoiceWarnings())


def intents_for(settings: DiscordSettings) -> discord.Intents:
    """Guilds, guild and DM messages, and Message Content unless turned off."""
    intents = discord.Intents.default()
    intents.message_content = settings.message_content
    return intents


class M2IBot(commands.Bot):
    """discord.py's bot with m2i's cog; ``client_options`` go to ``discord.Client`` unchanged."""

    def __init__(self, service: BotService, settings: DiscordSettings, **client_options: Any) -> None:
        client_options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        # messages are always fetched fresh (attachment URLs expire): caching them is only work
        client_options.setdefault("max_messages", None)
        client_options.setdefault("member_cache_flags", discord.MemberCacheFlags.none())
        _quiet_voice_warnings()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents_for(settings),
            help_command=None,
            **client_options,
        )
        self.service = service
        self.settings = settings

    async def setup_hook(self) -> None:
        await self.add_cog(VisualizeCog(self, self.service, self.settings))
        if self.settings.sync_commands:
            await self.sync_commands()

    async def sync_commands(self) -> None:
        """Publish /visualize and the Visualize menu (to ``guild_ids`` only, when set)."""
        try:
            if self.settings.guild_ids:
                for guild_id in self.settings.guild_ids:
                    guild = discord.Object(guild_id)
                    self.tree.copy_global_to(guild=guild)
                    synced = await self.tree.sync(guild=guild)
                    log.info("synced %d commands to server %s", len(synced), guild_id)
            else:
                synced = await self.tree.sync()
                log.info("synced %d commands globally", len(synced))
        except discord.HTTPException as exc:
            log.warning("could not sync the commands (the old ones stay): %s", exc)

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: the cog's listener handles messages."""

    async def on_ready(self) -> None:
        log.info("Discord bot %s is connected to %d server(s)", self.user, len(self.guilds))


class DiscordBot:
    """The Discord platform for :mod:`bot.runner`: log in and connect, stop cleanly."""

    name = "discord"

    def __init__(
        self, service: BotService, settings: DiscordSettings | None = None, **client_options: Any
    ) -> None:
        self.settings = settings or DiscordSettings()
        token = require_token(self.settings.token, "M2I_DISCORD_TOKEN")
        redact.install(token)
        self._token = token
        self.client = M2IBot(service, self.settings, **client_options)
        self._gateway: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Log in, connect, and return once the bot is ready (raises if the login or gateway fails)."""
        client = self.client
        try:
            await client.login(self._token)
        except discord.LoginFailure as exc:
            raise rejected_token(
                "Discord", "M2I_DISCORD_TOKEN", "the Developer Portal (your app → Bot → Reset Token)"
            ) from exc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise unreachable("Discord", discord.http.Route.BASE) from exc
        self._gateway = asyncio.create_task(client.connect(reconnect=True), name="m2i-discord-gateway")
        ready = asyncio.create_task(client.wait_until_ready(), name="m2i-discord-ready")
        done, _ = await asyncio.wait({self._gateway, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await client.close()
            self._gateway.result()  # the gateway's error (bad intents, …), if it had one
            raise RuntimeError("the Discord gateway closed before the bot was ready")

    async def stop(self) -> None:
        await self.client.close()
        if self._gateway is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._gateway, 10)


def create_platform(service: BotService) -> DiscordBot:
    """Factory used by :mod:`bot.runner` (settings from the environment)."""
    return DiscordBot(service)

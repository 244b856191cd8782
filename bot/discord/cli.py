"""Adds ``m2i discord`` to the m2i command through the ``m2i.commands`` entry-point group.

Kept free of discord.py imports so the command shows up (and explains what to install) even when
the ``discord`` extra is missing. The token is read from ``M2I_DISCORD_TOKEN`` (or a ``.env`` file,
or ``--token-file``) — never from the command line, where ``ps`` would show it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``discord`` sub-command to ``m2i``'s sub-parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "discord",
        help="Run the Discord bot (token in M2I_DISCORD_TOKEN).",
        description="Run the m2i Discord bot. Settings come from M2I_DISCORD_* and M2I_BOT_* variables; "
        "the flags below override them.",
    )
    p.add_argument("--token-file", type=Path, help="Read the bot token from this file.")
    p.add_argument(
        "--guild",
        type=int,
        action="append",
        dest="guild_ids",
        metavar="ID",
        help="Sync the commands to this server only (instant; repeat for several).",
    )
    p.add_argument("--no-sync", action="store_true", help="Don't register the commands on startup.")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bot.core.errors import require_token
    from bot.runner import run_platform_command, token_file_override

    def make() -> Any:
        from bot.discord.app import DiscordBot
        from bot.discord.settings import DiscordSettings

        overrides = token_file_override(args.token_file)
        if args.guild_ids:
            overrides["guild_ids"] = args.guild_ids
        if args.no_sync:
            overrides["sync_commands"] = False
        settings = DiscordSettings(**overrides)
        require_token(settings.token, "M2I_DISCORD_TOKEN")
        return lambda service: DiscordBot(service, settings)

    return run_platform_command(
        "discord",
        make,
        no_token=(
            "No Discord token: set M2I_DISCORD_TOKEN (Developer Portal → your app → Bot → Reset Token) "
            "or pass --token-file."
        ),
    )

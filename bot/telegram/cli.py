"""Adds ``m2i telegram`` to the m2i command through the ``m2i.commands`` entry-point group.

Kept free of python-telegram-bot imports so the command shows up (and explains what to install)
even when the ``telegram`` extra is missing. The token is read from ``M2I_TELEGRAM_TOKEN`` (or a
``.env`` file, or ``--token-file``) — never from the command line, where ``ps`` would show it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``telegram`` sub-command to ``m2i``'s sub-parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "telegram",
        help="Run the Telegram bot (token in M2I_TELEGRAM_TOKEN).",
        description="Run the m2i Telegram bot with long polling. Settings come from M2I_TELEGRAM_* and "
        "M2I_BOT_* variables; the flags below override them.",
    )
    p.add_argument("--token-file", type=Path, help="Read the bot token from this file.")
    p.add_argument(
        "--base-url", help="Bot API URL, e.g. http://localhost:8081/bot for a self-hosted Bot API server."
    )
    p.add_argument("--base-file-url", help="Bot API file URL, e.g. http://localhost:8081/file/bot.")
    p.add_argument(
        "--local-mode",
        action="store_true",
        default=None,
        help="The Bot API server runs with --local (lifts the 20 MB download limit).",
    )
    p.add_argument(
        "--drop-pending",
        action="store_true",
        default=None,
        help="Ignore messages sent while the bot was offline.",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bot.core.errors import require_token
    from bot.runner import run_platform_command, token_file_override

    def make() -> Any:
        from bot.telegram.app import TelegramBot
        from bot.telegram.settings import TelegramSettings

        overrides = token_file_override(args.token_file)
        for flag, field in (
            ("base_url", "base_url"),
            ("base_file_url", "base_file_url"),
            ("local_mode", "local_mode"),
            ("drop_pending", "drop_pending_updates"),
        ):
            if getattr(args, flag) is not None:
                overrides[field] = getattr(args, flag)
        settings = TelegramSettings(**overrides)
        require_token(settings.token, "M2I_TELEGRAM_TOKEN")
        return lambda service: TelegramBot(service, settings)

    return run_platform_command(
        "telegram",
        make,
        no_token=("No Telegram token: set M2I_TELEGRAM_TOKEN (from @BotFather) or pass --token-file."),
    )

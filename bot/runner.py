"""Runs any set of chat platforms in one process, around one shared Engine and one BotService.

Models load once, the CPU-bound work shares one worker pool, and the fair queue and rate limits
span every platform. A platform is anything with ``name``, ``async start()`` and ``async stop()``
(:class:`PlatformApp`), made by a factory that receives the shared :class:`BotService`; adapters add
themselves to :data:`PLATFORMS`::

    await run_platforms(["telegram", "discord"])          # until SIGINT/SIGTERM or `stop` is set

Offers
------
- :data:`PLATFORMS` / :func:`load_platform` — platform name → factory (imported on demand).
- :func:`run_platforms` — start them, wait for ``stop``, stop them in reverse order.
- :func:`run` — the blocking entry point used by CLI commands (signals, exit status).
- :func:`register` — ``m2i bots [--platform NAME]…``: several platforms in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from bot.core import BotService, BotSettings
from bot.core.errors import MissingTokenError
from m2i_engine.config import Settings
from m2i_engine.frontend import EngineLike, make_engine

__all__ = ["PLATFORMS", "PlatformApp", "PlatformFactory", "load_platform", "register", "run", "run_platforms"]

log = logging.getLogger(__name__)


class PlatformApp(Protocol):
    """One chat platform's running bot."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


PlatformFactory = Callable[[BotService], PlatformApp]

#: platform name → ``"module:factory"``; each adapter adds its line here
PLATFORMS: dict[str, str] = {
    "telegram": "bot.telegram.app:create_platform",
    "discord": "bot.discord.app:create_platform",
}


def load_platform(name: str) -> PlatformFactory:
    """The factory registered for ``name`` (``KeyError`` for unknown names)."""
    module, _, attr = PLATFORMS[name].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


async def run_platforms(
    platforms: Iterable[str | PlatformFactory],
    *,
    engine: EngineLike | None = None,
    engine_settings: Settings | None = None,
    bot_settings: BotSettings | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Start every platform on one engine and service; return after ``stop`` is set and all stopped.

    With ``engine`` given it is used (and left open); otherwise one is created and closed here.
    A platform that fails to start stops the ones already started and the error propagates.
    """
    stop = stop or asyncio.Event()
    factories = [load_platform(p) if isinstance(p, str) else p for p in platforms]
    async with contextlib.AsyncExitStack() as stack:
        shared = (
            engine
            if engine is not None
            else await stack.enter_async_context(make_engine(engine_settings or Settings()))
        )  # in-process, or the Redis queue when configured
        await shared.start()
        service = BotService(shared, bot_settings)
        started: list[PlatformApp] = []
        try:
            for factory in factories:
                app = factory(service)
                await app.start()
                started.append(app)
                log.info("%s started", app.name)
            await stop.wait()
        finally:
            for app in reversed(started):
                try:
                    await app.stop()
                    log.info("%s stopped", app.name)
                except Exception:
                    log.exception("%s did not stop cleanly", app.name)


def run(platforms: Iterable[str | PlatformFactory], *, bot_settings: BotSettings | None = None) -> int:
    """Run ``platforms`` until Ctrl-C or SIGTERM; the exit status for a CLI command."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per poll otherwise
    logging.getLogger("bot").setLevel(logging.INFO)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await run_platforms(platforms, bot_settings=bot_settings, stop=stop)

    asyncio.run(main())
    return 0


def run_platform_command(extra: str, make: Callable[[], PlatformFactory], *, no_token: str) -> int:
    """``m2i telegram`` / ``m2i discord``: build the platform, turn the usual set-up mistakes into one line.

    ``make`` imports the adapter and reads its settings; an ``ImportError`` there means the extra is not
    installed, and ``no_token`` is printed when the settings carry no token (tokens never come from flags).
    """
    try:
        factory = make()
    except ImportError as exc:
        print(
            f"The {extra} bot needs extra packages ({exc.name}): pip install 'm2i[{extra}]'", file=sys.stderr
        )
        return 2
    except MissingTokenError:
        print(no_token, file=sys.stderr)
        return 2
    return run([factory])


def token_file_override(path: Path | None) -> dict[str, Any]:
    """``--token-file``: settings overrides with the token read from a file (never from argv)."""
    return {"token": path.read_text().strip()} if path else {}


def register(subparsers: Any) -> None:
    """Add ``m2i bots`` (every platform, or those named with ``--platform``) to ``m2i``'s sub-parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bots",
        help="Run several chat bots in one process, on one engine.",
        description="Run chat bots side by side on one shared engine, queue and rate limits. Each "
        "platform reads its own M2I_<PLATFORM>_* variables (tokens); M2I_BOT_* are shared.",
    )
    p.add_argument(
        "--platform",
        action="append",
        choices=sorted(PLATFORMS),
        dest="platforms",
        metavar="NAME",
        help=f"A platform to run ({', '.join(sorted(PLATFORMS))}); repeat for several. Default: all of them.",
    )
    p.set_defaults(func=_run_bots)


def _run_bots(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(args.platforms or PLATFORMS))
    try:
        factories = [load_platform(name) for name in names]
    except ImportError as exc:
        print(
            f"A bot needs extra packages ({exc.name}): pip install 'm2i[{','.join(names)}]'", file=sys.stderr
        )
        return 2
    try:
        return run(factories)
    except ValueError as exc:  # a platform without its token
        print(f"{exc}", file=sys.stderr)
        return 2

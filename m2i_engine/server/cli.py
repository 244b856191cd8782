"""``m2i serve``: run the HTTP API until SIGTERM, then drain — stop taking work, finish, exit.

Registered through the ``m2i.commands`` entry-point group. In single-process mode the models load in
this process; with ``M2I_QUEUE__REDIS_URL`` set, requests become jobs for ``m2i worker`` processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2i_engine.config import Settings

if TYPE_CHECKING:
    from m2i_engine.frontend import EngineLike

log = logging.getLogger("m2i_engine.server")


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="Run the HTTP API.",
        description="Serve POST /v1/visualize, /v1/analyze, GET /v1/jobs/{id}, /healthz, /readyz, /metrics "
        "and /openapi.json. Single process by default; set M2I_QUEUE__REDIS_URL to send jobs "
        "to `m2i worker` processes.",
    )
    p.add_argument("--host", help="Address to listen on (default: M2I_SERVE__HOST, 127.0.0.1).")
    p.add_argument("--port", type=int, help="Port (default: M2I_SERVE__PORT, 8080).")
    p.add_argument("--config", type=Path, metavar="FILE", help="An env file with M2I_* settings.")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from m2i_engine.logs import setup_logging

    settings = Settings(_env_file=args.config) if args.config else Settings()  # type: ignore[call-arg]
    update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if update:
        settings = settings.model_copy(update={"serve": settings.serve.model_copy(update=update)})
    setup_logging("api", fmt=settings.serve.log_format, level=settings.serve.log_level)
    asyncio.run(serve(settings))
    return 0


async def serve(
    settings: Settings,
    *,
    engine: EngineLike | None = None,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT), then drain and close (the engine too)."""
    from aiohttp import web

    from m2i_engine.frontend import make_engine
    from m2i_engine.server.app import STATE, ApiRunner, create_app

    engine = engine or make_engine(settings)
    app = create_app(settings, engine)
    runner = ApiRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=max(1.0, settings.serve.shutdown_grace_s)
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.serve.host, settings.serve.port, reuse_address=True)
    await site.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info("listening on http://%s:%d", settings.serve.host, settings.serve.port)
    if started is not None:
        started.set()
    await stop.wait()
    state = app[STATE]
    state.draining = True  # /readyz → 503 and new work → 503 while running requests finish
    running = state.jobs.running
    log.info("draining: %d request(s) running, up to %.0f s", running, settings.serve.shutdown_grace_s)
    cancelled = await state.jobs.drain(settings.serve.shutdown_grace_s)
    if cancelled:
        log.warning("%d request(s) cancelled at the end of the grace period", cancelled)
    await runner.cleanup()
    log.info("stopped")

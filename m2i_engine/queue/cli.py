"""``m2i worker``: start one queue worker (one per GPU); registered through the ``m2i.commands`` group."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="Run a GPU worker that takes jobs from the Redis queue.",
        description="Take visualize/analyze jobs from the Redis queue (M2I_QUEUE__REDIS_URL) and run them "
        "on this machine's models. Run one per GPU (pin it with CUDA_VISIBLE_DEVICES); "
        "SIGTERM finishes running jobs and hands back the rest.",
    )
    p.add_argument(
        "--concurrency", type=int, metavar="N", help="Jobs run at once (default: M2I_QUEUE__CONCURRENCY)."
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="An env file with M2I_* settings.")
    p.add_argument(
        "--heartbeat-file",
        type=Path,
        metavar="PATH",
        help="Touch this file every heartbeat (for container health checks).",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from m2i_engine.config import Settings
    from m2i_engine.logs import setup_logging

    settings = Settings(_env_file=args.config) if args.config else Settings()  # type: ignore[call-arg]
    if args.concurrency:
        settings = settings.model_copy(
            update={"queue": settings.queue.model_copy(update={"concurrency": args.concurrency})}
        )
    setup_logging("worker", fmt=settings.serve.log_format, level=settings.serve.log_level)
    if not settings.queue.enabled:
        print("m2i worker needs a queue: set M2I_QUEUE__REDIS_URL (e.g. redis://localhost:6379/0).")
        return 2
    from m2i_engine.queue.worker import run_worker

    return run_worker(settings, heartbeat_file=args.heartbeat_file)

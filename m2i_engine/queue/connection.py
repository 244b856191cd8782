"""Redis going away for a moment (a restart, a network blip) is not an error: one retry policy for the
front ends (:mod:`m2i_engine.queue.client`) and the workers (:mod:`m2i_engine.queue.worker`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_connection(op: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run a Redis operation until it gets through: connection failures (Redis restarting, a network
    blip) are retried with backoff from 0.1 s doubling to 2 s, anything else is raised. The caller's
    deadline (a request's, or a job's time limit) bounds the whole. Shared by front ends and workers."""
    delay = 0.1
    while True:
        try:
            return await op()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            log.warning(
                "Redis unreachable while %s (%s); retrying in %.1f s", what, type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis (or the broker's connection to it) is unreachable for now, so the
    operation may be tried again, rather than a fault of the operation itself."""
    import redis

    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, redis.ResponseError) and "LOADING" in str(exc):
        return True
    from dramatiq.errors import ConnectionError as DqConnectionError

    return isinstance(exc, DqConnectionError)

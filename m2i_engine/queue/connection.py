"""Redis going away for a moment (a restart, a network blip) is not an error: one retry policy for the
front ends (:mod:`m2i_engine.queue.client`) and the workers (:mod:`m2i_engine.queue.worker`)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a bare OSError with one of these is the network, not the operation
_NETWORK_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN})


class Backoff:
    """How long to wait before trying Redis again: 0.1 s, doubling to 2 s; :meth:`reset` once through.

    One policy for every retry, the single operations of :func:`retry_connection` and the front end's
    long-lived event subscription alike."""

    FIRST_S, MOST_S = 0.1, 2.0

    def __init__(self) -> None:
        self.delay = self.FIRST_S

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.MOST_S)

    def reset(self) -> None:
        self.delay = self.FIRST_S


async def retry_connection(op: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run a Redis operation until it gets through: connection failures (Redis restarting, a network
    blip) are retried with :class:`Backoff`, anything else is raised. The caller's deadline (a
    request's, or a job's time limit) bounds the whole. Shared by front ends and workers."""
    backoff = Backoff()
    while True:
        try:
            return await op()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            log.warning(
                "Redis unreachable while %s (%s); retrying in %.1f s", what, type(exc).__name__, backoff.delay
            )
            await backoff.wait()


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis (or the broker's connection to it) is unreachable for now, so the
    operation may be tried again, rather than a fault of the operation itself.

    Only network failures count: redis-py's and Dramatiq's connection errors, Redis still loading its
    data, and the socket's own (refused, reset, broken pipe, timed out, a name that doesn't resolve, a
    network that is down). Not every ``OSError``: a full disk, a permission refused or a decoder's
    error would be retried for ever and never get better."""
    import redis

    # the builtins take in ConnectionRefused/Reset/AbortedError, BrokenPipeError and socket.timeout
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, socket.gaierror):
        return True
    if type(exc) is OSError and exc.errno in _NETWORK_ERRNOS:  # connect() on an unreachable network
        return True
    if isinstance(exc, redis.ResponseError) and "LOADING" in str(exc):
        return True
    from dramatiq import errors as dq

    # BrokerConnectionError since Dramatiq 2 (its old name, ConnectionError, warns when read)
    broker_error = getattr(dq, "BrokerConnectionError", None) or dq.ConnectionError
    return isinstance(exc, broker_error)

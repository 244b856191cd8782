"""One retry policy for Redis blips, shared by the queue's front ends and workers."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

redis = pytest.importorskip("redis")

from m2i_engine.queue import client, worker  # noqa: E402
from m2i_engine.queue.connection import Backoff, is_connection_error, retry_connection  # noqa: E402


@pytest.mark.parametrize(
    "exc, expected",
    [
        (redis.ConnectionError("refused"), True),
        (redis.TimeoutError("slow"), True),
        (ConnectionResetError(), True),
        (ConnectionRefusedError(), True),
        (BrokenPipeError(), True),
        (TimeoutError(), True),
        (socket.gaierror(-2, "Name or service not known"), True),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), True),
        (redis.ResponseError("LOADING Redis is loading the dataset in memory"), True),
        (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (ValueError("a bug"), False),
        # not the network: retrying would never help
        (OSError(28, "No space left on device"), False),
        (PermissionError(13, "Permission denied"), False),
        (FileNotFoundError(2, "No such file or directory"), False),
        (OSError("a decoder's error"), False),
    ],
)
def test_what_counts_as_redis_being_away(exc: BaseException, expected: bool) -> None:
    assert is_connection_error(exc) is expected


def test_blips_are_retried_until_the_operation_gets_through(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def no_wait(s: float) -> None:
        waits.append(s)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls < 7:
            raise redis.ConnectionError("restarting")
        return "ok"

    assert asyncio.run(retry_connection(op, what="testing")) == "ok"
    assert calls == 7
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]  # doubling, capped at 2 s


def test_other_errors_are_raised_at_once() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        asyncio.run(retry_connection(op, what="testing"))
    assert calls == 1


def test_front_ends_and_workers_share_the_one_policy() -> None:
    assert client.retry_connection is retry_connection is worker.retry_connection
    assert worker.is_connection_error is is_connection_error
    assert client.Backoff is Backoff  # the front end's event subscription backs off the same way


def test_a_backoff_doubles_to_its_cap_and_starts_again_after_a_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def no_wait(s: float) -> None:
        waits.append(s)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    b = Backoff()

    async def go() -> None:
        for _ in range(7):
            await b.wait()
        b.reset()
        await b.wait()

    asyncio.run(go())
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 0.1]

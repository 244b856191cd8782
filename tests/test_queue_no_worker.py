"""Queue mode with no live worker answers at once, and a timeout names its cause.

Real redis-server, real ``m2i worker`` processes (:mod:`tests.queue_harness`). Without a worker the API
used to hold every request until the 300-s deadline and then blame the user's clip; now it refuses at
once with 503 ``no_worker`` (as ``/readyz`` already says), notices a worker that dies under a waiting
request, and words a deadline by what really happened: no worker, a long queue, or a long job.
"""

# ruff: noqa: F811  (the redis_server fixture is imported, then named by the tests that use it)
from __future__ import annotations

import asyncio
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.core import AudioRequest, BotService, BotSettings, Failure, messages
from bot.core.limits import AudioMeta, Platform
from m2i_engine.config import Settings
from m2i_engine.errors import RequestTimeoutError
from m2i_engine.queue.client import QUEUE_TOO_LONG, QueueEngine
from m2i_engine.server.app import create_app
from tests.queue_harness import (  # noqa: F401  (redis_server is a fixture)
    RedisServer,
    await_until,
    form,
    queue_env,
    queue_settings,
    redis_server,
    song,
    start_workers,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def api(settings: Settings) -> TestClient[Any, Any]:
    return TestClient(TestServer(create_app(settings, QueueEngine(settings))))


async def test_no_worker_gives_503_at_once_not_a_timeout(redis_server: RedisServer) -> None:
    namespace = "nw" + secrets.token_hex(4)
    settings = queue_settings(redis_server.url, namespace)  # a 60-s deadline, no worker on this namespace
    async with api(settings) as c:
        ready = await c.get("/readyz")
        assert ready.status == 503 and "no worker" in (await ready.json())["reasons"]
        for path in ("/v1/visualize", "/v1/analyze", "/v1/visualize?wait=false"):
            t0 = time.monotonic()
            fields: dict[str, Any] = {"size": 256} if "visualize" in path else {}
            r = await c.post(path, data=form(song(21), **fields))
            doc = await r.json()
            assert time.monotonic() - t0 < 5, path
            assert r.status == 503, (path, doc)
            assert doc["error"]["code"] == "no_worker", doc
            assert "shorter clip" not in doc["error"]["message"]
            assert doc["request_id"]
    async with QueueEngine(settings) as q:  # nothing left queued for a worker that may start later
        assert await q.queue_depth_now() == 0


async def test_a_chat_bot_with_no_worker_says_so_at_once(redis_server: RedisServer) -> None:
    settings = queue_settings(redis_server.url, "nw" + secrets.token_hex(4))
    async with QueueEngine(settings) as engine:
        service = BotService(engine, BotSettings(image_size=256))  # type: ignore[arg-type]

        async def fetch() -> bytes:
            return song(25)

        request = AudioRequest(
            platform=Platform("test"),
            user_id=1,
            chat_id=1,
            fetch=fetch,
            meta=AudioMeta(kind="audio", file_name="a.wav"),
            options="seed=5",
        )
        t0 = time.monotonic()
        out = await service.visualize(request)
        assert time.monotonic() - t0 < 5
    assert isinstance(out, Failure) and out.code == "no_worker", out
    assert "worker" in out.text and "shorter clip" not in out.text


def test_a_timeout_in_the_queue_is_not_blamed_on_the_clip_in_chat() -> None:
    assert "shorter clip" not in messages.error_text(RequestTimeoutError(QUEUE_TOO_LONG))
    assert "shorter clip" in messages.error_text(RequestTimeoutError())  # a long job: the usual advice


async def test_a_worker_dying_under_a_waiting_request_is_reported_as_such(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    namespace = "nw" + secrets.token_hex(4)
    env = queue_env(redis_server.url, namespace, tmp_path)
    [worker] = start_workers(1, env, tmp_path, namespace=namespace, redis_url=redis_server.url)
    try:
        async with api(queue_settings(redis_server.url, namespace)) as c:
            call = asyncio.create_task(
                c.post("/v1/visualize", data=form(song(22), size=256, seed=1, prompt="m2i-fault-gate-die"))
            )
            await await_until(lambda: list(tmp_path.glob("die.started.*")), 60, "the job to start")
            worker.signal(signal.SIGKILL)
            t0 = time.monotonic()
            r = await asyncio.wait_for(call, 30)  # the deadline is 60 s: this must come much sooner
            doc = await r.json()
            assert time.monotonic() - t0 < 15
            assert r.status == 503 and doc["error"]["code"] == "no_worker", doc
            assert "stopped" in doc["error"]["message"]
    finally:
        worker.stop()


async def test_a_deadline_says_whether_the_queue_or_the_job_was_too_long(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    namespace = "nw" + secrets.token_hex(4)
    env = queue_env(redis_server.url, namespace, tmp_path, M2I_QUEUE__CONCURRENCY="1")
    [worker] = start_workers(1, env, tmp_path, namespace=namespace, redis_url=redis_server.url)
    settings = queue_settings(redis_server.url, namespace).model_copy(update={"request_timeout_s": 5.0})
    try:
        async with api(settings) as c:
            long_job = asyncio.create_task(
                c.post("/v1/visualize", data=form(song(23), size=256, seed=2, prompt="m2i-fault-gate-long"))
            )
            await await_until(lambda: list(tmp_path.glob("long.started.*")), 60, "the long job to start")
            behind = await c.post("/v1/visualize", data=form(song(24), size=256, seed=3))
            waited, ran = await behind.json(), await (await long_job).json()
            (tmp_path / "long").touch()
            assert behind.status == 504 and waited["error"]["code"] == "timeout", waited
            assert "queue" in waited["error"]["message"] and "shorter clip" not in waited["error"]["message"]
            assert ran["error"]["code"] == "timeout", ran
            assert "shorter clip" in ran["error"]["message"]
    finally:
        worker.stop()

"""Queue mode keeps the single-process promise: past ``M2I_MAX_QUEUE`` waiting jobs, new ones are busy."""

# ruff: noqa: F811  (the redis_server fixture is imported, then named by the test that uses it)

from __future__ import annotations

import asyncio
import secrets

import pytest

from m2i_engine.errors import BusyError
from m2i_engine.queue.client import QueueEngine
from tests.queue_harness import (  # noqa: F401  (redis_server is a fixture)
    RedisServer,
    await_until,
    queue_settings,
    redis_server,
    song,
)


async def test_a_full_queue_refuses_new_jobs_at_once(redis_server: RedisServer) -> None:
    settings = queue_settings(redis_server.url, f"busy-{secrets.token_hex(4)}").model_copy(
        update={"max_queue": 2}
    )
    async with QueueEngine(settings) as engine:  # no worker consumes this namespace: jobs stay queued
        waiting = [asyncio.create_task(engine.analyze(song(seed))) for seed in (11, 12)]

        async def depth_is_two() -> bool | None:
            return True if await engine.queue_depth_now() == 2 else None

        await await_until(depth_is_two, 10, "two queued jobs")
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(BusyError):
            await engine.analyze(song(13))
        assert asyncio.get_running_loop().time() - t0 < 2  # refused at once, not after a wait
        assert await engine.queue_depth_now() == 2  # the refused job was not enqueued
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

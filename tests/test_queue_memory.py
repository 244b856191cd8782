"""A queue-mode front end keeps no picture bytes for the jobs it remembers, so its memory stays flat.

Real redis-server and a real ``m2i worker`` (:mod:`tests.queue_harness`). The API keeps finished jobs for
an hour (``GET /v1/jobs``, idempotent retries); it used to keep every PNG it served with them, so under
load at 2048 px the process grew by hundreds of MB although the workers had stored the PNGs in Redis.
Now a kept job gives its bytes back and gets them again when asked — same bytes, same ids.
"""

# ruff: noqa: F811  (the redis_server fixture is imported, then named by the tests that use it)
from __future__ import annotations

import base64
import io
import secrets
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from m2i_engine.engine import VisualizeResult
from m2i_engine.queue.client import QueueEngine
from m2i_engine.server.app import STATE, create_app
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


def held_bytes(result: Any) -> int:
    """Picture bytes a kept result holds: its PNGs, and the buffers its lazily opened images read."""
    if not isinstance(result, VisualizeResult):
        return 0
    total = 0
    for img in result.images:
        png = img.held_png
        total += len(png) if png is not None else 0
        fp = getattr(img.image, "fp", None)
        total += len(fp.getvalue()) if isinstance(fp, io.BytesIO) else 0
    return total


async def test_kept_jobs_give_their_picture_bytes_back_and_still_answer(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    namespace = "mem" + secrets.token_hex(4)
    env = queue_env(redis_server.url, namespace, tmp_path)
    [worker] = start_workers(1, env, tmp_path, namespace=namespace, redis_url=redis_server.url)
    settings = queue_settings(redis_server.url, namespace)
    app = create_app(settings, QueueEngine(settings))
    jobs = app[STATE].jobs
    jobs.slim_after_s = 0.05  # the waiting requests have their answers long before
    try:
        async with TestClient(TestServer(app)) as c:
            served: dict[str, bytes] = {}
            for i in range(4):
                r = await c.post("/v1/visualize", data=form(song(31 + i % 2), size=512, seed=i))
                doc = await r.json()
                assert r.status == 200, doc
                served[doc["images"][0]["id"]] = await (await c.get(doc["images"][0]["url"])).read()
            key = {"Idempotency-Key": secrets.token_hex(8)}
            first = await c.post("/v1/visualize", data=form(song(31), size=512, seed=9), headers=key)
            first_doc = await first.json()
            queued = await (
                await c.post("/v1/visualize?wait=false", data=form(song(32), size=512, seed=10))
            ).json()
            await await_until(
                lambda: (j := jobs.get(queued["job_id"])) is not None and j.done,
                60,
                "the async job to finish",
            )
            assert sum(len(png) for png in served.values()) > 20_000

            # what the API holds once the answers went out: no picture bytes, whatever the job count
            def held() -> int:
                return sum(held_bytes(j.result) for j in jobs._jobs.values())

            await await_until(
                lambda: held() < 200 * len(jobs._jobs),
                10,
                "the API to let go of the pictures it served (they are in Redis)",
            )

            # ...and every way of asking for a kept job's pictures still gets the very same bytes
            status = await (await c.get(f"/v1/jobs/{queued['job_id']}?image=base64")).json()
            assert status["status"] == "done", status
            img = status["result"]["images"][0]
            stored = await (await c.get(f"/v1/images/{img['id']}.png")).read()
            assert base64.b64decode(img["png_base64"]) == stored and stored.startswith(b"\x89PNG")
            assert (img["width"], img["height"]) == (512, 512)
            again = await c.post(
                "/v1/visualize", data=form(song(31), size=512, seed=9), headers={**key, "Accept": "image/png"}
            )
            assert again.status == 200 and again.headers["X-M2I-Job-ID"] == first_doc["job_id"]
            assert await again.read() == await (await c.get(first_doc["images"][0]["url"])).read()
            await await_until(lambda: held() < 200 * len(jobs._jobs), 10, "the retried job to let go too")
    finally:
        worker.stop()

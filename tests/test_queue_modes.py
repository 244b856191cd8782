"""One code path, two modes: the same HTTP scenario against one process and against Redis + 2 workers.

The API and the bots take an engine object; in queue mode it is a
:class:`~m2i_engine.queue.client.QueueEngine` whose jobs run on real ``m2i worker`` processes
(:mod:`tests.queue_harness`) through a real redis-server. The answers must be the same — tags, prompt,
seed, the very PNG bytes, error codes — and each request must get exactly one result.
"""

# ruff: noqa: F811  (the redis_server fixture is imported, then named by the tests that use it)
from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from aiohttp.test_utils import TestClient, TestServer

from bot.core import AudioRequest, BotService, BotSettings, Reply
from bot.core.limits import AudioMeta, Platform
from bot.core.reply import build_reply
from m2i_engine.config import SDSettings, Settings
from m2i_engine.engine import Engine
from m2i_engine.logs import request_context
from m2i_engine.options import VideoOptions, VisualizeOptions
from m2i_engine.queue.client import QueueEngine
from m2i_engine.queue.codec import decode_video, decode_visualize, encode_video, encode_visualize
from m2i_engine.server.app import create_app
from tests.queue_harness import (  # noqa: F401  (redis_server is a fixture)
    RedisServer,
    WorkerProc,
    form,
    harness_engine,
    queue_env,
    queue_settings,
    redis_server,
    running_workers,
    song,
    start_workers,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


@pytest.fixture(scope="module")
def namespace() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def workers(
    redis_server: RedisServer,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[WorkerProc]]:
    with running_workers(2, redis_server.url, namespace, tmp_path_factory.mktemp("modes")) as procs:
        yield procs


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def single() -> AsyncIterator[TestClient[Any, Any]]:
    s = Settings(backend="renderer", workers=1)  # type: ignore[arg-type]
    async with TestClient(TestServer(create_app(s, harness_engine(s, oom_fallback=True)))) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def queued(
    redis_server: RedisServer, namespace: str, workers: list[WorkerProc]
) -> AsyncIterator[TestClient[Any, Any]]:
    s = queue_settings(redis_server.url, namespace)
    async with TestClient(TestServer(create_app(s, QueueEngine(s)))) as c:
        yield c


async def scenario(c: TestClient[Any, Any]) -> dict[str, Any]:
    """What a client sees: a picture, a re-roll, tags, an error, an async job, an idempotent retry."""
    out: dict[str, Any] = {}
    r = await c.post("/v1/visualize", data=form(song(1), size=256, seed=5, style="watercolor"))
    assert r.status == 200, await r.text()
    doc = await r.json()
    png = await (await c.get(doc["images"][0]["url"])).read()
    out["picture"] = (
        {k: doc[k] for k in ("tags", "prompt", "negative_prompt", "style", "seed", "backend", "notes")},
        png,
    )
    r = await c.post("/v1/visualize", data=form(song(1), size=256, seed=6, style="watercolor"))
    reroll = await r.json()
    out["reroll_cached_analysis"] = reroll["cached"]
    out["reroll_differs"] = reroll["images"][0]["id"] != doc["images"][0]["id"]
    out["analysis"] = (await (await c.post("/v1/analyze", data=form(song(2)))).json())["tags"]
    r = await c.post("/v1/visualize", data=form(b"definitely not audio" * 20))
    out["error"] = (r.status, (await r.json())["error"]["code"])
    r = await c.post("/v1/visualize?wait=false", data=form(song(3), size=256))
    job = await r.json()
    for _ in range(600):
        status = await (await c.get(job["status_url"])).json()
        if status["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.05)
    out["async"] = (r.status, status["status"], len(status["result"]["images"]))
    headers = {"Idempotency-Key": secrets.token_hex(8)}
    a, b = await asyncio.gather(
        *(c.post("/v1/visualize", data=form(song(4), size=256), headers=headers) for _ in range(2))
    )
    ja, jb = await a.json(), await b.json()
    out["idempotent"] = ja["job_id"] == jb["job_id"] and ja["images"] == jb["images"]
    return out


async def test_the_same_scenario_gives_the_same_answers_in_both_modes(
    single: TestClient[Any, Any], queued: TestClient[Any, Any]
) -> None:
    one = await scenario(single)
    many = await scenario(queued)
    assert one["picture"][0] == many["picture"][0]
    assert one["picture"][1] == many["picture"][1]  # the very same PNG bytes
    assert one["analysis"] == many["analysis"]
    assert one["error"] == many["error"] == (415, "not_audio")
    assert one["async"] == many["async"] == (202, "done", 1)
    assert one["reroll_cached_analysis"] and many["reroll_cached_analysis"]
    assert one["reroll_differs"] and many["reroll_differs"]
    assert one["idempotent"] and many["idempotent"]


async def test_notes_and_their_details_cross_the_queue_unchanged(tmp_path: Path) -> None:
    """A worker's result, through the wire format, gives a front end the same notes for the chat and
    the same operator details as one process: the same bot reply in both modes."""
    s = Settings(workers=1, sd_model=None, sd=SDSettings(model=None))
    opts = VisualizeOptions(size=256, seed=5)
    async with Engine(s) as eng:
        still = await eng.visualize(song(7), opts)
        clip = await eng.video(song(7), opts, VideoOptions(size=256, fps=15), out=tmp_path / "v.mp4")
    said = "Drawn by the built-in renderer (this server has no Stable Diffusion model)."
    assert still.notes == [said] and "M2I_SD__MODEL" in still.note_details[said]
    doc, pngs = encode_visualize(still)
    back = decode_visualize(json.loads(json.dumps(doc)), pngs)
    assert (back.notes, back.note_details) == (still.notes, still.note_details)
    one = build_reply(still, options=opts, title="t", request_id="r")
    many = build_reply(back, options=opts, title="t", request_id="r")
    assert one.text() == many.text() and one.notes == many.notes == (said,)
    moved = decode_video(json.loads(json.dumps(encode_video(clip, "v1"))), clip.path)
    assert (moved.notes, moved.note_details) == (clip.notes, clip.note_details)
    assert moved.video == clip.video  # every field of the Video crosses the queue, new ones too
    assert said in moved.notes and "M2I_SD__MODEL" in moved.note_details[said]
    older = {k: v for k, v in doc.items() if k != "note_details"}  # a worker from before note_details
    assert decode_visualize(older, pngs).note_details == {}


async def test_concurrent_clients_each_get_exactly_one_result(
    queued: TestClient[Any, Any], redis_server: RedisServer, namespace: str
) -> None:
    calls = [
        queued.post("/v1/visualize", data=form(song(1 + i % 3), size=256, seed=100 + i)) for i in range(24)
    ]
    docs = [await r.json() for r in await asyncio.gather(*calls)]
    assert all("images" in d for d in docs), docs
    assert len({d["images"][0]["id"] for d in docs}) == 24
    assert len({d["job_id"] for d in docs}) == 24
    r = redis.Redis.from_url(redis_server.url)
    for d in docs:
        assert int(r.hget(f"{namespace}:job:{d['job_id']}", "deliveries") or 0) == 1
    text = await (await queued.get("/metrics")).text()
    assert "m2i_workers_alive 2.0" in text and 'm2i_stage_seconds_count{stage="queue_wait"}' in text


async def test_a_retried_request_joins_its_job_across_api_processes(
    redis_server: RedisServer, namespace: str, workers: list[WorkerProc]
) -> None:
    s = queue_settings(redis_server.url, namespace)
    job_id = "chat-" + secrets.token_hex(6)
    async with QueueEngine(s) as api1, QueueEngine(s) as api2:
        with request_context("retry-test", job_id):
            a, b = await asyncio.gather(
                api1.visualize(song(5), VisualizeOptions(size=256, seed=1)),
                api2.visualize(song(5), VisualizeOptions(size=256, seed=1)),
            )
    assert a.images[0].meta["image_id"] == b.images[0].meta["image_id"]
    r = redis.Redis.from_url(redis_server.url)
    assert int(r.hget(f"{namespace}:job:{job_id}", "deliveries") or 0) == 1


async def test_the_bots_run_unchanged_on_the_queue(
    redis_server: RedisServer, namespace: str, workers: list[WorkerProc]
) -> None:
    s = queue_settings(redis_server.url, namespace)
    async with QueueEngine(s) as engine:
        service = BotService(engine, BotSettings(image_size=256))  # type: ignore[arg-type]

        async def fetch() -> bytes:
            return song(6)

        seen: list[Any] = []
        request = AudioRequest(
            platform=Platform("test"),
            user_id=1,
            chat_id=1,
            fetch=fetch,
            meta=AudioMeta(kind="audio", file_name="a.wav"),
            options="style=neon seed=5",
        )
        out = await service.visualize(request, progress=seen.append)
    assert isinstance(out, Reply), out
    assert out.seed == 5 and out.images[0].png.startswith(b"\x89PNG") and out.images[0].width == 256
    assert {s.stage.value for s in seen} >= {"downloading", "drawing", "sending"}

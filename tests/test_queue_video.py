"""Music videos in queue mode: ``QueueEngine.video`` through a real redis-server and a real ``m2i worker``
process (:mod:`tests.queue_harness`), checked against the single-process engine and by decoding the MP4.

Songs are the harness's 4-s clips and videos the smallest the engine makes (144×256 at 15 fps), so a
video costs a few seconds of a worker's time.
"""

# ruff: noqa: F811  (the redis_server fixture is imported, then named by the tests that use it)
from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from aiohttp.test_utils import TestClient, TestServer

from bot.core import AudioRequest, BotService, BotSettings, VideoReply
from bot.core.limits import AudioMeta, Platform
from m2i_engine.config import Settings
from m2i_engine.engine import Progress, VideoResult
from m2i_engine.errors import InputError, VideoExpiredError, VideoTooLargeError
from m2i_engine.logs import job_id_var, request_context
from m2i_engine.options import Backend, VideoOptions, VisualizeOptions
from m2i_engine.queue import worker
from m2i_engine.queue.client import QueueEngine
from m2i_engine.queue.codec import VIDEO_READ_GRACE_S
from m2i_engine.queue.worker import VideoLostError, WorkerRuntime
from m2i_engine.server.app import create_app
from tests.fakes.media import probe_mp4
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

SMALL = VideoOptions(size=256, fps=15)
OPTIONS = VisualizeOptions(seed=4, backend=Backend.renderer)
#: the same small video asked over HTTP
SMALL_QUERY = "video=true&video_size=256&video_fps=15"


@pytest.fixture(scope="module")
def namespace() -> str:
    return "v" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def workers(
    redis_server: RedisServer,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[WorkerProc]]:
    with running_workers(1, redis_server.url, namespace, tmp_path_factory.mktemp("queue-video")) as procs:
        yield procs


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine(
    redis_server: RedisServer, namespace: str, workers: list[WorkerProc]
) -> AsyncIterator[QueueEngine]:
    async with QueueEngine(queue_settings(redis_server.url, namespace)) as eng:
        yield eng


async def single_video(data: bytes, options: VisualizeOptions, video: VideoOptions, **kw: Any) -> VideoResult:
    """The same video made by the single-process engine the workers run (the harness's)."""
    s = Settings(backend="renderer", workers=1)  # type: ignore[arg-type]
    async with harness_engine(s) as eng:
        return await eng.video(data, options, video, **kw)


async def test_a_worker_makes_the_same_mp4_as_one_process(engine: QueueEngine, tmp_path: Path) -> None:
    seen: list[Progress] = []
    out = tmp_path / "nested" / "queued.mp4"
    got = await engine.video(song(1), OPTIONS, SMALL, out=out, progress=seen.append)
    assert got.path == out and out.exists()
    mp4 = out.read_bytes()
    info = probe_mp4(mp4)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 144, 256)
    assert abs(info.duration_s - 4.0) <= 0.2
    v = got.video
    assert v.size_bytes == len(mp4) == len(got.video.read_bytes()) > 0
    assert (v.width, v.height, v.fps, v.codec, v.audio_codec) == (144, 256, 15.0, "libx264", "aac")
    assert abs(v.length_s - 4.0) <= 0.2 and v.frames == info.frames and v.backend == got.backend == "renderer"
    assert got.seed == v.seed == 4 and v.sections and got.tags.sections
    assert "worker_ms" in got.timings_ms  # it came from a worker, not from this process
    assert {p.stage.value for p in seen} >= {"queued", "drawing", "done"}

    one = await single_video(song(1), OPTIONS, SMALL, out=tmp_path / "single.mp4")
    assert one.path.read_bytes() == mp4  # the very same file
    assert one.prompt == got.prompt and one.tags == got.tags and one.notes == got.notes
    assert (one.video.sections, one.video.scenes, one.video.style, one.video.motif) == (
        v.sections,
        v.scenes,
        v.style,
        v.motif,
    )
    # the clip's WAV is the same bytes in every process, so its analysis is cached under one key
    assert got.analysis.audio_sha256 == one.analysis.audio_sha256 and len(one.analysis.audio_sha256) == 64


async def test_a_queued_mp4_waits_in_redis_with_an_expiry(
    engine: QueueEngine, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    await engine.video(song(7), OPTIONS, SMALL, out=tmp_path / "kept.mp4")
    r = redis.Redis.from_url(redis_server.url)
    keys = list(r.scan_iter(f"{namespace}:vid:*"))
    # none kept for ever, and once delivered none for the result's hour: only a retry's grace
    assert keys and all(0 < r.ttl(key) <= VIDEO_READ_GRACE_S for key in keys)


async def test_a_retry_of_the_same_job_reads_the_delivered_mp4_again(
    engine: QueueEngine, tmp_path: Path
) -> None:
    token = job_id_var.set("retry-" + secrets.token_hex(4))
    try:
        first = await engine.video(song(8), OPTIONS, SMALL, out=tmp_path / "first.mp4")
        again = await engine.video(song(8), OPTIONS, SMALL, out=tmp_path / "again.mp4")
    finally:
        job_id_var.reset(token)
    assert again.path.read_bytes() == first.path.read_bytes() and again.seed == first.seed
    assert again.timings_ms["worker_ms"] == first.timings_ms["worker_ms"]  # joined, not made twice


async def test_without_out_the_caller_gets_a_temporary_file_it_owns(engine: QueueEngine) -> None:
    got = await engine.video(song(2), OPTIONS, SMALL, max_bytes=10_000_000)
    try:
        assert got.path.exists() and got.path.suffix == ".mp4"
        assert got.path.stat().st_size == got.video.size_bytes and got.video.bit_rate is None
        assert probe_mp4(got.path.read_bytes()).audio_codec == "aac"
    finally:
        got.path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("audio", "options"),
    [
        (b"definitely not audio" * 20, OPTIONS),
        (song(3, duration_s=1.0), OPTIONS),  # shorter than the shortest song accepted
        (song(3), OPTIONS.model_copy(update={"num_images": 2})),  # a video is one picture
    ],
    ids=["not-audio", "too-short", "two-pictures"],
)
async def test_bad_input_is_refused_as_in_one_process(
    engine: QueueEngine, tmp_path: Path, audio: bytes, options: VisualizeOptions
) -> None:
    with pytest.raises(InputError) as single:
        await single_video(audio, options, SMALL, out=tmp_path / "single.mp4")
    with pytest.raises(InputError) as queued:
        await engine.video(audio, options, SMALL, out=tmp_path / "queued.mp4")
    assert type(queued.value) is type(single.value)
    assert (queued.value.code, queued.value.message) == (single.value.code, single.value.message)
    assert queued.value.code in ("not_audio", "too_short", "invalid_option")
    assert not (tmp_path / "queued.mp4").exists()


async def test_a_video_over_the_byte_limit_is_refused(
    engine: QueueEngine, redis_server: RedisServer, namespace: str
) -> None:
    job_id = "vid" + secrets.token_hex(6)
    with request_context("too-large", job_id), pytest.raises(VideoTooLargeError) as exc:
        await engine.video(song(4), OPTIONS, SMALL, max_bytes=20_000)
    assert exc.value.code == "video_too_large" and exc.value.http_status == 413
    r = redis.Redis.from_url(redis_server.url)
    assert r.hget(f"{namespace}:job:{job_id}-video", "state") == b"failed"  # refused by the worker


async def test_the_http_api_serves_queued_videos(
    redis_server: RedisServer, namespace: str, workers: list[WorkerProc]
) -> None:
    s = queue_settings(redis_server.url, namespace)
    async with TestClient(TestServer(create_app(s, QueueEngine(s)))) as c:
        # an Idempotency-Key gives the picture's job and the video's one id to start from
        headers = {"Idempotency-Key": secrets.token_hex(8)}
        resp = await c.post(
            f"/v1/visualize?{SMALL_QUERY}", data=form(song(5), size=256, seed=4), headers=headers
        )
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
        assert doc["images"][0]["width"] == 256
        video = doc["video"]
        assert video["url"] == f"/v1/videos/{video['id']}.mp4"
        assert (video["width"], video["height"], video["codec"], video["audio_codec"]) == (
            144,
            256,
            "libx264",
            "aac",
        )
        assert abs(video["length_s"] - 4.0) <= 0.2 and "worker_ms" in video["timings_ms"]
        got = await c.get(video["url"])
        mp4 = await got.read()
        assert got.status == 200 and got.content_type == "video/mp4" and len(mp4) == video["bytes"]
        info = probe_mp4(mp4)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac") and abs(info.duration_s - 4.0) <= 0.2

        refused = await c.post(
            f"/v1/visualize?{SMALL_QUERY}&video_max_bytes=20000", data=form(song(5), size=256, seed=4)
        )
        err = (await refused.json())["error"]
        assert refused.status == 413 and err["code"] == "video_too_large"
        assert "video_length" in err["message"] and "--" not in err["message"]


async def test_the_bots_send_queued_videos(engine: QueueEngine) -> None:
    settings = BotSettings(image_size=256, video_size=256, video_fps=15)
    service = BotService(engine, settings)  # type: ignore[arg-type]

    async def fetch() -> bytes:
        return song(6)

    request = AudioRequest(
        platform=Platform("test"),
        user_id=1,
        chat_id=1,
        fetch=fetch,
        meta=AudioMeta(kind="audio", file_name="a.wav"),
        options=VisualizeOptions(seed=3),
        upload_limit=5_000_000,
    )
    out = await service.video(request)
    assert isinstance(out, VideoReply), out
    assert out.mp4[4:8] == b"ftyp" and (out.width, out.height) == (144, 256) and out.seed == 3
    assert probe_mp4(out.mp4).audio_codec == "aac"


# --- the worker's and the front end's halves, against the real redis-server -------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def runtime(redis_server: RedisServer) -> AsyncIterator[WorkerRuntime]:
    """A worker's runtime on its own namespace, without a Dramatiq worker: its methods called directly."""
    import redis.asyncio as aredis

    rt = WorkerRuntime(queue_settings(redis_server.url, "u" + secrets.token_hex(4)), worker_id="unit")
    rt.redis = aredis.Redis.from_url(redis_server.url)
    try:
        yield rt
    finally:
        await rt.redis.aclose()


def losing_data_after(rt: WorkerRuntime, calls: int, key: str) -> None:
    """Redis restarts without its data (``key`` is gone) right after the worker's ``calls``-th Redis call."""
    real = rt._persist
    seen = 0

    async def persist(op: Any) -> Any:
        nonlocal seen
        out = await real(op)
        seen += 1
        if seen == calls:
            await rt.redis.delete(key)
        return out

    rt._persist = persist  # type: ignore[method-assign]


async def test_an_mp4_is_stored_whole_in_pieces_each_renewing_its_expiry(
    runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "VIDEO_CHUNK", 1000)
    mp4 = secrets.token_bytes(3500)  # a SET and three pieces
    key = runtime.keys.video("whole")
    await runtime._store_video(key, mp4)
    assert await runtime.redis.get(key) == mp4
    assert 0 < await runtime.redis.ttl(key) <= min(runtime.q.image_ttl_s, runtime.q.result_ttl_s)


@pytest.mark.parametrize(
    ("lost_after", "when"), [(1, "after the first piece"), (3, "mid-way"), (4, "after the last piece")]
)
async def test_an_mp4_redis_lost_while_it_was_stored_is_not_kept_with_a_hole(
    runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch, lost_after: int, when: str
) -> None:
    """Before: the pieces after a restart made a new key without a TTL, zero-filled below them, and a
    front end served that MP4 as it was. Now the key is deleted and the job runs again (transient)."""
    monkeypatch.setattr(worker, "VIDEO_CHUNK", 1000)
    key = runtime.keys.video("lost" + secrets.token_hex(4))
    losing_data_after(runtime, lost_after, key)
    with pytest.raises(VideoLostError) as exc:
        await runtime._store_video(key, secrets.token_bytes(3500))
    assert not await runtime.redis.exists(key), when
    assert worker._is_transient(exc.value)


class FakeVideoEngine:
    """A worker engine whose "video" is random bytes; ``during`` runs while it renders."""

    def __init__(self, during: Any = None) -> None:
        self.during = during

    async def video(self, data: bytes, options: Any, video: Any, *, out: Path, **_: Any) -> object:
        out.write_bytes(secrets.token_bytes(2500))
        if self.during is not None:
            await self.during()
        return object()


async def run_video_job(rt: WorkerRuntime, engine: Any, job_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one video job through ``WorkerRuntime._run`` (its audio stored, the engine faked)."""
    monkeypatch.setattr(worker, "encode_video", lambda _result, vid: {"kind": "video", "video": {"id": vid}})
    rt.engine = engine
    sha = secrets.token_hex(32)
    await rt.redis.set(rt.keys.audio(sha), b"song", ex=60)
    payload = {
        "job": job_id,
        "kind": "video",
        "sha": sha,
        "rid": job_id,
        "options": None,
        "oom_step": 0,
        "enqueued": time.time(),
        "video": None,
        "max_bytes": None,
    }
    await rt._run(payload, 0)


async def videos_of(rt: WorkerRuntime) -> list[bytes]:
    return [key async for key in rt.redis.scan_iter(rt.keys.video("*"))]


async def test_a_redelivered_video_job_leaves_no_orphan_mp4(
    runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deliveries of one job (a worker died after finishing, or a slow one was taken over): the first
    stored result wins, and the other run's MP4 must not sit in Redis until its TTL."""
    first = json.dumps({"kind": "video", "video": {"id": "first"}})
    job_id = ""

    async def other_run_finishes() -> None:  # the job's other delivery stores its result first
        await runtime.redis.set(runtime.keys.result(job_id), first)

    # 1. the other run finished while this one rendered: this run's MP4 is never stored
    job_id = "job" + secrets.token_hex(4)
    await run_video_job(runtime, FakeVideoEngine(other_run_finishes), job_id, monkeypatch)
    assert await runtime.redis.get(runtime.keys.result(job_id)) == first.encode()
    assert await videos_of(runtime) == []

    # 2. it finished while this one stored its MP4: that MP4 is deleted once the first result is seen
    real_store = runtime._store_video

    async def store_then_lose_the_race(key: str, mp4: bytes) -> None:
        await real_store(key, mp4)
        assert await videos_of(runtime) == [key.encode()]
        await other_run_finishes()

    monkeypatch.setattr(runtime, "_store_video", store_then_lose_the_race)
    job_id = "job" + secrets.token_hex(4)
    await run_video_job(runtime, FakeVideoEngine(), job_id, monkeypatch)
    assert await runtime.redis.get(runtime.keys.result(job_id)) == first.encode()
    assert await videos_of(runtime) == []

    # 3. no race: the one result names the one MP4 there is
    monkeypatch.setattr(runtime, "_store_video", real_store)
    job_id = "job" + secrets.token_hex(4)
    await run_video_job(runtime, FakeVideoEngine(), job_id, monkeypatch)
    doc = json.loads(await runtime.redis.get(runtime.keys.result(job_id)))
    assert await videos_of(runtime) == [runtime.keys.video(doc["video"]["id"]).encode()]


async def test_a_video_gone_before_it_was_read_is_expired_not_unavailable(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's MP4 expired (or was lost with Redis) before the front end read it: ``video_expired``
    (410: asking again joins the same dead result), not ``queue_unavailable`` (503: "try again"); the
    temporary file made for it is removed."""
    import redis.asyncio as aredis

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    eng = QueueEngine(queue_settings(redis_server.url, "u" + secrets.token_hex(4)))
    eng._redis = aredis.Redis.from_url(redis_server.url)
    try:
        cut = eng.keys.video("cut")
        await eng._redis.set(cut, b"x" * 1000, ex=60)  # the first bytes of 5000
        for video_id in ("gone", "cut"):
            with pytest.raises(VideoExpiredError) as exc:
                await eng._video_file({"video": {"id": video_id, "size_bytes": 5000}}, None)
            assert (exc.value.code, exc.value.http_status) == ("video_expired", 410)
        assert list(tmp_path.iterdir()) == []
    finally:
        await eng._redis.aclose()

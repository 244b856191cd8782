"""Music videos in queue mode: ``QueueEngine.video`` through a real redis-server and a real ``m2i worker``
process (:mod:`tests.queue_harness`), checked against the single-process engine and by decoding the MP4.

Songs are the harness's 4-s clips and videos the smallest the engine makes (144×256 at 15 fps), so a
video costs a few seconds of a worker's time.
"""

# ruff: noqa: F811  (the redis_server fixture is imported, then named by the tests that use it)
from __future__ import annotations

import secrets
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
from m2i_engine.errors import InputError, VideoTooLargeError
from m2i_engine.logs import request_context
from m2i_engine.options import Backend, VideoOptions, VisualizeOptions
from m2i_engine.queue.client import QueueEngine
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
    tmp = tmp_path_factory.mktemp("queue-video")
    env = queue_env(redis_server.url, namespace, tmp)
    procs = start_workers(1, env, tmp, namespace=namespace, redis_url=redis_server.url)
    yield procs
    for p in procs:
        p.stop()


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

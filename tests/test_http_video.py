"""``POST /v1/visualize?video=true`` and ``GET /v1/videos/{id}.mp4``: a real aiohttp server on loopback in
front of the real engine (built-in renderer), with short songs and small videos (144×256 at 15 fps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from m2i_engine.config import Settings
from m2i_engine.engine import Engine
from m2i_engine.errors import VideoExpiredError
from m2i_engine.server.app import create_app
from m2i_engine.server.images import FileVideos
from tests.fakes.media import probe_mp4
from tests.queue_harness import form, song

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: the smallest video the engine makes: a few seconds of work per request
SMALL = "video=true&video_size=256&video_fps=15"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine() -> AsyncIterator[Engine]:
    async with Engine(Settings(backend="renderer", workers=1)) as eng:  # type: ignore[arg-type]
        yield eng


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(engine: Engine) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(engine.settings, engine, own_engine=False)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_video_true_links_an_mp4_served_like_images(client: TestClient[Any, Any]) -> None:
    resp = await client.post(f"/v1/visualize?{SMALL}", data=form(song(1), size=256, seed=4))
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["images"][0]["width"] == 256  # the image comes as before
    video = doc["video"]
    assert video["url"] == f"/v1/videos/{video['id']}.mp4" and len(video["id"]) == 32
    assert (video["width"], video["height"], video["fps"]) == (144, 256, 15.0)  # 9:16 by default
    assert (video["codec"], video["audio_codec"], video["content_type"]) == ("libx264", "aac", "video/mp4")
    assert abs(video["length_s"] - 4.0) < 0.2 and video["start_s"] == 0.0 and video["seed"] == 4
    assert video["bit_rate"] is None and video["sections"] and doc["timings_ms"]["video_ms"] > 0
    # the API describes a video as the CLI does (Video.to_dict), with a link for the path
    assert video["frames"] > 0 and video["style"] == doc["style"] and video["motif"] and video["scenes"] >= 1

    got = await client.get(video["url"])
    mp4 = await got.read()
    assert got.status == 200 and got.content_type == "video/mp4" and len(mp4) == video["bytes"]
    assert got.headers["Cache-Control"].startswith("private") and got.headers.get("Accept-Ranges") == "bytes"
    info = probe_mp4(mp4)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 144, 256)
    assert abs(info.duration_s - 4.0) < 0.3
    part = await client.get(video["url"], headers={"Range": "bytes=0-99"})
    assert part.status == 206 and await part.read() == mp4[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(mp4)}"
    again = await client.post(f"/v1/visualize?{SMALL}", data=form(song(1), size=256, seed=4))
    assert (await again.json())["video"]["id"] == video["id"]  # the same song, options and seed


async def test_a_byte_limit_lowers_the_bit_rate_or_refuses_clearly(client: TestClient[Any, Any]) -> None:
    fitted = await client.post(f"/v1/visualize?{SMALL}&video_max_bytes=90000", data=form(song(2), size=256))
    doc = await fitted.json()
    assert fitted.status == 200, doc
    assert doc["video"]["bytes"] <= 90_000 and doc["video"]["bit_rate"] is not None
    assert any("kbit/s" in n for n in doc["notes"])
    mp4 = await (await client.get(doc["video"]["url"])).read()
    assert len(mp4) <= 90_000 and probe_mp4(mp4).audio_codec == "aac"

    refused = await client.post(
        "/v1/visualize",
        data=form(song(2), size=256, video="true", video_size=256, video_fps=15, video_max_bytes=20_000),
    )
    err = (await refused.json())["error"]
    assert refused.status == 413 and err["code"] == "video_too_large"
    assert "video_length" in err["message"] and "--" not in err["message"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("video=maybe", "Invalid video"),
        ("video=true&video_length=1", "Invalid video_length"),
        ("video=true&video_aspect=2:1", "Invalid video_aspect"),
        ("video=true&video_max_bytes=-5", "video_max_bytes"),
        ("video_size=512", "add video=true"),
        ("video=true&num_images=2", "one picture"),
    ],
)
async def test_bad_video_fields_are_refused_before_any_work(
    client: TestClient[Any, Any], query: str, says: str
) -> None:
    resp = await client.post(f"/v1/visualize?{query}", data=form(song(3), size=256))
    err = (await resp.json())["error"]
    assert resp.status == 422 and err["code"] == "invalid_option" and says in err["message"], err


async def test_without_video_nothing_changes(client: TestClient[Any, Any]) -> None:
    doc = await (await client.post("/v1/visualize?video=false", data=form(song(1), size=256))).json()
    assert "video" not in doc and "video_ms" not in doc["timings_ms"]
    for path in ("/v1/videos/nope.mp4", f"/v1/videos/{'0' * 32}.mp4", f"/v1/videos/{'0' * 32}.png"):
        assert (await client.get(path)).status == 404


async def test_the_openapi_document_describes_videos(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/openapi.json")).json()
    params = {p["name"] for p in doc["paths"]["/v1/visualize"]["post"]["parameters"]}
    assert {
        "video",
        "video_start",
        "video_length",
        "video_fps",
        "video_aspect",
        "video_size",
        "video_max_bytes",
    } <= params
    assert "video/mp4" in doc["paths"]["/v1/videos/{video_id}.mp4"]["get"]["responses"]["200"]["content"]
    assert "video" in doc["components"]["schemas"]["VisualizeResult"]["properties"]


async def test_an_engine_without_videos_says_so(engine: Engine) -> None:
    class ImagesOnly:  # an engine without a video method
        settings = engine.settings

        async def start(self) -> None: ...

        async def close(self) -> None: ...

    app = create_app(engine.settings, ImagesOnly(), own_engine=False)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as c:
        resp = await c.post(f"/v1/visualize?{SMALL}", data=form(song(1), size=256))
        err = (await resp.json())["error"]
    assert resp.status == 503 and err["code"] == "video_unavailable"


async def test_a_video_gone_before_it_was_read_is_410_not_a_retry(engine: Engine) -> None:
    """Queue mode: the worker's MP4 expired (or Redis lost it) before the API copied it out. A retry
    would join the same dead result, so the answer says "gone", not "try again" (503)."""

    class Expiring:  # pictures as usual, but the video's file is gone
        settings = engine.settings

        async def start(self) -> None: ...

        async def close(self) -> None: ...

        async def visualize(self, *args: Any, **kwargs: Any) -> Any:
            return await engine.visualize(*args, **kwargs)

        async def video(self, *args: Any, **kwargs: Any) -> Any:
            raise VideoExpiredError(detail="video abc expired before it was read (0 of 9000 bytes)")

    app = create_app(engine.settings, Expiring(), own_engine=False)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as c:
        resp = await c.post(f"/v1/visualize?{SMALL}", data=form(song(1), size=256))
        err = (await resp.json())["error"]
    assert resp.status == 410 and err["code"] == "video_expired"
    assert err["message"] == VideoExpiredError.default_message and "abc" not in err["message"]


async def test_the_private_store_keeps_the_newest_videos(tmp_path: Path) -> None:
    store = FileVideos.private(entries=2)
    ids = []
    for i in range(3):
        made = tmp_path / f"{i}.mp4"
        made.write_bytes(b"mp4 %d" % i)
        ids.append(await store.put(made))
        assert not made.exists()  # moved in
    assert await store.path(ids[0]) is None and await store.path(ids[2]) is not None
    assert await store.path("../../etc/passwd") is None
    root = store.root
    await store.close()
    assert not root.exists()

"""Each picture is PNG-encoded once, and a queue-mode result hands the worker's bytes on unchanged.

:class:`~m2i_engine.imaging.base.GeneratedImage` keeps its PNG bytes: the CLI's files, the HTTP API's
image store and answers, the queue codec, the result cache and the bots' replies all send those bytes.
Every PNG save in Pillow is counted here, so a consumer that encodes again fails the count; and a result
decoded from the worker's PNGs must pass them on byte for byte without opening their pixels.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.core.reply import build_reply
from m2i_engine.cli import _save_images
from m2i_engine.config import Settings
from m2i_engine.engine import Engine, VisualizeResult
from m2i_engine.imaging.base import GeneratedImage
from m2i_engine.imaging.png import PNG_COMPRESS_LEVEL, encode_png, png_id
from m2i_engine.models import ModelRegistry
from m2i_engine.options import VisualizeOptions
from m2i_engine.queue.codec import decode_visualize, encode_visualize, slim_visualize
from m2i_engine.server.app import create_app
from m2i_engine.serving import ServingEngine
from tests.queue_harness import form, song

OPTIONS = VisualizeOptions(size=256, seed=3, num_images=2, backend="renderer")  # type: ignore[arg-type]


class Counts:
    def __init__(self) -> None:
        self.png_saves = 0
        self.opens = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    """Counts every PNG encode (any ``Image.save`` as PNG, wherever it is called) and every open."""
    c = Counts()
    save, open_ = Image.Image.save, Image.open

    def counting_save(self: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
        if (format or "").upper() == "PNG" or str(fp).lower().endswith(".png"):
            c.png_saves += 1
        save(self, fp, format, **params)

    def counting_open(*args: Any, **kw: Any) -> Image.Image:
        c.opens += 1
        return open_(*args, **kw)

    monkeypatch.setattr(Image.Image, "save", counting_save)
    monkeypatch.setattr(Image, "open", counting_open)
    yield c


def _settings() -> Settings:
    return Settings(backend="renderer", workers=1)  # type: ignore[arg-type]


async def _visualize() -> VisualizeResult:
    async with Engine(_settings(), models=ModelRegistry()) as eng:
        return await eng.visualize(song(4), OPTIONS)


async def test_engine_result_is_encoded_once_for_every_consumer(counts: Counts, tmp_path: Path) -> None:
    result = await _visualize()
    assert counts.png_saves == 0  # nothing encodes until someone asks for bytes
    reply = build_reply(result, options=OPTIONS, title="t", request_id="r")
    assert counts.png_saves == 2  # one per image
    for shown, img in zip(reply.images, result.images, strict=True):
        assert shown.png is img.png and (shown.width, shown.height) == img.image.size
        assert img.image_id == png_id(shown.png)
    build_reply(result, options=OPTIONS, title="t", request_id="r")  # a second reply: the same bytes
    doc, pngs = encode_visualize(result)  # what a queue worker stores
    paths = _save_images(result, tmp_path / "out.png")  # what the CLI writes
    assert counts.png_saves == 2
    assert [im["id"] for im in doc["images"]] == [img.image_id for img in result.images]
    assert all(pngs[img.image_id] is img.png for img in result.images)
    assert [p.read_bytes() for p in paths] == [img.png for img in result.images]
    # the one encoder, with today's settings: the bytes are exactly what it makes of the pixels
    assert result.images[0].png == encode_png(result.images[0].image)
    assert PNG_COMPRESS_LEVEL == 1


async def test_http_api_encodes_once_and_serves_those_bytes(counts: Counts) -> None:
    s = _settings()
    eng = ServingEngine(s, models=ModelRegistry(), result_cache=8)
    app = create_app(s, eng)
    async with TestClient(TestServer(app)) as c:
        fields = {"size": 256, "seed": 5, "num_images": 2}
        r = await c.post("/v1/visualize?image=base64", data=form(song(6), **fields))
        doc = await r.json()
        assert r.status == 200, doc
        assert counts.png_saves == 2
        for entry in doc["images"]:
            served = await (await c.get(entry["url"])).read()
            assert served == base64.b64decode(entry["png_base64"]) and png_id(served) == entry["id"]
        again = await c.post("/v1/visualize?image=base64", data=form(song(6), **fields))  # result cache
        assert (await again.json())["images"] == doc["images"]
        raw = await c.post("/v1/visualize", data=form(song(6), **fields), headers={"Accept": "image/png"})
        assert await raw.read() == base64.b64decode(doc["images"][0]["png_base64"])
        assert counts.png_saves == 2


class _QueueLikeEngine:
    """Answers like a queue-mode front end: results decoded from the worker's document and PNGs."""

    def __init__(self, doc: dict[str, Any], pngs: dict[str, bytes]) -> None:
        self.settings = _settings()
        self.doc, self.pngs = doc, pngs

    async def start(self) -> Any:
        return self

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def analyze(self, audio: Any, *, progress: Any = None) -> Any:
        raise NotImplementedError

    async def visualize(self, audio: Any, options: Any = None, *, progress: Any = None) -> VisualizeResult:
        return decode_visualize(self.doc, self.pngs)


async def test_a_queue_result_passes_the_workers_bytes_on_without_decoding(counts: Counts) -> None:
    doc, worker_pngs = encode_visualize(await _visualize())  # the worker's side
    counts.png_saves = counts.opens = 0
    # bytes as they come out of Redis: new objects, so "is" below means "not re-made on the way"
    pngs = {k: bytes(bytearray(v)) for k, v in worker_pngs.items()}

    result = decode_visualize(doc, pngs, lambda iid: lambda: pngs[iid])
    reply = build_reply(result, options=OPTIONS, title="t", request_id="r")
    for shown, im in zip(reply.images, doc["images"], strict=True):
        assert shown.png is pngs[im["id"]]
        assert (shown.width, shown.height) == (im["width"], im["height"])
    again, _ = encode_visualize(result)  # a front end handing it on (e.g. a result-cache hit) keeps ids
    assert [im["id"] for im in again["images"]] == [im["id"] for im in doc["images"]]
    slim = slim_visualize(result)  # a kept job gives its bytes back and fetches them again, unchanged
    assert slim is not None and all(img.held_png is None for img in slim.images)
    assert [img.png for img in slim.images] == [pngs[im["id"]] for im in doc["images"]]
    assert counts.png_saves == 0
    assert counts.opens == 2  # only slim_visualize's header-only images; the reply opened nothing
    assert all(img.held_png is pngs[img.image_id] for img in result.images)

    counts.opens = 0
    app = create_app(_settings(), _QueueLikeEngine(doc, pngs))  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/v1/visualize?image=base64", data=form(b"RIFF not decoded here"))
        got = await r.json()
        assert r.status == 200, got
        for entry, im in zip(got["images"], doc["images"], strict=True):
            assert entry["id"] == im["id"]
            assert (entry["width"], entry["height"]) == (im["width"], im["height"])
            assert base64.b64decode(entry["png_base64"]) == pngs[im["id"]]
            assert await (await c.get(entry["url"])).read() == pngs[im["id"]]
    assert counts.png_saves == 0 and counts.opens == 0


def test_a_generated_image_opens_its_png_only_when_asked(counts: Counts) -> None:
    pixels = Image.new("RGB", (40, 24), (200, 30, 90))
    png = encode_png(pixels)
    counts.png_saves = 0
    img = GeneratedImage(None, 7, "renderer", png=png)
    assert img.size == (40, 24) and img.png is png and img.image_id == png_id(png)
    assert counts.opens == 0 and counts.png_saves == 0
    assert img.image.size == (40, 24) and img.image.getpixel((0, 0)) == (200, 30, 90)
    assert counts.opens == 1 and img.png is png and counts.png_saves == 0
    made = GeneratedImage(image=pixels, seed=1, backend="renderer", meta={"k": 1})  # as backends build it
    assert made.held_png is None and made.png == png and made.png is made.png and counts.png_saves == 1
    with pytest.raises(ValueError):
        GeneratedImage(None, 0, "renderer")

"""The async engine: one request path for every front end — results, caching, queueing, failures."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import soundfile as sf

from m2i_engine.config import Settings
from m2i_engine.engine import Engine, Progress, Stage
from m2i_engine.errors import (
    BackendUnavailableError,
    BusyError,
    EmptyAudioError,
    NotAudioError,
    RequestTimeoutError,
)
from m2i_engine.imaging.base import GeneratedImage, ImageBackend, ImageRequest
from m2i_engine.imaging.renderer import encode_png
from m2i_engine.models import ModelRegistry
from m2i_engine.options import AnimateOptions, Aspect, Backend, VisualizeOptions
from m2i_engine.synth import SongSpec, render_song


def wav(spec: SongSpec) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, render_song(spec), spec.sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def house() -> bytes:
    return wav(SongSpec(bpm=124, style="house", duration_s=12, seed=1))


@pytest.fixture(scope="module")
def ballad() -> bytes:
    return wav(SongSpec(bpm=66, style="ballad", mode="major", tonic="D", duration_s=12, seed=2))


def engine(**kw: object) -> Engine:
    return Engine(Settings(**kw), models=ModelRegistry())  # type: ignore[arg-type]


async def test_visualize_returns_tags_prompt_and_an_image(house: bytes) -> None:
    async with engine() as eng:
        res = await eng.visualize(house, VisualizeOptions(aspect=Aspect.wide, size=512))
    assert abs(res.tags.tempo.bpm - 124) / 124 < 0.04
    assert res.tags.genre.status == "model_missing" and res.tags.mood.source == "signal"
    assert res.backend == "renderer" and res.notes  # says SD was not used
    assert [im.image.size for im in res.images] == [Aspect.wide.size(512)]
    assert res.prompt.text and res.prompt.negative
    assert {"decode_ms", "signal_ms", "draw_ms"} <= set(res.timings_ms)


async def test_same_song_and_seed_repeat_and_a_new_seed_varies(house: bytes) -> None:
    opts = VisualizeOptions(size=256)
    async with engine() as eng:
        a = await eng.visualize(house, opts)
        b = await eng.visualize(house, opts)
        c = await eng.visualize(house, opts.model_copy(update={"seed": a.seed + 1}))
    assert a.seed == b.seed  # the default seed comes from the audio itself
    assert encode_png(a.images[0].image) == encode_png(b.images[0].image)
    assert encode_png(a.images[0].image) != encode_png(c.images[0].image)


async def test_different_songs_give_different_tags_and_images(house: bytes, ballad: bytes) -> None:
    opts = VisualizeOptions(size=256, seed=5)
    async with engine() as eng:
        h, b = await asyncio.gather(eng.visualize(house, opts), eng.visualize(ballad, opts))
    assert h.tags.loudness.energy > b.tags.loudness.energy
    assert h.prompt.text != b.prompt.text
    diff = np.abs(np.asarray(h.images[0].image, float) - np.asarray(b.images[0].image, float)).mean()
    assert diff > 10


async def test_analysis_is_cached_and_shared_between_concurrent_requests(house: bytes) -> None:
    async with engine() as eng:
        first, second = await asyncio.gather(eng.analyze(house), eng.analyze(house))
        third = await eng.analyze(house)
    assert sorted([first.cached, second.cached]) == [False, True]
    assert third.cached and third.tags == first.tags


async def test_progress_reports_each_stage_in_order(house: bytes) -> None:
    seen: list[Stage] = []

    async def on_progress(p: Progress) -> None:
        seen.append(p.stage)

    async with engine() as eng:
        await eng.visualize(house, VisualizeOptions(size=256), progress=on_progress)
        await asyncio.sleep(0.05)  # thread-side stage reports are delivered via the loop
    order = [s for s in (Stage.decoding, Stage.analysing, Stage.drawing, Stage.done) if s in seen]
    assert order == [Stage.decoding, Stage.analysing, Stage.drawing, Stage.done]
    assert [seen.index(s) for s in order] == sorted(seen.index(s) for s in order)


async def test_waiting_requests_learn_their_queue_position(house: bytes, ballad: bytes) -> None:
    positions: list[int] = []

    def on_progress(p: Progress) -> None:
        if p.stage is Stage.queued and p.queue_position:
            positions.append(p.queue_position)

    songs = [house, ballad] + [wav(SongSpec(bpm=100 + i, duration_s=4, seed=i)) for i in range(3)]
    async with engine(workers=1) as eng:
        await asyncio.gather(*(eng.analyze(s, progress=on_progress) for s in songs))
    assert positions and max(positions) >= 2


async def test_a_full_queue_refuses_with_busy_and_keeps_serving(house: bytes) -> None:
    songs = [wav(SongSpec(bpm=90 + i, duration_s=4, seed=i)) for i in range(6)]
    async with engine(workers=1, max_queue=2) as eng:
        results = await asyncio.gather(*(eng.analyze(s) for s in songs), return_exceptions=True)
        busy = [r for r in results if isinstance(r, BusyError)]
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert busy and ok and len(busy) + len(ok) == len(songs)
        assert (await eng.analyze(house)).tags.tempo.bpm > 0  # still serving


async def test_bad_input_surfaces_as_typed_errors_and_the_engine_survives(house: bytes) -> None:
    async with engine() as eng:
        with pytest.raises(EmptyAudioError):
            await eng.visualize(b"")
        with pytest.raises(NotAudioError):
            await eng.visualize(json.dumps({"not": "audio"}).encode() * 50)
        assert (await eng.visualize(house, VisualizeOptions(size=256))).images


async def test_timeout_is_a_clear_error(house: bytes) -> None:
    async with engine(request_timeout_s=0.001) as eng:
        with pytest.raises(RequestTimeoutError):
            await eng.visualize(house)


async def test_cancelled_request_does_not_break_the_next(house: bytes, ballad: bytes) -> None:
    async with engine(workers=1) as eng:
        task = asyncio.create_task(eng.analyze(house))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        again = await eng.analyze(house)
        assert again.tags.tempo.bpm > 0
        assert (await eng.analyze(ballad)).tags.tempo.bpm > 0


async def test_explicit_sd_without_a_model_is_a_clear_error(house: bytes) -> None:
    async with engine() as eng:
        with pytest.raises(BackendUnavailableError):
            await eng.visualize(house, VisualizeOptions(backend=Backend.sd))


async def test_path_input_checks_size_before_reading(tmp_path, house: bytes) -> None:  # type: ignore[no-untyped-def]
    from m2i_engine.config import AudioLimits
    from m2i_engine.errors import TooLargeError

    p = tmp_path / "song.bin"
    p.write_bytes(house)
    async with Engine(Settings(limits=AudioLimits(max_bytes=1000)), models=ModelRegistry()) as eng:
        with pytest.raises(TooLargeError):
            await eng.analyze(p)
    async with engine() as eng:
        assert (await eng.analyze(p)).tags.audio.duration_s == pytest.approx(12, abs=0.1)


class _BrokenSD(ImageBackend):
    """A Stable Diffusion backend that fails at serve time (a lost GPU, a broken driver)."""

    name = "sd"

    def generate(self, request: ImageRequest) -> list[GeneratedImage]:
        raise BackendUnavailableError("the GPU went away")


async def test_a_failing_sd_backend_falls_back_to_the_renderer_and_says_so(house: bytes) -> None:
    async with Engine(Settings(), models=ModelRegistry(), backends={"sd": _BrokenSD()}) as eng:
        still = await eng.visualize(house, VisualizeOptions(size=256))
        assert still.backend == "renderer" and still.images[0].image.size == (256, 256)
        assert any("Stable Diffusion failed (the GPU went away)" in n for n in still.notes), still.notes
        loop = await eng.animate(
            house, VisualizeOptions(size=256), AnimateOptions(anim_size=128, fps=8, loop_bars=1)
        )
        assert loop.animation.backend == "renderer" and loop.animation.frames
        assert any("Stable Diffusion failed" in n and "animated" in n for n in loop.notes), loop.notes
        with pytest.raises(BackendUnavailableError):  # asked for SD by name: no silent substitute
            await eng.visualize(house, VisualizeOptions(size=256, backend=Backend.sd))

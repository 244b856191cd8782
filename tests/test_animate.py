"""Beat-synced animation: the loop closes, beats flash on their frames, energy moves it, files decode.

Everything is measured on pixels of small renders (128 px) at a tempo whose beats land on the frame
grid (120 bpm at 16 fps: a beat every 8 frames), so "the frame of a beat" is exact.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from m2i_engine.imaging.animate import LoopClock, animate, choose_section, loop_bars_for, render_frames
from m2i_engine.imaging.animate.encode import encode_gif, encode_gif_within, encode_mp4, frame_durations_ms
from m2i_engine.imaging.base import ImageRequest
from m2i_engine.imaging.renderer import look_from_tags, render
from m2i_engine.imaging.renderer.motion import STILL
from m2i_engine.options import AnimateOptions, LoopSection, Style, VisualizeOptions
from m2i_engine.prompt import build_prompt
from m2i_engine.tags import Tags
from m2i_engine.testing import make_tags

SIDE = 128
FPS = 16  # 120 bpm → 8 frames a beat
GENRES = [
    "classical",
    "metal",
    "jazz",
    "electronic",
    "disco",
    "hiphop",
    "reggae",
    "country",
    "blues",
    "pop",
    "rock",
]
#: quiet first half, loud second half
CALM_THEN_LOUD = [0.12] * 32 + [0.92] * 32


def song(
    genre: str | None = "electronic",
    *,
    bpm: float = 120.0,
    curve: list[float] | None = None,
    **overrides: object,
) -> Tags:
    tags = make_tags(bpm=bpm, energy=0.6, arousal=0.3, genre={genre: 0.9} if genre else None)
    return tags.model_copy(update={"energy_curve": curve or [0.6] * 64, **overrides})


def clock_for(
    tags: Tags, *, bars: int = 1, mode: LoopSection = LoopSection.peak, fps: float = FPS
) -> LoopClock:
    section = choose_section(tags, bars=bars, mode=mode)
    return LoopClock.for_section(section, fps=fps, window_beats=look_from_tags(tags).rhythm.count)


def frames_of(tags: Tags, clock: LoopClock, style: Style = Style.auto) -> np.ndarray:
    frames = render_frames(tags, clock, style=style, width=SIDE, height=SIDE, seed=3)
    return np.stack([np.asarray(f, dtype=np.float32) for f in frames])


def changes(arr: np.ndarray) -> np.ndarray:
    """Mean absolute change into each frame from the one before (frame 0 from the last: the seam)."""
    return np.abs(arr - np.roll(arr, 1, axis=0)).mean(axis=(1, 2, 3))


def request(tags: Tags, *, width: int = SIDE, height: int = SIDE, seed: int = 3) -> ImageRequest:
    return ImageRequest(
        tags=tags, prompt=build_prompt(tags, VisualizeOptions()), width=width, height=height, seed=seed
    )


# --- section and clock ----------------------------------------------------------------------------


def test_loop_length_is_a_whole_number_of_bars_near_five_seconds() -> None:
    assert loop_bars_for(120.0, 4) == 2  # 4 s
    assert loop_bars_for(60.0, 4) == 1  # 4 s
    assert loop_bars_for(175.0, 4) == 4  # 5.5 s
    assert loop_bars_for(90.0, 3) == 2  # 4 s in 3/4
    assert loop_bars_for(20.0, 4) == 1  # a 12 s bar: never fewer than one bar


def test_section_starts_on_a_downbeat_and_peak_finds_the_loud_bars() -> None:
    tags = song(curve=CALM_THEN_LOUD)
    peak = choose_section(tags, bars=2)
    assert peak.length_s == pytest.approx(4.0) and peak.bars == 2 and len(peak.beats_s) == 8
    assert peak.beats_s[0] == 0.0 and peak.accents == (True, False, False, False) * 2
    assert peak.start_in_song_s >= 15.0 and peak.mean_energy > 0.85 and peak.tracked
    start = choose_section(tags, bars=2, mode=LoopSection.start)
    assert start.start_in_song_s == 0.0 and start.mean_energy < 0.2
    typical = choose_section(song(curve=[0.1] * 8 + [0.5] * 48 + [1.0] * 8), bars=1, mode=LoopSection.typical)
    assert typical.mean_energy == pytest.approx(0.5, abs=0.05)
    doc = peak.to_dict()
    assert doc["mode"] == "peak" and doc["bars"] == 2 and doc["end_s"] == pytest.approx(doc["start_s"] + 4.0)


def test_without_tracked_beats_the_loop_is_a_steady_grid_at_the_tempo() -> None:
    tags = song(tempo=make_tags(bpm=100.0).tempo.model_copy(update={"beats_s": [], "downbeats_s": []}))
    sec = choose_section(tags, bars=2)
    assert not sec.tracked and len(sec.beats_s) == 8
    assert sec.length_s == pytest.approx(8 * 0.6) and np.allclose(np.diff(sec.beats_s), 0.6)


def test_frames_tile_the_loop_and_the_motion_at_its_end_is_the_motion_at_its_start() -> None:
    clock = clock_for(song(curve=CALM_THEN_LOUD), bars=2)
    assert clock.frames == 64 and clock.fps == pytest.approx(FPS)
    assert clock.beat_frames() == [1, 9, 17, 25, 33, 41, 49, 57]
    start, end = clock.motion_at(0.0), clock.motion_at(clock.length_s)
    assert end.beats == 8 and start.beats == 0
    for name in ("pulse", "downbeat", "amount", "zoom", "pan_x", "pan_y", "glow_gain"):
        assert getattr(end, name) == pytest.approx(getattr(start, name), abs=1e-9), name
    assert start.pulse == 0.0 and start.zoom == 1.0  # the first frame is at rest: the still
    pulses = [m.pulse for m in clock.motions()]
    assert int(np.argmax(pulses)) == 1 and pulses[1] > 0.6  # … and the next one is the downbeat


def test_tempo_sets_the_speed() -> None:
    for bpm in (90.0, 150.0):
        clock = clock_for(song(bpm=bpm), bars=2)
        assert clock.beats_at(1.0) == pytest.approx(bpm / 60.0, rel=1e-6)


# --- pixels ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("genre", GENRES)
def test_frame_zero_is_the_still_and_beats_flash_on_their_frames(genre: str) -> None:
    tags = song(genre)
    clock = clock_for(tags)
    arr = frames_of(tags, clock)
    still = np.asarray(render(tags, width=SIDE, height=SIDE, seed=3), dtype=np.float32)
    assert np.abs(arr[0] - still).mean() < 0.05  # the still come alive, not another picture

    d = changes(arr)
    n = len(d)
    beat_frames = [round(b * clock.fps) for b in clock.section.beats_s]  # 0, 8, 16, 24
    for f in beat_frames:
        window = [(f + k) % n for k in range(-3, 4)]
        peak = window[int(np.argmax(d[window]))]
        assert min(abs(peak - f), n - abs(peak - f)) <= 1, (genre, f, d.round(2))
    flashes = np.array([d[(f + 1) % n] for f in beat_frames])
    assert flashes.min() > 1.5 * np.median(d), (genre, flashes, np.median(d))
    assert flashes[0] > flashes[1:].mean(), (genre, flashes)  # the downbeat is the strongest


@pytest.mark.parametrize("genre", ["electronic", "metal", "hiphop", "classical", "country", "blues"])
def test_a_loud_section_moves_more_than_a_calm_one(genre: str) -> None:
    tags = song(genre, curve=CALM_THEN_LOUD)
    calm = changes(frames_of(tags, clock_for(tags, mode=LoopSection.start))).mean()
    loud = changes(frames_of(tags, clock_for(tags, mode=LoopSection.peak))).mean()
    assert loud > 1.3 * calm, (genre, calm, loud)


def test_the_loop_closes_without_a_jump() -> None:
    tags = song("reggae", curve=CALM_THEN_LOUD)  # waves roll continuously: the hardest seam
    clock = clock_for(tags, bars=2, mode=LoopSection.start)
    arr = frames_of(tags, clock)
    after_last = np.asarray(
        render(tags, width=SIDE, height=SIDE, seed=3, motion=clock.motion_at(clock.length_s)),
        dtype=np.float32,
    )
    assert np.abs(after_last - arr[0]).mean() < 0.05  # "frame N" is frame 0 again
    d = changes(arr)
    assert d[0] <= np.median(d[1:]) * 1.5  # last → first is an ordinary step, not a jump


def test_the_still_is_unchanged_by_the_animation_hooks() -> None:
    tags = song("disco")
    for style in (Style.cover, Style.neon, Style.minimal):
        a = render(tags, style=style, width=96, height=96, seed=5)
        b = render(tags, style=style, width=96, height=96, seed=5, motion=STILL)
        assert a.tobytes() == b.tobytes()


# --- files ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[object]:
    tags = song("hiphop", curve=CALM_THEN_LOUD)
    yield animate(request(tags, width=128, height=160), AnimateOptions(fps=12, loop_bars=1))


def test_same_song_and_seed_give_identical_files(loop: object) -> None:
    tags = song("hiphop", curve=CALM_THEN_LOUD)
    again = animate(request(tags, width=128, height=160), AnimateOptions(fps=12, loop_bars=1))
    assert again.gif == loop.gif  # type: ignore[attr-defined]
    assert [f.tobytes() for f in again.frames] == [f.tobytes() for f in loop.frames]  # type: ignore[attr-defined]
    other = animate(request(tags, width=128, height=160, seed=4), AnimateOptions(fps=12, loop_bars=1))
    assert other.gif != loop.gif  # type: ignore[attr-defined]


def test_gif_loops_forever_with_the_loops_timing_and_decodes_to_the_frames(loop: object) -> None:
    a = loop
    assert a.backend == "renderer" and a.meta["motif"] == "blocks"  # type: ignore[attr-defined]
    assert len(a.frames) == 24 and a.fps == pytest.approx(12.0)  # type: ignore[attr-defined]
    gif = Image.open(io.BytesIO(a.gif))  # type: ignore[attr-defined]
    assert gif.format == "GIF" and gif.size == (128, 160) and gif.n_frames == 24
    assert gif.info["loop"] == 0
    durations, decoded = [], []
    for frame in ImageSequence.Iterator(gif):
        durations.append(frame.info["duration"])
        decoded.append(np.asarray(frame.convert("RGB"), dtype=np.float32))
    assert sum(durations) == pytest.approx(2000, abs=10)
    for got, want in zip(decoded, a.frames, strict=True):  # type: ignore[attr-defined]
        assert np.abs(got - np.asarray(want, dtype=np.float32)).mean() < 6.0


def test_mp4_is_h264_yuv420p_at_the_loops_rate(loop: object) -> None:
    av = pytest.importorskip("av")
    a = loop
    with av.open(io.BytesIO(a.mp4)) as container:  # type: ignore[attr-defined]
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and a.mp4_codec == "libx264"  # type: ignore[attr-defined]
        assert float(stream.average_rate) == pytest.approx(a.fps, rel=1e-3)  # type: ignore[attr-defined]
        assert (stream.width, stream.height) == (128, 160)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 24
    assert frames[0].shape == (160, 128, 3)
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert np.abs(frames[5].astype(np.float32) - np.asarray(a.frames[5], dtype=np.float32)).mean() < 8.0  # type: ignore[attr-defined]


def test_odd_sizes_and_the_gif_budget() -> None:
    frames = [Image.new("RGB", (129, 97), (10 * k, 40, 200 - 10 * k)) for k in range(6)]
    data, codec = encode_mp4(frames, fps=10.0)
    av = pytest.importorskip("av")
    with av.open(io.BytesIO(data)) as container:
        s = container.streams.video[0]
        assert (s.width, s.height) == (128, 96) and codec in ("libx264", "h264", "mpeg4")
    assert frame_durations_ms(3, 0.2) == [70, 60, 70]  # whole centiseconds, adding up to the loop
    noisy = [
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (256, 256, 3), np.uint8)) for k in range(4)
    ]
    full = encode_gif(noisy, length_s=1.0)
    small, size = encode_gif_within(noisy, length_s=1.0, max_bytes=len(full) // 3)
    assert len(small) <= len(full) // 3 and size[0] < 256 and Image.open(io.BytesIO(small)).n_frames == 4


def test_cli_animate_writes_gif_and_mp4_beside_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from m2i_engine.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "art" / "cover.png"
    code = main(
        [
            "visualize",
            "--json",
            "--animate",
            "-o",
            str(out),
            "--size",
            "256",
            "--anim-size",
            "128",
            "--fps",
            "8",
            "--loop-bars",
            "1",
            "--section",
            "typical",
            "--seed",
            "9",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    anim = doc["animation"]
    assert anim["gif"] == str(out.with_suffix(".gif")) and anim["mp4"] == str(out.with_suffix(".mp4"))
    assert anim["section"]["mode"] == "typical" and anim["section"]["bars"] == 1 and anim["seed"] == 9
    gif = Image.open(anim["gif"])
    assert gif.size == (128, 128) and gif.n_frames == anim["frames"] > 8
    assert Path(anim["mp4"]).stat().st_size == anim["mp4_bytes"] > 0 and out.is_file()


# --- Stable Diffusion -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    from m2i_engine.imaging.sd import SDSettings, SteeringSettings, load_sd_backend
    from m2i_engine.imaging.sd.tiny import build_tiny_sd

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("M2I_TEST_TORCH_THREADS", "1")))
    folder = build_tiny_sd(tmp_path_factory.mktemp("tiny-animate") / "pipeline")
    settings = SDSettings(
        model=str(folder),
        allow_cpu=True,
        steps=2,
        guidance=5.0,
        max_batch=8,
        warmup=False,
        steering=SteeringSettings(init="composition", palette_transfer=0.5),
    )
    backend = load_sd_backend(settings, batching=True)  # the batcher the engine holds, unwrapped inside
    yield backend
    backend.close()
    torch.set_num_threads(before)


def test_sd_loop_interpolates_between_keyframes(tiny_sd: object) -> None:
    from m2i_engine.imaging.animate.diffusion import progress_at, slerp

    tags = song("jazz", curve=CALM_THEN_LOUD)
    tags = tags.model_copy(
        update={"audio": tags.audio.model_copy(update={"analysed_s": 4.0, "duration_s": 4.0})}
    )
    a = animate(
        request(tags, width=64, height=64),
        AnimateOptions(fps=8, loop_bars=2, section="start"),
        backend=tiny_sd,
    )  # type: ignore[arg-type]
    assert a.backend == "sd" and len(a.frames) == 32 and a.frames[0].size == (64, 64)
    keys = a.meta["keyframes"]
    assert [k["frame"] for k in keys] == [0, 16] and keys[0]["seed"] != keys[1]["seed"]
    assert keys[0]["words"] != keys[1]["words"]  # a calm bar then a loud bar: the prompt follows
    arr = np.stack([np.asarray(f, dtype=np.float32) for f in a.frames])
    steps = changes(arr)  # includes the seam: last frame → first keyframe
    between_keys = np.abs(arr[0] - arr[16]).mean()
    assert steps.max() < 0.8 * between_keys, (steps.round(1), between_keys)
    assert Image.open(io.BytesIO(a.gif)).n_frames == 32

    import torch

    x, y = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    assert torch.allclose(slerp(x, y, 0.0), x) and torch.allclose(slerp(x, y, 1.0), y, atol=1e-6)
    mid = slerp(x, y, 0.5)
    assert abs(float(mid.norm()) - 0.5 * float(x.norm() + y.norm())) < 0.1 * float(x.norm())
    clock = clock_for(tags, bars=2, mode=LoopSection.start, fps=8)
    alphas = [progress_at(clock, 2, float(t)) for t in clock.frame_times()]
    assert alphas[0] == (0, 0.0) and alphas[16][0] == 1
    assert all(k0 < k1 or a0 <= a1 for (k0, a0), (k1, a1) in itertools.pairwise(alphas))

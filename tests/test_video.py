"""Music videos (``Engine.video``, ``m2i visualize --video``): the MP4 a user gets, checked by decoding it.

Songs are synthesised at tempos whose beats land on whole frames at 15 fps (100 BPM: a beat every 9
frames; 150 BPM: every 6), so "the period of the picture's change" can be compared with the song's
beat exactly. Sizes are small (144×256) and clips short; timing lives in ``bench/video_speed.py``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2i_engine.config import Settings
from m2i_engine.engine import Engine, VideoResult
from m2i_engine.errors import InvalidOptionError, NotAudioError, TooShortError
from m2i_engine.imaging.video import VideoTooLargeError, fit_bit_rate, render_video
from m2i_engine.imaging.video.scenes import CACHE_SCENES, Scene, SceneCache
from m2i_engine.imaging.video.timeline import Timeline
from m2i_engine.models import ModelRegistry
from m2i_engine.options import Aspect, VideoOptions, VisualizeOptions
from m2i_engine.tags import SongSection
from m2i_engine.testing import make_tags
from tests.sectioned_songs import Part, sectioned_song

av = pytest.importorskip("av")

FPS = 15
SR = 44_100
SMALL = VideoOptions(size=256, fps=FPS)
#: quiet verse then loud chorus, 4 bars each (9.6 s each at 100 BPM, 6.4 s at 150)
VERSE_CHORUS = (Part("verse", "ballad", "D", "minor", 4, 0.45), Part("chorus", "house", "F", "major", 4, 1.0))


def wav(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def decode(path: Path) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    """The file's stream facts, its frames (N, H, W, 3 float) and its sound (mono float)."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        facts = {
            "video": v.codec_context.name,
            "pix_fmt": v.codec_context.pix_fmt,
            "size": (v.width, v.height),
            "fps": float(v.average_rate),
            "audio": a.codec_context.name,
            "rate": a.codec_context.sample_rate,
            "duration_s": float(c.duration) / 1e6,
        }
        frames = np.stack([f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        sound = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)])
    return facts, frames, sound


def changes(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change into each frame from the one before."""
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


def change_period(d: np.ndarray, *, longest: int = 40) -> int:
    """The picture's rhythm in frames: the shortest autocorrelation peak of the frame-to-frame change
    that reaches 60 % of the highest (a bar-long period repeats the beat's, so the highest alone would
    say "bar")."""
    x = d - d.mean()
    ac = np.correlate(x, x, "full")[x.size - 1 :] / float(np.dot(x, x))
    lags = np.arange(3, longest)
    peaks = [int(k) for k in lags if ac[k] >= ac[k - 1] and ac[k] >= ac[k + 1]]
    best = max(ac[k] for k in peaks)
    return next(k for k in peaks if ac[k] >= 0.6 * best)


def run_video(
    data: bytes,
    options: VisualizeOptions | None = None,
    video: VideoOptions = SMALL,
    *,
    out: Path,
    **kw: object,
) -> VideoResult:
    import asyncio

    async def go() -> VideoResult:
        async with Engine(Settings(), models=ModelRegistry()) as eng:
            return await eng.video(
                data, options or VisualizeOptions(seed=5, backend="renderer"), video, out=out, **kw
            )  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.fixture(scope="module", params=[100.0, 150.0], ids=["100bpm", "150bpm"])
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    bpm = float(request.param)
    y, truth = sectioned_song(VERSE_CHORUS, bpm=bpm, sr=SR)
    out = tmp_path_factory.mktemp("video") / "song.mp4"
    result = run_video(wav(y), out=out)
    yield bpm, y, truth, result, decode(out)


def test_the_mp4_is_h264_and_aac_in_9_16_for_the_clips_length(made: tuple) -> None:
    _bpm, y, _truth, result, (facts, frames, sound) = made
    length = y.size / SR
    assert facts["video"] == "h264" and facts["pix_fmt"] == "yuv420p" and facts["audio"] == "aac"
    assert facts["size"] == (144, 256) and result.video.size == (144, 256)  # 9:16 by default
    assert facts["fps"] == pytest.approx(FPS)
    assert frames.shape[0] == round(length * FPS) == result.video.frames
    assert facts["duration_s"] == pytest.approx(length, abs=0.1)
    assert sound.size / facts["rate"] == pytest.approx(length, abs=0.1)
    v = result.video
    assert v.codec == "libx264" and v.audio_codec == "aac" and v.size_bytes == result.path.stat().st_size > 0
    assert v.length_s == pytest.approx(length, abs=1 / FPS) and v.backend == "renderer"
    data = result.video.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while it downloads


def test_the_sound_is_the_songs_and_in_sync(made: tuple) -> None:
    _bpm, y, _truth, _result, (_facts, _frames, sound) = made
    hop = 441  # 10 ms envelopes

    def env(x: np.ndarray) -> np.ndarray:
        n = x.size // hop
        return np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1))

    a, b = env(y), env(sound)
    n = min(a.size, b.size)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    lags = range(-10, 11)
    score = [float(np.dot(a[max(0, k) : n + min(0, k)], b[max(0, -k) : n - max(0, k)])) for k in lags]
    assert abs(list(lags)[int(np.argmax(score))]) <= 2  # within 20 ms
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_the_picture_pulses_at_the_songs_tempo_and_more_on_downbeats(made: tuple) -> None:
    bpm, _y, _truth, result, (_facts, frames, _sound) = made
    d = changes(frames)
    beat = 60.0 / bpm * FPS  # 9 or 6 frames
    period = change_period(d)
    assert any(abs(period - beat * m) <= 1 for m in (0.5, 1.0, 2.0)), (period, beat)
    beats = np.asarray(result.tags.tempo.beats_s)
    per_bar = result.tags.tempo.beats_per_bar or 4
    downs = np.asarray(result.tags.tempo.downbeats_s)
    # the change into the first frame after each beat (± a frame for the tracker): a peak, bigger on
    # downbeats
    first = [
        (int(np.ceil(t * FPS)) - 1, any(abs(t - s) < 0.1 for s in downs))
        for t in beats
        if 2 <= t * FPS < d.size - 2
    ]
    peak = [(float(d[f - 1 : f + 2].max()), is_down) for f, is_down in first]
    on_beat = np.array([p for p, _ in peak])
    assert np.median(on_beat) > 2.0 * np.median(d), (np.median(on_beat), np.median(d))
    if downs.size >= 2:
        down = np.array([p for p, is_down in peak if is_down])
        other = np.array([p for p, is_down in peak if not is_down])
        assert np.median(down) > 1.2 * np.median(other), (down, other)
    assert per_bar in (3, 4)


def test_the_scene_changes_at_the_section_boundary_and_the_chorus_moves_more(made: tuple) -> None:
    _bpm, _y, truth, result, (_facts, frames, _sound) = made
    secs = result.video.sections
    assert len(secs) == 2 and result.video.scenes == 2
    assert abs(secs[1].start_s - truth[0]) <= 3.0
    d = changes(frames)
    cut = round(secs[1].start_s * FPS)
    window = d[max(0, cut - 3) : cut + 5]
    # the crossfade into the new scene: the biggest change of the clip (or close to it)
    assert window.sum() > 3 * np.percentile(d, 95), (window.round(1), np.percentile(d, 95))
    verse = d[: cut - 5].mean()
    chorus = d[cut + 10 :].mean()
    assert chorus > verse, (verse, chorus)  # energy: the loud part moves more


def test_start_and_length_pick_the_clip(tmp_path: Path) -> None:
    y, _ = sectioned_song(VERSE_CHORUS, bpm=150.0, sr=SR)
    result = run_video(
        wav(y), video=SMALL.model_copy(update={"start": 3.0, "length": 5.0}), out=tmp_path / "c.mp4"
    )
    facts, frames, _ = decode(result.path)
    assert result.video.start_s == 3.0 and frames.shape[0] == 5 * FPS
    assert facts["duration_s"] == pytest.approx(5.0, abs=0.1)
    assert result.tags.audio.analysed_s == pytest.approx(5.0, abs=0.01)
    wide = run_video(
        wav(y), video=SMALL.model_copy(update={"length": 3.0, "aspect": Aspect.wide}), out=tmp_path / "w.mp4"
    )
    assert decode(wide.path)[0]["size"] == (256, 144)


def test_bad_input_fails_as_it_does_for_images(tmp_path: Path) -> None:
    with pytest.raises(NotAudioError) as e:
        run_video(b"this is not a song at all" * 100, out=tmp_path / "x.mp4")
    assert e.value.code == "not_audio"
    with pytest.raises(TooShortError):
        run_video(wav(np.zeros(SR // 2, np.float32) + 0.01), out=tmp_path / "x.mp4")
    y, _ = sectioned_song(VERSE_CHORUS[:1], bpm=150.0, sr=SR)
    with pytest.raises(InvalidOptionError, match="can't start at 40"):
        run_video(wav(y), video=SMALL.model_copy(update={"start": 40.0}), out=tmp_path / "x.mp4")
    with pytest.raises(InvalidOptionError, match="one picture"):
        run_video(wav(y), VisualizeOptions(num_images=2), out=tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_a_byte_limit_lowers_the_bit_rate_then_refuses(tmp_path: Path) -> None:
    tags = make_tags(bpm=120.0, energy=0.8, genre="metal", duration_s=6.0)
    kw: dict = {"audio": None, "sample_rate": SR, "fps": FPS, "width": 144, "height": 256}
    full = render_video(tags, out=tmp_path / "full.mp4", **kw)
    assert full.bit_rate is None and not full.notes
    limit = int(full.size_bytes * 0.6)
    fitted = render_video(tags, out=tmp_path / "fit.mp4", max_bytes=limit, **kw)
    assert fitted.size_bytes <= limit and fitted.bit_rate is not None
    assert fitted.bit_rate <= fit_bit_rate(limit, length_s=6.0, audio=False)
    assert "kbit/s" in fitted.notes[0]
    with av.open(str(fitted.path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and len(list(c.decode(video=0))) == 90
    with pytest.raises(VideoTooLargeError, match="shorter --length") as e:
        render_video(tags, out=tmp_path / "no.mp4", max_bytes=2_000, **kw)
    assert e.value.code == "video_too_large" and not (tmp_path / "no.mp4").exists()


def test_timeline_beats_cover_the_clip_and_scenes_stay_bounded() -> None:
    tags = make_tags(bpm=120.0, duration_s=20.0, beats=[0.49 + 0.5 * k for k in range(10)])
    tl = Timeline.from_tags(tags, length_s=20.0, fps=FPS)
    assert tl.beats_s[0] == pytest.approx(-0.01) and tl.beats_s[-1] > 19.4  # extended both ways
    assert np.allclose(np.diff(tl.beats_s), 0.5)
    drawn: list[str] = []

    def draw(section: SongSection, index: int) -> Scene:
        drawn.append(section.label)
        from PIL import Image

        im = Image.new("RGB", (4, 4))
        return Scene.from_rgb(section.label, (im,), (im,))

    cache = SceneCache(draw)
    for label in "ABCDEA":
        cache.get(SongSection(start_s=0, end_s=1, label=label, energy=0.5))
    assert drawn == list("ABCDEA") and len(cache._scenes) == CACHE_SCENES  # A was evicted, drawn again
    cache.get(SongSection(start_s=0, end_s=1, label="E", energy=0.5))
    assert cache.drawn == 6


def test_cli_writes_the_video_beside_the_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from m2i_engine.cli import main

    y, _ = sectioned_song(VERSE_CHORUS[:1], bpm=150.0, sr=SR)
    song = tmp_path / "tune.wav"
    song.write_bytes(wav(y))
    out = tmp_path / "art" / "cover.png"
    code = main(
        [
            "visualize",
            str(song),
            "--json",
            "--video",
            "-o",
            str(out),
            "--size",
            "256",
            "--fps",
            "15",
            "--length",
            "3",
            "--backend",
            "renderer",
            "--seed",
            "2",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    video = doc["video"]
    assert video["path"] == str(tmp_path / "art" / "cover-video.mp4") and out.is_file()
    assert (video["width"], video["height"], video["fps"], video["frames"]) == (144, 256, 15.0, 45)
    assert video["codec"] == "libx264" and video["audio_codec"] == "aac" and video["bytes"] > 0
    assert doc["tags"]["sections"] and doc["images"][0]["width"] == 256

    code = main(["visualize", str(song), "--video", "--num-images", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "one picture" in err and "invalid_option" in err

    code = main(["analyze", str(song)])
    assert code == 0 and "Sections" in capsys.readouterr().out


def test_a_sections_prompt_says_what_part_it_is() -> None:
    from m2i_engine.prompt import build_prompt, section_prompt

    base = build_prompt(make_tags(genre="rock"))
    chorus = section_prompt(base, SongSection(start_s=0, end_s=8, label="chorus", energy=0.9))
    letter = section_prompt(base, SongSection(start_s=0, end_s=8, label="B", energy=0.2))
    assert chorus.text.startswith(base.text) and "climactic" in chorus.text and "explosive" in chorus.text
    assert letter.text == f"{base.text}, calm, still, soft light"
    assert len(letter.phrases) == len(base.phrases) + 1


# --- Stable Diffusion -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    from m2i_engine.imaging.sd import SDSettings, SteeringSettings, load_sd_backend
    from m2i_engine.imaging.sd.tiny import build_tiny_sd

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("M2I_TEST_TORCH_THREADS", "1")))
    folder = build_tiny_sd(tmp_path_factory.mktemp("tiny-video") / "pipeline")
    settings = SDSettings(
        model=str(folder),
        allow_cpu=True,
        steps=2,
        guidance=5.0,
        max_batch=8,
        warmup=False,
        steering=SteeringSettings(init="none", palette_transfer=0.0),
    )
    backend = load_sd_backend(settings, batching=True)  # what the engine holds: the batcher
    yield backend
    backend.close()
    torch.set_num_threads(before)


def test_sd_paints_one_keyframe_per_section_and_pulses_on_the_beat(tiny_sd: object, tmp_path: Path) -> None:
    from m2i_engine.imaging.animate.diffusion import sd_backend_of
    from m2i_engine.imaging.base import ImageRequest
    from m2i_engine.prompt import build_prompt

    sections = [
        SongSection(start_s=0.0, end_s=4.0, label="verse", energy=0.3),
        SongSection(start_s=4.0, end_s=8.0, label="chorus", energy=0.9),
    ]
    tags = make_tags(bpm=120.0, genre="jazz", duration_s=8.0).model_copy(update={"sections": sections})
    request = ImageRequest(tags=tags, prompt=build_prompt(tags), width=64, height=112, seed=11)
    sd = sd_backend_of(tiny_sd)  # type: ignore[arg-type]
    assert sd is not None
    calls = sd.calls
    v = render_video(request, audio=None, sample_rate=SR, out=tmp_path / "sd.mp4", fps=16, backend=tiny_sd)  # type: ignore[arg-type]
    assert v.backend == "sd" and v.scenes == 2 and v.frames == 128 and v.audio_codec is None
    assert sd.calls - calls == 2  # one batch of 8 poses per section label
    with av.open(str(v.path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(video=0)])
    assert frames.shape[1:] == (112, 64, 3)
    d = changes(frames)
    assert change_period(d) in (4, 8, 16)  # 120 BPM at 16 fps: a beat every 8 frames
    # the two sections' keyframes differ (seeded per label, the prompt says verse vs chorus)
    assert np.abs(frames[20] - frames[100]).mean() > 3 * np.median(d)
    again = render_video(
        request, audio=None, sample_rate=SR, out=tmp_path / "sd2.mp4", fps=16, backend=tiny_sd
    )  # type: ignore[arg-type]
    with av.open(str(again.path)) as c:
        first = next(iter(c.decode(video=0))).to_ndarray(format="rgb24").astype(np.float32)
    assert np.abs(first - frames[0]).mean() < 1.0  # same song and seed, same video


def test_engine_video_with_stable_diffusion(tiny_sd: object, tmp_path: Path) -> None:
    """Through the engine, SD asked for by name: its scenes, the song's sound, no fallback note."""
    import asyncio

    y, _ = sectioned_song(VERSE_CHORUS[:1], bpm=150.0, sr=SR)

    async def go() -> VideoResult:
        async with Engine(Settings(), models=ModelRegistry(), backends={"sd": tiny_sd}) as eng:  # type: ignore[dict-item]
            return await eng.video(
                wav(y),
                VisualizeOptions(backend="sd", seed=3),
                SMALL.model_copy(update={"length": 3.0}),
                out=tmp_path / "sd.mp4",
            )

    result = asyncio.run(go())  # the engine closes the batcher (idempotent): this test comes last
    facts, frames, _ = decode(result.path)
    assert result.backend == "sd" and not result.notes and result.seed == 3
    assert facts["video"] == "h264" and facts["audio"] == "aac" and frames.shape == (45, 256, 144, 3)

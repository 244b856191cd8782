"""A music video as a service makes it: the clip's analysis comes from the cache the second time, and
an upload that crashes the decoder is caught by the decode guard before the video decodes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from m2i_engine.config import AudioLimits, Settings
from m2i_engine.engine import Engine
from m2i_engine.errors import CorruptAudioError
from m2i_engine.imaging.video.clip import load_clip
from m2i_engine.models import ModelRegistry
from m2i_engine.options import VideoOptions, VisualizeOptions
from tests.queue_harness import harness_engine, poison_song, song

pytest.importorskip("av")

SMALL = VideoOptions(size=256, fps=15)
OPTIONS = VisualizeOptions(seed=3, backend="renderer")


def test_a_clips_wav_bytes_are_the_same_every_time() -> None:
    a = load_clip(song(2), limits=AudioLimits())
    b = load_clip(song(2), limits=AudioLimits())
    assert a.wav_bytes() == b.wav_bytes() and a.wav_bytes() == a.wav_bytes()
    again = load_clip(a.wav_bytes(), limits=AudioLimits(), sample_rate=a.sample_rate)
    # 24-bit PCM: analysed as decoded, to within the rounding of one 24-bit step
    assert np.abs(again.samples - np.clip(a.samples, -1, 1)).max() <= 2.0**-23


def test_the_same_upload_twice_analyses_its_clip_once(tmp_path: Path) -> None:
    async def go() -> tuple:
        async with Engine(Settings(), models=ModelRegistry()) as eng:
            first = await eng.video(song(2), OPTIONS, SMALL, out=tmp_path / "1.mp4")
            second = await eng.video(song(2), OPTIONS, SMALL, out=tmp_path / "2.mp4")
            return first, second, len(eng._cache)

    first, second, cached = asyncio.run(go())
    assert not first.analysis.cached and second.analysis.cached and cached == 1
    assert second.analysis.audio_sha256 == first.analysis.audio_sha256
    assert second.tags == first.tags


def test_a_video_of_audio_that_crashes_the_decoder_is_isolated(tmp_path: Path) -> None:
    async def go() -> tuple:
        async with harness_engine(Settings()) as eng:
            with pytest.raises(CorruptAudioError) as still:
                await eng.visualize(poison_song(), VisualizeOptions(size=256, backend="renderer"))
            with pytest.raises(CorruptAudioError) as video:
                await eng.video(poison_song(), OPTIONS, SMALL, out=tmp_path / "poison.mp4")
            crashes = eng.guard.crashes if eng.guard else 0
            made = await eng.video(song(7), OPTIONS, SMALL, out=tmp_path / "ok.mp4")
            return still.value, video.value, crashes, made

    still, video, crashes, made = asyncio.run(go())
    assert video.code == still.code == "corrupt_audio"
    assert "crashes the audio decoder" in video.message and video.message == still.message
    assert crashes == 4  # two tries each for the picture and the video: the engine process lived
    assert made.video.frames > 0 and made.path.stat().st_size > 0
    assert not (tmp_path / "poison.mp4").exists()

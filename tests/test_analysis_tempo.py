"""Tempo and beats on signals whose tempo and beat times are known exactly (synth clicks and songs)."""

from __future__ import annotations

import numpy as np
import pytest

from m2i_engine.analysis import compute_features, estimate_tempo
from m2i_engine.synth import SongSpec, Style, click_track, render_song
from training.tempo_eval import f_measure

SR = 22_050


def _beat_f_measure(est: list[float], ref: np.ndarray, tol_s: float = 0.07) -> float:
    """The project's one beat F-measure, over the whole song (short test songs: nothing trimmed)."""
    return f_measure(est, ref, tol_s, trim_s=0.0)


@pytest.mark.parametrize("bpm", [60.0, 90.0, 120.0, 150.0, 174.0])
def test_click_track_tempo_and_beats(bpm: float) -> None:
    tempo = estimate_tempo(features=compute_features(y=click_track(bpm, 20.0, SR), sr=SR))
    assert tempo.bpm == pytest.approx(bpm, rel=0.01)
    # A metronome is clearly periodic, but at 174 BPM it could as well be counted at 87.
    assert tempo.confidence > (0.7 if bpm < 170 else 0.4)
    truth = np.arange(0.0, 20.0, 60.0 / bpm)
    assert _beat_f_measure(tempo.beats_s, truth[truth > 1.0]) > 0.9


@pytest.mark.parametrize(
    ("style", "bpm", "swing"),
    [
        ("ballad", 62.0, 0.0),
        ("hiphop", 92.0, 0.3),
        ("house", 124.0, 0.0),
        ("rock", 136.0, 0.0),
        ("funk", 104.0, 0.2),
        ("dnb", 174.0, 0.0),
        ("dnb", 168.0, 0.0),
        ("waltz", 96.0, 0.0),
    ],
)
def test_song_tempo_within_4_percent(style: Style, bpm: float, swing: float) -> None:
    spec = SongSpec(bpm=bpm, style=style, swing=swing, duration_s=20.0, tonic="E", mode="minor", seed=3)
    tempo = estimate_tempo(features=compute_features(y=render_song(spec), sr=SR))
    assert tempo.bpm == pytest.approx(bpm, rel=0.04)
    truth = np.arange(0.0, spec.duration_s, 60.0 / bpm)
    assert _beat_f_measure(tempo.beats_s, truth) > 0.8


def test_confidence_separates_rhythm_from_noise() -> None:
    rng = np.random.default_rng(1)
    noise = (0.2 * rng.standard_normal(SR * 15)).astype(np.float32)
    rhythmic = estimate_tempo(features=compute_features(y=click_track(110.0, 15.0, SR), sr=SR))
    unclear = estimate_tempo(features=compute_features(y=noise, sr=SR))
    assert unclear.confidence < 0.4 < rhythmic.confidence


@pytest.mark.parametrize("kind", ["short", "silent", "near_silent", "empty"])
def test_degenerate_input_gives_low_confidence(kind: str) -> None:
    rng = np.random.default_rng(2)
    y = {
        "short": render_song(SongSpec(bpm=120.0, duration_s=2.0)),
        "silent": np.zeros(SR * 5, dtype=np.float32),
        "near_silent": (1e-6 * rng.standard_normal(SR * 5)).astype(np.float32),
        "empty": np.zeros(0, dtype=np.float32),
    }[kind]
    tempo = estimate_tempo(features=compute_features(y=y, sr=SR))
    assert tempo.bpm > 0
    assert tempo.confidence < 0.5
    assert all(0.0 <= t <= max(len(y) / SR, 0.1) for t in tempo.beats_s)


def test_other_sample_rates_give_the_same_tempo() -> None:
    y = click_track(132.0, 15.0, 44_100)
    tempo = estimate_tempo(features=compute_features(y=y, sr=44_100))
    assert tempo.bpm == pytest.approx(132.0, rel=0.01)


def test_tempo_is_deterministic() -> None:
    y = render_song(SongSpec(bpm=128.0, style="house", duration_s=12.0))
    a = estimate_tempo(features=compute_features(y=y, sr=SR))
    b = estimate_tempo(features=compute_features(y=y.copy(), sr=SR))
    assert a == b

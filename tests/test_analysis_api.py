"""The analysis entry point: one call, shared features, deterministic, robust to odd input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from m2i_engine.analysis import ANALYSIS_SR, analyze_signal, compute_features
from m2i_engine.synth import SongSpec, demo_song, render_song


def test_analyze_signal_fills_every_tag() -> None:
    a = analyze_signal(y=demo_song(), sr=22_050)
    assert a.tempo.bpm == pytest.approx(124.0, rel=0.02)
    assert a.key.name == "A minor"
    assert -30.0 < a.loudness.integrated_lufs < -5.0
    assert len(a.energy_curve) == 64
    mel = a.features.mel_power
    assert mel.shape[0] == 128 and mel.shape[1] == a.features.n_frames
    assert a.features.sr == ANALYSIS_SR


def test_features_are_frozen() -> None:
    f = compute_features(y=demo_song(), sr=22_050)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.sr = 1  # type: ignore[misc]


def test_analysis_is_deterministic() -> None:
    y = render_song(SongSpec(bpm=97.0, style="funk", duration_s=10.0, seed=11))
    a, b = analyze_signal(y=y, sr=22_050), analyze_signal(y=y.copy(), sr=22_050)
    assert (a.tempo, a.key, a.loudness, a.timbre, a.energy_curve) == (
        b.tempo,
        b.key,
        b.loudness,
        b.timbre,
        b.energy_curve,
    )


@pytest.mark.parametrize("kind", ["two_seconds", "near_silent", "silent", "tiny", "stereo"])
def test_odd_input_does_not_crash_and_admits_doubt(kind: str) -> None:
    rng = np.random.default_rng(4)
    y = {
        "two_seconds": render_song(SongSpec(duration_s=2.0)),
        "near_silent": (1e-5 * rng.standard_normal(22_050 * 6)).astype(np.float32),
        "silent": np.zeros(22_050 * 4, dtype=np.float32),
        "tiny": np.zeros(10, dtype=np.float32),
        "stereo": np.stack([render_song(SongSpec(duration_s=6.0))] * 2),
    }[kind]
    a = analyze_signal(y=y.mean(axis=0) if kind == "stereo" else y, sr=22_050)
    if kind == "stereo":
        assert compute_features(y=y, sr=22_050).n_frames == a.features.n_frames
        return
    assert a.tempo.confidence < 0.5
    assert a.key.confidence < 0.5
    assert 0.0 <= a.loudness.energy <= (0.3 if kind != "two_seconds" else 1.0)


def test_input_rate_is_resampled() -> None:
    y44 = render_song(SongSpec(bpm=140.0, style="rock", duration_s=10.0, sr=44_100))
    a = analyze_signal(y=y44, sr=44_100)
    assert a.tempo.bpm == pytest.approx(140.0, rel=0.02)
    assert a.features.sr == ANALYSIS_SR

"""Timbre, energy curve and signal mood: sanity on signals whose character is known."""

from __future__ import annotations

import numpy as np
import pytest

from m2i_engine.analysis import (
    analyze_signal,
    compute_features,
    describe_timbre,
    energy_curve,
    signal_mood,
)
from m2i_engine.synth import SongSpec, chord_progression, click_track, render_song

SR = 22_050


def test_brightness_low_tone_vs_noise() -> None:
    t = np.arange(SR * 4) / SR
    low = (0.5 * np.sin(2 * np.pi * 150.0 * t)).astype(np.float32)
    noise = (0.2 * np.random.default_rng(0).standard_normal(SR * 4)).astype(np.float32)
    dark = describe_timbre(features=compute_features(y=low, sr=SR))
    bright = describe_timbre(features=compute_features(y=noise, sr=SR))
    assert dark.brightness < 0.2 < 0.8 < bright.brightness


def test_percussiveness_drums_vs_sustained_chords() -> None:
    drums = describe_timbre(features=compute_features(y=click_track(120.0, 10.0, SR), sr=SR))
    chords = describe_timbre(features=compute_features(y=chord_progression("G", "major"), sr=SR))
    assert chords.percussiveness < 0.2 < 0.5 < drums.percussiveness


@pytest.mark.parametrize("bpm", [60.0, 120.0, 180.0])
def test_onset_rate_of_a_metronome(bpm: float) -> None:
    timbre = describe_timbre(features=compute_features(y=click_track(bpm, 12.0, SR), sr=SR))
    assert timbre.onset_rate_hz == pytest.approx(bpm / 60.0, rel=0.1)


def test_energy_curve_follows_a_crescendo() -> None:
    song = render_song(SongSpec(bpm=120.0, style="rock", duration_s=16.0))
    quiet_then_loud = np.concatenate([0.03 * song[: 8 * SR], song[8 * SR :]])
    curve = energy_curve(features=compute_features(y=quiet_then_loud, sr=SR), points=32)
    assert len(curve) == 32
    assert all(0.0 <= v <= 1.0 for v in curve)
    assert np.mean(curve[18:]) > np.mean(curve[:14]) + 0.2
    assert energy_curve(features=compute_features(y=song, sr=SR), points=0) == []


def test_signal_mood_orders_calm_minor_below_bright_fast_major() -> None:
    calm = analyze_signal(
        y=render_song(SongSpec(bpm=64.0, style="ballad", mode="minor", duration_s=15.0)), sr=SR
    )
    lively = analyze_signal(
        y=render_song(SongSpec(bpm=128.0, style="house", mode="major", duration_s=15.0)), sr=SR
    )
    m_calm = signal_mood(tempo=calm.tempo, key=calm.key, loudness=calm.loudness, timbre=calm.timbre)
    m_live = signal_mood(tempo=lively.tempo, key=lively.key, loudness=lively.loudness, timbre=lively.timbre)
    assert m_calm.source == m_live.source == "signal"
    assert m_calm.arousal < m_live.arousal - 0.3
    assert m_calm.valence < m_live.valence - 0.3

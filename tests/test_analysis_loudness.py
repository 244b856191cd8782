"""Loudness (BS.1770 LUFS, peak, loudness range) on signals of known level; energy ordering."""

from __future__ import annotations

import numpy as np
import pytest

from m2i_engine.analysis import analyze_signal, measure_loudness
from m2i_engine.synth import SongSpec, Style, render_song


def _sine(freq_hz: float, amplitude: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.parametrize("sr", [48_000, 44_100, 22_050])
def test_full_scale_1khz_sine_is_minus_3_lufs(sr: int) -> None:
    loud = measure_loudness(y=_sine(1000.0, 1.0, 5.0, sr), sr=sr)
    # pyloudnorm derives the K-weighting filters per rate; at 22.05 kHz they are 0.05 dB off at 1 kHz.
    assert loud.integrated_lufs == pytest.approx(-3.01, abs=0.05 if sr >= 44_100 else 0.1)
    assert loud.peak_dbfs == pytest.approx(0.0, abs=0.01)


def test_level_changes_shift_lufs_and_peak_by_the_same_db() -> None:
    loud = measure_loudness(y=_sine(1000.0, 0.1, 5.0, 48_000), sr=48_000)
    assert loud.integrated_lufs == pytest.approx(-23.01, abs=0.05)
    assert loud.peak_dbfs == pytest.approx(-20.0, abs=0.01)


def test_loudness_range_reflects_level_spread() -> None:
    sr = 22_050
    steady = _sine(440.0, 0.3, 20.0, sr)
    varied = np.concatenate([_sine(440.0, 0.5, 10.0, sr), _sine(440.0, 0.05, 10.0, sr)])
    assert measure_loudness(y=steady, sr=sr).dynamic_range_db < 0.5
    assert measure_loudness(y=varied, sr=sr).dynamic_range_db == pytest.approx(20.0, abs=1.5)


@pytest.mark.parametrize("n", [0, 100, 22_050 * 2])
def test_silence_and_short_input(n: int) -> None:
    loud = measure_loudness(y=np.zeros(n, dtype=np.float32), sr=22_050)
    assert loud.integrated_lufs == -70.0
    assert loud.energy == 0.0
    short = measure_loudness(y=_sine(1000.0, 1.0, 0.2, 22_050), sr=22_050)  # shorter than a block
    assert short.integrated_lufs == pytest.approx(-3.0, abs=0.3)


def test_energy_orders_ballad_house_dnb() -> None:
    energies = {}
    styles: tuple[tuple[Style, float], ...] = (("ballad", 66.0), ("house", 124.0), ("dnb", 174.0))
    for style, bpm in styles:
        y = render_song(SongSpec(bpm=bpm, style=style, duration_s=15.0, seed=5))
        energies[style] = analyze_signal(y=y, sr=22_050).loudness.energy
    assert energies["ballad"] + 0.15 < energies["house"] < energies["dnb"]


def test_energy_without_features_matches_ordering() -> None:
    ballad = render_song(SongSpec(bpm=66.0, style="ballad", duration_s=10.0))
    dnb = render_song(SongSpec(bpm=174.0, style="dnb", duration_s=10.0))
    assert measure_loudness(y=ballad, sr=22_050).energy < measure_loudness(y=dnb, sr=22_050).energy


def test_integrated_loudness_agrees_with_pyloudnorm() -> None:
    import pyloudnorm

    sr = 22_050
    song = render_song(SongSpec(bpm=100.0, style="funk", duration_s=12.0, seed=2))
    quiet_start = np.concatenate([0.01 * song[: 4 * sr], song[4 * sr :]]).astype(np.float64)
    for y in (song.astype(np.float64), quiet_start):
        reference = pyloudnorm.Meter(sr).integrated_loudness(y)
        assert measure_loudness(y=y, sr=sr).integrated_lufs == pytest.approx(reference, abs=0.01)

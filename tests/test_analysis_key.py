"""Key estimation on synthesised harmony whose key is known exactly, in all 24 keys."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from m2i_engine.analysis import compute_features, estimate_key
from m2i_engine.synth import STYLES, SongSpec, chord_progression, render_song
from m2i_engine.tags import PITCH_CLASSES

SR = 22_050
Mode = Literal["major", "minor"]
MODES: tuple[Mode, Mode] = ("major", "minor")
KEYS = [(tonic, mode) for tonic in PITCH_CLASSES for mode in MODES]


def _sounding_tonic(y: np.ndarray, seconds: float) -> int:
    """Pitch class of the lowest strong spectral peak in the first chord (its bass note = tonic)."""
    seg = y[: int(seconds * SR)].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1.0 / SR)
    band = (freqs > 60.0) & (freqs < 400.0)
    strong = np.flatnonzero(band & (spec > 0.3 * spec[band].max()))
    f0 = freqs[strong[0]]
    return round(12 * np.log2(f0 / 440.0) + 69) % 12


@pytest.mark.parametrize(("tonic", "mode"), KEYS)
def test_chord_progression_key(tonic: str, mode: Mode) -> None:
    y = chord_progression(tonic, mode, duration_s=8.0, sr=SR)
    # The truth is the key that sounds (measured from the bass of the opening tonic chord).
    truth = _sounding_tonic(y, 2.0)
    key = estimate_key(features=compute_features(y=y, sr=SR))
    assert (key.tonic_index, key.mode) == (truth, mode)
    assert key.confidence > 0.5


@pytest.mark.parametrize(("i", "tonic", "mode"), [(i, *k) for i, k in enumerate(KEYS)])
def test_rendered_song_key(i: int, tonic: str, mode: Mode) -> None:
    style = STYLES[i % len(STYLES)]
    bpm = 100.0 + 3 * i
    # One whole 4-bar chord loop, so every chord of the progression sounds equally long.
    beats = 4 * (3 if style == "waltz" else 4)
    spec = SongSpec(bpm=bpm, tonic=tonic, mode=mode, style=style, duration_s=beats * 60.0 / bpm, seed=i)
    key = estimate_key(features=compute_features(y=render_song(spec), sr=SR))
    assert key.name == f"{tonic} {mode}"


def test_key_confidence_is_low_without_harmony() -> None:
    rng = np.random.default_rng(0)
    noise = (0.3 * rng.standard_normal(SR * 8)).astype(np.float32)
    silent = np.zeros(SR * 3, dtype=np.float32)
    tonal = estimate_key(features=compute_features(y=chord_progression("D", "major"), sr=SR))
    for y in (noise, silent):
        assert estimate_key(features=compute_features(y=y, sr=SR)).confidence < tonal.confidence / 2

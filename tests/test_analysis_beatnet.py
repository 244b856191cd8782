"""The numpy port of BeatNet (front end and CRNN) reproduces the original implementation.

Reference numbers were produced once by BeatNet 1.1.3's own code path — madmom 0.16's
LogarithmicFilteredSpectrogram + SpectrogramDifference processors and the PyTorch ``BDA`` model
with ``model_1_weights.pt`` — on the signal rendered below.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import beatnet
from m2i_engine.synth import SongSpec, render_song

pytestmark = pytest.mark.skipif(not beatnet.weights_available(), reason="BeatNet weights missing")

FEATURE_FRAMES = [5, 20, 40, 60, 80, 100, 120, 140, 160, 180, 199]
FEATURE_ROW_SUMS = [
    26.6386,
    20.30067,
    27.48717,
    23.99886,
    3.05089,
    24.13037,
    19.33658,
    43.24185,
    4.64754,
    32.35728,
    27.35449,
]
ACTIVATION_FRAMES = [20, 27, 54, 81, 100, 108, 109, 136, 199]
ACTIVATIONS = [
    [0.00352, 9e-05],
    [0.65015, 0.32346],
    [0.10457, 0.89093],
    [0.97342, 0.00018],
    [4e-05, 0.0],
    [0.03058, 0.95903],
    [0.0181, 0.968],
    [0.97875, 0.00374],
    [0.00019, 0.0],
]


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    return render_song(SongSpec(bpm=110.0, style="rock", duration_s=4.0, seed=9))


def test_front_end_matches_madmom(signal: np.ndarray) -> None:
    feats = beatnet.log_filtered_spectrogram_diff(y=signal)
    assert feats.shape == (200, 272)  # ceil(4 s * 50 fps) frames, 136 bands + their differences
    np.testing.assert_allclose(feats[FEATURE_FRAMES].sum(axis=1), FEATURE_ROW_SUMS, atol=2e-4)
    assert np.all(feats[:, 136:] >= 0)


def test_network_matches_pytorch_model(signal: np.ndarray) -> None:
    act = beatnet.beat_activations(y=signal)
    assert act.shape == (200, 2)
    np.testing.assert_allclose(act[ACTIVATION_FRAMES], ACTIVATIONS, atol=2e-5)

"""Describe the sound colour of a song: how bright, how percussive, how many onsets per second.

Everything is read from the shared :class:`~m2i_engine.analysis.features.Features`: brightness
from the spectral centroid, percussiveness from the median-filter harmonic/percussive split of the
mel spectrogram, and the onset rate from peaks of the onset envelope.

Offers
------
- :func:`describe_timbre` — the :class:`~m2i_engine.tags.Timbre` of a song.
- :func:`onset_rate` / :func:`onset_rate_from_envelope` — detected onsets per second.
"""

from __future__ import annotations

import librosa
import numpy as np

from m2i_engine.analysis.features import Features
from m2i_engine.tags import Timbre

#: Spectral centroids (Hz) mapped to brightness 0 and 1 (log scale in between).
DARK_CENTROID_HZ = 300.0
BRIGHT_CENTROID_HZ = 5000.0


def describe_timbre(*, features: Features) -> Timbre:
    """Brightness, percussiveness and onset rate of the song.

    Returns
    -------
    Timbre
        ``brightness`` (0 … 1, log-scaled median spectral centroid between
        :data:`DARK_CENTROID_HZ` and :data:`BRIGHT_CENTROID_HZ`), ``percussiveness`` (share of
        mel energy in the percussive part, 0 … 1) and ``onset_rate_hz``.
    """
    mag = features.stft_mag.astype(np.float64)
    frame_mag = mag.sum(axis=0)
    if float(frame_mag.sum()) <= 1e-12:
        return Timbre(brightness=0.0, percussiveness=0.0, onset_rate_hz=0.0)
    # Magnitude-weighted centroid per frame (as librosa's spectral_centroid), median over the frames
    # that carry sound: power weighting would let the bass decide and call nearly every song dark.
    freqs = np.linspace(0.0, features.sr / 2.0, mag.shape[0])
    sounding = frame_mag > 1e-3 * float(frame_mag.max())
    centroids = (freqs @ mag[:, sounding]) / frame_mag[sounding]
    centroid = float(np.median(centroids))
    brightness = np.log(max(centroid, 1.0) / DARK_CENTROID_HZ) / np.log(BRIGHT_CENTROID_HZ / DARK_CENTROID_HZ)
    mel_total = float(features.mel_power.sum())
    perc = float(features.mel_percussive.sum()) / mel_total if mel_total > 0 else 0.0
    return Timbre(
        brightness=round(float(np.clip(brightness, 0.0, 1.0)), 3),
        percussiveness=round(float(np.clip(perc, 0.0, 1.0)), 3),
        onset_rate_hz=round(onset_rate(features=features), 3),
    )


def onset_rate(*, features: Features) -> float:
    """Detected onsets per second in the broadband onset envelope of ``features``."""
    return onset_rate_from_envelope(onset_env=features.onset_env, frame_rate_hz=features.frame_rate_hz)


def onset_rate_from_envelope(*, onset_env: np.ndarray, frame_rate_hz: float) -> float:
    """Onsets per second found by librosa's peak picking on an onset envelope."""
    env = np.asarray(onset_env, dtype=np.float64)
    if len(env) < 3 or float(env.max()) <= 1e-9:
        return 0.0
    # Peak picking normalises the envelope; require real activity, not the noise floor.
    env = env / float(env.max())
    wait = max(1, round(0.03 * frame_rate_hz))
    peaks = librosa.util.peak_pick(
        env,
        pre_max=wait,
        post_max=wait,
        pre_avg=int(0.1 * frame_rate_hz),
        post_avg=int(0.1 * frame_rate_hz) + 1,
        delta=0.07,
        wait=wait,
    )
    return float(len(peaks)) / (len(env) / frame_rate_hz)

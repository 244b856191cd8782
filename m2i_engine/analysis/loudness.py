"""Measure how loud and how intense a song is: LUFS, peak, loudness range, energy and its curve.

Integrated loudness follows ITU-R BS.1770-4 with pyloudnorm's K-weighting filters and its gating
(400 ms blocks, 75 % overlap, absolute and relative gates), vectorised so the K-weighting runs
once. The dynamic range is an EBU-R128-LRA-like spread of 3-s short-term loudness (95th − 10th
percentile after gating). ``energy`` is a perceptual intensity in 0 … 1 that combines loudness
with how busy the music is (onset density and spectral flux), so that a ballad scores far below
drum & bass even when both are mastered to the same peak.

Offers
------
- :func:`measure_loudness` — the :class:`~m2i_engine.tags.Loudness` of a signal.
- :func:`energy_curve` — intensity 0 … 1 at evenly spaced points, for artwork and animation.
"""

from __future__ import annotations

import itertools

import librosa
import numpy as np
import pyloudnorm

from m2i_engine.analysis.features import Features
from m2i_engine.analysis.timbre import onset_rate, onset_rate_from_envelope
from m2i_engine.tags import Loudness

#: Reported floor for silent input (the BS.1770 absolute gate), in LUFS and dBFS.
SILENCE_LUFS = -70.0
SILENCE_DBFS = -120.0
SHORT_TERM_S = 3.0
SHORT_TERM_HOP_S = 0.5


def measure_loudness(*, y: np.ndarray, sr: int, features: Features | None = None) -> Loudness:
    """Integrated loudness, sample peak, loudness range and energy of a mono signal.

    Parameters
    ----------
    y : np.ndarray
        Mono signal, full scale ±1.
    sr : int
        Its sample rate.
    features : Features, optional
        Shared features of the same signal; when given, onset density and spectral flux for
        ``energy`` are read from it instead of being recomputed.

    Returns
    -------
    Loudness
        ``integrated_lufs`` (≥ :data:`SILENCE_LUFS`), ``peak_dbfs``, ``dynamic_range_db``, ``energy``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(48_000 * 5) / 48_000
    >>> round(measure_loudness(y=np.sin(2 * np.pi * 1000 * t), sr=48_000).integrated_lufs, 1)
    -3.0
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"expected a mono signal, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    peak_dbfs = 20.0 * np.log10(peak) if peak > 0 else SILENCE_DBFS

    meter = pyloudnorm.Meter(sr)
    weighted = _k_weighted(meter, y)
    lufs = _integrated(meter, y, weighted, sr)
    lra = _loudness_range(weighted, sr)

    if features is None:
        padded = np.pad(y, (0, max(0, 2048 - len(y)))).astype(np.float32)
        onset_env = librosa.onset.onset_strength(y=padded, sr=sr, n_fft=2048, hop_length=512)
        rate = onset_rate_from_envelope(onset_env=onset_env, frame_rate_hz=sr / 512.0)
        flux = float(np.mean(onset_env)) if len(onset_env) else 0.0
    else:
        rate = onset_rate(features=features)
        flux = float(np.mean(features.onset_env)) if features.n_frames else 0.0
    energy = _energy(lufs, rate, flux)
    return Loudness(
        integrated_lufs=round(lufs, 2),
        peak_dbfs=round(float(peak_dbfs), 2),
        dynamic_range_db=round(lra, 2),
        energy=round(energy, 3),
    )


def energy_curve(*, features: Features, points: int = 64) -> list[float]:
    """Intensity (0 … 1) at ``points`` evenly spaced positions over the analysed audio.

    Each point averages frame loudness (RMS in dBFS) and onset activity over its span, on the
    same absolute scale as :attr:`Loudness.energy`, so a quiet song stays low all along.
    """
    if points <= 0:
        return []
    n = features.n_frames
    if n == 0 or not np.any(features.rms > 0):
        return [0.0] * points
    rms_db = 20.0 * np.log10(np.maximum(features.rms.astype(np.float64), 1e-6))
    flux = features.onset_env.astype(np.float64)
    edges = np.linspace(0, n, points + 1)
    out = []
    for a, b in itertools.pairwise(edges):
        lo = int(np.floor(a))
        hi = max(lo + 1, int(np.ceil(b)))
        seg_db = 10.0 * np.log10(np.mean(10.0 ** (rms_db[lo:hi] / 10.0)) + 1e-12)
        loud = np.clip((seg_db + 45.0) / 35.0, 0.0, 1.0)
        busy = np.clip(float(np.mean(flux[lo:hi])) / _FLUX_FULL, 0.0, 1.0)
        out.append(round(float(0.6 * loud + 0.4 * busy), 3))
    return out


# --- private helpers ---------------------------------------------------------------------------

#: Mean log-mel flux (dB per frame) that counts as "maximally busy".
_FLUX_FULL = 6.0
#: Onsets per second that count as "maximally dense".
_RATE_FULL = 8.0


def _energy(lufs: float, rate_hz: float, flux: float) -> float:
    loud = np.clip((lufs + 35.0) / 27.0, 0.0, 1.0)  # -35 LUFS → 0, -8 LUFS → 1
    dense = np.clip(rate_hz / _RATE_FULL, 0.0, 1.0)
    busy = np.clip(flux / _FLUX_FULL, 0.0, 1.0)
    if lufs <= SILENCE_LUFS + 1e-9:
        return 0.0
    return float(np.clip(0.4 * loud + 0.3 * dense + 0.3 * busy, 0.0, 1.0))


def _k_weighted(meter: pyloudnorm.Meter, y: np.ndarray) -> np.ndarray:
    out = y.copy()
    for stage in meter._filters.values():  # pyloudnorm's K-weighting stages for this rate
        out = stage.apply_filter(out)
    return out


def _integrated(meter: pyloudnorm.Meter, y: np.ndarray, weighted: np.ndarray, sr: int) -> float:
    """BS.1770-4 gated integrated loudness of the K-weighted signal.

    The same blocks (400 ms, 75 % overlap) and gates (−70 LUFS absolute, −10 LU relative) as
    ``pyloudnorm.Meter.integrated_loudness``, vectorised on the K-weighting we already applied
    (the tests check both agree).
    """
    if len(y) == 0 or not np.any(y):
        return SILENCE_LUFS
    block = meter.block_size
    if len(y) < int(block * sr) + 1:  # shorter than one gating block: ungated mean square
        lufs = -0.691 + 10.0 * np.log10(float(np.mean(weighted**2)) + 1e-30)
        return lufs if lufs > SILENCE_LUFS else SILENCE_LUFS
    step = 1.0 - meter.overlap
    n_blocks = round((len(y) / sr - block) / (block * step)) + 1
    j = np.arange(n_blocks)
    lower = (block * (j * step) * sr).astype(np.int64)
    upper = np.minimum((block * (j * step + 1) * sr).astype(np.int64), len(y))
    csum = np.concatenate([[0.0], np.cumsum(weighted**2)])
    z = (csum[upper] - csum[lower]) / (block * sr)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(z)
    gated = block_lufs >= SILENCE_LUFS
    if not np.any(gated):
        return SILENCE_LUFS
    relative_gate = -0.691 + 10.0 * np.log10(np.mean(z[gated])) - 10.0
    gated &= block_lufs > relative_gate
    if not np.any(gated):
        return SILENCE_LUFS
    lufs = -0.691 + 10.0 * np.log10(np.mean(z[gated]))
    return float(lufs) if np.isfinite(lufs) and lufs > SILENCE_LUFS else SILENCE_LUFS


def _loudness_range(weighted: np.ndarray, sr: int) -> float:
    """EBU Tech 3342-style LRA: P95 − P10 of gated 3-s short-term loudness."""
    win = int(SHORT_TERM_S * sr)
    hop = int(SHORT_TERM_HOP_S * sr)
    if len(weighted) < win + hop:
        return 0.0
    csum = np.concatenate([[0.0], np.cumsum(weighted**2)])
    starts = np.arange(0, len(weighted) - win + 1, hop)
    ms = (csum[starts + win] - csum[starts]) / win
    st = -0.691 + 10.0 * np.log10(ms + 1e-30)
    st = st[st > SILENCE_LUFS]
    if len(st) < 2:
        return 0.0
    rel_gate = 10.0 * np.log10(np.mean(10.0 ** (st / 10.0))) - 20.0
    st = st[st > rel_gate]
    if len(st) < 2:
        return 0.0
    return float(max(0.0, np.percentile(st, 95) - np.percentile(st, 10)))

"""Estimate the key (tonic and major/minor mode) of a song from its chroma.

The tonal-peak chroma of :class:`~m2i_engine.analysis.features.Features` is averaged over the song
and correlated with the 24 rotations of a major/minor key profile (Krumhansl–Kessler by default).
Pitch content alone cannot separate a key from its relative (A minor and C major use the same
seven notes, and pop loops such as I–V–vi–IV use them in equal measure), so the choice between the
best key and its relative is settled by which tonic triad the opening seconds establish — songs
overwhelmingly begin on the tonic chord. The cue only ever arbitrates that one pair.

Offers
------
- :func:`estimate_key` — the :class:`~m2i_engine.tags.Key` of a song.
- :func:`key_scores` — the 24 global profile correlations (major keys C…B, then minor keys C…B).
- :data:`PROFILES` — the key profiles available.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from m2i_engine.analysis.features import Features
from m2i_engine.tags import PITCH_CLASSES, Key

#: Major and minor key profiles (C major / C minor), index 0 = C.
PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # Krumhansl & Kessler (1982) probe-tone ratings.
    "krumhansl": (
        (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
        (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
    ),
    # Temperley (2007), Kostka–Payne corpus.
    "temperley": (
        (0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400),
        (0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330),
    ),
    # Albrecht & Shanahan (2013).
    "albrecht": (
        (0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081),
        (0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052),
    ),
}
DEFAULT_PROFILE = "krumhansl"
#: Seconds at the start whose chord decides between the best key and its relative key.
OPENING_S = 2.5
OPENING_WEIGHT = 0.5


def key_scores(*, features: Features, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """Correlation of the song's mean chroma with each of the 24 rotated key profiles.

    Index ``k`` < 12 is the major key on pitch class ``k``; ``12 + k`` the minor key.
    All zeros for input without tonal content.
    """
    chroma = _active_chroma(features)
    if chroma is None:
        return np.zeros(24)
    return _profile_correlations(chroma.mean(axis=1), profile)


def estimate_key(*, features: Features) -> Key:
    """Estimate tonic and mode of the song.

    Parameters
    ----------
    features : Features
        Shared intermediates (uses ``features.chroma``).

    Returns
    -------
    Key
        ``tonic`` (sharps), ``mode`` and ``confidence`` (0 … 1: low for near-silent input, atonal
        material, a close runner-up key or a relative-key choice the opening did not settle).
    """
    chroma = _active_chroma(features)
    if chroma is None:
        return Key(tonic="C", mode="major", confidence=0.0)
    scores = _profile_correlations(chroma.mean(axis=1), DEFAULT_PROFILE)
    best = int(np.argmax(scores))
    pair = (best, _relative(best))
    n_open = max(1, round(OPENING_S * features.sr / features.chroma_hop_length))
    opening = chroma[:, :n_open].mean(axis=1)
    pair_scores = [scores[k] + OPENING_WEIGHT * _triad_correlation(opening, k) for k in pair]
    chosen = pair[int(np.argmax(pair_scores))]
    pair_margin = abs(pair_scores[0] - pair_scores[1])
    others = np.delete(scores, list(pair))
    margin = float(scores[chosen] - others.max())
    confidence = (
        np.clip(scores[chosen], 0.0, 1.0)
        * np.clip(margin / 0.15, 0.0, 1.0) ** 0.5
        * (0.5 + 0.5 * np.clip(pair_margin / 0.2, 0.0, 1.0))
    )
    # Pitch-class contrast of the averaged chroma: flat (noise, drums only) means no key to hear.
    pcp = chroma.mean(axis=1)
    contrast = float(np.std(pcp) / max(float(np.mean(pcp)), 1e-12))
    confidence *= np.clip(contrast / 0.25, 0.0, 1.0)
    if features.duration_s < 8.0:
        confidence *= features.duration_s / 8.0
    mode: Literal["major", "minor"] = "major" if chosen < 12 else "minor"
    return Key(
        tonic=PITCH_CLASSES[chosen % 12], mode=mode, confidence=round(float(np.clip(confidence, 0.0, 1.0)), 3)
    )


# --- private helpers ---------------------------------------------------------------------------


def _relative(k: int) -> int:
    """The relative minor of a major key, or the relative major of a minor key."""
    return 12 + (k + 9) % 12 if k < 12 else (k - 12 + 3) % 12


def _triad_correlation(pcp: np.ndarray, k: int) -> float:
    triad = np.zeros(12)
    root = k % 12
    triad[[root, (root + (4 if k < 12 else 3)) % 12, (root + 7) % 12]] = 1.0
    return _pearson(pcp, triad)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / den if den > 1e-12 else 0.0


def _active_chroma(features: Features) -> np.ndarray | None:
    """Chroma frames that carry tonal energy (from the first such frame on), or None."""
    chroma = features.chroma.astype(np.float64)
    if chroma.size == 0:
        return None
    frame_energy = chroma.sum(axis=0)
    top = float(frame_energy.max())
    if top <= 1e-9:
        return None
    active = np.flatnonzero(frame_energy > 0.05 * top)
    return chroma[:, active[0] :]


def _profile_correlations(pcp: np.ndarray, profile: str) -> np.ndarray:
    major, minor = (np.asarray(p, dtype=np.float64) for p in PROFILES[profile])
    x = pcp - pcp.mean()
    nx = float(np.linalg.norm(x))
    if nx <= 1e-12:
        return np.zeros(24)
    out = np.empty(24)
    for m, prof in enumerate((major, minor)):
        p = prof - prof.mean()
        p /= np.linalg.norm(p)
        for k in range(12):
            out[12 * m + k] = float(np.dot(x, np.roll(p, k))) / nx
    return out

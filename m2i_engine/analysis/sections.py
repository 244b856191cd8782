"""Where a song's sections begin and end, and which of them repeat: intro, verse, chorus … or A, B, C.

A video changes scene where the music does, so the song is cut into sections from the shared features:

1. beat-synchronous timbre (MFCC of the log mel spectrogram), harmony (tonal chroma) and loudness, each
   z-scored over the song so the three weigh the same;
2. a contrast curve: at each beat, the distance between the mean features of the bars before and the
   bars after (windows of 2, 4 or 8 bars near :data:`WINDOW_S`, and 1.5× that: a change must show at
   both, so a groove's or a chord cycle's own repetition averages out) — a block-averaged form of the
   checkerboard novelty of Foote (2000);
3. boundaries at its prominent peaks, at least :data:`MIN_SECTION_S` apart;
4. labels by average-linkage clustering of each section's mean features, so repeated material shares a
   letter (A, B, C … in order of first appearance; alike neighbours merge);
5. names (intro, verse, chorus, bridge, outro) only where the letters and energies make them plausible —
   two repeated groups, the louder one the chorus; otherwise the letters are the labels.

Everything is NumPy/SciPy on arrays :func:`~m2i_engine.analysis.features.compute_features` already made
(about 10 ms for a 30-s clip).

Offers
------
- :func:`segment_sections` — the :class:`~m2i_engine.tags.SongSection` list of a song.
"""

from __future__ import annotations

import itertools
import string

import librosa
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.signal import find_peaks

from m2i_engine.analysis.features import Features
from m2i_engine.tags import SongSection, Tempo

#: no section is shorter than this (and a song shorter than two of them is one section)
MIN_SECTION_S = 6.0
#: the contrast compares this many seconds before and after each beat, rounded to 2, 4 or 8 bars so that
#: a groove's and a chord cycle's own repetition averages out
WINDOW_S = 8.0
#: a boundary's contrast must reach this (in the song's cell-to-cell spreads; inside a steady section
#: it stays near 0.1–0.3) …
NOVELTY_FLOOR = 0.4
#: … and rise this much above the valleys on either side of it
NOVELTY_PROMINENCE = 0.2
#: sections whose mean features are closer than this (RMS z-score distance) share a label
SAME_LABEL_DISTANCE = 0.9
#: the chorus must be louder than the verse by this much energy (0 … 1) to be called the chorus
CHORUS_MARGIN = 0.03
#: beat grid used when the beat tracking is too sparse: one step every this many seconds
FALLBACK_STEP_S = 0.5
N_MFCC = 13


def segment_sections(*, features: Features, tempo: Tempo, energy_curve: list[float]) -> list[SongSection]:
    """The sections of the analysed audio, in order, covering it from 0 to its end.

    Parameters
    ----------
    features
        The song's shared spectral features.
    tempo
        Its beats (sections start and end on beats; a steady grid when there are too few).
    energy_curve
        Its energy curve (evenly spaced over the audio), for each section's ``energy``.

    Returns
    -------
    list[SongSection]
        One section (label ``A``) for a song too short or too uniform to split.
    """
    duration = float(features.duration_s)
    if duration <= 0:
        return []
    edges = _beat_edges(tempo, duration)
    if duration < 2 * MIN_SECTION_S or edges.size < 9:
        return [_section(0.0, duration, "A", energy_curve, duration)]
    beat_s = float(np.median(np.diff(edges)))
    feats = _beat_features(features, edges)
    novelty = _two_scale_novelty(feats, half=_window_beats(beat_s, tempo.beats_per_bar or 4))
    cuts = _peaks(novelty, min_gap=max(2, round(MIN_SECTION_S / beat_s)))
    bounds = [0, *cuts, len(novelty)]
    letters = _letters([feats[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])
    # neighbours that sound alike were one section after all
    keep = [i for i in range(1, len(letters)) if letters[i] != letters[i - 1]]
    cuts = [cuts[i - 1] for i in keep]
    letters = _relabel([letters[0], *(letters[i] for i in keep)])
    times = [0.0, *(float(edges[c]) for c in cuts), duration]
    energies = [_mean_energy(energy_curve, duration, a, b) for a, b in itertools.pairwise(times)]
    labels = _names(letters, energies) or letters
    return [
        _section(a, b, lab, energy_curve, duration)
        for (a, b), lab in zip(itertools.pairwise(times), labels, strict=True)
    ]


# --- steps -------------------------------------------------------------------------------------


def _beat_edges(tempo: Tempo, duration: float) -> np.ndarray:
    """Start times of the beat-synchronous cells: the tracked beats inside the audio, or a steady
    grid when they are too few to cover it."""
    beats = np.sort(np.asarray(tempo.beats_s, dtype=float))
    beats = beats[np.isfinite(beats) & (beats > 0.0) & (beats < duration)]
    if beats.size < max(8, 0.4 * duration / max(60.0 / max(tempo.bpm, 1.0), FALLBACK_STEP_S)):
        beats = np.arange(FALLBACK_STEP_S, duration, FALLBACK_STEP_S)
    return np.concatenate([[0.0], beats])


def _window_beats(beat_s: float, beats_per_bar: int) -> int:
    """Beats in each contrast window: 2, 4 or 8 bars, whichever lasts nearest :data:`WINDOW_S`."""
    bar_s = beat_s * beats_per_bar
    return beats_per_bar * min((2, 4, 8), key=lambda bars: abs(bars * bar_s - WINDOW_S))


def _beat_features(features: Features, edges: np.ndarray) -> np.ndarray:
    """Per beat cell: z-scored MFCC, chroma and loudness, each group weighted equally; shape
    (cells, dims)."""
    log_mel = librosa.power_to_db(
        features.mel_power, ref=float(np.max(features.mel_power)) or 1.0, top_db=80.0
    )
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC + 1)[1:]  # c0 is loudness: counted below
    frames = np.clip(
        librosa.time_to_frames(edges, sr=features.sr, hop_length=features.hop_length),
        0,
        features.n_frames - 1,
    )
    loud = 20.0 * np.log10(np.maximum(features.rms, 1e-5))[None, :]
    busy = features.onset_env[None, :]
    chroma = features.chroma / np.maximum(np.linalg.norm(features.chroma, axis=0, keepdims=True), 1e-6)
    ratio = features.chroma_hop_length // features.hop_length
    c_frames = np.clip(frames // ratio, 0, chroma.shape[1] - 1)
    groups = [
        librosa.util.sync(mfcc, frames, aggregate=np.mean, pad=False),
        librosa.util.sync(chroma, c_frames, aggregate=np.mean, pad=False),
        np.vstack(
            [
                librosa.util.sync(loud, frames, aggregate=np.mean, pad=False),
                librosa.util.sync(busy, frames, aggregate=np.mean, pad=False),
            ]
        ),
    ]
    cells = min(g.shape[1] for g in groups)
    parts = []
    for g, floor in zip(groups, (2.0, 0.05, 1.5), strict=True):
        g = g[:, :cells]
        # z-score per dimension, but never blow a nearly constant dimension up into noise
        std = np.maximum(g.std(axis=1, keepdims=True), floor)
        parts.append((g - g.mean(axis=1, keepdims=True)) / std / np.sqrt(g.shape[0]))
    return np.vstack(parts).T


def _two_scale_novelty(feats: np.ndarray, *, half: int) -> np.ndarray:
    """:func:`_novelty` at windows of ``half`` and ``1.5 * half`` cells, the lower of the two: a change
    must show at both scales, so a chord cycle longer than one window (which averages out in the
    other) is not taken for a new section."""
    return np.minimum(_novelty(feats, half=half), _novelty(feats, half=round(1.5 * half)))


def _novelty(feats: np.ndarray, *, half: int) -> np.ndarray:
    """Contrast per cell: the distance between the mean features of the ``half`` cells before it and
    the ``half`` cells after it, in units of the song's cell-to-cell spread (RMS over dimensions).

    Averaging whole bars away cancels a groove's and a chord cycle's own repetition, so the contrast
    is low inside a section and peaks where the material changes."""
    n = feats.shape[0]
    csum = np.vstack([np.zeros((1, feats.shape[1])), np.cumsum(feats, axis=0)])
    out = np.zeros(n)
    for i in range(2, n - 1):
        lo, hi = max(0, i - half), min(n, i + half)
        left = (csum[i] - csum[lo]) / (i - lo)
        right = (csum[hi] - csum[i]) / (hi - i)
        # shorter windows near the ends have noisier means: weigh the contrast as a full pair's
        n_l, n_r = i - lo, hi - i
        out[i] = float(np.sqrt(np.sum((left - right) ** 2) * (n_l * n_r / (n_l + n_r)) / (half / 2)))
    return out


def _peaks(novelty: np.ndarray, *, min_gap: int) -> list[int]:
    """Cells where a boundary goes: novelty peaks above :data:`NOVELTY_FLOOR` that stand out from the
    valleys around them by :data:`NOVELTY_PROMINENCE`, at least ``min_gap`` cells from each other and
    from either end (the stronger peak wins)."""
    peaks, _ = find_peaks(novelty, height=NOVELTY_FLOOR, prominence=NOVELTY_PROMINENCE, distance=min_gap)
    return [int(i) for i in peaks if min_gap <= i <= novelty.size - min_gap]


def _letters(means: list[np.ndarray]) -> list[str]:
    """A, B, C … by first appearance; sections closer than :data:`SAME_LABEL_DISTANCE` share one."""
    if len(means) == 1:
        return ["A"]
    x = np.vstack(means) * np.sqrt(means[0].size / 3.0)  # back to ~per-group RMS distance
    groups = fcluster(linkage(x, method="average"), t=SAME_LABEL_DISTANCE, criterion="distance")
    order: dict[int, str] = {}
    alphabet = string.ascii_uppercase
    return [order.setdefault(int(g), alphabet[min(len(order), len(alphabet) - 1)]) for g in groups]


def _relabel(letters: list[str]) -> list[str]:
    """The same grouping lettered again A, B, C … in order of first appearance."""
    order: dict[str, str] = {}
    alphabet = string.ascii_uppercase
    return [order.setdefault(c, alphabet[min(len(order), len(alphabet) - 1)]) for c in letters]


def _names(letters: list[str], energies: list[float]) -> list[str] | None:
    """intro / verse / chorus / bridge / outro when the form supports it, else None.

    Needs two letters that repeat: the louder (by :data:`CHORUS_MARGIN`) is the chorus, the other the
    verse. A one-off first or last section is the intro or outro (also when the two share a letter
    seen nowhere else); any other one-off after a chorus is a bridge; anything else leaves it unsure.
    """
    n = len(letters)
    counts = {c: letters.count(c) for c in letters}
    bookends = {letters[0]} if counts[letters[0]] == 2 and letters[0] == letters[-1] else set()
    repeated = [c for c in counts if counts[c] >= 2 and c not in bookends]
    if n < 3 or len(repeated) < 2:
        return None

    def mean_energy(c: str) -> float:
        return float(np.mean([e for lab, e in zip(letters, energies, strict=True) if lab == c]))

    by_energy = sorted(repeated, key=mean_energy, reverse=True)
    chorus, verse = by_energy[0], by_energy[1]
    if len(repeated) > 2 or mean_energy(chorus) < mean_energy(verse) + CHORUS_MARGIN:
        return None
    names: list[str] = []
    seen_chorus = False
    for i, c in enumerate(letters):
        if c == chorus:
            names.append("chorus")
            seen_chorus = True
        elif c == verse:
            names.append("verse")
        elif i == 0:
            names.append("intro")
        elif i == n - 1:
            names.append("outro")
        elif counts[c] == 1 and seen_chorus:
            names.append("bridge")
        else:
            return None
    return names


# --- small helpers -----------------------------------------------------------------------------


def _mean_energy(curve: list[float], duration: float, a: float, b: float) -> float:
    """Mean of the energy curve (points at the centres of equal spans) between times ``a`` and ``b``."""
    if not curve:
        return 0.0
    values = np.clip(np.asarray(curve, dtype=float), 0.0, 1.0)
    centres = (np.arange(values.size) + 0.5) * duration / values.size
    return float(np.mean(np.interp(np.linspace(a, b, 64), centres, values)))


def _section(a: float, b: float, label: str, curve: list[float], duration: float) -> SongSection:
    return SongSection(
        start_s=round(a, 3),
        end_s=round(b, 3),
        label=label,
        energy=round(_mean_energy(curve, duration, a, b), 3),
    )

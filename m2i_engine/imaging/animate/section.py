"""Which bars of the song a loop is made from, and their beats and energy, in the loop's own time.

A loop must be a whole number of bars so that it repeats in time with the music; it starts on a beat at
a downbeat and ends on the beat where the same bar position comes round again, so the beat grid closes.
:func:`choose_section` finds those bars (the most energetic, the most typical, or the first) from the
tags alone and returns a :class:`Section` whose times are relative to the loop's first beat.

Offers
------
- :func:`loop_bars_for` — how many bars make a loop of a comfortable length at a tempo;
- :func:`choose_section` — the loop's bars, beats, accents and energy;
- :class:`Section` — the result, with :meth:`Section.to_dict` for result metadata;
- :func:`energy_function` — the tags' energy curve as a function of song time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from m2i_engine.options import LoopSection
from m2i_engine.tags import Tags

#: automatic loop length aims near this many seconds, in 1, 2, 4 or 8 bars
TARGET_LOOP_S = 5.0
#: a loop never runs longer than this (fewer bars are taken at very slow tempi)
MAX_LOOP_S = 12.0
#: energy samples kept across the loop
ENERGY_SAMPLES = 65
#: a tracked beat is used when it lies within this fraction of a beat of where the grid expects it
BEAT_TOLERANCE = 0.2


@dataclass(frozen=True)
class Section:
    """The bars a loop is made from. Times are seconds from the loop's first beat, except the
    ``*_in_song_s`` ones."""

    start_in_song_s: float
    length_s: float
    bars: int
    beats_per_bar: int
    #: beat times in [0, length_s); the first is 0 (the loop starts on its downbeat)
    beats_s: tuple[float, ...]
    #: True where the beat is a downbeat
    accents: tuple[bool, ...]
    #: the song's energy (0..1) at :data:`ENERGY_SAMPLES` even steps from 0 to ``length_s`` inclusive
    energy: tuple[float, ...]
    #: mean energy of the whole song, for comparison
    song_energy: float
    mode: LoopSection
    #: True when the beats come from the song's beat tracking, False for a steady grid at the tempo
    tracked: bool

    @property
    def end_in_song_s(self) -> float:
        return self.start_in_song_s + self.length_s

    @property
    def mean_energy(self) -> float:
        return float(np.mean(self.energy))

    @property
    def bpm(self) -> float:
        """The loop's tempo: its beats over its length."""
        return 60.0 * len(self.beats_s) / self.length_s

    def energy_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Energy at loop times ``t_s`` (0 … ``length_s``), linearly interpolated."""
        grid = np.linspace(0.0, self.length_s, len(self.energy))
        return np.interp(t_s, grid, np.asarray(self.energy))

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode.value,
            "start_s": round(self.start_in_song_s, 3),
            "end_s": round(self.end_in_song_s, 3),
            "length_s": round(self.length_s, 3),
            "bars": self.bars,
            "beats_per_bar": self.beats_per_bar,
            "beats": len(self.beats_s),
            "bpm": round(self.bpm, 2),
            "mean_energy": round(self.mean_energy, 3),
            "song_energy": round(self.song_energy, 3),
            "tracked_beats": self.tracked,
        }


def loop_bars_for(bpm: float, beats_per_bar: int) -> int:
    """1, 2, 4 or 8 bars, whichever loop length is nearest :data:`TARGET_LOOP_S` (the shorter on a
    tie), and never more than :data:`MAX_LOOP_S` unless a single bar is longer."""
    bar_s = beats_per_bar * 60.0 / bpm
    best = min((1, 2, 4, 8), key=lambda n: (abs(n * bar_s - TARGET_LOOP_S), n))
    while best > 1 and best * bar_s > MAX_LOOP_S:
        best //= 2
    return best


def choose_section(tags: Tags, *, bars: int | None = None, mode: LoopSection = LoopSection.peak) -> Section:
    """The bars of ``tags``' song a loop is made from.

    Parameters
    ----------
    tags
        The song's tags: tempo (bpm, beats, downbeats, metre), energy curve and analysed length.
    bars
        Bars in the loop; None picks one with :func:`loop_bars_for`. Capped so the loop stays under
        :data:`MAX_LOOP_S`.
    mode
        ``peak``: the bars with the highest mean energy; ``typical``: the bars whose mean energy is
        nearest the song's median; ``start``: the first bars.

    Returns
    -------
    Section
        Starting on a beat at a downbeat. When the song's beat tracking is too sparse or irregular there,
        the beats are a steady grid at the tempo (``tracked`` is False).
    """
    bpm = float(np.clip(tags.tempo.bpm, 20.0, 320.0))
    per_bar = int(np.clip(tags.tempo.beats_per_bar or 4, 2, 12))
    period = 60.0 / bpm
    n_bars = bars if bars is not None else loop_bars_for(bpm, per_bar)
    while n_bars > 1 and n_bars * per_bar * period > MAX_LOOP_S:
        n_bars //= 2
    n_beats = n_bars * per_bar
    duration = float(max(tags.audio.analysed_s, 1e-3))
    energy_of = energy_function(tags, duration)

    beats = np.sort(np.asarray(tags.tempo.beats_s, dtype=float))
    beats = beats[np.isfinite(beats)]
    downs = np.sort(np.asarray(tags.tempo.downbeats_s, dtype=float))
    downs = downs[np.isfinite(downs)]
    candidates = _tracked_loops(beats, downs, per_bar, n_beats, period)
    tracked = bool(candidates)
    if not tracked:  # a steady grid from the first beat (or 0) across the song
        first = float(beats[0]) if beats.size else 0.0
        length = n_beats * period
        starts = first + length * np.arange(max(1, int((duration - first) // length)))
        candidates = [(float(s), s + period * np.arange(n_beats), length) for s in starts]

    scores = [float(np.mean(energy_of(s + np.linspace(0.0, length, 32)))) for s, _, length in candidates]
    if mode is LoopSection.peak:
        pick = int(np.argmax(scores))
    elif mode is LoopSection.typical:
        median = float(np.median(energy_of(np.linspace(0.0, duration, 128))))
        pick = int(np.argmin([abs(sc - median) for sc in scores]))
    else:
        pick = 0
    start, beat_times, length = candidates[pick]
    rel = beat_times - start
    accents = _accents(rel, downs - start, per_bar, period)
    return Section(
        start_in_song_s=start,
        length_s=float(length),
        bars=n_bars,
        beats_per_bar=per_bar,
        beats_s=tuple(float(b) for b in rel),
        accents=tuple(bool(a) for a in accents),
        energy=tuple(float(e) for e in energy_of(start + np.linspace(0.0, length, ENERGY_SAMPLES))),
        song_energy=float(np.mean(energy_of(np.linspace(0.0, duration, 128)))),
        mode=mode,
        tracked=tracked,
    )


# --- private helpers ---------------------------------------------------------------------------


def _tracked_loops(
    beats: np.ndarray, downs: np.ndarray, per_bar: int, n_beats: int, period: float
) -> list[tuple[float, np.ndarray, float]]:
    """Every loop of ``n_beats`` tracked beats that starts on a downbeat and whose beats are steady
    enough to loop: (start, beat times, length) with the length reaching the beat after the last."""
    if beats.size < n_beats + 1:
        return []
    if downs.size:
        gaps = np.abs(beats[:, None] - downs[None, :]).min(axis=1)
        starts = np.flatnonzero(gaps < BEAT_TOLERANCE * period)
    else:
        starts = np.arange(0, beats.size, per_bar)
    out = []
    for i in starts.tolist():
        if i + n_beats >= beats.size:
            break
        chunk = beats[i : i + n_beats + 1]
        steps = np.diff(chunk)
        # the loop must span its bars at roughly the tempo, with no missed or doubled beat
        if (
            np.all(np.abs(steps - period) < 0.35 * period)
            and abs(chunk[-1] - chunk[0] - n_beats * period) < per_bar * BEAT_TOLERANCE * period
        ):
            out.append((float(chunk[0]), chunk[:-1], float(chunk[-1] - chunk[0])))
    return out


def _accents(rel: np.ndarray, downs_rel: np.ndarray, per_bar: int, period: float) -> np.ndarray:
    """Downbeats of the loop: tracked downbeats when the song has them, else every ``per_bar``-th
    beat; the loop's first beat is always one."""
    inside = downs_rel[(downs_rel > -BEAT_TOLERANCE * period) & (downs_rel < rel[-1] + period)]
    if inside.size:
        accents = np.abs(rel[:, None] - inside[None, :]).min(axis=1) < BEAT_TOLERANCE * period
    else:
        accents = (np.arange(rel.size) % per_bar) == 0
    accents[0] = True
    return accents


def energy_function(tags: Tags, duration: float) -> Callable[[np.ndarray | float], np.ndarray]:
    """Energy (0..1) at song times: the curve's points sit at the centres of equal spans of the
    analysed audio; flat at the overall energy when there is no curve."""
    curve = np.clip(
        np.nan_to_num(np.asarray(tags.energy_curve, dtype=float), nan=tags.loudness.energy), 0.0, 1.0
    )
    if curve.size == 0:
        level = float(np.clip(tags.loudness.energy, 0.0, 1.0))
        return lambda t: np.full(np.shape(t), level)
    centres = (np.arange(curve.size) + 0.5) * duration / curve.size

    def energy(t: np.ndarray | float) -> np.ndarray:
        return np.interp(t, centres, curve)

    return energy

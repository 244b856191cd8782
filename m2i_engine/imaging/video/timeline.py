"""Clip time → what the picture does at that instant: which beat and bar position, how hard the beat
hits, how far the flow has moved, the energy, the camera and which section's scene shows.

:class:`Timeline` is the video's counterpart of the loop's :class:`~m2i_engine.imaging.animate.LoopClock`
and shares its beat envelope and constants; it does not wrap round (a video plays once) and it follows
the whole clip's beats, energy curve and sections. Everything is a pure function of time and tags.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from m2i_engine.imaging.animate.clock import DECAY_BEATS, ENVELOPE_BEATS, OFFBEAT_WEIGHT, beat_envelope
from m2i_engine.imaging.animate.section import energy_function
from m2i_engine.imaging.renderer.motion import ease_out
from m2i_engine.tags import SongSection, Tags

#: a tracked beat this close (fraction of a beat) to a tracked downbeat is a downbeat
DOWNBEAT_TOLERANCE = 0.2
#: camera drift radius (fraction of the short side) at zero and at full energy: larger than a loop's,
#: since a phone screen shows a video's picture big and for long
DRIFT_MIN, DRIFT_MAX = 0.004, 0.018
#: zoom kick on a full-height beat at zero and at full energy: a few pixels at a phone's 720 px, so even
#: a flat, sparse picture visibly jumps on each beat
KICK_MIN, KICK_MAX = 0.012, 0.04
#: the drift goes once round its figure-eight in this many bars
DRIFT_BARS = 4.0
#: seconds a new section's scene takes to fade in, starting on its first beat
CROSSFADE_S = 0.25


@dataclass(frozen=True)
class Instant:
    """One frame's worth of musical state."""

    #: which section's scene shows (index into :attr:`Timeline.sections`), and the one fading out
    #: (``None`` outside a crossfade) with the new scene's weight 0..1
    section: int
    previous: int | None
    fade_in: float
    #: place in the bar of the latest beat (0 = downbeat), and how far (eased, 0..1) the flow has
    #: moved from its pose towards the next beat's
    position: int
    step: float
    #: 0..1 how hard the latest beat hits now (its envelope × the energy gain; downbeats full height)
    hit: float
    #: 0..1 the same for downbeats only
    downbeat: float
    energy: float
    zoom: float
    pan_x: float
    pan_y: float


@dataclass(frozen=True)
class Timeline:
    """The clip's beats (tracked, extended at the tempo to cover the clip), their places in the bar,
    its energy and sections. Build with :meth:`from_tags`."""

    length_s: float
    fps: float
    beats_per_bar: int
    beats_s: np.ndarray
    #: place of each beat in its bar, 0 on downbeats
    positions: np.ndarray
    sections: tuple[SongSection, ...]
    energy_of: Callable[[np.ndarray | float], np.ndarray]
    attack_s: float
    decay_s: float
    end_s: float

    @classmethod
    def from_tags(cls, tags: Tags, *, length_s: float, fps: float) -> Timeline:
        bpm = float(np.clip(tags.tempo.bpm, 20.0, 320.0))
        per_bar = int(np.clip(tags.tempo.beats_per_bar or 4, 2, 12))
        beats = _beat_grid(tags.tempo.beats_s, 60.0 / bpm, length_s)
        period = float(np.median(np.diff(beats))) if beats.size > 1 else 60.0 / bpm
        sections = tuple(tags.sections) or (
            SongSection(start_s=0.0, end_s=length_s, label="A", energy=float(tags.loudness.energy)),
        )
        positions = _bar_positions(beats, tags.tempo.downbeats_s, sections, per_bar, period)
        return cls(
            length_s=length_s,
            fps=fps,
            beats_per_bar=per_bar,
            beats_s=beats,
            positions=positions,
            sections=sections,
            energy_of=energy_function(tags, max(tags.audio.analysed_s, 1e-3)),
            attack_s=0.5 / fps,
            decay_s=max(DECAY_BEATS * period, 1.5 / fps),
            end_s=ENVELOPE_BEATS * period,
        )

    @property
    def frames(self) -> int:
        return max(1, round(self.length_s * self.fps))

    @property
    def beat_s(self) -> float:
        return float(np.median(np.diff(self.beats_s))) if self.beats_s.size > 1 else 0.5

    def section_at(self, t_s: float) -> int:
        starts = [s.start_s for s in self.sections]
        return max(0, int(np.searchsorted(starts, t_s + 1e-9, side="right")) - 1)

    def at(self, t_s: float) -> Instant:
        """The state of the picture ``t_s`` seconds into the clip."""
        beats = self.beats_s
        j = int(np.searchsorted(beats, t_s + 1e-9, side="right")) - 1
        energy = float(np.clip(self.energy_of(t_s), 0.0, 1.0))
        gain = 0.4 + 0.6 * energy
        if j < 0:  # before the first beat: the scene at rest
            position, step, env, down = 0, 0.0, 0.0, 0.0
            beats_elapsed = 0.0
        else:
            position = int(self.positions[j])
            nxt = beats[j + 1] if j + 1 < beats.size else beats[j] + self.beat_s
            frac = float(np.clip((t_s - beats[j]) / max(nxt - beats[j], 1e-6), 0.0, 1.0))
            step = ease_out(frac)
            weight = 1.0 if position == 0 else OFFBEAT_WEIGHT
            env = weight * float(
                beat_envelope(t_s - beats[j], attack_s=self.attack_s, decay_s=self.decay_s, end_s=self.end_s)
            )
            down = env if position == 0 else 0.0
            beats_elapsed = j + frac
        section = self.section_at(t_s)
        since_cut = t_s - self.sections[section].start_s
        fading = section > 0 and since_cut < CROSSFADE_S
        # the camera drifts on a figure-eight paced in bars; each beat kicks the zoom in
        angle = 2 * math.pi * beats_elapsed / (DRIFT_BARS * self.beats_per_bar)
        radius = DRIFT_MIN + (DRIFT_MAX - DRIFT_MIN) * energy
        pan_x, pan_y = radius * math.sin(angle), 0.5 * radius * math.sin(2 * angle)
        kick = (KICK_MIN + (KICK_MAX - KICK_MIN) * energy) * env
        return Instant(
            section=section,
            previous=section - 1 if fading else None,
            fade_in=ease_out(since_cut / CROSSFADE_S) if fading else 1.0,
            position=position,
            step=step,
            hit=gain * env,
            downbeat=gain * down,
            energy=energy,
            zoom=1.0 + kick + 2.2 * DRIFT_MAX,
            pan_x=pan_x,
            pan_y=pan_y,
        )


def _beat_grid(tracked: list[float], period: float, length_s: float) -> np.ndarray:
    """The tracked beats inside the clip, extended at their own pace before the first and after the
    last (a steady grid at the tempo when none were tracked)."""
    beats = np.sort(np.asarray(tracked, dtype=float))
    beats = beats[np.isfinite(beats) & (beats >= 0.0) & (beats < length_s)]
    if beats.size >= 2:
        period = float(np.median(np.diff(beats)))
    elif beats.size == 0:
        beats = np.array([0.0])
    # a beat the tracker missed just inside the start (its onset cut off) still counts
    before = beats[0] - period * np.arange(math.floor(beats[0] / period + 0.25), 0, -1)
    after = beats[-1] + period * np.arange(1, max(1, math.ceil((length_s - beats[-1]) / period)))
    return np.concatenate([before, beats, after[after < length_s]])


def _bar_positions(
    beats: np.ndarray, downbeats: list[float], sections: tuple[SongSection, ...], per_bar: int, period: float
) -> np.ndarray:
    """Each beat's place in its bar: counted from the tracked downbeats when there are any, else the
    phase that puts most section starts on a downbeat (sections begin on bars), else from beat 0."""
    idx = np.arange(beats.size)
    downs = np.asarray(downbeats, dtype=float)
    if downs.size:
        is_down = np.abs(beats[:, None] - downs[None, :]).min(axis=1) < DOWNBEAT_TOLERANCE * period
        if is_down.any():
            last = np.maximum.accumulate(np.where(is_down, idx, -1))
            first = int(np.argmax(is_down))
            pos = np.where(last >= 0, idx - last, (idx - first) % per_bar)
            return (pos % per_bar).astype(int)
    starts = [s.start_s for s in sections[1:]]
    votes = np.zeros(per_bar)
    for t in starts:
        k = int(np.argmin(np.abs(beats - t)))
        if abs(beats[k] - t) < 0.5 * period:
            votes[k % per_bar] += 1
    phase = int(np.argmax(votes))
    return ((idx - phase) % per_bar).astype(int)

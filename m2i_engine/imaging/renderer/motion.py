"""One instant of an animation as the motifs read it, so a still picture can come alive frame by frame.

The renderer draws a still; :mod:`m2i_engine.imaging.animate` draws the same picture many times, each
with a :class:`Motion` built from the song's beats and energy at that instant. Motifs read it through
:attr:`~m2i_engine.imaging.renderer.scene.Scene.motion` and only ever *add* to the still's geometry
(a ring swells, a wave rolls, a shard is pushed further), so:

- :data:`STILL` (every motif's default) draws exactly the still picture, pixel for pixel;
- motion never draws from the scene's random generator, so every frame has the still's composition;
- every periodic helper completes whole cycles over the loop, so the last frame joins the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Motion:
    """What moves at one instant. Every field's neutral value leaves the still untouched."""

    #: 0..1 envelope of the latest beat: 1 on the beat, decaying within it; downbeats full height,
    #: other beats lower, all scaled by the section's energy
    pulse: float = 0.0
    #: 0..1 envelope of the latest downbeat only (bar-level accents)
    downbeat: float = 0.0
    #: the envelope of each beat of the look's rhythm window (``Look.rhythm.positions``): the shape
    #: drawn for window beat *i* lights when the loop reaches the beat with the same place in the bar
    beat_pulses: tuple[float, ...] = ()
    #: 0..1 position in the loop; the loop is a whole number of bars
    phase: float = 0.0
    #: bars in the loop (an integer ≥ 1); cycles per loop are counted against it
    loop_bars: int = 1
    #: beats elapsed since the loop began, following the song's real beat times (``loop_beats`` at
    #: the end): a motion with a period of one beat is in step with the music and loops seamlessly
    beats: float = 0.0
    #: how much the continuous motions (sway, flow, drift) move: 0 for a still, about 0.35 … 1 from
    #: the section's energy at this instant
    amount: float = 0.0
    #: camera: zoom ≥ 1 about the centre, and a pan in fractions of the short side (kept inside the
    #: zoom's margin so no edge shows)
    zoom: float = 1.0
    pan_x: float = 0.0
    pan_y: float = 0.0
    #: multiplier on the glow layer's strength (bloom flares on beats)
    glow_gain: float = 1.0

    @property
    def still(self) -> bool:
        return self == STILL

    @property
    def has_camera(self) -> bool:
        return self.zoom != 1.0 or self.pan_x != 0.0 or self.pan_y != 0.0

    def beat(self, i: int) -> float:
        """The envelope of the shape linked to window beat ``i`` (0 when nothing is linked)."""
        return self.beat_pulses[i] if 0 <= i < len(self.beat_pulses) else 0.0

    def cycles(self, per_bars: float = 1.0) -> float:
        """Cycles elapsed at a speed of about one per ``per_bars`` bars, rounded to a whole number
        per loop so the motion closes with it; 0 at the loop's start (and for a still)."""
        whole = max(1, round(self.loop_bars / per_bars))
        return whole * self.phase

    def steps(self) -> float:
        """Beats elapsed, each beat's step eased so it moves right after the beat and settles before
        the next: whole at every beat (so a motion by whole steps loops), 0 for a still."""
        whole = math.floor(self.beats)
        return whole + ease_out(self.beats - whole)

    def sway(self, per_bars: float = 1.0, offset: float = 0.0) -> float:
        """A smooth oscillation in -2 … 2 times ``amount`` at :meth:`cycles` speed, zero at the loop's
        start: ``offset`` (0..1) de-synchronises shapes without moving them in frame 0."""
        c = self.cycles(per_bars)
        if self.amount == 0.0 or c == 0.0:
            return 0.0
        return self.amount * (math.sin(2 * math.pi * (c + offset)) - math.sin(2 * math.pi * offset))


#: the still picture: no beat, no flow, no camera
STILL = Motion()


def ease_out(x: float) -> float:
    """0 → 1 fast at first, settling at the end (cubic): a move that starts on a beat."""
    return 1.0 - (1.0 - x) ** 3


def stagger(i: int) -> float:
    """A fixed, well-spread offset in 0..1 for shape ``i`` (golden ratio), so shapes move out of step
    without drawing from the scene's random generator."""
    return (i * 0.6180339887498949) % 1.0

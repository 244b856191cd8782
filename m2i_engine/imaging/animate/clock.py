"""Time in a loop → what moves: the beat envelopes, the energy, the flow and the camera at each frame.

:class:`LoopClock` turns a :class:`~m2i_engine.imaging.animate.section.Section` into one
:class:`~m2i_engine.imaging.renderer.motion.Motion` per instant, which the renderer's motifs read:

- beats: each beat starts an envelope that rises to 1 over half a frame and decays within the beat
  (downbeats full height, other beats lower), so a beat flashes on the first frame after it; the beat
  train repeats every loop, so the last beat's decay runs into the first frame — which, sitting on the
  first downbeat's very instant, is at rest: frame 0 is the still picture and frame 1 the first flash;
- energy: the section's energy curve, with its start-to-end drift removed so it loops, scales the
  beat pulses, the continuous motions and the camera;
- tempo: flow is counted in the song's own beats and bars, so a faster song moves faster;
- frames: ``round(length × fps)`` frames evenly over the loop, so frame *N* would be frame 0 again.

Everything here is a pure function of the time and the section: the same song gives the same motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from m2i_engine.imaging.animate.section import Section
from m2i_engine.imaging.renderer.motion import Motion

#: the most frames a loop gets (a long loop at a high rate is drawn at a lower rate instead)
MAX_FRAMES = 240
#: height of a non-downbeat's envelope relative to a downbeat's
OFFBEAT_WEIGHT = 0.65
#: envelope decay time as a fraction of a beat (never shorter than 1.5 frames)
DECAY_BEATS = 0.25
#: an envelope is cut to exactly 0 this far into its beat, so nothing is still moving when the next
#: beat (or the loop's first frame) comes
ENVELOPE_BEATS = 0.85
#: camera drift radius at zero and at full energy (fractions of the short side)
DRIFT_MIN, DRIFT_MAX = 0.002, 0.008
#: beat zoom kick at zero and at full energy
KICK_MIN, KICK_MAX = 0.004, 0.014
#: the camera drifts once around its figure-eight in about this many bars
DRIFT_BARS = 2.0


def beat_envelope(
    since_s: np.ndarray | float, *, attack_s: float, decay_s: float, end_s: float
) -> np.ndarray:
    """A beat's envelope ``since_s`` (≥ 0) seconds after it: a rise to 1 over ``attack_s``, then an
    exponential decay (time constant ``decay_s``) lowered so it reaches exactly 0 at ``end_s``."""
    since = np.asarray(since_s, dtype=float)
    rise = np.minimum(since / attack_s, 1.0)
    floor = min(math.exp(-max(end_s - attack_s, 0.0) / decay_s), 0.9)
    decay = np.exp(-np.maximum(since - attack_s, 0.0) / decay_s)
    return rise * np.maximum(decay - floor, 0.0) / (1.0 - floor)


@dataclass(frozen=True)
class LoopClock:
    """The loop's time base: frames, beats and energy. Build with :meth:`for_section`."""

    section: Section
    #: frames in the loop; frame *k* shows time ``k × length / frames``
    frames: int
    #: beats in the look's rhythm window: their shapes light in turn as the loop's beats pass
    window_beats: int
    #: an envelope rises over ``attack_s`` (half a frame), decays with time constant ``decay_s`` and
    #: ends at :data:`ENVELOPE_BEATS` of a beat
    attack_s: float
    decay_s: float
    end_s: float

    @classmethod
    def for_section(cls, section: Section, *, fps: float, window_beats: int = 0) -> LoopClock:
        """A clock at about ``fps`` frames per second (exactly ``frames / length``; lower when the
        loop would pass :data:`MAX_FRAMES`)."""
        frames = min(max(2, round(section.length_s * fps)), MAX_FRAMES)
        real_fps = frames / section.length_s
        beat_s = section.length_s / max(len(section.beats_s), 1)
        return cls(
            section=section,
            frames=frames,
            window_beats=window_beats,
            attack_s=0.5 / real_fps,
            decay_s=max(DECAY_BEATS * beat_s, 1.5 / real_fps),
            end_s=ENVELOPE_BEATS * beat_s,
        )

    # --- time base -------------------------------------------------------------------------------

    @property
    def length_s(self) -> float:
        return self.section.length_s

    @property
    def fps(self) -> float:
        """Frames per second, exactly: a whole number of frames spans the loop."""
        return self.frames / self.section.length_s

    def frame_times(self) -> np.ndarray:
        """The time of each frame in seconds from the loop's first beat."""
        return np.arange(self.frames) * (self.section.length_s / self.frames)

    def beat_frames(self) -> list[int]:
        """For each beat of the loop, the frame where its envelope peaks: the first frame a full
        attack after it (wrapping round to the loop's start)."""
        step = self.section.length_s / self.frames
        return [math.ceil((b + self.attack_s) / step - 1e-9) % self.frames for b in self.section.beats_s]

    # --- what moves ------------------------------------------------------------------------------

    def envelopes(self, t_s: float) -> np.ndarray:
        """Each loop beat's envelope at ``t_s``: its weight × a half-frame rise and a decay that
        reaches 0 at :attr:`end_s`, since its latest repeat."""
        beats = np.asarray(self.section.beats_s)
        since = np.mod(t_s - beats, self.section.length_s)
        weights = np.where(np.asarray(self.section.accents), 1.0, OFFBEAT_WEIGHT)
        return weights * beat_envelope(since, attack_s=self.attack_s, decay_s=self.decay_s, end_s=self.end_s)

    def energy_at(self, t_s: float) -> float:
        """The section's energy at ``t_s``, with the drift from its first to its last sample taken
        out so that it loops."""
        sec = self.section
        drift = (sec.energy[-1] - sec.energy[0]) * (t_s / sec.length_s)
        return float(np.clip(sec.energy_at(t_s) - drift, 0.0, 1.0))

    def beats_at(self, t_s: float) -> float:
        """Beats elapsed since the loop began, linear between the song's real beat times."""
        beats = np.asarray(self.section.beats_s)
        ends = np.append(beats, self.section.length_s)
        j = int(np.clip(np.searchsorted(beats, t_s, side="right") - 1, 0, beats.size - 1))
        return j + (t_s - ends[j]) / (ends[j + 1] - ends[j])

    def motion_at(self, t_s: float) -> Motion:
        """The :class:`Motion` at ``t_s`` seconds into the loop (any ``t_s`` in [0, length])."""
        sec = self.section
        env = self.envelopes(t_s)
        energy = self.energy_at(t_s)
        gain = 0.4 + 0.6 * energy
        accents = np.asarray(sec.accents)
        pulse = gain * float(env.max())
        downbeat = gain * float(env[accents].max()) if accents.any() else 0.0
        m = len(sec.beats_s)
        beat_pulses = tuple(gain * float(env[i % m]) for i in range(self.window_beats))
        phase = t_s / sec.length_s
        drift = 2 * math.pi * max(1, round(sec.bars / DRIFT_BARS)) * phase
        radius = DRIFT_MIN + (DRIFT_MAX - DRIFT_MIN) * energy
        pan_x, pan_y = radius * math.sin(drift), 0.5 * radius * math.sin(2 * drift)
        kick = (KICK_MIN + (KICK_MAX - KICK_MIN) * energy) * pulse / gain
        return Motion(
            pulse=pulse,
            downbeat=downbeat,
            beat_pulses=beat_pulses,
            phase=phase,
            loop_bars=sec.bars,
            beats=self.beats_at(t_s),
            amount=0.35 + 0.65 * energy,
            # zoom in by at least twice the pan so the picture's edges never show
            zoom=1.0 + kick + 2.0 * math.hypot(pan_x, pan_y),
            pan_x=pan_x,
            pan_y=pan_y,
            glow_gain=1.0 + 0.3 * pulse,
        )

    def motions(self) -> list[Motion]:
        """One :class:`Motion` per frame."""
        return [self.motion_at(float(t)) for t in self.frame_times()]

"""Jazz: loose, overlapping circles printed slightly off register, dry brush marks, and a walking
line of notes whose spacing is the real beat timing (swing shows).

- beats: one note per beat along the walking line, downbeats larger; the big circles sit on bars;
- energy curve: the brush marks' weight along their length;
- energy: how many circles and marks; dynamics: how much their sizes differ.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): each circle swells on the downbeat
of its bar and drifts out of step with the others; the brush marks thicken on beats; the note of the
current beat grows on the walking line.
"""

from __future__ import annotations

import math

import numpy as np
import skia

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.motion import stagger
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng, pal, m = s.look, s.rng, s.palette, s.motion
    unit = s.unit
    blend = skia.BlendMode.kScreen if pal.dark else skia.BlendMode.kMultiply
    bar_beats = np.flatnonzero(look.rhythm.accents)  # window beat of each bar's downbeat

    n = s.count(7.0, lo=2, hi=14)
    spread = 0.3 + 0.7 * look.dynamics
    sizes = unit * (0.1 + 0.14 * np.exp(spread * rng.normal(0, 0.8, n)).clip(0.3, 2.6))
    bars = look.rhythm.positions[look.rhythm.accents]
    if bars.size == 0:
        bars = np.array([0.5])
    for i in range(n):
        u = float(bars[i % bars.size]) * 0.8 + 0.1 + 0.1 * (rng.random() - 0.5)
        v = 0.5 + 0.5 * (rng.random() - 0.5) - 0.2 * (look.flow_at(u) - 0.5)
        x, y, r = float(s.x(u)), float(s.y(v)), float(sizes[i])
        r *= 1.0 + 0.05 * m.pulse  # animated: every circle breathes on the beat …
        if bar_beats.size:  # … and swells on its own bar's downbeat
            r *= 1.0 + 0.1 * m.beat(int(bar_beats[i % bar_beats.size]))
        x += unit * 0.012 * m.sway(2, stagger(i))
        y += unit * 0.012 * m.sway(2, stagger(i) + 0.25)
        colour = pal.ink(i)
        s.ink.fill(geo.circle(x, y, r), colour, 0.8, blend=blend)
        off = unit * 0.014 * (0.5 + rng.random())
        ang = rng.random() * 2 * math.pi
        s.ink.stroke(
            geo.circle(x + off * math.cos(ang), y + off * math.sin(ang), r),
            pal.shadow if not pal.dark else pal.highlight,
            unit * 0.0035,
            0.75,
        )
    _brush_marks(s)
    if s.detail:
        _walking_line(s)


def _brush_marks(s: Scene) -> None:
    """Long gestures of a dry brush: many parallel bristle streaks along a gentle arc, each giving
    out at its own point; the stroke's weight follows the energy curve."""
    look, rng, pal = s.look, s.rng, s.palette
    unit = s.unit
    for m in range(s.count(1.6, lo=1, hi=3)):
        n = 60
        t = np.linspace(0, 1, n)
        radius = unit * (0.7 + 0.5 * rng.random())
        span = (0.55 + 0.4 * rng.random()) * (1 if rng.random() < 0.5 else -1)
        mid = rng.random() * 2 * math.pi
        ang = mid - span / 2 + span * t
        ox = s.cx + unit * 0.25 * (rng.random() - 0.5)
        oy = s.cy + unit * 0.3 * (rng.random() - 0.5)
        xs = ox + radius * (np.cos(ang) - math.cos(mid))
        ys = oy + radius * (np.sin(ang) - math.sin(mid))
        dx, dy = np.gradient(xs), np.gradient(ys)
        norm = np.hypot(dx, dy) + 1e-9
        nx, ny = -dy / norm, dx / norm
        weight = unit * (0.025 + 0.03 * look.energy) * (0.8 + 0.35 * look.energy_at(t))
        weight *= 1.0 + 0.25 * s.motion.pulse
        half = weight * np.clip(t / 0.03, 0.6, 1.0) * (1.0 - 0.35 * t)
        colour = pal.shadow if (m % 2 == 0) != pal.dark else pal.accent
        streaks = 26
        streak_w = float(weight.mean()) * 2.0 / streaks * 1.7
        for b in range(streaks):
            k = (b + 0.5) / streaks * 2 - 1
            begin = 0.04 * rng.random()
            end = 1.0 - 0.45 * rng.random() ** 2 * (0.4 + abs(k))
            sel = (t >= begin) & (t <= end)
            if sel.sum() < 2:
                continue
            s.ink.stroke(
                geo.polyline(xs[sel] + nx[sel] * half[sel] * k, ys[sel] + ny[sel] * half[sel] * k),
                colour,
                streak_w,
                0.6 + 0.4 * rng.random(),
                cap="butt",
            )


def _walking_line(s: Scene) -> None:
    """A line of notes, one per beat, wandering like a walking bass."""
    look, rng, pal = s.look, s.rng, s.palette
    rhythm = look.rhythm
    if rhythm.count == 0:
        return
    u = 0.06 + 0.88 * rhythm.positions
    v = 0.78 + 0.06 * np.cumsum(rng.normal(0, 0.6, rhythm.count))
    v = np.clip(v - (v.mean() - 0.8), 0.6, 0.95)
    xs, ys = s.x(u), s.y(v)
    colour = pal.shadow if not pal.dark else pal.highlight
    s.ink.stroke(geo.spline(xs, ys), colour, s.unit * 0.0015, 0.5)
    radii = s.unit * np.where(rhythm.accents, 0.014, 0.007)
    radii *= 1.0 + 1.2 * np.array([s.motion.beat(i) for i in range(rhythm.count)])
    s.ink.dots(np.stack([xs, ys], 1), radii, colour, 0.9)

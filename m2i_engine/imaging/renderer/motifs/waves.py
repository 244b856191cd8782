"""Reggae: warm stripes that roll like waves under a low sun.

- beats: one crest per beat, nudged onto the off-beat (the skank); downbeat crests higher; every bar
  one stripe takes the accent colour;
- energy curve: how high the waves roll along the frame;
- energy: how many stripes.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): the waves roll on by one crest at
each beat (a quick move that settles before the next, on the song's real beat times) and rise on
beats; the sun pulses.
"""

from __future__ import annotations

import math

import numpy as np

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng, pal, m = s.look, s.rng, s.palette, s.motion
    unit = s.unit
    rhythm = look.rhythm

    sun_x, sun_y = s.x(0.3 + 0.4 * rng.random()), s.y(0.3 + 0.06 * rng.random())
    sun_r = unit * (0.17 + 0.05 * look.energy) * (1.0 + 0.06 * m.downbeat)
    s.ink.bloom(geo.circle(sun_x, sun_y, sun_r * 1.5), pal.accent, 0.5)
    s.ink.fill(geo.circle(sun_x, sun_y, sun_r), pal.accent, 0.95)

    n = s.count(9, lo=4, hi=16)
    n_pts = 200
    u = np.linspace(-0.02, 1.02, n_pts)
    xs = s.x(u)
    flow = look.flow_at(np.clip(u, 0, 1))
    # crests on the off-beats: half a beat after each beat
    phase = (np.clip(u, 0, 1) - rhythm.beat_length * 0.5) / rhythm.beat_length
    accent_bump = np.cos(math.pi * rhythm.bar_phase(np.clip(u, 0, 1))) ** 8
    top0 = 0.42
    bottom = s.top + s.h + 4
    amp = unit * (0.012 + 0.03 * look.energy) * (0.5 + flow) * (1 + 0.6 * accent_bump)
    amp *= 1.0 + 0.5 * m.pulse
    roll = m.steps()  # animated: the crests move on one place at each beat
    per_bar = rhythm.beats_per_bar
    edges = []
    for k in range(n):
        v = top0 + (1.0 - top0) * k / n
        shift = 0.15 * k + 0.05 * rng.random()
        edges.append(s.y(v) - amp * np.cos(2 * math.pi * (phase + shift - roll)) * (1 - 0.4 * k / n))
    edges.append(np.full(n_pts, bottom))
    for k in range(n):
        ys = edges[k]
        colour = pal.accent if k % per_bar == per_bar - 1 else pal.ink(k)
        # washes must not pile up (they multiply), so watercolor paints each stripe on its own
        shape = (
            geo.band(xs, ys, np.maximum(edges[k + 1], ys) + 1.0)
            if s.ink.mode == "wash"
            else geo.below(xs, ys, bottom)
        )
        s.ink.fill(shape, colour, 1.0)
        s.ink.stroke(geo.polyline(xs, ys), pal.highlight, unit * 0.0025, 0.25)

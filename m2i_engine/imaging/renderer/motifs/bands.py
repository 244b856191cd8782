"""Rock: bands torn across the frame with saw-tooth edges, tilted with the song's drive.

- beats: every band edge is a saw blade with one tooth per beat, the tallest on downbeats;
- energy curve: the bands swell where the song is loud and pinch where it is quiet;
- energy and percussiveness: tooth height; arousal: the tilt; bands alternate black, bone and the
  key's colour.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): on every beat the teeth jump and the
bands swell, the teeth of that beat most; the tilt rocks once every two bars.
"""

from __future__ import annotations

import numpy as np

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.palette import RGB
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng, pal, m = s.look, s.rng, s.palette, s.motion
    unit = s.unit
    rhythm = look.rhythm
    tilt = (8 + 12 * max(look.arousal, 0.0)) * (1 if rng.random() < 0.5 else -1) + 1.5 * m.sway(2)
    pos = rhythm.positions if rhythm.count else np.array([0.0])
    acc = rhythm.accents if rhythm.count else np.array([True])

    # x samples: each beat, just before the next beat (the saw's back), and the frame's ends
    margin = 0.35
    teeth_u = np.concatenate([pos, pos + 0.96 * rhythm.beat_length])
    u = np.unique(np.clip(np.concatenate([teeth_u, np.linspace(0, 1, 12)]), 0, 1))
    saw = np.zeros_like(u)
    for i, (p, a) in enumerate(zip(pos, acc, strict=True)):
        k = int(np.argmin(np.abs(u - p)))
        saw[k] = (1.0 if a else 0.55) * (1.0 + 0.8 * m.beat(i))
    us = np.concatenate([[-margin], u, [1 + margin]])
    saw = np.concatenate([[0.0], saw, [0.0]])
    xs = s.left + us * s.w
    swell = (0.7 + 0.6 * look.flow_at(np.clip(us, 0, 1))) * (1.0 + 0.04 * m.pulse)
    tooth = unit * (0.015 + 0.07 * look.energy * (0.4 + 0.6 * look.percussiveness))
    tooth *= 1.0 + 0.6 * m.pulse

    n = s.count(7, lo=3, hi=12)
    colours: list[RGB] = [pal.accent, pal.shadow, pal.ink(1), pal.ink(0), pal.shadow, pal.ink(3)]
    thick = rng.random(n) + 0.4
    thick = thick / thick.sum() * (1.0 + 2 * margin) * s.h
    base = s.top - margin * s.h + np.cumsum(thick)[:, None] * swell[None, :]
    with s.ink.transformed(rotate_deg=tilt, about=(s.cx, s.cy)):
        edge = np.full(us.size, s.top - 2 * margin * s.h)
        for k in range(n):
            nxt = np.maximum(base[k] - tooth * saw * (0.6 + 0.8 * rng.random()), edge)
            colour = colours[k % len(colours)]
            s.ink.fill(geo.band(xs, edge, nxt + 1.0), colour, 1.0)
            if k % 3 == 0 and k > 0:
                s.ink.stroke(geo.polyline(xs, edge), pal.highlight, unit * 0.002, 0.45, cap="butt")
                s.ink.bloom(geo.polyline(xs, edge), colour, 0.6, width=unit * 0.01)
            edge = nxt
        s.ink.fill(geo.below(xs, edge, s.top + (1 + 2 * margin) * s.h), pal.shadow, 1.0)

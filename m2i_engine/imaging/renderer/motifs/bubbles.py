"""Pop: bright, glossy bubbles bouncing across the frame over soft out-of-focus lights.

- beats: one bubble per beat along a bouncing path, downbeat bubbles biggest;
- energy curve: the height of the bounce along the frame;
- energy: extra floating bubbles and their size; dynamics: how much sizes differ.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): the bubble of each beat hops up and
swells when the loop reaches that beat; the floating bubbles drift out of step; the lights behind
brighten on beats.
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
    rhythm = look.rhythm
    pos = rhythm.positions if rhythm.count else np.array([0.5])
    acc = rhythm.accents if rhythm.count else np.array([True])

    if s.backdrop:  # out-of-focus lights far behind
        for i in range(s.count(6, lo=2, hi=10)):
            x, y = float(s.x(rng.random())), float(s.y(rng.random()))
            r = unit * (0.1 + 0.15 * rng.random())
            s.ink.soft_disc(
                x, y, r, pal.ink(i).mix(pal.highlight, 0.3), 0.3 * (1.0 + 0.8 * m.pulse), hardness=0.8
            )

    size_spread = 0.4 + 0.8 * look.dynamics
    bubbles: list[tuple[float, float, float, int, float]] = []  # x, y, r, ink, r at rest
    for i in range(s.count(9, lo=0, hi=24)):
        r = unit * 0.04 * float(np.exp(size_spread * rng.normal(0, 0.6))) * (0.8 + 0.5 * look.energy)
        x, y = float(s.x(rng.random())), float(s.y(rng.random()))
        x += unit * 0.03 * m.sway(2, stagger(i))  # animated: floating bubbles drift
        y += unit * 0.03 * m.sway(2, stagger(i) + 0.3)
        bubbles.append((x, y, r, i, r))
    # the bounce: the path rises and falls with the energy curve and hops once per beat
    for i, (p, a) in enumerate(zip(pos, acc, strict=True)):
        u = 0.06 + 0.88 * float(p)
        hop = abs(math.sin(math.pi * i / max(rhythm.beats_per_bar, 1) * 2)) * 0.1
        v = 0.72 - 0.4 * float(look.flow_at(u)) - hop + 0.32 * (rng.random() - 0.5)
        v -= 0.12 * m.beat(i)  # animated: this beat's bubble hops
        r = unit * (0.1 if a else 0.045) * (0.7 + 0.5 * rng.random()) * (0.8 + 0.5 * look.energy)
        rest = r
        r *= 1.0 + 0.25 * m.beat(i)
        bubbles.append((float(s.x(u)), float(s.y(v)), r, i + 3, rest))
    bubbles.sort(key=lambda b: b[4])  # small (far) first; a swelling bubble keeps its depth
    for x, y, r, i, _ in bubbles:
        _bubble(s, x, y, r * (1.0 + 0.06 * m.pulse), i)  # animated: every bubble bounces on the beat


def _bubble(s: Scene, x: float, y: float, r: float, i: int) -> None:
    pal = s.palette
    colour = pal.ink(i)
    s.ink.soft_disc(x + r * 0.1, y + r * 0.2, r * 1.12, pal.shadow, 0.2, hardness=0.75)
    light = skia.Point(x - r * 0.35, y - r * 0.4)
    shader = skia.GradientShader.MakeRadial(
        light,
        r * 1.55,
        [colour.mix(pal.highlight, 0.6).argb(), colour.argb(), colour.mix(pal.shadow, 0.25).argb()],
        [0.0, 0.5, 1.0],
    )
    disc = geo.circle(x, y, r)
    s.ink.fill(disc, colour, 0.97, shader=shader)
    rim = skia.Path()
    rim.addArc(skia.Rect.MakeLTRB(x - r * 0.86, y - r * 0.86, x + r * 0.86, y + r * 0.86), 20, 110)
    s.ink.stroke(rim, pal.highlight, max(r * 0.05, 1.0), 0.45)
    spec = skia.Path()
    spec.addOval(skia.Rect.MakeXYWH(x - r * 0.58, y - r * 0.64, r * 0.45, r * 0.28))
    s.ink.fill(spec, pal.highlight, 0.9, plain=s.ink.mode != "neon")
    s.ink.bloom(disc, colour, 0.2)

"""Blues: smoke rising through a dark room in folded, translucent sheets, under one warm lamp.

- beats: one plume rises from each downbeat along the floor, and a thin wisp from every other beat;
- energy curve: how far the smoke sways and spreads as it rises (bottom = start of the song, top =
  end);
- energy: how dense the sheets are; softness: how blurred.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): the smoke's folds drift up the plumes
and back every two bars, further when the music is louder; each plume brightens and widens on its own
beat; the lamp flares on downbeats.
"""

from __future__ import annotations

import math

import numpy as np
import skia

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.motion import stagger
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng, pal = s.look, s.rng, s.palette
    unit = s.unit
    rhythm = look.rhythm

    lx, ly = s.x(0.2 + 0.6 * rng.random()), s.y(0.15 + 0.15 * rng.random())
    s.ink.light(lx, ly, unit * 0.6, pal.accent, 0.8 * (1.0 + 0.5 * s.motion.downbeat))
    if s.backdrop:
        shader = skia.GradientShader.MakeRadial(
            skia.Point(lx, ly), unit * 0.55, [pal.accent.argb(0.35), pal.accent.argb(0.0)]
        )
        s.ink.fill(geo.circle(lx, ly, unit * 0.55), pal.accent, 1.0, shader=shader, plain=True)
    for i in range(s.count(4, lo=2, hi=7)):
        x, y = float(s.x(rng.random())), float(s.y(0.3 + 0.6 * rng.random()))
        r = unit * (0.15 + 0.2 * rng.random())
        s.ink.soft_disc(x, y, r, pal.ink(i), 0.08 + 0.08 * look.energy, hardness=0.0)

    pos = rhythm.positions if rhythm.count else np.array([0.5])
    acc = rhythm.accents if rhythm.count else np.array([True])
    plumes = pos[acc] if acc.any() else pos[:1]
    beat_of = np.flatnonzero(acc) if acc.any() else np.array([0])  # window beat of each plume
    for i, p in enumerate(plumes[:5]):
        _plume(s, float(s.x(0.12 + 0.76 * p)), i, sheet=True, hit=s.motion.beat(int(beat_of[i])))
    wisp_beats = np.flatnonzero(~acc)[::2]
    for i, p in enumerate(pos[~acc][::2]):
        _plume(s, float(s.x(0.05 + 0.9 * p)), i + 7, sheet=False, hit=s.motion.beat(int(wisp_beats[i])))


def _plume(s: Scene, x0: float, i: int, *, sheet: bool, hit: float = 0.0) -> None:
    """A rising sheet of fine lines that folds over itself as it climbs; ``hit`` (0..1) brightens
    and widens it on its beat."""
    look, rng, pal = s.look, s.rng, s.palette
    rising = 0.18 * s.motion.sway(2, stagger(i))  # animated: the folds drift up and back
    unit = s.unit
    n_pts = 70
    v = np.linspace(1.03, -0.08, n_pts)  # bottom to top
    rise = np.clip(1.03 - v, 0, 1.1)  # 0 at the floor
    sway = look.flow_at(np.clip(rise, 0, 1))
    freq = 0.8 + 1.0 * rng.random()
    ph = rng.random()
    spine = x0 + unit * (0.04 + 0.16 * sway) * rise * np.sin(2 * math.pi * (freq * rise + ph - rising))
    spine += unit * 0.05 * geo.wobble(rng, n_pts, smooth=6) * rise
    width = unit * (0.01 + (0.16 if sheet else 0.04) * rise**1.3 * (0.5 + sway)) * (1.0 + 0.3 * hit)
    twist = np.cos(
        2 * math.pi * (0.6 + 0.8 * rng.random()) * rise + 2 * math.pi * rng.random() - 2 * math.pi * rising
    )
    fade = np.clip(1.2 - rise, 0, 1)
    threads = s.count(22 if sheet else 5, lo=3, hi=40)
    colour = pal.highlight.mix(pal.ink(i), 0.35) if pal.dark else pal.ink(i).mix(pal.shadow, 0.2)
    ys = s.y(v)
    alpha = (0.11 if sheet else 0.14) * (0.8 + 0.6 * look.energy) * (1.0 if pal.dark else 2.0)
    alpha *= 1.0 + 0.8 * hit
    if sheet:
        edge = width * twist * 0.5
        body = geo.polyline(
            np.concatenate([spine - edge, (spine + edge)[::-1]]), np.concatenate([ys, ys[::-1]]), closed=True
        )
        if pal.dark:  # smoke catches the light: its volume goes on the glow layer, blurred there
            s.ink.bloom(body, colour, (0.25 + 0.2 * look.energy) * (1.0 + 0.6 * hit))
        else:
            s.ink.fill(body, colour, (0.3 + 0.2 * look.energy) * (1.0 + 0.5 * hit))
    for t in np.linspace(-0.5, 0.5, threads):
        xs = spine + width * twist * t + unit * 0.01 * t * np.sin(9 * rise + 3 * t)
        s.ink.stroke(
            geo.spline(xs, ys),
            colour,
            unit * (0.0011 + 0.0008 * look.softness),
            alpha * float(fade.mean() + 0.4),
        )

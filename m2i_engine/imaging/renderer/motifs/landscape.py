"""Country and folk: layered hills fading into haze under a sun, a fence along the nearest ridge.

- energy curve: the nearest ridge is the song's energy over time; farther ridges echo it, smoother;
- beats: one fence post per beat along the ridge, downbeat posts taller;
- mood: the sun stands high for happy songs and sets for sad ones;
- energy: how many ridges.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): the fence post of each beat jumps
when the loop reaches it; the near hills heave on beats, more the nearer they are; the sun flares on
downbeats and bobs once every two bars; the furrows darken on beats.
"""

from __future__ import annotations

import numpy as np
import skia

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.palette import RGB
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng, pal = s.look, s.rng, s.palette
    unit = s.unit
    rhythm = look.rhythm
    sky_top, sky_bottom = pal.ground
    glow = pal.accent.mix(pal.highlight, 0.45) if not pal.dark else pal.accent.mix(sky_bottom, 0.55)
    if s.backdrop:  # sky: the ground colour overhead, warm light at the horizon
        shader = skia.GradientShader.MakeLinear(
            [skia.Point(0, s.top), skia.Point(0, s.y(0.75))],
            [sky_top.mix(pal.ink(3), 0.25).argb(), sky_bottom.argb(), glow.argb()],
            [0, 0.5, 1],
        )
        s.ink.fill(geo.rect(s.left, s.top, s.w, s.h), sky_top, 1.0, shader=shader, plain=True)
        sky_bottom = glow

    m = s.motion
    sun_y = s.y(0.42 - 0.22 * (look.valence + 1) / 2 + 0.015 * m.sway(2))
    sun_x = s.x(0.2 + 0.6 * rng.random())
    sun_r = unit * (0.08 + 0.03 * look.energy) * (0.75 + 0.5 * rng.random()) * (1.0 + 0.08 * m.downbeat)
    s.ink.light(sun_x, sun_y, sun_r * 4, pal.accent, 0.7 * (1.0 + 0.6 * m.pulse))
    s.ink.fill(geo.circle(sun_x, sun_y, sun_r * 1.25), pal.accent, 0.22)
    s.ink.fill(geo.circle(sun_x, sun_y, sun_r), pal.accent.mix(pal.highlight, 0.3), 1.0)

    layers = s.count(4.5, lo=2, hi=7)
    n_pts = 160
    u = np.linspace(0, 1, n_pts)
    xs = s.x(u)
    bottom = s.top + s.h + 2
    haze: RGB = sky_bottom.mix(pal.highlight, 0.15)
    near = pal.shadow.mix(pal.ink(2), 0.3)
    ridge = None
    for k in range(layers):
        depth = k / max(layers - 1, 1)  # 0 far … 1 near
        horizon = 0.5 + 0.3 * depth + 0.06 * (rng.random() - 0.5)
        smooth = 1.0 - depth
        offset = rng.random()
        profile = look.flow_at((u * (1.0 - 0.4 * smooth) + offset * smooth) % 1.0)
        height = (0.1 + 0.18 * look.energy) * (1.0 - 0.35 * depth) * (1.0 + 0.12 * depth * m.pulse)
        ys = s.y(horizon - height * profile + 0.02 * geo.wobble(rng, n_pts, smooth=10 + 30 * depth))
        colour = haze.mix(pal.ink(k), 0.35 + 0.45 * depth).mix(near, depth**2.5)
        path = geo.below(xs, ys, bottom)
        s.ink.fill(path, colour, 1.0)
        ridge = ys
    if ridge is not None and s.detail:
        _furrows(s, xs, ridge, bottom)
        if rhythm.count:
            _fence(s, xs, ridge)


def _furrows(s: Scene, xs: np.ndarray, ridge: np.ndarray, bottom: float) -> None:
    """Field rows on the nearest hill, following its ridge; more of them in energetic songs."""
    look, pal = s.look, s.palette
    rows = s.count(10, lo=2, hi=24)
    colour = pal.shadow.mix(pal.ink(1), 0.5)
    for k in range(1, rows + 1):
        f = (k / (rows + 1)) ** 1.6  # rows crowd toward the ridge (perspective)
        ys = ridge + (bottom - ridge) * f + s.unit * 0.01
        s.ink.stroke(
            geo.polyline(xs, ys),
            colour,
            s.unit * (0.0015 + 0.003 * f),
            (0.35 + 0.3 * look.energy) * (1.0 + 0.4 * s.motion.pulse),
            cap="butt",
        )


def _fence(s: Scene, xs: np.ndarray, ridge: np.ndarray) -> None:
    look, pal = s.look, s.palette
    rhythm = look.rhythm
    unit = s.unit
    px = s.x(0.04 + 0.92 * rhythm.positions)
    base = np.interp(px, xs, ridge) + unit * 0.02
    tall = unit * np.where(rhythm.accents, 0.085, 0.055)
    tall *= 1.0 + 0.8 * np.array([s.motion.beat(i) for i in range(rhythm.count)])
    colour = pal.shadow
    for x, b, t in zip(px, base, tall, strict=True):
        s.ink.stroke(
            geo.polyline(np.array([x, x]), np.array([b, b - t])), colour, unit * 0.006, 0.95, cap="butt"
        )
    for frac in (0.45, 0.8):
        ys = base - tall.min() * frac
        s.ink.stroke(geo.spline(px, ys), colour, unit * 0.0018, 0.8)

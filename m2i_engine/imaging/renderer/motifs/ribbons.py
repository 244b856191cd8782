"""Classical: silk ribbons that flow across the frame and turn over once per bar, over faint arcs.

- tempo/metre: each ribbon twists through edge-on at every downbeat, so a bar is one turn of silk;
  the arcs behind come in groups of the bar's beat count, the first of each group stronger;
- energy curve: the ribbons' swell (amplitude and width) along their length;
- energy: how many ribbons; percussiveness: a fine ripple on the threads; softness: thread sheen.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): the silk's wave flows to and fro and
its turns roll along the ribbon, every two bars, further when the music is louder; the ribbons swell on
beats and their threads shimmer once per beat; the downbeat arcs flash on downbeats.
"""

from __future__ import annotations

import math

import numpy as np
import skia

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.palette import RGB
from m2i_engine.imaging.renderer.scene import Scene

_STOPS = 48


def draw(s: Scene) -> None:
    _arcs(s)
    n_ribbons = s.count(3.2, lo=2, hi=6)
    for r in range(n_ribbons):
        depth = (r + 1) / n_ribbons  # back … front
        _ribbon(s, r, n_ribbons, depth, s.rng.random(4))


def _ribbon(s: Scene, r: int, n: int, depth: float, rnd: np.ndarray) -> None:
    look, pal, m = s.look, s.palette, s.motion
    unit = s.unit
    n_pts = 150
    u = np.linspace(-0.1, 1.1, n_pts)
    uc = np.clip(u, 0, 1)
    xs = s.x(u)
    flow = look.flow_at(uc)
    base = 0.22 + 0.56 * (r + 0.5) / n + 0.1 * (rnd[0] - 0.5)
    periods = 0.55 + 0.8 * rnd[1]
    amp = (0.08 + 0.12 * look.energy) * (0.7 + 0.5 * rnd[2]) * (1.0 + 0.3 * m.pulse)
    # animated: the silk's wave flows to and fro along the ribbon, further in louder bars
    flow_rad = 0.5 * m.sway(2, 0.25 * r) * (1 if r % 2 else -1)
    centre = base + amp * np.sin(2 * math.pi * (periods * u + rnd[3]) + flow_rad) * (0.4 + 0.8 * flow)
    cy = s.y(centre)
    width = unit * (0.08 + 0.1 * look.energy) * (0.5 + 0.8 * flow) * (0.6 + 0.6 * depth)
    width *= 1.0 + 0.35 * m.pulse
    twist = np.cos(math.pi * look.rhythm.bar_phase(uc) + 0.6 * rnd[0] + 0.4 * m.sway(2, 0.5 + 0.25 * r))
    top, bottom = cy - 0.5 * width * twist, cy + 0.5 * width * twist

    front, back = pal.ink(r), pal.ink(r + 2)
    shader = _silk_shader(s, xs, twist, front, back, pal.shadow, pal.highlight)
    alpha = 0.55 + 0.4 * depth
    # one simple polygon per half-turn: a band that crosses itself at every twist fills slowly
    body = skia.Path()
    flips = np.flatnonzero(np.diff(np.sign(twist)) != 0) + 1
    for seg in np.split(np.arange(xs.size), flips):
        lo, hi = max(int(seg[0]) - 1, 0), min(int(seg[-1]) + 2, xs.size)
        body.addPath(geo.band(xs[lo:hi], top[lo:hi], bottom[lo:hi]))
    s.ink.fill(body, front, alpha, shader=shader)
    s.ink.bloom(body, front, 0.25 * depth)

    # silk threads: a sheen of fine lines across the ribbon
    threads = 9 + int(8 * (1 - look.softness))
    ripple = look.percussiveness * 0.005 * unit
    for j in range(threads):
        t = (j + 0.5) / threads - 0.5
        ys = cy + width * twist * t + ripple * np.sin(35 * u + 7 * t + 9 * rnd[1] + 2 * math.pi * m.beats)
        s.ink.stroke(
            geo.polyline(xs, ys), pal.highlight, unit * 0.0011, (0.12 + 0.2 * (1 - 2 * abs(t))) * alpha
        )
    s.ink.stroke(geo.polyline(xs, top), pal.highlight.mix(front, 0.3), unit * 0.0018, 0.6 * alpha)


def _silk_shader(
    s: Scene, xs: np.ndarray, twist: np.ndarray, front: RGB, back: RGB, shadow: RGB, light: RGB
) -> skia.Shader:
    """Colour along the ribbon: the face that shows (front or back), lit when it faces the viewer,
    dark where it turns edge-on."""
    # evenly spaced stops: skia has a fast path for those (uneven ones cost ~5× per pixel)
    sample_x = np.linspace(float(xs[0]), float(xs[-1]), _STOPS)
    colours = []
    for tw in np.interp(sample_x, xs, twist).tolist():
        face = front if tw >= 0 else back
        facing = abs(tw)
        c = face.mix(shadow, 0.55 * (1 - facing) ** 2).mix(light, 0.3 * facing**4)
        colours.append(c.argb())
    return skia.GradientShader.MakeLinear(
        [skia.Point(float(xs[0]), 0), skia.Point(float(xs[-1]), 0)], colours
    )


def _arcs(s: Scene) -> None:
    """Concentric arcs from a centre below the frame, grouped in bars."""
    look, rng, pal = s.look, s.rng, s.palette
    per_bar = look.rhythm.beats_per_bar
    n = s.count(2.5, lo=1, hi=4) * per_bar
    cx = s.x(0.2 + 0.6 * rng.random())
    cy = s.y(1.0 + 0.2 * rng.random())
    r0 = s.unit * (0.2 + 0.1 * rng.random())
    step = s.unit * 1.0 / n
    line = pal.shadow if not pal.dark else pal.highlight
    for i in range(n):
        downbeat = i % per_bar == 0
        r = float(r0 + i * step)
        path = skia.Path()
        path.addArc(
            skia.Rect.MakeLTRB(cx - r, cy - r, cx + r, cy + r),
            180 + 10 * rng.random(),
            160 + 20 * rng.random(),
        )
        flash = 1.0 + s.motion.downbeat if downbeat else 1.0 + 0.5 * s.motion.pulse
        s.ink.stroke(
            path,
            pal.accent if downbeat else line,
            s.unit * (0.0035 if downbeat else 0.001) * flash,
            (0.55 if downbeat else 0.25) * flash,
        )

"""Electronic and disco: concentric pulses around a light source — a striped synth sun over a
perspective beat grid (electronic) or a mirror ball throwing lights (disco).

- beats: one ring per beat of the window, spaced by the real beat timing; downbeat rings thick and
  in the accent colour; the grid's cross lines and the sun's stripes fall on beats too;
- energy curve: a ripple on every ring (a radial waveform of the song), the mountain range on the
  horizon, and how big the mirror ball's lights are around the circle;
- energy: ring weight, grid lines, how many lights.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): every beat swells the rings and
thickens the ring of that beat; the sun's stripes step down one stripe per beat and the sun and the
mountains jump on beats; the floor's line of the beat flashes; the ripple sways and the mirror ball's
lights turn.
"""

from __future__ import annotations

import math

import numpy as np
import skia

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng = s.look, s.rng
    unit = s.unit
    disco = look.genre == "disco"
    cx = s.x(0.5 + 0.24 * (rng.random() - 0.5))
    cy = s.y(0.45 + 0.12 * (rng.random() - 0.5))
    horizon = cy + unit * 0.02
    max_r = 0.62 * math.hypot(s.w, s.h) * 0.6
    _rings(
        s,
        cx,
        cy,
        max_r,
        rotation=2 * math.pi * rng.random() + 0.15 * s.motion.sway(2),
        turn=0.12 if disco else 0.0,
    )
    if disco:
        _lights(s, cx, cy, max_r)
        _mirror_ball(s, cx, cy, unit * (0.12 + 0.04 * look.energy) * (0.85 + 0.3 * rng.random()))
    else:
        _sun(s, cx, horizon, unit * (0.15 + 0.05 * look.energy) * (0.8 + 0.4 * rng.random()))
        if s.backdrop:
            _mountains(s, horizon)
            _floor(s, horizon)
        else:  # a small frame keeps only the horizon line
            s.ink.stroke(
                geo.polyline(np.array([s.left, s.left + s.w]), np.array([horizon] * 2)),
                s.palette.highlight,
                unit * 0.004,
                0.9,
                cap="butt",
            )


def _rings(s: Scene, cx: float, cy: float, max_r: float, *, rotation: float, turn: float) -> None:
    look, pal, m = s.look, s.palette, s.motion
    rhythm = look.rhythm
    unit = s.unit
    theta_u = np.linspace(0, 1, 180, endpoint=False)
    # the song runs round each half of the circle and back, so the outline closes smoothly
    around = 1.0 - np.abs(2.0 * theta_u - 1.0)
    ripple = look.flow_at(around) - 0.5
    ripple -= ripple.mean()
    n = max(rhythm.count, 1)
    r0 = unit * 0.2
    for i in range(n):
        p = float(rhythm.positions[i]) if rhythm.count else 0.0
        accent = bool(rhythm.accents[i]) if rhythm.count else True
        r = r0 + (max_r - r0) * (p + 0.5 / n)
        hit = m.beat(i)
        r *= 1.0 + 0.03 * m.pulse + 0.03 * hit
        amp = r * (0.03 + 0.14 * look.energy * look.percussiveness) * (1.4 if accent else 1.0)
        amp *= 1.0 + 0.6 * m.pulse
        path = geo.radial(cx, cy, r + 2 * amp * ripple, rotation=rotation + turn * i)
        fade = 1.0 - 0.55 * p
        colour = pal.accent if accent else pal.ink(i)
        width = unit * (0.005 if accent else 0.0018) * (0.6 + 0.8 * look.energy) * (1.0 + 0.8 * hit)
        quiet = 0.3 if s.ink.mode == "neon" else 0.5  # glowing rings add up fast
        s.ink.stroke(path, colour, width, (0.8 if accent else quiet) * fade * (1.0 + 0.5 * hit))


def _sun(s: Scene, cx: float, horizon: float, r: float) -> None:
    """A synth sun on the horizon: a gradient disc cut by stripes that widen toward the bottom,
    one stripe per beat of a bar."""
    look, pal, m = s.look, s.palette, s.motion
    top = horizon - 1.6 * r
    cy = horizon - 0.6 * r
    r *= 1.0 + 0.08 * m.downbeat + 0.03 * m.pulse  # the disc beats; its stripes stay on the grid
    disc = geo.circle(cx, cy, r)
    s.ink.light(cx, cy, r * 2.2, pal.accent, 0.45 * (1.0 + m.pulse))
    shader = skia.GradientShader.MakeLinear(
        [skia.Point(cx, top), skia.Point(cx, horizon)],
        [pal.highlight.mix(pal.ink(1), 0.3).argb(), pal.accent.argb(), pal.ink(2).argb()],
        [0.0, 0.55, 1.0],
    )
    cut = skia.Path()
    per_bar = look.rhythm.beats_per_bar
    roll = m.steps() % 1.0  # animated: the stripes step down one place per beat, a new one grows in
    for k in range(-1, per_bar + 1):
        kk = k + roll
        grow = min(kk + 1.0, 1.0)
        f = 0.45 + 0.55 * kk / (per_bar + 0.5)  # stripes start below the sun's middle
        y = top + (horizon - top) * f
        gap = r * (0.02 + 0.07 * kk / per_bar) * grow
        if gap <= 0.0:
            continue
        cut.addRect(skia.Rect.MakeLTRB(cx - r - 2, y, cx + r + 2, y + gap))
    visible = skia.Op(disc, cut, skia.PathOp.kDifference_PathOp)
    clip = geo.rect(cx - r - 2, top - 2, 2 * r + 4, horizon - top + 2)
    with s.ink.clip(clip):
        s.ink.fill(visible, pal.accent, 1.0, shader=shader, plain=True)
        s.ink.bloom(visible, pal.accent, 0.2)


def _mountains(s: Scene, horizon: float) -> None:
    """Wireframe peaks along the horizon: the song's energy curve as a mountain range."""
    look, rng, pal = s.look, s.rng, s.palette
    n = 120
    u = np.linspace(0, 1, n)
    start, span = 0.3 * rng.random(), 0.6 + 0.4 * rng.random()
    ridge = look.flow_at(np.clip(start + span * u, 0, 1))
    jag = np.abs(np.sin(np.pi * (6 + 6 * rng.random()) * u + 3 * rng.random()))
    height = s.unit * (0.04 + 0.12 * look.energy) * (0.35 + 0.65 * ridge) * (0.55 + 0.45 * jag)
    height *= 1.0 + 0.25 * s.motion.pulse
    xs = s.x(u)
    ys = horizon - height
    body = geo.below(xs, ys, horizon + 1)
    s.ink.fill(body, pal.shadow.mix(pal.ink(2), 0.15), 0.95, plain=True)
    s.ink.stroke(geo.polyline(xs, ys), pal.ink(2), s.unit * 0.0025, 0.9)
    for k in range(1, 4):  # contour lines down the slopes
        s.ink.stroke(geo.polyline(xs, horizon - height * (1 - k / 4)), pal.ink(2), s.unit * 0.0012, 0.35)


def _floor(s: Scene, horizon: float) -> None:
    """A grid floor in perspective below the horizon; cross lines on beats."""
    look, pal, m = s.look, s.palette, s.motion
    rhythm = look.rhythm
    bottom = s.top + s.h
    depth = bottom - horizon
    if depth <= 0:
        return
    floor = geo.rect(s.left, horizon, s.w, depth + 2)
    far, near = (
        (pal.ink(2).scale(0.25), pal.shadow)
        if pal.dark
        else (pal.ground[1].mix(pal.ink(2), 0.2), pal.ground[1])
    )
    shader = skia.GradientShader.MakeLinear(
        [skia.Point(0, horizon), skia.Point(0, bottom)], [far.argb(), near.argb()]
    )
    s.ink.fill(floor, pal.shadow, 0.92, shader=shader, plain=True)
    colour = pal.ink(2)
    vx = s.cx
    n_lines = s.count(18, lo=8, hi=34)
    spread = s.w * 3.0
    for k in range(n_lines + 1):
        x_end = vx - spread / 2 + spread * k / n_lines
        s.ink.stroke(
            geo.polyline(np.array([vx, x_end]), np.array([horizon, bottom + 2])),
            colour,
            s.unit * 0.0018,
            0.5,
            cap="butt",
        )
    pos = rhythm.positions if rhythm.count else np.array([0.0])
    accents = rhythm.accents if rhythm.count else np.array([True])
    for i, (p, acc) in enumerate(zip(pos, accents, strict=True)):
        y = horizon + depth * float(p) ** 1.8
        hit = 1.0 + 1.5 * m.beat(i)  # animated: the line of the beat flashes
        s.ink.stroke(
            geo.polyline(np.array([s.left, s.left + s.w]), np.array([y, y])),
            pal.accent if acc else colour,
            s.unit * (0.003 if acc else 0.0015) * hit,
            (0.75 if acc else 0.45) * hit,
            cap="butt",
        )
    s.ink.stroke(
        geo.polyline(np.array([s.left, s.left + s.w]), np.array([horizon, horizon])),
        pal.highlight,
        s.unit * 0.003,
        0.9,
        cap="butt",
    )


def _mirror_ball(s: Scene, cx: float, cy: float, r: float) -> None:
    """A sphere of mirror tiles: latitude/longitude quads in a few shades, some catching light."""
    rng, pal = s.rng, s.palette
    lat_n, lon_n = 14, 18
    lat = np.linspace(-math.pi / 2, math.pi / 2, lat_n + 1)
    lon = np.linspace(-math.pi / 2, math.pi / 2, lon_n + 1) + 0.3 * rng.random()
    shades = [skia.Path() for _ in range(5)]
    for i in range(lat_n):
        for j in range(lon_n):
            la = (lat[i], lat[i], lat[i + 1], lat[i + 1])
            lo = (lon[j], lon[j + 1], lon[j + 1], lon[j])
            xs = np.array([cx + r * math.cos(a) * math.sin(b) for a, b in zip(la, lo, strict=True)])
            ys = np.array([cy - r * math.sin(a) for a in la])
            light = 0.5 + 0.5 * math.cos(lon[j] + 0.6) * math.cos(lat[i] - 0.5)
            k = int(np.clip(light * 4.6 + rng.random() * 1.0 - 0.6, 0, 4))
            shades[k].addPoly([skia.Point(float(x), float(y)) for x, y in zip(xs, ys, strict=True)], True)
    base = pal.ink(0).mix(pal.shadow, 0.6)
    for k, path in enumerate(shades):
        colour = base.mix(pal.highlight, k / 4)
        s.ink.fill(path, colour, 1.0, plain=True)
        s.ink.stroke(path, pal.shadow, s.unit * 0.0012, 0.45, plain=True)  # the grout
    s.ink.stroke(geo.circle(cx, cy, r), pal.highlight, s.unit * 0.002, 0.6)
    s.ink.bloom(shades[4], pal.highlight, 0.9)
    # a four-point glint where the light hits
    gx, gy, g = cx - 0.35 * r, cy - 0.4 * r, 0.45 * r
    glint = geo.polyline(
        np.array([gx, gx + 0.08 * g, gx + g, gx + 0.08 * g, gx, gx - 0.08 * g, gx - g, gx - 0.08 * g]),
        np.array([gy - g, gy - 0.08 * g, gy, gy + 0.08 * g, gy + g, gy + 0.08 * g, gy, gy - 0.08 * g]),
        closed=True,
    )
    if s.motion.downbeat:  # animated: the glint flares on downbeats
        flare = skia.Matrix.Scale(1.0 + 0.6 * s.motion.downbeat, 1.0 + 0.6 * s.motion.downbeat)
        flare.preTranslate(-gx, -gy)
        flare.postTranslate(gx, gy)
        glint.transform(flare)
    s.ink.fill(glint, pal.highlight, 0.95, plain=True)
    s.ink.bloom(glint, pal.highlight, 1.0)


def _lights(s: Scene, cx: float, cy: float, max_r: float) -> None:
    """The ball's reflections: rings of small lights, bigger where the energy curve is high."""
    look, rng, pal, mo = s.look, s.rng, s.palette, s.motion
    rings = s.count(7, lo=3, hi=12)
    pts, radii = [], []
    for k in range(rings):
        r = s.unit * 0.2 + (max_r - s.unit * 0.2) * k / rings
        m = int(10 + r / s.unit * 60)
        a = np.linspace(0, 2 * math.pi, m, endpoint=False) + rng.random()
        # animated: each ring of lights turns one light's place per bar, alternate rings opposite
        a += (1 if k % 2 else -1) * 2 * math.pi / m * mo.cycles(1)
        pts.append(np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1))
        around = 1.0 - np.abs(2.0 * ((a / (2 * math.pi)) % 1.0) - 1.0)
        radii.append(s.unit * (0.002 + 0.006 * look.flow_at(around)))
    xy, rr = np.concatenate(pts), np.concatenate(radii)
    s.ink.dots(xy, rr * (1.0 + 0.8 * mo.pulse), pal.highlight, 0.8)

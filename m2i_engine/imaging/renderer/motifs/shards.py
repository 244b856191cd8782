"""Metal: a pane shattered from one point of impact into sharp metallic shards.

- tempo: one crack radiates per beat of the window (faster songs shatter finer); downbeat cracks run
  to the edge and catch the accent colour;
- energy curve: the reach of the shattered area around the circle (a radial waveform);
- energy: how far the shards are blown apart; percussiveness: how jagged the cracks are.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): on every beat the shards burst
outward and settle back; the crack of each beat flashes when the loop reaches it, downbeat cracks
brightest; the point of impact glows on beats.
"""

from __future__ import annotations

import math

import numpy as np
import skia

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.palette import RGB
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng, pal, m = s.look, s.rng, s.palette, s.motion
    unit = s.unit
    rhythm = look.rhythm
    cx = s.x(0.5 + 0.16 * (rng.random() - 0.5))
    cy = s.y(0.5 + 0.16 * (rng.random() - 0.5))

    if rhythm.count >= 5:
        pos, accents = rhythm.positions[:44], rhythm.accents[:44]
    else:  # very slow songs: too few beats to shatter, so split the window evenly
        pos = np.arange(5) / 5.0
        accents = np.arange(5) == 0
    n_rays = pos.size
    rotation = 2 * math.pi * rng.random()
    angles = rotation + 2 * math.pi * pos + (rng.random(n_rays) - 0.5) * 0.5 / n_rays * 2 * math.pi
    angles = np.sort(angles)
    reach = unit * (0.32 + 0.38 * look.flow_at(pos)) * (1.0 + 0.25 * accents)
    reach *= max(s.w, s.h) / unit * 0.75 + 0.25

    n_rings = s.count(5.0, lo=3, hi=8)
    fracs = np.sort(np.concatenate([[0.0], rng.random(n_rings - 1) * 0.9 + 0.05, [1.0]]))
    fracs = fracs**1.35  # finer near the impact
    jag = 0.06 + 0.2 * look.percussiveness
    radii = reach[:, None] * (
        fracs[None, :] + jag * (rng.random((n_rays, fracs.size)) - 0.5) * (fracs[None, :] > 0)
    )
    radii[:, 0] = 0.0
    spread = unit * (0.004 + 0.035 * look.energy) * (1.0 + 0.8 * m.pulse)
    steel = [pal.ink(i) for i in range(len(pal.inks))]

    for i in range(n_rays):
        j = (i + 1) % n_rays
        a0, a1 = angles[i], angles[j] + (2 * math.pi if j == 0 else 0.0)
        for k in range(fracs.size - 1):
            if rng.random() < 0.12 * (1.2 - s.density) and k > 0:
                continue
            ra0, ra1, rb0, rb1 = radii[i, k], radii[j, k], radii[i, k + 1], radii[j, k + 1]
            mid_a = 0.5 * (a0 + a1)
            push = spread * (k + 1) * (0.6 + 0.8 * rng.random())
            ox, oy = push * math.cos(mid_a), push * math.sin(mid_a)
            xs = (
                np.array([ra0 * math.cos(a0), rb0 * math.cos(a0), rb1 * math.cos(a1), ra1 * math.cos(a1)])
                + cx
                + ox
            )
            ys = (
                np.array([ra0 * math.sin(a0), rb0 * math.sin(a0), rb1 * math.sin(a1), ra1 * math.sin(a1)])
                + cy
                + oy
            )
            path = geo.polyline(xs, ys, closed=True)
            lit = rng.random()
            accent_shard = (accents[i] and k == fracs.size - 2) or rng.random() < 0.04
            face: RGB = pal.accent if accent_shard else steel[int(rng.integers(0, len(steel)))]
            light_dir = 0.5 + 0.5 * math.cos(mid_a - 2.2)
            c_hi = face.mix(pal.highlight, 0.15 + 0.45 * lit * light_dir)
            c_lo = face.mix(pal.shadow, 0.35 + 0.4 * (1 - lit))
            shader = skia.GradientShader.MakeLinear(
                [skia.Point(float(xs[0]), float(ys[0])), skia.Point(float(xs[2]), float(ys[2]))],
                [c_hi.argb(), c_lo.argb()],
            )
            s.ink.fill(path, face, 0.96, shader=shader)
            s.ink.stroke(
                geo.polyline(xs[1:3], ys[1:3]), pal.highlight, unit * 0.0012, 0.25 + 0.5 * lit * light_dir
            )
    # the cracks themselves, brightest on downbeats
    for i in range(n_rays):
        end = reach[i] * (1.15 if accents[i] else 0.9)
        steps = np.linspace(0, 1, 7)
        wig = jag * 0.12 * end * (rng.random(7) - 0.5) * (steps > 0)
        xs = cx + steps * end * math.cos(angles[i]) - wig * math.sin(angles[i])
        ys = cy + steps * end * math.sin(angles[i]) + wig * math.cos(angles[i])
        colour = pal.accent if accents[i] else pal.highlight
        path = geo.polyline(xs, ys)
        flash = 1.0 + 1.2 * m.beat(i)  # animated: this beat's crack flashes
        s.ink.stroke(
            path,
            colour,
            unit * (0.004 if accents[i] else 0.0015) * flash,
            (0.85 if accents[i] else 0.4) * flash,
            cap="butt",
        )
        if accents[i]:
            s.ink.bloom(path, pal.accent, 0.7 * flash, width=unit * 0.01)
    s.ink.bloom(geo.circle(cx, cy, unit * 0.06 * (1.0 + 0.5 * m.pulse)), pal.highlight, 0.8)
    s.ink.fill(geo.circle(cx, cy, unit * 0.012), pal.highlight, 0.9)

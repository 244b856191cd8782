"""Hip-hop: a hand-stacked tower of heavy slabs with hard drop shadows, in front of big colour
blocks and a halftone sun.

- beats: one slab per beat of the window, stacked upward in time order (faster songs stack finer);
  downbeat slabs are thicker and in the accent colour;
- energy curve: each slab's width (the tower's silhouette is the song's energy);
- energy: halftone weight and the size of the background blocks; percussiveness: how loosely the
  slabs are stacked.

Animated (:class:`~m2i_engine.imaging.renderer.motion.Motion`): the slab of each beat jumps out of
the tower when the loop reaches that beat (sideways and up, a downbeat slab furthest) and the tower
leans with the energy; the halftone sun pulses on beats; the backdrop blocks sway per bar.
"""

from __future__ import annotations

import numpy as np

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.motion import stagger
from m2i_engine.imaging.renderer.scene import Scene


def draw(s: Scene) -> None:
    look, rng, pal, m = s.look, s.rng, s.palette, s.motion
    unit = s.unit
    rhythm = look.rhythm
    if s.backdrop:
        _backdrop_blocks(s)
    _halftone_sun(s)

    pos = rhythm.positions if rhythm.count else np.array([0.0])
    acc = rhythm.accents if rhythm.count else np.array([True])
    keep = min(len(pos), 24)
    pos, acc = pos[:keep], acc[:keep]
    weights = np.where(acc, 1.7, 1.0)
    total_h = s.h * 0.72
    heights = total_h * weights / weights.sum()
    widths = s.w * (0.16 + 0.5 * look.flow_at(pos)) * (0.85 + 0.3 * rng.random(keep))
    loose = 0.01 + 0.05 * look.percussiveness
    shadow_off = unit * 0.02
    line = unit * 0.004
    y = s.y(0.9)
    cx = s.x(0.5 + 0.1 * (rng.random() - 0.5))
    grooves = round(3 * look.energy)
    for i in range(keep):
        h, w = float(heights[i]), float(widths[i])
        x = cx - w / 2 + s.w * loose * (rng.random() - 0.5)
        y -= h
        angle = (rng.random() - 0.5) * 6.0 * look.percussiveness
        hit = m.beat(i)  # animated: this beat's slab jumps out of the tower, the tower sways
        x += s.w * (0.06 * hit * (1 if i % 2 else -1) + 0.01 * m.sway(2) * (i + 1) / keep)
        angle += 4.0 * hit * (1 if i % 2 else -1)
        colour = pal.accent if acc[i] else pal.ink(i % 3 + (1 if i % 2 else 0))
        with s.ink.transformed(rotate_deg=angle, about=(x + w / 2, y + h / 2)):
            s.ink.fill(
                geo.rect(x + shadow_off * (1 + 2 * hit), y + shadow_off * (1 + 2 * hit), w, h),
                pal.shadow,
                0.95,
            )
            body = geo.rect(x, y, w, h)
            s.ink.fill(body, colour, 1.0)
            s.ink.fill(geo.rect(x, y, w, h * 0.18), pal.highlight, 0.25)  # top light
            for g in range(grooves):  # cut grooves: louder songs are more worked
                gy = y + h * (g + 1) / (grooves + 1)
                s.ink.stroke(
                    geo.polyline(np.array([x + 0.06 * w, x + 0.94 * w]), np.array([gy, gy])),
                    pal.shadow,
                    line * 0.6,
                    0.6,
                    cap="butt",
                )
            s.ink.stroke(body, pal.shadow, line, 1.0, cap="square")
    if s.backdrop:  # a bold plinth the tower stands on
        ground = s.y(0.9)
        s.ink.fill(geo.rect(s.left - 2, ground, s.w + 4, s.top + s.h - ground + 2), pal.shadow, 1.0)


def _backdrop_blocks(s: Scene) -> None:
    """Two or three big flat blocks behind everything, slightly rotated."""
    look, rng, pal = s.look, s.rng, s.palette
    for k in range(2 + int(rng.integers(0, 2))):
        w = s.w * (0.35 + 0.35 * rng.random()) * (0.8 + 0.4 * look.energy)
        h = s.h * (0.3 + 0.4 * rng.random())
        x = s.x(rng.random() * 0.8) - w * 0.3
        y = s.y(rng.random() * 0.7) - h * 0.2
        tilt = (rng.random() - 0.5) * 14 + 2.5 * s.motion.sway(2, stagger(k))
        with s.ink.transformed(rotate_deg=tilt, about=(x + w / 2, y + h / 2)):
            s.ink.fill(geo.rect(x, y, w, h), pal.ink(k + 3), 0.55)


def _halftone_sun(s: Scene) -> None:
    """A big disc in halftone dots whose size falls off across it (printed shading)."""
    look, rng, pal = s.look, s.rng, s.palette
    unit = s.unit
    cx = s.x(0.3 + 0.4 * rng.random())
    cy = s.y(0.28 + 0.1 * rng.random())
    radius = unit * (0.27 + 0.08 * look.energy) * (1.0 + 0.05 * s.motion.pulse)
    step = unit * (0.024 - 0.006 * look.energy)
    g = np.arange(-radius, radius + step, step)
    gx, gy = np.meshgrid(g, g)
    gx[1::2] += step / 2  # offset rows like a print screen
    inside = gx**2 + gy**2 <= radius**2
    gx, gy = gx[inside], gy[inside]
    shade = np.clip(0.5 + 0.5 * (gx + gy) / (1.4 * radius), 0, 1)
    radii = step * 0.52 * (0.2 + 0.8 * (1 - shade)) * (1.0 + 0.3 * s.motion.downbeat)
    s.ink.fill(geo.circle(cx, cy, radius), pal.accent.mix(pal.highlight, 0.5), 0.9)
    s.ink.dots(np.stack([cx + gx, cy + gy], 1), radii, pal.accent.mix(pal.shadow, 0.15), 1.0)

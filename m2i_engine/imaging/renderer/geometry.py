"""Path building: numpy point arrays in, smooth antialiasable skia paths out.

Motifs think in arrays of coordinates; these helpers turn them into :class:`skia.Path` objects
(polylines, Catmull-Rom splines, bands between two curves, polygons) and make the small noises
that keep hand-made shapes from looking machine-drawn.
"""

from __future__ import annotations

import math

import numpy as np
import skia


def polyline(xs: np.ndarray, ys: np.ndarray, *, closed: bool = False) -> skia.Path:
    """Straight segments through the points."""
    pts = [skia.Point(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    return skia.Path.Polygon(pts, closed)


def spline(xs: np.ndarray, ys: np.ndarray, *, closed: bool = False) -> skia.Path:
    """A smooth curve through the points (uniform Catmull-Rom as cubic Béziers)."""
    pts = np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1)
    n = len(pts)
    path = skia.Path()
    if n < 3:
        return polyline(pts[:, 0], pts[:, 1], closed=closed) if n else path
    if closed:
        ext = np.concatenate([pts[-1:], pts, pts[:2]])
    else:
        ext = np.concatenate([2 * pts[:1] - pts[1:2], pts, 2 * pts[-1:] - pts[-2:-1]])
    p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    c1 = p1 + (p2 - p0) / 6.0
    c2 = p2 - (p3 - p1) / 6.0
    path.moveTo(float(pts[0, 0]), float(pts[0, 1]))
    for a, b, c in zip(c1.tolist(), c2.tolist(), p2.tolist(), strict=True):
        path.cubicTo(a[0], a[1], b[0], b[1], c[0], c[1])
    if closed:
        path.close()
    return path


def band(xs: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> skia.Path:
    """The closed region between two curves over the same xs."""
    x = np.concatenate([xs, xs[::-1]])
    y = np.concatenate([top, bottom[::-1]])
    return polyline(x, y, closed=True)


def below(xs: np.ndarray, ys: np.ndarray, floor: float) -> skia.Path:
    """The region under a curve down to ``floor`` (a hill, a wave)."""
    x = np.concatenate([xs, [xs[-1], xs[0]]])
    y = np.concatenate([ys, [floor, floor]])
    return polyline(x, y, closed=True)


def circle(x: float, y: float, r: float) -> skia.Path:
    path = skia.Path()
    path.addCircle(float(x), float(y), float(max(r, 0.0)))
    return path


def ngon(x: float, y: float, r: float, sides: int, rotation: float = 0.0) -> skia.Path:
    a = rotation + np.arange(sides) * 2 * math.pi / sides
    return polyline(x + r * np.cos(a), y + r * np.sin(a), closed=True)


def rect(x: float, y: float, w: float, h: float, radius: float = 0.0) -> skia.Path:
    path = skia.Path()
    r = skia.Rect.MakeXYWH(float(x), float(y), float(w), float(h))
    if radius > 0:
        path.addRRect(skia.RRect.MakeRectXY(r, radius, radius))
    else:
        path.addRect(r)
    return path


def wobble(rng: np.random.Generator, n: int, *, octaves: int = 3, smooth: float = 8.0) -> np.ndarray:
    """Smooth 1-D noise of length ``n`` in about -1..1: a sum of random sines."""
    t = np.linspace(0.0, 1.0, n)
    out = np.zeros(n)
    for o in range(octaves):
        freq = (1.0 + rng.random()) * (2**o) * smooth / 8.0
        out += np.sin(2 * math.pi * (freq * t + rng.random())) / (1.5**o)
    return out / 1.8


def radial(
    cx: float, cy: float, radii: np.ndarray, *, rotation: float = 0.0, smooth: bool = True
) -> skia.Path:
    """A closed outline whose radius follows ``radii`` around the centre (a radial waveform)."""
    a = rotation + np.linspace(0.0, 2 * math.pi, radii.size, endpoint=False)
    xs, ys = cx + radii * np.cos(a), cy + radii * np.sin(a)
    return spline(xs, ys, closed=True) if smooth else polyline(xs, ys, closed=True)

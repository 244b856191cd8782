"""What a motif gets to draw with: the ink, the music's look, the palette, a seeded random
generator and the frame it should fill.

Motifs place everything relative to :attr:`Scene.frame`, so the same motif fills a full-bleed
canvas, the disc of a cover or the small window of a minimal poster, at any aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np
import skia

from m2i_engine.imaging.renderer.ink import Ink
from m2i_engine.imaging.renderer.look import Look
from m2i_engine.imaging.renderer.motion import STILL, Motion
from m2i_engine.imaging.renderer.palette import Palette
from m2i_engine.imaging.renderer.treatment import Treatment


@dataclass
class Scene:
    ink: Ink
    look: Look
    palette: Palette
    treatment: Treatment
    rng: np.random.Generator
    #: the area the motif fills, in pixels
    frame: skia.Rect
    #: how many shapes to draw relative to the motif's default: energy × the style's density
    density: float
    #: whether the motif may paint its own backdrop (a sky, a room); off in minimal's small frame
    backdrop: bool = True
    #: whether to draw small details (fences, note lines); off for a cover's faint echo
    detail: bool = True
    #: this instant of an animation (beat pulses, flow, camera); :data:`STILL` for a picture
    motion: Motion = STILL

    @property
    def left(self) -> float:
        return float(self.frame.left())

    @property
    def top(self) -> float:
        return float(self.frame.top())

    @property
    def w(self) -> float:
        return float(self.frame.width())

    @property
    def h(self) -> float:
        return float(self.frame.height())

    @property
    def unit(self) -> float:
        """The frame's short side: the size every length is a fraction of."""
        return min(self.w, self.h)

    @property
    def cx(self) -> float:
        return float(self.frame.centerX())

    @property
    def cy(self) -> float:
        return float(self.frame.centerY())

    @overload
    def x(self, u: float) -> float: ...
    @overload
    def x(self, u: np.ndarray) -> np.ndarray: ...

    def x(self, u: np.ndarray | float) -> np.ndarray | float:
        """Frame-relative 0..1 → pixels across (a float for a float, an array for an array)."""
        if isinstance(u, np.ndarray):
            return self.left + u.astype(float) * self.w
        return self.left + float(u) * self.w

    @overload
    def y(self, v: float) -> float: ...
    @overload
    def y(self, v: np.ndarray) -> np.ndarray: ...

    def y(self, v: np.ndarray | float) -> np.ndarray | float:
        """Frame-relative 0..1 → pixels down (a float for a float, an array for an array)."""
        if isinstance(v, np.ndarray):
            return self.top + v.astype(float) * self.h
        return self.top + float(v) * self.h

    def count(self, base: float, *, lo: int = 1, hi: int = 10_000) -> int:
        """``base`` shapes scaled by the density, at least ``lo``."""
        return int(np.clip(round(base * self.density), lo, hi))

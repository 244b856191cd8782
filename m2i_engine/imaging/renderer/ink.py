"""Drawing surfaces that ink each shape the way the style treats it.

Motifs say *what* to draw ("fill this hill in the second ink"); :class:`Ink` decides *how*: flat
with gentle gradient shading (cover, abstract, minimal, cinematic), as a dim body with a bright
tube outline and a halo (neon), or as a blurred pigment wash that darkens where washes overlap
(watercolor). It owns three layers, read back by :mod:`.texture`:

- ``main`` — full resolution, normal blending;
- ``glow`` — quarter resolution, additive light (halos, bloom, light beams), blurred later;
- ``wash`` — half resolution, white, multiplied onto the picture (watercolor pigment).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import skia

from m2i_engine.imaging.renderer.palette import RGB, WHITE
from m2i_engine.imaging.renderer.treatment import InkMode

GLOW_SCALE = 0.25
WASH_SCALE = 0.5
#: in watercolor, lines thinner than this (fraction of the short side) are pen, not brush
PEN_WIDTH = 0.004


def _surface(pixels: np.ndarray) -> skia.Surface:
    return skia.Surface(pixels, colorType=skia.kRGBA_8888_ColorType, alphaType=skia.kPremul_AlphaType)


class Ink:
    """The canvas motifs draw on. Coordinates are full-resolution pixels on every layer."""

    def __init__(self, width: int, height: int, *, mode: InkMode, shade: float = 0.0) -> None:
        self.width, self.height = width, height
        self.unit = float(min(width, height))
        self.mode = mode
        self.shade = shade
        self._opacity = 1.0
        self._effect_seed = 0

        self.main = np.zeros((height, width, 4), np.uint8)
        self._main_surface = _surface(self.main)
        self.canvas: skia.Canvas = self._main_surface.getCanvas()
        gw, gh = max(1, round(width * GLOW_SCALE)), max(1, round(height * GLOW_SCALE))
        self.glow = np.zeros((gh, gw, 4), np.uint8)
        glow_surface = _surface(self.glow)
        self._glow_canvas: skia.Canvas = glow_surface.getCanvas()
        self._glow_canvas.scale(gw / width, gh / height)
        self.wash: np.ndarray | None = None
        self._wash_canvas: skia.Canvas | None = None
        self._surfaces = [self._main_surface, glow_surface]
        if mode == "wash":
            ww, wh = max(1, round(width * WASH_SCALE)), max(1, round(height * WASH_SCALE))
            self.wash = np.full((wh, ww, 4), 255, np.uint8)
            surface = _surface(self.wash)
            self._wash_canvas = surface.getCanvas()
            self._wash_canvas.scale(ww / width, wh / height)
            self._surfaces.append(surface)

    # -- state ---------------------------------------------------------------------------------

    def _canvases(self) -> list[skia.Canvas]:
        return [c for c in (self.canvas, self._glow_canvas, self._wash_canvas) if c is not None]

    @contextmanager
    def clip(self, path: skia.Path) -> Iterator[None]:
        """Draw only inside ``path``, on every layer."""
        for c in self._canvases():
            c.save()
            c.clipPath(path, skia.ClipOp.kIntersect, True)
        try:
            yield
        finally:
            for c in self._canvases():
                c.restore()

    @contextmanager
    def transformed(
        self,
        *,
        rotate_deg: float = 0.0,
        about: tuple[float, float] = (0.0, 0.0),
        scale: float = 1.0,
        shift: tuple[float, float] = (0.0, 0.0),
    ) -> Iterator[None]:
        """Rotate (and scale, then shift: an animation's camera) everything drawn inside the block
        about a point, on every layer."""
        for c in self._canvases():
            c.save()
            if shift != (0.0, 0.0):
                c.translate(shift[0], shift[1])
            if scale != 1.0:
                c.translate(about[0], about[1])
                c.scale(scale, scale)
                c.translate(-about[0], -about[1])
            c.rotate(rotate_deg, about[0], about[1])
        try:
            yield
        finally:
            for c in self._canvases():
                c.restore()

    @contextmanager
    def faded(self, opacity: float) -> Iterator[None]:
        """Multiply the alpha of everything drawn inside the block (echoes, far layers)."""
        before = self._opacity
        self._opacity = before * opacity
        try:
            yield
        finally:
            self._opacity = before

    # -- drawing -------------------------------------------------------------------------------

    def ground(self, shader: skia.Shader) -> None:
        """Paint the whole background, untreated."""
        self.canvas.drawPaint(skia.Paint(Shader=shader))

    def fill(
        self,
        path: skia.Path,
        colour: RGB,
        alpha: float = 1.0,
        *,
        shader: skia.Shader | None = None,
        blend: skia.BlendMode | None = None,
        soft: float = 0.0,
        plain: bool = False,
    ) -> None:
        """Fill a shape. ``soft`` blurs its edge (fraction of the short side); ``plain`` skips the
        style's treatment (backgrounds, skies)."""
        a = alpha * self._opacity
        if a <= 0.0:
            return
        mode = "flat" if plain else self.mode
        if mode == "flat":
            paint = self._paint(colour, a, shader=shader, blend=blend, soft=soft)
            if shader is None and self.shade > 0.0 and not plain:
                b = path.getBounds()
                paint.setShader(
                    skia.GradientShader.MakeLinear(
                        [skia.Point(b.left(), b.top()), skia.Point(b.left(), b.bottom())],
                        [colour.argb(a), colour.scale(1.0 - 0.4 * self.shade).argb(a)],
                    )
                )
            self.canvas.drawPath(path, paint)
        elif mode == "neon":
            # a dim body, a bright tube along the outline, and the tube's halo
            edge = 0.0022 * self.unit
            self.canvas.drawPath(path, self._paint(colour, 0.14 * a, shader=shader, soft=soft))
            self.canvas.drawPath(path, self._paint(colour.mix(WHITE, 0.35), a, stroke=edge))
            self._glow_canvas.drawPath(path, self._paint(colour, 0.04 * a, blend=skia.BlendMode.kPlus))
            self._glow_canvas.drawPath(
                path, self._paint(colour, 0.7 * a, stroke=4 * edge, blend=skia.BlendMode.kPlus)
            )
        else:
            self._wash(path, colour, a, shader=shader, soft=soft)

    def stroke(
        self,
        path: skia.Path,
        colour: RGB,
        width: float,
        alpha: float = 1.0,
        *,
        cap: str = "round",
        soft: float = 0.0,
        plain: bool = False,
        blend: skia.BlendMode | None = None,
    ) -> None:
        """Draw a line along ``path``; ``width`` in pixels."""
        a = alpha * self._opacity
        if a <= 0.0 or width <= 0.0:
            return
        mode = "flat" if plain else self.mode
        if mode == "flat":
            self.canvas.drawPath(path, self._paint(colour, a, stroke=width, cap=cap, soft=soft, blend=blend))
        elif mode == "neon":
            self.canvas.drawPath(path, self._paint(colour.mix(WHITE, 0.4), a, stroke=width, cap=cap))
            self._glow_canvas.drawPath(
                path,
                self._paint(
                    colour,
                    0.75 * a,
                    stroke=max(2.5 * width, 0.006 * self.unit),
                    cap=cap,
                    blend=skia.BlendMode.kPlus,
                ),
            )
        elif width < PEN_WIDTH * self.unit:
            # watercolor: fine lines are pen work on the paper, under the washes
            self.canvas.drawPath(path, self._paint(colour.scale(0.7), 0.85 * a, stroke=width, cap=cap))
        else:
            assert self._wash_canvas is not None
            sigma = max(0.25 * width, 0.0012 * self.unit) + soft * self.unit
            paint = self._paint(colour, 0.85 * a, stroke=width, cap=cap, blend=skia.BlendMode.kMultiply)
            paint.setMaskFilter(skia.MaskFilter.MakeBlur(skia.kNormal_BlurStyle, sigma))
            self._wash_canvas.drawPath(path, paint)

    def bloom(
        self,
        path: skia.Path,
        colour: RGB,
        alpha: float = 1.0,
        *,
        width: float | None = None,
        shader: skia.Shader | None = None,
    ) -> None:
        """Add light to the glow layer only (halos, sun bloom, beams). No-op without one."""
        a = alpha * self._opacity * (0.5 if self.mode == "neon" else 1.0)
        self._glow_canvas.drawPath(
            path, self._paint(colour, a, stroke=width, shader=shader, blend=skia.BlendMode.kPlus)
        )

    def soft_disc(
        self, x: float, y: float, radius: float, colour: RGB, alpha: float = 1.0, *, hardness: float = 0.5
    ) -> None:
        """A disc that fades out from ``hardness`` of its radius to its edge (shadows, bokeh,
        clouds) — a radial gradient, far cheaper than blurring."""
        a = alpha * self._opacity
        if a <= 0.0 or radius <= 0.0:
            return
        shader = skia.GradientShader.MakeRadial(
            skia.Point(x, y),
            radius,
            [colour.argb(a), colour.argb(a), colour.argb(0.0)],
            [0.0, min(max(hardness, 0.0), 0.99), 1.0],
        )
        paint = skia.Paint(AntiAlias=True, Shader=shader)
        if self.mode == "wash":
            assert self._wash_canvas is not None
            paint.setBlendMode(skia.BlendMode.kMultiply)
            self._wash_canvas.drawCircle(x, y, radius, paint)
        else:
            self.canvas.drawCircle(x, y, radius, paint)

    def light(self, x: float, y: float, radius: float, colour: RGB, alpha: float = 1.0) -> None:
        """A soft round light on the glow layer (a lamp, a sun's halo): bright centre, no edge."""
        a = alpha * self._opacity * (0.5 if self.mode == "neon" else 1.0)
        shader = skia.GradientShader.MakeRadial(
            skia.Point(x, y),
            radius,
            [colour.argb(a), colour.argb(0.35 * a), colour.argb(0.0)],
            [0.0, 0.35, 1.0],
        )
        self._glow_canvas.drawCircle(
            x, y, radius, skia.Paint(AntiAlias=True, Shader=shader, BlendMode=skia.BlendMode.kPlus)
        )

    def dots(
        self,
        xy: np.ndarray,
        radii: np.ndarray | float,
        colour: RGB,
        alpha: float = 1.0,
        *,
        plain: bool = False,
    ) -> None:
        """Many small discs in one path (halftone, sparkles, confetti)."""
        if len(xy) == 0:
            return
        radii = np.broadcast_to(np.asarray(radii, dtype=float), (len(xy),))
        path = skia.Path()
        for (x, y), r in zip(xy.tolist(), radii.tolist(), strict=True):
            if r > 0.05:
                path.addCircle(x, y, r)
        if self.mode == "neon" and not plain:
            self.canvas.drawPath(path, self._paint(colour.mix(WHITE, 0.3), alpha * self._opacity))
            self._glow_canvas.drawPath(
                path, self._paint(colour, 0.4 * alpha * self._opacity, blend=skia.BlendMode.kPlus)
            )
        elif self.mode == "wash" and not plain:
            self._wash(path, colour, alpha * self._opacity, soft=0.0, rough=False)
        else:
            self.canvas.drawPath(path, self._paint(colour, alpha * self._opacity))

    # -- helpers -------------------------------------------------------------------------------

    def _wash(
        self,
        path: skia.Path,
        colour: RGB,
        a: float,
        *,
        shader: skia.Shader | None = None,
        soft: float = 0.0,
        rough: bool = True,
    ) -> None:
        """Pigment: a blurred, edge-roughened body and a darker pooled rim, multiplied."""
        assert self._wash_canvas is not None
        self._effect_seed += 1
        u = self.unit
        effect = skia.DiscretePathEffect.Make(0.03 * u, 0.004 * u, self._effect_seed) if rough else None
        body = self._paint(colour, 0.72 * a, shader=shader, blend=skia.BlendMode.kMultiply)
        body.setMaskFilter(skia.MaskFilter.MakeBlur(skia.kNormal_BlurStyle, (0.0025 + soft) * u))
        if effect is not None:
            body.setPathEffect(effect)
        self._wash_canvas.drawPath(path, body)
        if rough:
            rim = self._paint(colour.scale(0.8), 0.3 * a, stroke=0.0035 * u, blend=skia.BlendMode.kMultiply)
            rim.setMaskFilter(skia.MaskFilter.MakeBlur(skia.kNormal_BlurStyle, 0.0012 * u))
            rim.setPathEffect(effect)
            self._wash_canvas.drawPath(path, rim)

    def _paint(
        self,
        colour: RGB,
        alpha: float,
        *,
        stroke: float | None = None,
        cap: str = "round",
        shader: skia.Shader | None = None,
        blend: skia.BlendMode | None = None,
        soft: float = 0.0,
    ) -> skia.Paint:
        paint = skia.Paint(AntiAlias=True, Color=colour.argb(alpha))
        if shader is not None:
            paint.setShader(shader)
            paint.setAlphaf(min(max(alpha, 0.0), 1.0))
        if stroke is not None:
            paint.setStyle(skia.Paint.kStroke_Style)
            paint.setStrokeWidth(stroke)
            paint.setStrokeCap(
                {
                    "round": skia.Paint.kRound_Cap,
                    "butt": skia.Paint.kButt_Cap,
                    "square": skia.Paint.kSquare_Cap,
                }[cap]
            )
            paint.setStrokeJoin(skia.Paint.kRound_Join if cap == "round" else skia.Paint.kMiter_Join)
        if blend is not None:
            paint.setBlendMode(blend)
        if soft > 0.0:
            paint.setMaskFilter(skia.MaskFilter.MakeBlur(skia.kNormal_BlurStyle, soft * self.unit))
        return paint

"""Colours from music: key → hue, mood → temperature/saturation/lightness, genre → palette family.

Colours are chosen in OKLCH (perceptual lightness, chroma, hue) so that "lighter" and "more
saturated" mean the same thing for every hue, then mapped into the sRGB gamut.

Offers
------
- :class:`RGB` — an sRGB colour with the conversions the drawing needs.
- :func:`oklch` — OKLCH → sRGB, chroma reduced until it fits the gamut.
- :class:`Palette` / :func:`palette_for` — ground, inks, accent, highlight and shadow for a look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from m2i_engine.imaging.renderer.look import Look, Motif
from m2i_engine.options import Style


class RGB(NamedTuple):
    """sRGB, each channel 0..1."""

    r: float
    g: float
    b: float

    def argb(self, alpha: float = 1.0) -> int:
        """Skia's 32-bit colour."""
        a = round(255 * min(max(alpha, 0.0), 1.0))
        r, g, b = (round(255 * min(max(c, 0.0), 1.0)) for c in self)
        return (a << 24) | (r << 16) | (g << 8) | b

    def mix(self, other: RGB, t: float) -> RGB:
        return RGB(*(a + (b - a) * t for a, b in zip(self, other, strict=True)))

    def scale(self, k: float) -> RGB:
        return RGB(*(min(max(c * k, 0.0), 1.0) for c in self))

    @property
    def hex(self) -> str:
        return "#" + "".join(f"{round(255 * min(max(c, 0.0), 1.0)):02x}" for c in self)

    @property
    def luma(self) -> float:
        return 0.2126 * self.r + 0.7152 * self.g + 0.0722 * self.b


WHITE = RGB(1.0, 1.0, 1.0)
BLACK = RGB(0.0, 0.0, 0.0)


def oklch(lightness: float, chroma: float, hue_deg: float) -> RGB:
    """An OKLCH colour in sRGB; chroma is reduced (hue and lightness kept) until it is displayable."""
    lightness = min(max(lightness, 0.0), 1.0)
    chroma = max(chroma, 0.0)
    rgb = _oklab_to_linear(lightness, chroma, hue_deg)
    if not _in_gamut(rgb):
        lo, hi = 0.0, chroma
        for _ in range(14):
            mid = 0.5 * (lo + hi)
            if _in_gamut(_oklab_to_linear(lightness, mid, hue_deg)):
                lo = mid
            else:
                hi = mid
        rgb = _oklab_to_linear(lightness, lo, hue_deg)
    return RGB(*(_encode(min(max(c, 0.0), 1.0)) for c in rgb))


@dataclass(frozen=True)
class Palette:
    """The colours one picture uses. ``inks`` are the motif's colours, dominant first."""

    ground: tuple[RGB, RGB]  # background, from (top / centre) to (bottom / edge)
    inks: tuple[RGB, ...]
    accent: RGB  # downbeats and the focal shape
    highlight: RGB  # specular light, neon cores, sparkles
    shadow: RGB  # the darkest ink
    dark: bool  # whether the ground is dark (light inks on dark) or light

    def ink(self, i: int) -> RGB:
        return self.inks[i % len(self.inks)]

    def hexes(self) -> list[str]:
        return [c.hex for c in (*self.ground, *self.inks, self.accent)]


@dataclass(frozen=True)
class _Family:
    """How a genre's palette is built around the base hue."""

    #: one (hue offset°, lightness offset, chroma multiplier) per ink, dominant first
    inks: tuple[tuple[float, float, float], ...]
    chroma: float  # OKLCH chroma of a ×1 ink before mood scaling
    ink_light: float  # OKLCH lightness of a +0 ink before mood
    ground: str  # "dark", "light" or "mid"
    #: accent hue: an offset from the base hue, or absolute when ``accent_absolute``
    accent_hue: float = 180.0
    accent_chroma: float = 0.19
    accent_absolute: bool = False
    #: (hue, strength): genres whose colours sit in a family of their own, whatever the key
    pull: tuple[float, float] | None = None


_FAMILIES: dict[Motif, _Family] = {
    # classical: analogous silks on ivory, a gold accent
    Motif.ribbons: _Family(
        ((0, 0, 1), (32, 0.08, 0.8), (-35, -0.06, 0.9), (60, 0.12, 0.6), (-70, -0.1, 0.7)),
        0.15,
        0.62,
        "light",
        85,
        0.12,
        True,
    ),
    # metal: tinted steel, one hot accent in the key's colour
    Motif.shards: _Family(
        ((0, 0, 0.3), (10, 0.12, 0.2), (-10, -0.12, 0.35), (0, 0.22, 0.12)), 0.12, 0.55, "dark", 0, 0.21
    ),
    # jazz: Blue Note complementary pairs on cream
    Motif.circles: _Family(
        ((0, 0, 1), (180, -0.05, 0.9), (35, 0.1, 0.7), (200, -0.15, 0.6), (-30, 0.05, 0.8)),
        0.14,
        0.6,
        "light",
        150,
        0.17,
    ),
    # electronic/disco: neon analogous triad on near-black
    Motif.pulses: _Family(
        ((0, 0, 1), (60, 0.05, 1), (-60, -0.05, 1), (180, 0.1, 0.8), (120, 0, 0.9)),
        0.19,
        0.72,
        "dark",
        150,
        0.22,
    ),
    # hiphop: one bold hue in three weights, cream, a complementary accent, on deep ground
    Motif.blocks: _Family(
        ((0, 0, 1), (20, 0.14, 0.6), (0, 0.32, 0.15), (-25, -0.2, 0.8)), 0.16, 0.6, "mid", 180, 0.19
    ),
    # reggae: red, gold and green, whatever the key
    Motif.waves: _Family(
        ((0, 0, 1), (40, 0.08, 1), (95, -0.05, 0.9), (-25, -0.08, 1), (130, -0.12, 0.7)),
        0.17,
        0.66,
        "light",
        35,
        0.17,
        False,
        (45.0, 0.55),
    ),
    # country: earthy hills, a warm sun
    Motif.landscape: _Family(
        ((0, 0, 0.9), (25, 0.05, 0.75), (50, -0.05, 0.8), (-40, 0.1, 0.6), (-20, -0.1, 0.8)),
        0.14,
        0.6,
        "light",
        60,
        0.15,
        True,
        (80.0, 0.2),
    ),
    # blues: deep blue smoke, an amber lamp
    Motif.smoke: _Family(
        ((0, 0, 1), (20, 0.08, 0.8), (-20, -0.05, 0.9), (40, 0.15, 0.5)),
        0.08,
        0.58,
        "dark",
        65,
        0.15,
        True,
        (255.0, 0.45),
    ),
    # pop: a pastel rainbow
    Motif.bubbles: _Family(
        ((0, 0, 1), (60, 0.03, 1), (130, 0, 1), (200, 0.02, 1), (290, 0, 1)), 0.14, 0.78, "light", 180, 0.19
    ),
    # rock: the key's colour, bone and near-black, a complementary flash
    Motif.bands: _Family(
        ((0, 0, 1), (0, 0.34, 0.15), (0, -0.3, 0.5), (25, 0.1, 0.8)), 0.14, 0.56, "dark", 15, 0.21
    ),
}

_WARM_HUE = 60.0
_COOL_HUE = 245.0


def base_hue(look: Look) -> float:
    """The key's hue turned toward orange (warm, happy) or blue (cool, sad) by the mood."""
    target = _WARM_HUE if look.warmth >= 0 else _COOL_HUE
    return _toward(look.key_hue, target, 0.5 * abs(look.warmth))


def palette_for(look: Look, style: Style) -> Palette:
    """Build the palette: family harmony from the motif, hue from key+mood, lightness, chroma and
    contrast from mood, ground from the family unless the style dictates it."""
    fam = _FAMILIES[look.motif]
    hue = base_hue(look)
    if fam.pull is not None:
        hue = _toward(hue, fam.pull[0], fam.pull[1])

    chroma = fam.chroma * look.chroma
    ink_light = fam.ink_light + 0.09 * look.light + 0.06 * (look.brightness - 0.5)
    spread = 0.7 + 0.6 * look.contrast  # how far inks' lightness offsets reach
    ground_kind = {Style.neon: "dark", Style.watercolor: "light", Style.cinematic: "dark"}.get(
        style, fam.ground
    )
    if style is Style.neon:
        chroma, ink_light, spread = max(chroma, 0.15) * 1.15, max(ink_light, 0.74), spread * 0.4
    elif style is Style.watercolor:
        chroma, ink_light, spread = chroma * 1.2, max(ink_light, 0.62), spread * 0.6

    inks = tuple(oklch(ink_light + spread * dl, chroma * dc, hue + dh) for dh, dl, dc in fam.inks)
    accent_hue = fam.accent_hue if fam.accent_absolute else hue + fam.accent_hue
    accent = oklch(min(ink_light + 0.06, 0.86), fam.accent_chroma * look.chroma, accent_hue)
    highlight = oklch(0.9 + 0.07 * look.brightness, 0.04 * look.chroma, hue + 20)
    if style is Style.watercolor:  # no black in a watercolor box: shadows are indigo or sepia
        shadow = oklch(0.42 - 0.08 * look.contrast, 0.06, hue + 30)
    else:
        shadow = oklch(0.16 - 0.08 * look.contrast + 0.05 * look.light, 0.035 * look.chroma, hue)

    if ground_kind == "dark":
        gl = 0.19 + 0.05 * look.light - 0.07 * look.contrast
        if style is Style.neon:
            gl -= 0.06
        g0 = oklch(gl + 0.06, 0.05 * look.chroma, hue + 15)
        g1 = oklch(max(gl - 0.08, 0.04), 0.03 * look.chroma, hue - 25)
    elif ground_kind == "light":
        gl = 0.93 + 0.04 * look.light - 0.03 * look.contrast
        paper_hue = _toward(hue, 80.0, 0.6)
        g0 = oklch(gl, 0.018 + 0.012 * max(look.warmth, 0.0), paper_hue)
        g1 = oklch(gl - 0.07, 0.03 * look.chroma, hue)
    else:
        gl = 0.32 + 0.1 * look.light - 0.06 * look.contrast
        g0 = oklch(gl + 0.05, 0.06 * look.chroma, hue - 15)
        g1 = oklch(gl - 0.08, 0.05 * look.chroma, hue - 30)
    return Palette(
        ground=(g0, g1),
        inks=inks,
        accent=accent,
        highlight=highlight,
        shadow=shadow,
        dark=ground_kind in ("dark", "mid"),
    )


def _toward(hue: float, target: float, amount: float) -> float:
    """Rotate ``hue`` toward ``target`` along the shorter arc by ``amount`` (0..1) of the way."""
    delta = (target - hue + 180.0) % 360.0 - 180.0
    return (hue + amount * delta) % 360.0


def _oklab_to_linear(lightness: float, chroma: float, hue_deg: float) -> tuple[float, float, float]:
    h = math.radians(hue_deg)
    a, b = chroma * math.cos(h), chroma * math.sin(h)
    l_ = (lightness + 0.3963377774 * a + 0.2158037573 * b) ** 3
    m_ = (lightness - 0.1055613458 * a - 0.0638541728 * b) ** 3
    s_ = (lightness - 0.0894841775 * a - 1.2914855480 * b) ** 3
    return (
        4.0767416621 * l_ - 3.3077115913 * m_ + 0.2309699292 * s_,
        -1.2684380046 * l_ + 2.6097574011 * m_ - 0.3413193965 * s_,
        -0.0041960863 * l_ - 0.7034186147 * m_ + 1.7076147010 * s_,
    )


def _in_gamut(rgb: tuple[float, float, float]) -> bool:
    return all(-1e-4 <= c <= 1.0001 for c in rgb)


def _encode(c: float) -> float:
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055

"""The finish: layers flattened into one picture, then paper, light, grading and grain.

Everything here is numpy over whole images (no per-pixel Python), seeded, and cheap enough to
keep a 1024² render well inside its time budget: the glow and wash layers are blurred and scaled
at low resolution with Pillow, tone changes are one lookup table per channel.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from m2i_engine.imaging.renderer.ink import Ink
from m2i_engine.imaging.renderer.look import Look
from m2i_engine.imaging.renderer.treatment import Treatment


def finish(
    ink: Ink, *, look: Look, treatment: Treatment, rng: np.random.Generator, glow_gain: float = 1.0
) -> Image.Image:
    """Flatten ``ink``'s layers and apply the style's texture. Works in 0..255 floats in place
    (each step one pass over the picture) and returns an RGB image. ``glow_gain`` scales the glow
    (an animation's beat flares; 1 for a still)."""
    h, w = ink.height, ink.width
    rgb = ink.main[..., :3].astype(np.float32)

    paper = None
    if treatment.paper > 0:  # the paper's tooth: fine fibres over a slow cloudiness
        paper = low_noise(rng, w, h, cell=2)
        paper *= 0.7
        paper += 0.3 * low_noise(rng, w, h, cell=max(8, round(ink.unit / 40)))

    if ink.wash is not None:
        wash = _upscale(ink.wash[..., :3], w, h)
        if paper is not None:
            # pigment settles unevenly: into the paper's tooth, and in slow blotches
            k = low_noise(rng, w, h, cell=max(8, round(ink.unit / 7)))
            k *= 0.12
            k += 0.94
            k += 0.08 * paper
            wash -= 1.0
            wash *= k[..., None]
            wash += 1.0  # 1 - (1 - wash) * k
            np.clip(wash, 0.0, 1.0, out=wash)
        rgb *= wash

    if paper is not None:
        paper *= -0.035 * treatment.paper
        paper += 1.0
        rgb *= paper[..., None]

    strength = treatment.glow + 0.6 * look.glow
    if glow_gain != 1.0:
        strength *= glow_gain
    if strength > 0 and ink.glow[..., :3].any():
        glow = _glow(ink.glow[..., :3], w, h, ink.unit)
        glow *= strength
        np.clip(glow, 0.0, 1.0, out=glow)
        glow *= 255.0 - rgb  # screen: light fills what is left below white
        rgb += glow

    if treatment.vignette > 0:
        rgb *= vignette(w, h, treatment.vignette)[..., None]

    amp = 255.0 * ((0.009 + 0.014 * look.fade) * treatment.grain + 0.003)
    noise = rng.integers(0, 256, size=(h, w), dtype=np.uint8).astype(np.float32)
    noise *= amp / 127.5
    noise += 0.5 - amp  # +0.5 rounds on the cast below
    rgb += noise[..., None]
    np.clip(rgb, 0.0, 255.0, out=rgb)
    image = Image.fromarray(rgb.astype(np.uint8), mode="RGB")

    pivot = float(np.asarray(image.reduce(16)).mean()) / 255.0
    lut = tone_curve(look, treatment, pivot=pivot)
    return image.point(lut.ravel().tolist())


def tone_curve(look: Look, treatment: Treatment, pivot: float = 0.5) -> np.ndarray:
    """One 256-entry lookup table per channel: contrast S-curve (tension), lifted blacks (fade),
    colour temperature (warmth), split toning (cinematic grade). Shape (3, 256), uint8."""
    x = np.linspace(0.0, 1.0, 256)
    # contrast pivots on the picture's own mean, so a pale watercolor and a dark night scene
    # both gain (or lose) contrast where their tones actually are
    k = 1.1 * (look.contrast - 0.45)  # >0 harder, <0 softer
    p = min(max(pivot, 0.15), 0.85)
    gamma = 1.0 + k
    s = np.where(x < p, p * (x / p) ** gamma, 1.0 - (1.0 - p) * ((1.0 - x) / (1.0 - p)) ** gamma)
    lift = 0.14 * look.fade
    s = lift + (1.0 - lift - 0.04 * look.fade) * s
    curves = np.stack([s, s, s])
    # white balance: warm songs lean red/amber, cool ones blue, most in the mid-tones
    temp = 0.045 * look.warmth * (0.35 + 2.6 * x * (1.0 - x))
    curves[0] += temp
    curves[1] += 0.25 * temp
    curves[2] -= temp
    if treatment.grade > 0:
        g = treatment.grade
        shadows = (1.0 - x) ** 2
        highlights = x**2
        curves[0] += g * (0.05 * highlights - 0.03 * shadows)
        curves[1] += g * (0.01 * highlights + 0.01 * shadows)
        curves[2] += g * (-0.05 * highlights + 0.04 * shadows)
    return np.clip(np.round(curves * 255.0), 0, 255).astype(np.uint8)


def low_noise(rng: np.random.Generator, w: int, h: int, *, cell: int) -> np.ndarray:
    """Smooth value noise in about -1..1 with features ``cell`` pixels across."""
    gw, gh = max(2, w // cell + 2), max(2, h // cell + 2)
    grid = Image.fromarray(rng.random((gh, gw), dtype=np.float32) * 2.0 - 1.0, mode="F")
    big = grid.resize((gw * cell, gh * cell), Image.Resampling.BICUBIC)
    return np.array(big, dtype=np.float32)[:h, :w]


@lru_cache(maxsize=16)
def vignette(w: int, h: int, strength: float) -> np.ndarray:
    """Multiplier that darkens toward the corners (1 in the centre). Read-only, cached."""
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    aspect = w / h
    r2 = (xs * xs) * (aspect if aspect > 1 else 1.0) + (ys * ys) / (aspect if aspect < 1 else 1.0)
    r2 = np.clip(0.5 * r2, 0.0, 1.5)
    out = 1.0 - (strength * 0.6) * r2 * (0.75 + 0.25 * r2)  # ≈ r^2.6 falloff, no pow
    out.flags.writeable = False
    return out


def _glow(small: np.ndarray, w: int, h: int, unit: float) -> np.ndarray:
    """Two blurs of the glow layer (a tight halo and a wide one), scaled up to the picture."""
    img = Image.fromarray(np.ascontiguousarray(small))
    px = unit * small.shape[1] / w  # the short side in glow-layer pixels
    tight = np.asarray(img.filter(ImageFilter.GaussianBlur(0.006 * px)), dtype=np.float32)
    wide = np.asarray(img.filter(ImageFilter.GaussianBlur(0.025 * px)), dtype=np.float32)
    both = np.clip(0.9 * tight + 1.1 * wide, 0, 255).astype(np.uint8)
    return _upscale(both, w, h)


def _upscale(small: np.ndarray, w: int, h: int) -> np.ndarray:
    """A low-resolution layer scaled up to the picture, as 0..1 floats."""
    img = Image.fromarray(np.ascontiguousarray(small))
    big = img.resize((w, h), Image.Resampling.BILINEAR)
    out = np.asarray(big, dtype=np.float32)
    out *= 1.0 / 255.0
    return out

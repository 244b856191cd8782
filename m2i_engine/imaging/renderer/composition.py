"""Where things go: ground, light, the motif's frame for each style, onset sparkles, the finish.

:func:`paint` is the renderer's whole pipeline for one picture — it is pure: the same look, style,
size and seed give the same pixels. The seed only chooses variations (positions, jitter); the
music chooses everything else, so two seeds of one song share a look and two songs differ.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import numpy as np
import skia
from PIL import Image

from m2i_engine.imaging.renderer import geometry as geo
from m2i_engine.imaging.renderer.ink import Ink
from m2i_engine.imaging.renderer.look import Look, Motif
from m2i_engine.imaging.renderer.motifs import MOTIF_PAINTERS
from m2i_engine.imaging.renderer.motion import STILL, Motion, stagger
from m2i_engine.imaging.renderer.palette import Palette, palette_for
from m2i_engine.imaging.renderer.scene import Scene
from m2i_engine.imaging.renderer.texture import finish
from m2i_engine.imaging.renderer.treatment import treatment_for
from m2i_engine.options import Style

# Motifs that read as horizontal layers get a low band in a minimal poster; the rest a small square.
_HORIZONTAL = {Motif.landscape, Motif.waves, Motif.bands, Motif.ribbons}
# Motifs whose onset particles may be confetti on a light ground (elsewhere they would read as dust).
_CONFETTI = {Motif.bubbles, Motif.circles, Motif.waves}


def paint(
    look: Look, style: Style, width: int, height: int, seed: int, *, motion: Motion = STILL
) -> tuple[Image.Image, Palette]:
    """Draw one picture. ``style`` must be concrete (not ``auto``). Returns the RGB image and the
    palette used. ``motion`` is one instant of an animation (the still by default)."""
    treatment = treatment_for(style)
    palette = palette_for(look, style)
    layout_seq, texture_seq = np.random.SeedSequence([seed & 0xFFFFFFFF, 0x6D32]).spawn(2)
    rng = np.random.default_rng(layout_seq)
    ink = Ink(width, height, mode=treatment.ink, shade=treatment.shade)
    full = skia.Rect.MakeWH(width, height)
    density = treatment.density * (0.35 + 0.9 * look.energy)
    scene = Scene(ink, look, palette, treatment, rng, full, density, motion=motion)

    _ground(scene)
    with _camera(scene):
        if treatment.beams:
            _beams(scene)
        draw_motif = MOTIF_PAINTERS[look.motif]
        if treatment.framing == "focal":
            _focal(scene)
        elif treatment.framing == "sparse":
            _sparse(scene)
        else:
            draw_motif(scene)
        _sparkles(scene)
    return finish(
        ink,
        look=look,
        treatment=treatment,
        rng=np.random.default_rng(texture_seq),
        glow_gain=motion.glow_gain,
    ), palette


def _camera(s: Scene) -> AbstractContextManager[None]:
    """An animation's camera over everything but the ground: zoom about the centre, then a pan."""
    m = s.motion
    if not m.has_camera:
        return nullcontext()
    unit = s.ink.unit
    return s.ink.transformed(
        about=(s.ink.width / 2, s.ink.height / 2), scale=m.zoom, shift=(m.pan_x * unit, m.pan_y * unit)
    )


def _ground(s: Scene) -> None:
    """The background: a soft radial gradient for radial motifs, a vertical one for layered ones."""
    g0, g1 = s.palette.ground
    w, h = s.ink.width, s.ink.height
    if s.look.motif in _HORIZONTAL and s.treatment.framing != "focal":
        shader = skia.GradientShader.MakeLinear([skia.Point(0, 0), skia.Point(0, h)], [g0.argb(), g1.argb()])
    else:
        cx = w * (0.5 + 0.2 * (s.rng.random() - 0.5))
        cy = h * (0.42 + 0.16 * (s.rng.random() - 0.5))
        shader = skia.GradientShader.MakeRadial(skia.Point(cx, cy), 0.8 * max(w, h), [g0.argb(), g1.argb()])
    s.ink.ground(shader)


def _beams(s: Scene) -> None:
    """Cinematic light: a few wide shafts from a source above the frame, on the glow layer."""
    w, h = s.ink.width, s.ink.height
    src_x = w * (0.15 + 0.7 * s.rng.random())
    src = (src_x, -0.25 * h)
    colour = s.palette.highlight.mix(s.palette.accent, 0.3)
    for _ in range(3 + int(s.rng.integers(0, 3))):
        spread = w * (0.08 + 0.22 * s.rng.random())
        x = w * (s.rng.random() * 1.2 - 0.1)
        path = geo.polyline(
            np.array([src[0] - 0.01 * w, src[0] + 0.01 * w, x + spread, x - spread]),
            np.array([src[1], src[1], 1.1 * h, 1.1 * h]),
            closed=True,
        )
        shader = skia.GradientShader.MakeLinear(
            [skia.Point(*src), skia.Point(x, 1.1 * h)],
            [colour.argb(0.22 + 0.12 * s.look.brightness), colour.argb(0.0)],
        )
        s.ink.bloom(path, colour, 1.0, shader=shader)


def _focal(s: Scene) -> None:
    """Cover: a faint echo of the motif over the whole frame, and the motif at full strength in
    one bold centred shape (disc, arch or square, after the motif) with a shadow and a rim."""
    w, h = s.ink.width, s.ink.height
    unit = min(w, h)
    draw_motif = MOTIF_PAINTERS[s.look.motif]
    echo = Scene(
        s.ink,
        s.look,
        s.palette,
        s.treatment,
        np.random.default_rng(s.rng.integers(2**32)),
        s.frame,
        s.density * 0.5,
        detail=False,
        motion=s.motion,
    )
    with s.ink.faded(0.2):
        draw_motif(echo)
    shape, box = _focal_shape(s.look.motif, w / 2, h / 2, unit)
    shadow = skia.Path(shape)
    shadow.offset(0.012 * unit, 0.03 * unit)
    s.ink.fill(shadow, s.palette.shadow, 0.55, soft=0.025, plain=True)
    g0, g1 = s.palette.ground
    shader = skia.GradientShader.MakeLinear(
        [skia.Point(box.centerX(), box.top()), skia.Point(box.centerX(), box.bottom())],
        [g0.argb(), g1.argb()],
    )
    s.ink.fill(shape, g0, 1.0, shader=shader, plain=True)
    inner = Scene(s.ink, s.look, s.palette, s.treatment, s.rng, box, s.density, motion=s.motion)
    with s.ink.clip(shape):
        draw_motif(inner)
    s.ink.stroke(shape, s.palette.accent, 0.008 * unit, 0.9, plain=True)


def _focal_shape(motif: Motif, cx: float, cy: float, unit: float) -> tuple[skia.Path, skia.Rect]:
    """The cover's focal shape for a motif: an arch for landscapes and flowing layers, a square for
    blocky motifs, a disc for the rest. Returns the shape and the frame the motif fills."""
    if motif in (Motif.landscape, Motif.ribbons, Motif.waves, Motif.smoke):
        half_w, half_h = 0.31 * unit, 0.4 * unit
        box = skia.Rect.MakeLTRB(cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        path = skia.Path()
        path.moveTo(box.left(), box.bottom())
        path.lineTo(box.left(), box.top() + half_w)
        path.arcTo(
            skia.Rect.MakeLTRB(box.left(), box.top(), box.right(), box.top() + 2 * half_w), 180, 180, False
        )
        path.lineTo(box.right(), box.bottom())
        path.close()
        return path, box
    if motif in (Motif.blocks, Motif.bands):
        half = 0.33 * unit
        box = skia.Rect.MakeLTRB(cx - half, cy - half, cx + half, cy + half)
        return geo.rect(box.left(), box.top(), 2 * half, 2 * half, radius=0.015 * unit), box
    r = 0.36 * unit
    return geo.circle(cx, cy, r), skia.Rect.MakeLTRB(cx - r, cy - r, cx + r, cy + r)


def _sparse(s: Scene) -> None:
    """Minimal: the motif, sparse, in a small part of the frame; the rest left empty."""
    w, h = s.ink.width, s.ink.height
    unit = min(w, h)
    if s.look.motif in _HORIZONTAL:
        top = h * (0.55 + 0.08 * s.rng.random())
        frame = skia.Rect.MakeXYWH(0, top, w, h - top)
    else:
        side = 0.56 * unit
        cx = w * (0.5 + (0.12 if s.rng.random() < 0.5 else -0.12))
        cy = h * (0.5 + (0.12 if s.rng.random() < 0.5 else -0.12))
        frame = skia.Rect.MakeXYWH(cx - side / 2, cy - side / 2, side, side)
    inner = Scene(
        s.ink, s.look, s.palette, s.treatment, s.rng, frame, s.density, backdrop=False, motion=s.motion
    )
    MOTIF_PAINTERS[s.look.motif](inner)


def _sparkles(s: Scene) -> None:
    """Onsets become small particles — stars on dark grounds, spatter in watercolor, confetti for
    playful motifs: count from the onset rate, brightness from the timbre."""
    n = round(s.look.onset_rate_hz * 7 * s.density)
    if n <= 0:
        return
    w, h = s.ink.width, s.ink.height
    unit = min(w, h)
    xy = s.rng.random((n, 2)) * np.array([w, h])
    radii = unit * (0.0012 + 0.003 * s.rng.random(n) ** 3)
    m = s.motion
    if not m.still:  # animated: particles twinkle (deeper in quiet sections) and flare on beats
        rate = 1.0 + np.floor(3.0 * np.array([stagger(i) for i in range(n)]))  # 1–3 twinkles a bar
        dip = 0.5 * (1.0 - np.cos(2 * np.pi * rate * m.cycles(1)))  # 0 at the loop's start and end
        radii = radii * (1.0 - (1.0 - 0.6 * m.amount) * dip) * (1.0 + 0.8 * m.pulse)
    if s.treatment.ink == "wash":
        colour = s.palette.ink(int(s.rng.integers(0, len(s.palette.inks))))
        s.ink.dots(xy, radii * 1.6, colour, 0.55)  # paint spatter
    elif s.palette.dark:
        s.ink.dots(xy, radii, s.palette.highlight, 0.25 + 0.5 * s.look.brightness)  # stars
    elif s.look.motif in _CONFETTI:  # on a light ground, only playful motifs get confetti
        keep = n // 3
        for i in range(3):
            part = slice(i * keep // 3, (i + 1) * keep // 3)
            s.ink.dots(xy[part], radii[part] * 1.3, s.palette.ink(i), 0.7)

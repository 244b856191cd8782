"""The built-in image backend: draws a song's tags as generative artwork, no model or GPU needed.

:class:`Renderer` implements :class:`~m2i_engine.imaging.base.ImageBackend`; :func:`render` is the
same drawing as a plain function (tags in, picture out). PNG encoding is not drawn here: a
:class:`~m2i_engine.imaging.base.GeneratedImage` runs the one encoder (:mod:`m2i_engine.imaging.png`)
once, when its bytes are first asked for, and keeps them.
"""

from __future__ import annotations

from PIL import Image

from m2i_engine.imaging.base import GeneratedImage, ImageBackend, ImageRequest
from m2i_engine.imaging.renderer.composition import paint
from m2i_engine.imaging.renderer.look import look_from_tags
from m2i_engine.imaging.renderer.motion import STILL, Motion
from m2i_engine.options import Style
from m2i_engine.prompt.styles import resolve_style
from m2i_engine.tags import Tags

MIN_SIDE_PX = 16


def render(
    tags: Tags,
    *,
    style: Style = Style.auto,
    width: int = 1024,
    height: int = 1024,
    seed: int = 0,
    motion: Motion = STILL,
) -> Image.Image:
    """Draw one picture of the song. The same arguments always give the same pixels. ``motion`` is
    one instant of an animation (:mod:`m2i_engine.imaging.animate` makes them); the default is the
    still. ``style`` ``auto`` is the look ``build_prompt`` would pick for ``tags``."""
    return _draw(tags, resolve_style(style, tags), width, height, seed, motion)[0]


class Renderer(ImageBackend):
    """Music-driven generative artwork: genre → motif, mood → colour, beats → rhythm of shapes,
    energy → density and flow, key → hue, style → treatment. CPU only, deterministic per seed."""

    name = "renderer"

    def generate(self, request: ImageRequest) -> list[GeneratedImage]:
        images = []
        for i in range(request.num_images):
            seed = request.seed + i
            image, meta = _draw(
                request.tags, request.prompt.concrete_style(request.tags), request.width, request.height, seed
            )
            images.append(GeneratedImage(image=image, seed=seed, backend=self.name, meta=meta))
        return images


def _draw(
    tags: Tags, style: Style, width: int, height: int, seed: int, motion: Motion = STILL
) -> tuple[Image.Image, dict[str, object]]:
    """``style`` is concrete (resolved by the caller)."""
    if width < MIN_SIDE_PX or height < MIN_SIDE_PX:
        raise ValueError(f"image must be at least {MIN_SIDE_PX}×{MIN_SIDE_PX} px, got {width}×{height}")
    look = look_from_tags(tags)
    image, palette = paint(look, style, width, height, seed, motion=motion)
    meta: dict[str, object] = {"style": style.value, "motif": look.motif.value, "palette": palette.hexes()}
    return image, meta

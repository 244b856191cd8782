"""What a prompt is: the text an image model gets, plus the structure and the style it was built from.

:func:`~m2i_engine.prompt.builder.build_prompt` makes one; every image backend reads it (through
:class:`~m2i_engine.imaging.base.ImageRequest`). It lives in the prompt layer, below imaging, so the
builder needs nothing from the backends.
"""

from __future__ import annotations

from dataclasses import dataclass

from m2i_engine.options import Style
from m2i_engine.prompt.styles import resolve_style
from m2i_engine.tags import Tags


@dataclass(frozen=True)
class Prompt:
    """Text for a text-to-image model, plus the structure it was built from."""

    text: str
    negative: str
    #: the look to draw; concrete (never ``auto``) in a prompt from ``build_prompt``, which resolves it
    style: Style
    #: ordered (phrase, weight) pairs the text was assembled from; weight ~ the tag's confidence
    phrases: tuple[tuple[str, float], ...] = ()

    def concrete_style(self, tags: Tags) -> Style:
        """The style backends draw in: :attr:`style` itself, which ``build_prompt`` already resolved.
        A prompt made by hand may still say ``auto``; it gets the look ``build_prompt`` would have
        picked for ``tags`` (:func:`~m2i_engine.prompt.styles.resolve_style`). Backends call this and
        never decide ``auto`` themselves."""
        return resolve_style(self.style, tags)

"""The user's options for one request, declared once for every front end.

The CLI builds its flags from these fields, the bots their slash-command options and the HTTP API
its form fields, so a new option is added here and nowhere else.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from annotated_types import Ge, Le, MaxLen
from pydantic import BaseModel, ConfigDict, Field, field_validator

from m2i_engine.errors import InvalidOptionError

MAX_SEED = 2**32 - 1


class Aspect(StrEnum):
    square = "1:1"
    portrait = "4:5"
    photo = "3:4"
    story = "9:16"
    landscape = "3:2"
    wide = "16:9"

    def size(self, long_side: int, multiple: int = 8) -> tuple[int, int]:
        """(width, height) with the long side ``long_side``, both rounded to ``multiple``."""
        w, h = (int(x) for x in self.value.split(":"))
        scale = long_side / max(w, h)

        def snap(x: float) -> int:
            return max(multiple, round(x * scale / multiple) * multiple)

        return snap(w), snap(h)


class Style(StrEnum):
    auto = "auto"
    cover = "cover"
    abstract = "abstract"
    neon = "neon"
    watercolor = "watercolor"
    minimal = "minimal"
    cinematic = "cinematic"


class Backend(StrEnum):
    auto = "auto"
    renderer = "renderer"
    sd = "sd"


class VisualizeOptions(BaseModel):
    """What a user may choose when asking for an image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    style: Style = Field(Style.auto, description="Look of the image; auto picks one from the genre.")
    prompt: str | None = Field(None, max_length=400, description="Extra words to add to the prompt.")
    negative: str | None = Field(None, max_length=400, description="What the image should avoid.")
    aspect: Aspect = Field(Aspect.square, description="Aspect ratio of the image.")
    size: int = Field(1024, ge=256, le=2048, description="Long side of the image in pixels.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Same seed + same song = same image.")
    backend: Backend = Field(Backend.auto, description="Image generator: auto, renderer or sd.")
    num_images: int = Field(1, ge=1, le=4, description="How many images to make.")

    @field_validator("prompt", "negative")
    @classmethod
    def _clean_text(cls, v: str | None) -> str | None:
        """One line of words: whitespace and control characters separate words, invisible ones go."""
        if v is None:
            return None
        v = "".join(
            ch if ch.isprintable() else " " if ch.isspace() or ch < " " or "\x7f" <= ch <= "\x9f" else ""
            for ch in v
        )  # C0/C1 controls (tab, NUL, …) → space; bidi, ZWSP, … → dropped
        return " ".join(v.split()) or None


class LoopSection(StrEnum):
    """Which bars of the song an animated loop is made from."""

    peak = "peak"  # the most energetic bars
    typical = "typical"  # the bars whose energy is closest to the song's median
    start = "start"  # the first bars


class AnimateOptions(BaseModel):
    """What a user may choose when asking for a beat-synced animated loop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: int = Field(15, ge=8, le=30, description="Frames per second (nudged so the loop closes on a frame).")
    loop_bars: int | None = Field(
        None, ge=1, le=8, description="Bars in the loop; none picks 1, 2, 4 or 8 bars near 5 s."
    )
    section: LoopSection = Field(LoopSection.peak, description="Which bars: peak, typical or start.")
    anim_size: int = Field(512, ge=128, le=1024, description="Long side of the animation in pixels.")


#: the longest clip a video is made of, in seconds
MAX_VIDEO_S = 60.0


class VideoOptions(BaseModel):
    """What a user may choose when asking for a music video of a song: its picture moving with its sound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float | None = Field(
        None,
        ge=0.0,
        description="Where the clip starts in the song, in seconds; "
        "none takes the song's most representative part.",
    )
    length: float | None = Field(
        None,
        ge=2.0,
        le=MAX_VIDEO_S,
        description=f"Clip length in seconds, at most {MAX_VIDEO_S:g}; none: as "
        f"much as there is, up to {MAX_VIDEO_S:g}.",
    )
    fps: int = Field(30, ge=8, le=30, description="Frames per second of the video.")
    aspect: Aspect = Field(Aspect.story, description="Aspect ratio of the video.")
    size: int = Field(1280, ge=256, le=1920, description="Long side of the video in pixels.")


def check_video_options(options: VisualizeOptions) -> None:
    """Refuse what a video can't do, before any work: it is one picture moving, not several."""
    if options.num_images > 1:
        raise InvalidOptionError(
            "A video is made from one picture: leave out --num-images "
            f"{options.num_images} (or set it to 1) when asking for --video."
        )


# --- reading an option model ---------------------------------------------------------------------


@dataclass(frozen=True)
class OptionField:
    """One option as every front end reads it: a CLI flag, a slash-command option, a byte of a button."""

    name: str
    #: the type without ``None``: ``int``, ``float``, ``str``, ``bool`` or an enum class
    kind: Any
    #: ``None`` is a valid value (``seed``: none lets the song pick)
    optional: bool
    default: Any
    #: the field's description; ``None`` when it has none
    help: str | None
    #: the ``ge``/``le`` bounds and the ``max_length``; ``None`` where the field has none
    lo: Any = None
    hi: Any = None
    max_length: int | None = None

    @property
    def is_enum(self) -> bool:
        return isinstance(self.kind, type) and issubclass(self.kind, Enum)

    @property
    def choices(self) -> tuple[Enum, ...]:
        """The enum's members in declaration order; empty for other kinds."""
        return tuple(self.kind) if self.is_enum else ()


def option_fields(model: type[BaseModel]) -> Iterator[OptionField]:
    """Each field of ``model`` (:class:`VisualizeOptions`, :class:`AnimateOptions`, …) in declaration
    order, so the CLI, the bots and the button encoding read the schema one way."""
    for name, info in model.model_fields.items():
        lo = hi = max_length = None
        for meta in info.metadata:
            if isinstance(meta, Ge):
                lo = meta.ge
            elif isinstance(meta, Le):
                hi = meta.le
            elif isinstance(meta, MaxLen):
                max_length = meta.max_length
        annotation = info.annotation
        args = typing.get_args(annotation)
        kind: Any = annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            rest = [a for a in args if a is not type(None)]
            kind = rest[0] if rest else str
        yield OptionField(
            name=name,
            kind=kind,
            optional=type(None) in args,
            default=info.default,
            help=info.description,
            lo=lo,
            hi=hi,
            max_length=max_length,
        )

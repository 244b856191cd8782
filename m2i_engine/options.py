"""The user's options for one request, declared once for every front end.

The CLI builds its flags from these fields, the bots their slash-command options and the HTTP API
its form fields, so a new option is added here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
        if v is None:
            return None
        v = " ".join("".join(ch for ch in v if ch.isprintable()).split())
        return v or None


class LoopSection(StrEnum):
    """Which bars of the song an animated loop is made from."""

    peak = "peak"  # the most energetic bars
    typical = "typical"  # the bars whose energy is closest to the song's median
    start = "start"  # the first bars


class AnimateOptions(BaseModel):
    """What a user may choose when asking for a beat-synced animated loop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: int = Field(15, ge=8, le=30, description="Frames per second (nudged so the loop closes on a frame).")
    loop_bars: int | None = Field(None, ge=1, le=8,
                                  description="Bars in the loop; none picks 1, 2, 4 or 8 bars near 5 s.")
    section: LoopSection = Field(LoopSection.peak, description="Which bars: peak, typical or start.")
    anim_size: int = Field(512, ge=128, le=1024, description="Long side of the animation in pixels.")

"""The one interface every image backend implements (built-in renderer, Stable Diffusion, …).

Like a diffusers pipeline, a backend is built once with its components and called many times; the
engine picks one by configuration and never needs to know which it got.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from PIL import Image

from m2i_engine.prompt import Prompt
from m2i_engine.tags import Tags


@dataclass(frozen=True)
class ImageRequest:
    tags: Tags
    prompt: Prompt
    width: int
    height: int
    seed: int
    num_images: int = 1


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    backend: str
    meta: dict[str, object] = field(default_factory=dict)


class ImageBackend(ABC):
    """Turns an :class:`ImageRequest` into images. ``generate`` is blocking; the engine runs it
    off the event loop."""

    name: str = "backend"
    #: True when the backend schedules its own work (e.g. a GPU micro-batcher on its own thread):
    #: the engine then awaits :meth:`agenerate` instead of holding a CPU worker slot while it waits.
    schedules_itself: ClassVar[bool] = False

    @abstractmethod
    def generate(self, request: ImageRequest) -> list[GeneratedImage]:
        """Return ``request.num_images`` images; image *i* uses seed ``request.seed + i``."""

    async def agenerate(self, request: ImageRequest) -> list[GeneratedImage]:
        """Async form for backends that schedule themselves (``schedules_itself``)."""
        raise NotImplementedError(f"{type(self).__name__} has no async entry point")

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing to release
        """Release devices and threads (called once at engine shutdown)."""

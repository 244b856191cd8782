"""The one interface every image backend implements (built-in renderer, Stable Diffusion, …).

Like a diffusers pipeline, a backend is built once with its components and called many times; the
engine picks one by configuration and never needs to know which it got.
"""

from __future__ import annotations

import io
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from m2i_engine.imaging import png as _png
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


class GeneratedImage:
    """One picture a backend made: its pixels and its PNG bytes, each made at most once.

    A backend builds it from pixels (``GeneratedImage(image=..., seed=..., backend=..., meta=...)``);
    :attr:`png` encodes them on first ask with the one encoder (:func:`~m2i_engine.imaging.png.encode_png`)
    and keeps the bytes, so the CLI, the HTTP API, the queue, the result cache and the bots all send
    the same bytes without encoding again. Built from PNG bytes instead (``png=``: a queue-mode front
    end), it hands those very bytes on and opens them as pixels only when someone asks for
    :attr:`image`; :attr:`size` reads the PNG header. ``refetch``: how to get the bytes again for an
    image that holds none (a kept result that gave them back) — called on every ask, never kept.
    """

    __slots__ = ("_id", "_image", "_lock", "_png", "_refetch", "backend", "meta", "seed")

    def __init__(
        self,
        image: Image.Image | None,
        seed: int,
        backend: str,
        meta: dict[str, object] | None = None,
        *,
        png: bytes | None = None,
        refetch: Callable[[], bytes] | None = None,
    ) -> None:
        if image is None and png is None:
            raise ValueError("a GeneratedImage needs its pixels or its PNG bytes")
        self.seed = seed
        self.backend = backend
        self.meta: dict[str, object] = {} if meta is None else meta
        self._image = image
        self._png = png
        self._id: str | None = None
        self._refetch = refetch
        self._lock = threading.Lock()

    @property
    def image(self) -> Image.Image:
        """The pixels; for an image built from PNG bytes, those bytes opened (lazily, on first ask)."""
        if self._image is None:
            with self._lock:
                if self._image is None:
                    assert self._png is not None
                    img = Image.open(io.BytesIO(self._png))
                    img.load()  # decode now, under the lock: Image.open reads only the header
                    self._image = img
        return self._image

    @property
    def png(self) -> bytes:
        """The PNG bytes: the ones held, else encoded once (and kept), else fetched again (blocking)."""
        png = self._png
        if png is not None:
            return png
        if self._refetch is not None:
            return self._refetch()
        with self._lock:
            if self._png is None:
                assert self._image is not None  # one of the two is always there
                self._png = _png.encode_png(self._image)
            return self._png

    @property
    def held_png(self) -> bytes | None:
        """The PNG bytes if this image holds them already (no encoding, no fetching)."""
        return self._png

    @property
    def refetch(self) -> Callable[[], bytes] | None:
        return self._refetch

    @property
    def image_id(self) -> str:
        """The PNG's content id (:func:`~m2i_engine.imaging.png.png_id`); encodes the PNG if need be."""
        given = self.meta.get("image_id")
        if isinstance(given, str):
            return given
        if self._id is None:
            self._id = _png.png_id(self.png)
        return self._id

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), read off the PNG header when the pixels aren't open."""
        if self._image is None and self._png is not None:
            dims = _png.png_size(self._png)
            if dims is not None:
                return dims
        return self.image.size

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def __repr__(self) -> str:
        held = f"{len(self._png)} bytes" if self._png is not None else None
        return (
            f"GeneratedImage(seed={self.seed!r}, backend={self.backend!r}, size={self.size!r}, "
            f"png={held}, meta={self.meta!r})"
        )


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

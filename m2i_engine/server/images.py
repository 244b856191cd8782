"""Where the API keeps images for ``GET /v1/images/{id}.png``: memory, a shared folder, or Redis.

Image ids are content hashes (32 hex digits), checked before any lookup, so an id can never name a
path outside the store. In queue mode workers already stored the PNGs in Redis; a shared volume
(``M2I_SERVE__MEDIA_DIR``) replaces both when set.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

IMAGE_ID = re.compile(r"[0-9a-f]{32}")  # always used with fullmatch: "$" would let a trailing "\n" in


class ImageStore(Protocol):
    async def put(self, image_id: str, png: bytes) -> None: ...

    async def get(self, image_id: str) -> bytes | None: ...


class MemoryImages:
    """The last ``entries`` images of this process (single-process mode)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._data: OrderedDict[str, bytes] = OrderedDict()

    async def put(self, image_id: str, png: bytes) -> None:
        self._data[image_id] = png
        self._data.move_to_end(image_id)
        while len(self._data) > self.entries:
            self._data.popitem(last=False)

    async def get(self, image_id: str) -> bytes | None:
        return self._data.get(image_id) if IMAGE_ID.fullmatch(image_id) else None


class DirImages:
    """PNG files in a folder every API process and worker can see."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, image_id: str) -> Path:
        if not IMAGE_ID.fullmatch(image_id):
            raise ValueError("bad image id")
        return self.root / f"{image_id}.png"

    async def put(self, image_id: str, png: bytes) -> None:
        path = self._path(image_id)
        if path.exists():
            return
        await asyncio.to_thread(_write_atomic, path, png)

    async def get(self, image_id: str) -> bytes | None:
        if not IMAGE_ID.fullmatch(image_id):
            return None
        path = self._path(image_id)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None


class QueueImages:
    """Images the workers stored in Redis (queue mode)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def put(self, image_id: str, png: bytes) -> None:
        return None  # the worker stored it already

    async def get(self, image_id: str) -> bytes | None:
        if not IMAGE_ID.fullmatch(image_id):
            return None
        data: bytes | None = await self.engine.image(image_id)
        return data


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Where the API keeps images for ``GET /v1/images/{id}.png``: memory, a shared folder, or Redis — and
videos for ``GET /v1/videos/{id}.mp4``: files, in the same shared folder or a private temporary one.

Image and video ids are content hashes (32 hex digits), checked before any lookup, so an id can never
name a path outside the store. In queue mode workers already stored the PNGs in Redis; a shared volume
(``M2I_SERVE__MEDIA_DIR``) replaces both when set. Videos stay files (tens of MB are no Redis values, and
a file is served with ``Range`` support for players that seek): kept like images — the last
``image_entries`` of this process (and at most :data:`VIDEO_STORE_BYTES` of them) in a temporary folder,
or all of them in the shared volume, whose owner prunes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

IMAGE_ID = re.compile(r"[0-9a-f]{32}")  # always used with fullmatch: "$" would let a trailing "\n" in
#: the most bytes of videos a process keeps in its temporary folder (the oldest go first)
VIDEO_STORE_BYTES = 2 * 1024**3


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


class VideoStore(Protocol):
    async def put(self, video: Path) -> str: ...

    async def path(self, video_id: str) -> Path | None: ...

    async def close(self) -> None: ...


class FileVideos:
    """MP4 files named by their content hash in ``root``. ``entries``/``max_bytes``: keep only the newest
    that many (a private folder); ``None``: keep everything (a shared volume pruned by its owner).
    ``owned``: the folder is this store's, removed on :meth:`close`."""

    def __init__(
        self, root: Path, *, entries: int | None = None, max_bytes: int | None = None, owned: bool = False
    ) -> None:
        self.root = root
        self.entries = entries
        self.max_bytes = max_bytes
        self.owned = owned
        root.mkdir(parents=True, exist_ok=True)
        self._kept: OrderedDict[str, int] = OrderedDict()  # id → bytes, oldest first

    @classmethod
    def private(cls, entries: int, max_bytes: int = VIDEO_STORE_BYTES) -> FileVideos:
        """A store in a new temporary folder of its own (single-process mode)."""
        return cls(
            Path(tempfile.mkdtemp(prefix="m2i-videos-")), entries=entries, max_bytes=max_bytes, owned=True
        )

    async def put(self, video: Path) -> str:
        """Move the finished file ``video`` into the store; returns its id."""
        video_id, size = await asyncio.to_thread(self._move_in, video)
        if self.entries is not None or self.max_bytes is not None:
            self._kept[video_id] = size
            self._kept.move_to_end(video_id)
            self._evict()
        return video_id

    async def path(self, video_id: str) -> Path | None:
        if not IMAGE_ID.fullmatch(video_id):
            return None
        path = self.root / f"{video_id}.mp4"
        return path if await asyncio.to_thread(path.is_file) else None

    async def close(self) -> None:
        if self.owned:
            await asyncio.to_thread(shutil.rmtree, self.root, True)

    def _move_in(self, video: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        with video.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        video_id = digest.hexdigest()[:32]
        target = self.root / f"{video_id}.mp4"
        size = video.stat().st_size
        if target.exists():
            video.unlink(missing_ok=True)  # the same video again (same song, options and seed)
        else:
            tmp = self.root / f".{video_id}.{os.getpid()}.{id(video):x}.tmp"
            shutil.move(video, tmp)  # a rename on one file system; a copy across them
            os.replace(tmp, target)  # never a half-copied file under a served name
        return video_id, size

    def _evict(self) -> None:
        def over() -> bool:
            return (self.entries is not None and len(self._kept) > self.entries) or (
                self.max_bytes is not None
                and sum(self._kept.values()) > self.max_bytes
                and len(self._kept) > 1
            )

        while over():
            old, _ = self._kept.popitem(last=False)
            (self.root / f"{old}.mp4").unlink(missing_ok=True)  # a download in progress keeps its handle


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Files a call makes for its caller: one way to create a temporary output and drop it when the call fails.

The engine's :meth:`~m2i_engine.engine.Engine.video`, the queue front end's copy of a worker's MP4 and the
worker's own scratch file all write "to ``out``, or to a new temporary file the caller owns":
:func:`owned_file` is that rule, written once. No imports from the rest of m2i, so any layer may use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["owned_file"]


@contextmanager
def owned_file(
    out: Path | None = None, *, suffix: str = ".mp4", prefix: str = "m2i-video-", keep: bool = True
) -> Iterator[Path]:
    """Yield ``out``, or (when it is None) the path of a new empty temporary file.

    A file made here is removed when the block raises (cancellation included), and also when it ends
    normally if ``keep`` is False (a scratch file read inside the block). A path the caller gave is
    never removed: it is theirs."""
    made = out is None
    if out is None:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix)
        os.close(fd)
        out = Path(name)
    try:
        yield out
    except BaseException:
        if made:
            out.unlink(missing_ok=True)
        raise
    if made and not keep:
        out.unlink(missing_ok=True)

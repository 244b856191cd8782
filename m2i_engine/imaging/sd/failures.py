"""The GPU's two ways to fail a picture — out of memory, or NaN/black output — recognised and named.

The backend catches these at its boundary (the pipeline call) and falls back: a smaller batch, then a
smaller image, then :class:`SDOutOfMemoryError`; a NaN/black image is retried once with another seed,
then :class:`SDBadOutputError`. Both are :class:`~m2i_engine.errors.ServiceError`, so every front end
shows a user sentence, never a traceback.
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from m2i_engine.errors import ServiceError

log = logging.getLogger(__name__)

#: a decoded image (values 0..1) whose brightest pixel is below this is "black": with the safety
#: checker disabled, that only happens when NaNs were clamped away
BLACK_MAX = 1.0 / 255.0


class SDOutOfMemoryError(ServiceError):
    code = "sd_out_of_memory"
    default_message = "The image generator ran out of memory, even for a smaller picture — try again later."


class SDBadOutputError(ServiceError):
    code = "sd_bad_output"
    default_message = "The image generator produced a broken picture; please try another seed."


#: each out-of-memory retry shrinks the long side to this fraction (the backend's own retry and the
#: serving engine's / queue worker's retry of a whole request take the same step)
OOM_SCALE = 0.75
#: no retry goes below this long side
OOM_MIN_SIDE = 256


def is_oom(exc: BaseException) -> bool:
    """True for our ``sd_out_of_memory`` and for CUDA/MPS/CPU allocator out-of-memory errors (typed or,
    in older code paths, by message). Never imports torch: without it loaded, nothing ran on a GPU."""
    if getattr(exc, "code", None) == "sd_out_of_memory":
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "cudnn_status_alloc_failed" in text)


def smaller_side(side: int, *, multiple: int = 64, min_side: int = OOM_MIN_SIDE) -> int | None:
    """The long side one out-of-memory step below ``side`` (snapped down to ``multiple``), or None when
    ``side`` is already as small as allowed."""
    smaller = max(min_side, int(side * OOM_SCALE) // multiple * multiple)
    return smaller if smaller < side else None


def free_memory() -> None:
    """Return cached allocator blocks after an OOM so the retry starts from a clean pool."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bad_items(tensor: Any, *, decoded: bool = False) -> list[int]:
    """Indices along the batch of items that contain NaN/inf, or — for ``decoded`` images in 0..1 —
    are black."""
    import torch

    flat = tensor.detach().float().reshape(tensor.shape[0], -1)
    bad = ~torch.isfinite(flat).all(dim=1)
    if decoded:
        bad |= flat.nan_to_num(0.0).amax(dim=1) < BLACK_MAX
    return [int(i) for i in torch.nonzero(bad).flatten()]

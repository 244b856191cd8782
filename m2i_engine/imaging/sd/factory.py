"""Settings → a ready Stable Diffusion backend: the one call the engine makes at startup.

:func:`load_sd_backend` checks :func:`~m2i_engine.imaging.sd.runtime.sd_available`, loads and
prepares the pipeline, preloads the configured LoRAs, warms the GPU up and — unless ``max_batch`` is 1 —
wraps the backend in the micro-batcher. Every failure is a :class:`BackendUnavailableError` or a
:class:`ModelLoadError` with a sentence a person can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from m2i_engine.errors import BackendUnavailableError
from m2i_engine.imaging.base import ImageBackend
from m2i_engine.imaging.sd.runtime import (
    as_sd_settings,
    load_pipeline,
    prepare_pipeline,
    resolve_runtime,
    sd_available,
)
from m2i_engine.options import Style

log = logging.getLogger(__name__)


def load_sd_backend(
    settings: Any,
    *,
    renderer: ImageBackend | None = None,
    style_loras: Mapping[Style, str] | None = None,
    batching: bool | None = None,
) -> ImageBackend:
    """Load the Stable Diffusion backend ``settings`` describe (an ``SDSettings`` or the app's
    ``Settings``, read from ``.sd``).

    ``renderer`` guides the music steering (default: the built-in renderer); ``style_loras`` maps style
    presets to LoRAs (default: the presets' own ``lora`` field). Returns an :class:`SDBatcher` when
    ``settings.max_batch > 1`` (or ``batching`` is True), else the plain :class:`SDBackend`; both are
    thread-safe :class:`ImageBackend` s. Call ``close()`` on it at shutdown.
    """
    sd = as_sd_settings(settings)
    ok, why = sd_available(sd)
    if not ok:
        raise BackendUnavailableError(f"Stable Diffusion isn't available: {why}.", detail=why)
    from m2i_engine.imaging.sd.backend import SDBackend  # torch/diffusers: only once they are known present
    from m2i_engine.imaging.sd.batcher import SDBatcher

    runtime = resolve_runtime(sd)
    pipe = prepare_pipeline(load_pipeline(sd, runtime), sd, runtime)
    if renderer is None:
        from m2i_engine.imaging.renderer import Renderer

        renderer = Renderer()
    backend = SDBackend.from_pipeline(
        pipe, sd, renderer=renderer, style_loras=style_loras, model_name=sd.model
    )
    backend.loras.preload(sd.loras)
    if sd.warmup and runtime.is_gpu:
        backend.warmup()
    log.info(
        "Stable Diffusion ready: %s (%s, %s on %s)",
        sd.model,
        backend.profile.family,
        runtime.dtype_name,
        runtime.device,
    )
    if batching if batching is not None else sd.max_batch > 1:
        return SDBatcher(backend, max_batch=sd.max_batch, window_ms=sd.batch_window_ms)
    return backend

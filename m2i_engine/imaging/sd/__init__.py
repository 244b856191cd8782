"""Stable Diffusion image backend (diffusers): SD 1.x/2.x, SDXL and few-step models, LoRAs, batching.

Importing this package is cheap: the settings model loads no torch, and the heavy parts are imported
on first use. Engine wiring::

    from m2i_engine.imaging.sd import load_sd_backend, sd_available

    ok, why = sd_available(settings.sd)
    if ok:
        backends["sd"] = load_sd_backend(settings.sd)   # an ImageBackend; close() it at shutdown

Settings live in the config layer, :mod:`m2i_engine.config.sd` (``SDSettings``, env ``M2I_SD__*``),
and are re-exported here. Modules: :mod:`.runtime` (availability, loading, device options),
:mod:`.profile` (model facts, sizes), :mod:`.backend` (``SDBackend``), :mod:`.batcher` (``SDBatcher``),
:mod:`.prompt_embeds` (phrase weighting), :mod:`.steering` (the renderer's composition and palette),
:mod:`.lora`, :mod:`.schedulers`, :mod:`.failures`, :mod:`.factory`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m2i_engine.config.sd import LoraSpec, SDSettings, SteeringSettings

if TYPE_CHECKING:
    from m2i_engine.imaging.sd.backend import SDBackend, SDOptions
    from m2i_engine.imaging.sd.batcher import SDBatcher
    from m2i_engine.imaging.sd.factory import load_sd_backend
    from m2i_engine.imaging.sd.failures import SDBadOutputError, SDOutOfMemoryError
    from m2i_engine.imaging.sd.runtime import sd_available, sd_off_summary

__all__ = [
    "LoraSpec",
    "SDBackend",
    "SDBadOutputError",
    "SDBatcher",
    "SDOptions",
    "SDOutOfMemoryError",
    "SDSettings",
    "SteeringSettings",
    "load_sd_backend",
    "sd_available",
    "sd_off_summary",
]

_LAZY = {
    "SDBackend": "backend",
    "SDOptions": "backend",
    "SDBatcher": "batcher",
    "load_sd_backend": "factory",
    "SDBadOutputError": "failures",
    "SDOutOfMemoryError": "failures",
    "sd_available": "runtime",
    "sd_off_summary": "runtime",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""LoRA adapters on a live pipeline: load each once (folder, file or hub id), then switch sets per call.

Adapters are peft-format LoRAs as diffusers reads them (``pytorch_lora_weights.safetensors``, what
``training/train_lora.py`` writes). Several can be active at once with their own weights; a call with
none disables them all without unloading, so switching costs a ``set_adapters`` and no disk read.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from m2i_engine.config.sd import LoraSpec
from m2i_engine.errors import ModelLoadError

log = logging.getLogger(__name__)

#: (adapter, weight) pairs for one call, in a hashable form
ActiveLoras = tuple[tuple[LoraSpec, float], ...]


def adapter_name(spec: LoraSpec) -> str:
    """A stable peft adapter name for ``spec`` (its ``name``, or the source's stem plus a short hash)."""
    if spec.name:
        return re.sub(r"\W+", "_", spec.name)
    key = f"{spec.source}|{spec.weight_name or ''}"
    stem = re.sub(r"\W+", "_", Path(spec.source.rstrip("/")).name or "lora")[:32]
    return f"{stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class LoraManager:
    """Loads adapters into one pipeline on first use and activates the set each call asks for."""

    def __init__(self, pipe: Any, *, loader_kwargs: dict[str, Any] | None = None) -> None:
        self.pipe = pipe
        self._loader_kwargs = dict(loader_kwargs or {})
        self._loaded: dict[str, LoraSpec] = {}
        self._active: tuple[tuple[str, float], ...] = ()

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    @property
    def active(self) -> tuple[tuple[str, float], ...]:
        return self._active

    def preload(self, specs: Sequence[LoraSpec]) -> None:
        """Load ``specs`` now (at startup) so a broken adapter fails the server, not a user's request."""
        for spec in specs:
            self._ensure(spec)

    def activate(self, loras: ActiveLoras) -> tuple[tuple[str, float], ...]:
        """Make exactly ``loras`` active (weight 0 entries are skipped); returns (name, weight) pairs."""
        merged: dict[str, float] = {}
        for spec, weight in loras:
            if weight != 0:
                name = self._ensure(spec)
                merged[name] = merged.get(name, 0.0) + weight
        wanted = tuple(merged.items())
        if wanted == self._active:
            return wanted
        if not wanted:
            if self._loaded:
                self.pipe.disable_lora()
        else:
            self.pipe.enable_lora()
            self.pipe.set_adapters([n for n, _ in wanted], adapter_weights=[w for _, w in wanted])
        self._active = wanted
        return wanted

    def unload(self, spec: LoraSpec) -> None:
        """Remove one adapter's weights from the pipeline."""
        name = adapter_name(spec)
        if name in self._loaded:
            self.pipe.delete_adapters([name])
            del self._loaded[name]
            self._active = tuple((n, w) for n, w in self._active if n != name)

    def _ensure(self, spec: LoraSpec) -> str:
        name = adapter_name(spec)
        if name in self._loaded:
            return name
        source, weight_name = spec.source, spec.weight_name
        path = Path(source).expanduser()
        if path.is_file():  # a bare .safetensors file
            source, weight_name = str(path.parent), path.name
        elif path.is_dir():
            source = str(path)
        elif source.startswith(("/", ".", "~")):
            raise ModelLoadError(
                f"The LoRA adapter '{spec.source}' was not found.", detail=f"no such file or folder: {path}"
            )
        kwargs = dict(self._loader_kwargs)
        if weight_name:
            kwargs["weight_name"] = weight_name
        try:
            self.pipe.load_lora_weights(source, adapter_name=name, **kwargs)
        except Exception as exc:
            raise ModelLoadError(
                f"The LoRA adapter '{spec.source}' could not be loaded.",
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
        self._loaded[name] = spec
        self._active = ()  # loading may change which adapters peft considers active
        log.info("loaded LoRA %s as %r", spec.source, name)
        return name

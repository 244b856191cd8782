"""m2i engine: everything musical and visual — decode, analyse, prompt, draw — behind one async API.

Front ends (CLI, chat bots, HTTP) use :class:`Engine`; nothing here knows about Discord or Telegram.
Names are imported lazily so that ``import m2i_engine.options`` stays cheap (no librosa, no skia).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AudioLimits": "config",
    "Settings": "config",
    "AnalysisResult": "engine",
    "Engine": "engine",
    "Progress": "engine",
    "Stage": "engine",
    "VisualizeResult": "engine",
    "M2IError": "errors",
    "Aspect": "options",
    "Backend": "options",
    "Style": "options",
    "VisualizeOptions": "options",
    "Tags": "tags",
}
__all__ = [
    "AnalysisResult",
    "Aspect",
    "AudioLimits",
    "Backend",
    "Engine",
    "M2IError",
    "Progress",
    "Settings",
    "Stage",
    "Style",
    "Tags",
    "VisualizeOptions",
    "VisualizeResult",
]

if TYPE_CHECKING:
    from m2i_engine.config import AudioLimits, Settings
    from m2i_engine.engine import AnalysisResult, Engine, Progress, Stage, VisualizeResult
    from m2i_engine.errors import M2IError
    from m2i_engine.options import Aspect, Backend, Style, VisualizeOptions
    from m2i_engine.tags import Tags


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"m2i_engine.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'm2i_engine' has no attribute {name!r}")

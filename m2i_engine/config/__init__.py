"""One typed place for every setting: environment variables (``M2I_*``) or a ``.env`` file.

Front ends read :class:`Settings` once and pass it to the engine; nothing else reads the
environment, so a deployment is fully described by its variables.

This package is the bottom of the settings tree and owns every settings model (pure pydantic, nothing
heavy): :mod:`.settings` (``Settings``, the root), :mod:`.limits` (``AudioLimits``, ``M2I_LIMITS__*``),
:mod:`.sd` (``SDSettings``, ``M2I_SD__*``), :mod:`.serve` (``ServeSettings``, ``M2I_SERVE__*``) and
:mod:`.queue` (``QueueSettings``, ``M2I_QUEUE__*``). The layers that use them import them from here;
it imports none of them.
"""

from __future__ import annotations

from m2i_engine.config.limits import AudioLimits
from m2i_engine.config.queue import QueueSettings
from m2i_engine.config.sd import LoraSpec, SDSettings, SteeringSettings
from m2i_engine.config.serve import ServeSettings
from m2i_engine.config.settings import Settings

__all__ = [
    "AudioLimits",
    "LoraSpec",
    "QueueSettings",
    "SDSettings",
    "ServeSettings",
    "Settings",
    "SteeringSettings",
]

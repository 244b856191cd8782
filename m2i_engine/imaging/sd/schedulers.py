"""Scheduler names users can type ("euler_a", "dpm++_karras", "lcm", "turbo") → diffusers schedulers.

Every scheduler is built from the model's own scheduler config (betas, prediction type, timestep
count), so switching one never changes what the model was trained with; only the sampling method.
Instances are cached per name: schedulers hold state while sampling, and the backend runs one call at
a time under its lock.
"""

from __future__ import annotations

from typing import Any

from m2i_engine.config.sd import SCHEDULER_NAMES
from m2i_engine.errors import InvalidOptionError

#: name → (diffusers class name, config overrides)
_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
    # SD-Turbo / SDXL-Turbo: ancestral Euler over trailing timesteps (the distillation's sampling)
    "turbo": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
}

#: few-step models want timesteps that end at the last training step
_TRAILING_FOR_FEW_STEP = {"euler", "euler_a", "dpm++", "unipc", "ddim"}


class SchedulerBank:
    """Schedulers for one model, by name, each built once from the model's scheduler config."""

    def __init__(self, base: Any, *, few_step: bool = False) -> None:
        self.base = base
        self._few_step = few_step
        self._cache: dict[str, Any] = {}

    def get(self, name: str | None) -> Any:
        """The scheduler called ``name`` (None: the model's own)."""
        if name is None:
            return self.base
        key = name.strip().lower()
        if key not in self._cache:
            if key not in _TABLE:
                raise InvalidOptionError(
                    f"Unknown scheduler '{name}'; choose one of {', '.join(SCHEDULER_NAMES)}."
                )
            self._cache[key] = self._build(key)
        return self._cache[key]

    def _build(self, key: str) -> Any:
        import diffusers

        cls_name, overrides = _TABLE[key]
        cls = getattr(diffusers, cls_name)
        config = dict(self.base.config)
        extra = dict(overrides)
        if self._few_step and key in _TRAILING_FOR_FEW_STEP:
            extra.setdefault("timestep_spacing", "trailing")
        return cls.from_config(config, **extra)

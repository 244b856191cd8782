"""What a loaded model needs, read from its own components: family, size grid, native area, defaults.

A pipeline is described once after loading (:func:`describe_pipeline`) so the rest of the backend never
guesses from names again: SD 1.5 wants 512² in steps of 64 px, SDXL 1024², a turbo model 4 steps and
no guidance, and a test's tiny model 64² — all from its configs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from m2i_engine.config.sd import SDSettings

Family = Literal["sd15", "sdxl"]
FewStep = Literal["turbo", "lcm", "lightning"]

DEFAULT_STEPS = 25
FEW_STEPS = 4


@dataclass(frozen=True)
class ModelProfile:
    """Facts about one loaded model and the defaults that follow from them."""

    family: Family
    #: pixels per latent cell (8 for every released SD VAE)
    vae_scale_factor: int
    #: generated sides are rounded to this many pixels (VAE factor × UNet downsampling, and a
    #: multiple of 8 as the pipelines require)
    size_multiple: int
    #: the area the model was trained at, in pixels (512² for SD 1.5, 1024² for SDXL)
    native_pixels: int
    few_step: FewStep | None
    default_steps: int
    default_guidance: float
    #: the scheduler the few-step distillation expects (None: keep the model's own)
    default_scheduler: str | None


def describe_pipeline(pipe: Any, settings: SDSettings) -> ModelProfile:
    """Profile a loaded diffusers pipeline under ``settings`` (family, grid, few-step defaults)."""
    family: Family = "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd15"
    if settings.family != "auto":
        family = settings.family
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    unet_down = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    native_side = int(pipe.unet.config.sample_size) * vae_scale
    few = few_step_kind(settings)
    if few is None:
        steps, guidance = DEFAULT_STEPS, (6.0 if family == "sdxl" else 7.0)
        scheduler = None
    elif few == "lcm":
        steps, guidance, scheduler = FEW_STEPS, 1.0, "lcm"
    else:  # turbo / lightning: trained without classifier-free guidance, trailing timesteps
        steps, guidance, scheduler = FEW_STEPS, 0.0, "turbo" if few == "turbo" else "euler"
    return ModelProfile(
        family=family,
        vae_scale_factor=vae_scale,
        size_multiple=math.lcm(vae_scale * unet_down, 8),
        native_pixels=native_side * native_side,
        few_step=few,
        default_steps=steps,
        default_guidance=guidance,
        default_scheduler=scheduler,
    )


def few_step_kind(settings: SDSettings) -> FewStep | None:
    """Which few-step family ``settings`` describe: explicit flag, scheduler, or the model's name."""
    if settings.few_step is False:
        return None
    name = (settings.model or "").lower()
    lora_names = " ".join(s.source.lower() for s in settings.loras)
    if settings.scheduler in ("lcm", "tcd") or "lcm" in name or "lcm" in lora_names:
        return "lcm"
    if "lightning" in name or "lightning" in lora_names or "hyper" in name:
        return "lightning"
    if settings.scheduler == "turbo" or "turbo" in name:
        return "turbo"
    return "turbo" if settings.few_step else None


def plan_size(
    width: int, height: int, *, multiple: int, max_pixels: int, min_side: int = 0
) -> tuple[int, int]:
    """The size to generate for a ``width``×``height`` request.

    Keeps the aspect ratio, shrinks to at most ``max_pixels`` of area, and rounds each side to
    ``multiple`` (never below one ``multiple`` nor, where the request allows it, below ``min_side``).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    scale = min(1.0, (max_pixels / float(width * height)) ** 0.5)
    floor = max(multiple, min(min_side, width, height) // multiple * multiple)

    def snap(x: float) -> int:
        return max(floor, int(x * scale / multiple) * multiple)

    w, h = snap(width), snap(height)
    while w * h > max_pixels and max(w, h) > floor:  # rounding can overshoot by one step
        if w >= h:
            w -= multiple
        else:
            h -= multiple
    return w, h

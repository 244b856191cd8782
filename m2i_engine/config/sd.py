"""Every Stable Diffusion knob in one typed model, so a deployment is described by ``M2I_SD__*`` variables.

Mounted by the main :class:`~m2i_engine.config.Settings` as ``Settings.sd``; each field below is then
``M2I_SD__<FIELD>`` (nested: ``M2I_SD__STEERING__INIT``; lists as JSON, e.g.
``M2I_SD__LORAS='[{"source": "/loras/ink", "weight": 0.7}]'``). The backend in
:mod:`m2i_engine.imaging.sd` reads it. This module imports nothing heavy: reading the configuration
never loads torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: scheduler names accepted by ``scheduler`` (see :mod:`m2i_engine.imaging.sd.schedulers`)
SCHEDULER_NAMES = (
    "ddim",
    "pndm",
    "euler",
    "euler_a",
    "dpm++",
    "dpm++_karras",
    "dpm++_sde_karras",
    "unipc",
    "lms",
    "heun",
    "lcm",
    "tcd",
    "turbo",
)


class LoraSpec(BaseModel):
    """One LoRA adapter (peft format, as ``training/train_lora.py`` writes it) and its strength."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Folder, .safetensors file or hub id of the adapter.")
    weight: float = Field(1.0, ge=-4.0, le=4.0, description="Adapter strength; 0 leaves it off.")
    name: str | None = Field(None, description="Adapter name; derived from the source when omitted.")
    weight_name: str | None = Field(None, description="File inside a folder/hub repo holding several.")


class SteeringSettings(BaseModel):
    """How the music steers the picture beyond the words of the prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    init: Literal["none", "composition", "palette"] = Field(
        "composition",
        description="Start from the built-in renderer's picture of the song ('composition'), from its "
        "colours only (a heavily blurred render: 'palette'), or from noise ('none').",
    )
    init_strength: float = Field(
        0.85,
        gt=0.0,
        le=1.0,
        description="How much Stable Diffusion may change the init picture (diffusers' img2img "
        "'strength'): 1.0 ignores it, 0.5 keeps its layout and colours clearly.",
    )
    palette_transfer: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Pull the finished image's colour statistics toward the renderer's palette "
        "(0 off, 1 full Reinhard transfer in OKLab).",
    )
    phrase_weighting: float = Field(
        1.0,
        ge=0.0,
        le=2.0,
        description="Scale of the per-phrase prompt weights taken from tag confidences "
        "(0 plain prompt, 1 the builder's weights, 2 twice their deviation from 1).",
    )


class SDSettings(BaseModel):
    """The Stable Diffusion backend's configuration (``Settings.sd``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- which model -----------------------------------------------------------------------------
    model: str | None = Field(None, description="Diffusers folder or hub id (SD 1.5/2.x, SDXL, turbo, LCM).")
    family: Literal["auto", "sd15", "sdxl"] = Field(
        "auto", description="Pipeline family; 'auto' reads model_index.json."
    )
    few_step: bool | None = Field(
        None,
        description="A distilled few-step model (turbo/LCM/lightning); None guesses from the "
        "model name and scheduler.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    variant: str | None = Field(None, description="Weights variant to load, e.g. 'fp16'.")
    local_files_only: bool = Field(False, description="Never download; use the local folder/cache only.")
    cache_dir: Path | None = Field(None, description="Hub cache folder (default: HF_HOME).")

    # --- where and how it runs -------------------------------------------------------------------
    device: str = Field("auto", description="'auto' (CUDA when present), 'cuda', 'cuda:1', 'cpu', 'mps'.")
    allow_cpu: bool = Field(False, description="Serve from the CPU when no GPU is present (slow: minutes).")
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = Field(
        "auto", description="'auto': fp16 on CUDA, fp32 on CPU."
    )
    seed_device: Literal["auto", "cpu"] = Field(
        "auto",
        description="Device of the per-image torch.Generator; 'cpu' makes seeds portable "
        "across GPU models at no measurable cost.",
    )
    compile: bool = Field(False, description="torch.compile the UNet (CUDA; slow first call, then faster).")
    channels_last: bool = Field(True, description="channels_last memory format for the UNet/VAE on CUDA.")
    attention_slicing: bool = Field(False, description="Lower peak memory, slower; for small GPUs.")
    vae_tiling: bool | None = Field(
        None, description="Decode in tiles; None enables it above 1024×1024 generated pixels."
    )
    warmup: bool = Field(True, description="Run one small generation at load on CUDA (kernels, compile).")

    # --- generation defaults ---------------------------------------------------------------------
    scheduler: str | None = Field(
        None,
        description=f"One of {', '.join(SCHEDULER_NAMES)}; None keeps the model's own (or the few-step one).",
    )
    steps: int | None = Field(None, ge=1, le=150, description="Denoising steps; None: 25, or 4 few-step.")
    guidance: float | None = Field(
        None, ge=0.0, le=30.0, description="Classifier-free guidance; None: 7.0 (SDXL 6.0), few-step 0/1."
    )
    max_pixels: int | None = Field(
        None,
        ge=64 * 64,
        description="Largest generated area; bigger requests are generated at this "
        "area and resized. None: the model's native area.",
    )
    min_side_px: int = Field(256, ge=8, description="Smallest side the out-of-memory fallback goes down to.")

    # --- adapters --------------------------------------------------------------------------------
    loras: tuple[LoraSpec, ...] = Field((), description="Adapters applied to every image.")
    style_loras: bool = Field(True, description="Load the LoRA a style preset names (prompt.styles).")
    style_lora_weight: float = Field(0.8, ge=0.0, le=4.0, description="Strength of a preset's LoRA.")

    # --- music steering, serving, failures -------------------------------------------------------
    steering: SteeringSettings = SteeringSettings()
    max_batch: int = Field(
        4, ge=1, le=16, description="Most images in one pipeline call (1 disables batching)."
    )
    batch_window_ms: float = Field(
        20.0, ge=0.0, le=1000.0, description="How long the batcher waits for company."
    )
    nan_retries: int = Field(1, ge=0, le=3, description="Retries with another seed after a NaN/black image.")

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if v not in SCHEDULER_NAMES:
            raise ValueError(f"unknown scheduler {v!r}; choose one of {', '.join(SCHEDULER_NAMES)}")
        return v

"""Can Stable Diffusion run here, and load it: model location, device, dtype, speed options.

:func:`sd_available` answers cheaply — no weights are read — so the engine can decide at startup
whether ``auto`` means Stable Diffusion or the built-in renderer. :func:`load_pipeline` reads the
weights (a diffusers folder, or a hub id that is downloaded on first use) and :func:`prepare_pipeline`
applies the speed/memory options that help on the chosen device.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2i_engine.config.sd import SDSettings
from m2i_engine.errors import ModelLoadError

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: pipelines this backend drives, by the ``_class_name`` in model_index.json → family
_FAMILIES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionImg2ImgPipeline": "sd15",
    "LatentConsistencyModelPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
}
#: above this many generated pixels the VAE decodes in tiles when ``vae_tiling`` is None
VAE_TILING_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class Runtime:
    """Where the model runs and in what precision."""

    device: str
    dtype_name: str

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith(("cuda", "mps"))

    @property
    def dtype(self) -> Any:
        import torch

        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[self.dtype_name]


def resolve_runtime(settings: SDSettings) -> Runtime:
    """The device and dtype ``settings`` ask for: 'auto' is CUDA (then MPS) when present, else CPU;
    fp16 on a GPU, fp32 on the CPU (fp16 is not offered on the CPU: it is slower and unstable there)."""
    import torch

    device = settings.device
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    dtype = settings.dtype
    if dtype == "auto":
        dtype = "fp32" if device == "cpu" else "fp16"
    elif dtype == "fp16" and device == "cpu":
        log.warning("fp16 is not supported on the CPU; using fp32")
        dtype = "fp32"
    return Runtime(device=device, dtype_name=dtype)


def sd_available(settings: Any) -> tuple[bool, str]:
    """Whether Stable Diffusion can be served with ``settings`` (an :class:`SDSettings`, or the app's
    ``Settings`` holding one as ``.sd``), and a sentence saying why (not). Reads no weights."""
    settings = as_sd_settings(settings)
    if not settings.model:
        return False, (
            "no Stable Diffusion model is configured (set M2I_SD__MODEL to a diffusers folder or hub id)"
        )
    try:
        import diffusers  # noqa: F401
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        return False, f"the Stable Diffusion packages are not installed ({exc.name}): pip install 'm2i[sd]'"
    ok, where = locate_model(settings)
    if not ok:
        return False, where
    try:
        runtime = resolve_runtime(settings)
        if runtime.device.startswith("cuda"):
            torch.device(runtime.device)  # validates 'cuda:N'
            if not torch.cuda.is_available():
                return False, f"device {runtime.device} was asked for but no CUDA GPU is visible"
    except RuntimeError as exc:
        return False, f"device {settings.device!r} is not usable: {exc}"
    if not runtime.is_gpu and not settings.allow_cpu:
        return False, (
            "no GPU found; set M2I_SD__ALLOW_CPU=true to generate on the CPU "
            "(about a minute or more per image)"
        )
    return True, f"{settings.model} ({where}) on {runtime.device}, {runtime.dtype_name}"


def sd_off_summary(settings: Any) -> str:
    """Why Stable Diffusion is off, in words for anyone (a chat user too): no settings, paths or
    commands. :func:`sd_available`'s reason is the operator's version of it."""
    if not as_sd_settings(settings).model:
        return "this server has no Stable Diffusion model"
    return "Stable Diffusion isn't set up on this server"


def as_sd_settings(settings: Any) -> SDSettings:
    if isinstance(settings, SDSettings):
        return settings
    sd = getattr(settings, "sd", None)
    if isinstance(sd, SDSettings):
        return sd
    raise TypeError(f"expected SDSettings or a Settings with .sd, got {type(settings).__name__}")


def locate_model(settings: SDSettings) -> tuple[bool, str]:
    """Whether the configured weights are present (folder / hub cache) or may be downloaded."""
    model = settings.model or ""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            return False, f"{path} is not a diffusers pipeline folder (no model_index.json)"
        return True, "local folder"
    if path.exists():
        return False, (
            f"{path} is a single file; convert it to a diffusers folder first "
            "(diffusers' convert_original_stable_diffusion_to_diffusers.py)"
        )
    if model.startswith(("/", ".", "~")) or not _HUB_ID.match(model):
        return False, f"no such model folder: {path}"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(
            model, "model_index.json", cache_dir=settings.cache_dir, revision=settings.revision
        )
    except Exception:  # an unusual cache layout must not make a configured model "unavailable"
        cached = None
    if isinstance(cached, str):
        return True, "hub id, in the local cache"
    if settings.local_files_only:
        return False, f"hub model {model} is not in the local cache and local_files_only is set"
    return True, "hub id, downloaded on first load"


def read_model_index(settings: SDSettings) -> dict[str, Any]:
    """The pipeline's model_index.json (a small download for a hub id)."""
    path = Path(settings.model or "").expanduser()
    if path.is_dir():
        return dict(json.loads((path / "model_index.json").read_text()))
    from diffusers import DiffusionPipeline

    return dict(
        DiffusionPipeline.load_config(
            settings.model,
            revision=settings.revision,
            cache_dir=settings.cache_dir,
            local_files_only=settings.local_files_only,
        )
    )


def load_pipeline(settings: SDSettings, runtime: Runtime) -> Any:
    """Load the text-to-image pipeline ``settings.model`` names onto ``runtime``; the safety checker is
    left out (the backend detects NaN/black output itself). Raises :class:`ModelLoadError`."""
    try:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        index = read_model_index(settings)
        class_name = str(index.get("_class_name", ""))
        family = settings.family if settings.family != "auto" else _FAMILIES.get(class_name)
        if family is None:
            family = "sdxl" if "text_encoder_2" in index else "sd15" if "unet" in index else None
        if family is None:
            raise ModelLoadError(
                f"{settings.model} is a {class_name or 'unknown'} model; m2i drives "
                "Stable Diffusion 1.x/2.x and SDXL-class pipelines."
            )
        kwargs: dict[str, Any] = {
            _dtype_kwarg(): runtime.dtype,
            "revision": settings.revision,
            "variant": settings.variant,
            "cache_dir": settings.cache_dir,
            "local_files_only": settings.local_files_only,
        }
        if family == "sd15":
            pipe = StableDiffusionPipeline.from_pretrained(
                settings.model,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                **kwargs,
            )
        else:
            pipe = StableDiffusionXLPipeline.from_pretrained(settings.model, **kwargs)
        pipe.to(runtime.device)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"The Stable Diffusion model '{settings.model}' could not be loaded.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (the old name warns from then on)."""
    try:
        from diffusers.utils import deprecation_utils

        return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    except ImportError:
        return "torch_dtype"


def prepare_pipeline(pipe: Any, settings: SDSettings, runtime: Runtime) -> Any:
    """Apply the speed/memory options that help on ``runtime`` (in place; returns ``pipe``)."""
    import torch

    if runtime.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if settings.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    if settings.compile:
        if runtime.device == "cpu":
            log.warning("torch.compile is only enabled on a GPU; ignored")
        else:
            # in place (nn.Module.compile) so the UNet keeps its type: LoRA loading still works
            pipe.unet.compile(fullgraph=False, dynamic=False)
    return pipe


def use_vae_tiling(settings: SDSettings, width: int, height: int) -> bool:
    if settings.vae_tiling is not None:
        return settings.vae_tiling
    return width * height > VAE_TILING_PIXELS

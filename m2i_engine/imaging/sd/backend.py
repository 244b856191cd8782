"""The Stable Diffusion image backend: a song's prompt, palette and composition → pictures, on diffusers.

:class:`SDBackend` is built from a loaded pipeline and its helpers (all passed in, see
:meth:`SDBackend.from_pipeline`) and has one entry point, :meth:`~SDBackend.generate`. A request goes
through explicit steps, each its own method, so the micro-batcher can run the middle one for many
requests at once:

1. :meth:`~SDBackend.prepare` (CPU, no lock) — size on the model's grid, seeds, steps/guidance/
   scheduler/LoRAs, and the renderer's guides (init picture, palette) → a :class:`Job`;
2. :meth:`~SDBackend.run` (GPU, under the pipeline lock) — activate LoRAs → encode prompts with phrase
   weights → denoise → decode, with the out-of-memory and NaN fallbacks at this boundary;
3. :meth:`~SDBackend.finish` — resize to the requested size, palette transfer, metadata.

Same seed + same options → same image on the same device: every image draws its noise from its own
``torch.Generator(device).manual_seed(request.seed + i)``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from m2i_engine.config.sd import LoraSpec, SDSettings, SteeringSettings
from m2i_engine.imaging.base import GeneratedImage, ImageBackend, ImageRequest
from m2i_engine.imaging.sd.failures import (
    OOM_SCALE,
    SDBadOutputError,
    SDOutOfMemoryError,
    bad_items,
    free_memory,
    is_oom,
)
from m2i_engine.imaging.sd.lora import ActiveLoras, LoraManager
from m2i_engine.imaging.sd.profile import ModelProfile, describe_pipeline, plan_size
from m2i_engine.imaging.sd.prompt_embeds import PromptEncoder
from m2i_engine.imaging.sd.runtime import use_vae_tiling
from m2i_engine.imaging.sd.schedulers import SchedulerBank
from m2i_engine.imaging.sd.steering import MusicGuide, MusicSteering
from m2i_engine.options import Style
from m2i_engine.prompt import Prompt
from m2i_engine.prompt.styles import PRESETS

log = logging.getLogger(__name__)

#: a NaN/black image is retried with ``seed + attempt * NAN_SEED_STEP`` (a large odd step, so the
#: retry never lands on the seed of a sibling image)
NAN_SEED_STEP = 1_000_003


@dataclass(frozen=True)
class SDOptions:
    """Per-call overrides of the settings' generation defaults (None: keep the default)."""

    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    #: replaces ``settings.loras`` (the style preset's LoRA is still added)
    loras: tuple[LoraSpec, ...] | None = None
    steering: SteeringSettings | None = None


@dataclass(frozen=True)
class CallKey:
    """Everything images must share to be generated in one pipeline call."""

    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str | None
    loras: ActiveLoras
    #: img2img strength; None for text-to-image
    strength: float | None
    phrase_weighting: float


@dataclass(frozen=True)
class Item:
    """One image to make."""

    prompt: Prompt
    seed: int
    init_image: Image.Image | None = None


@dataclass
class Output:
    """One generated image as it left the pipeline, and how it was made."""

    pixels: torch.Tensor  # 3×H×W, float 0..1, CPU
    seed_used: int
    size: tuple[int, int]


@dataclass
class Job:
    """One request, prepared: the CPU work is done and it can run alone or in a batch."""

    request: ImageRequest
    key: CallKey
    items: list[Item]
    guides: list[MusicGuide]
    steering: SteeringSettings
    meta: dict[str, object] = field(default_factory=dict)


class SDBackend(ImageBackend):
    """Stable Diffusion (1.x/2.x, SDXL, turbo/LCM) as an :class:`ImageBackend`; thread-safe."""

    name = "sd"

    def __init__(
        self,
        pipeline: Any,
        *,
        settings: SDSettings,
        profile: ModelProfile,
        encoder: PromptEncoder,
        schedulers: SchedulerBank,
        loras: LoraManager,
        steering: MusicSteering,
        style_loras: Mapping[Style, str] | None = None,
        model_name: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.profile = profile
        self.encoder = encoder
        self.schedulers = schedulers
        self.loras = loras
        self.steering = steering
        self.style_loras = dict(style_loras or {})
        self.model_name = model_name or settings.model or "stable-diffusion"
        self._lock = threading.RLock()
        self._img2img: Any = None
        self._vae_fp32 = False
        #: pipeline calls made (tests and the batcher's stats read it)
        self.calls = 0

    @classmethod
    def from_pipeline(
        cls,
        pipeline: Any,
        settings: SDSettings,
        *,
        renderer: ImageBackend | None = None,
        style_loras: Mapping[Style, str] | None = None,
        model_name: str | None = None,
    ) -> SDBackend:
        """Assemble the backend's helpers around a loaded (and prepared) diffusers pipeline."""
        profile = describe_pipeline(pipeline, settings)
        if style_loras is None:
            style_loras = {p.style: p.lora for p in PRESETS.values() if p.lora}
        loader = {"cache_dir": settings.cache_dir, "local_files_only": settings.local_files_only}
        return cls(
            pipeline,
            settings=settings,
            profile=profile,
            encoder=PromptEncoder.from_pipeline(pipeline),
            schedulers=SchedulerBank(pipeline.scheduler, few_step=profile.few_step is not None),
            loras=LoraManager(pipeline, loader_kwargs=loader),
            steering=MusicSteering(renderer),
            style_loras=style_loras,
            model_name=model_name,
        )

    # --- the one entry point -----------------------------------------------------------------------

    def generate(self, request: ImageRequest, options: SDOptions | None = None) -> list[GeneratedImage]:
        """``request.num_images`` images; image *i* uses seed ``request.seed + i``."""
        job = self.prepare(request, options)
        return self.finish(job, self.run(job.key, job.items))

    # --- step 1: plan (CPU) --------------------------------------------------------------------------

    def prepare(self, request: ImageRequest, options: SDOptions | None = None) -> Job:
        """Resolve sizes, seeds and options, and render the music guides; no GPU work."""
        opts = options or SDOptions()
        s, prof = self.settings, self.profile
        steering = opts.steering or s.steering
        steps = opts.steps or s.steps or prof.default_steps
        guidance = (
            opts.guidance
            if opts.guidance is not None
            else (s.guidance if s.guidance is not None else prof.default_guidance)
        )
        scheduler = opts.scheduler or s.scheduler or prof.default_scheduler
        if scheduler is not None:
            self.schedulers.get(scheduler)  # unknown names fail here, before any work
        width, height = plan_size(
            request.width,
            request.height,
            multiple=prof.size_multiple,
            max_pixels=s.max_pixels or prof.native_pixels,
        )
        guides = self.steering.guides(request, width=width, height=height, settings=steering)
        strength = steering.init_strength if any(g.init_image is not None for g in guides) else None
        key = CallKey(
            width=width,
            height=height,
            steps=steps,
            guidance=float(guidance),
            scheduler=scheduler,
            loras=self._loras_for(request, opts),
            strength=strength,
            phrase_weighting=steering.phrase_weighting,
        )
        items = [
            Item(prompt=request.prompt, seed=request.seed + i, init_image=g.init_image)
            for i, g in enumerate(guides)
        ]
        return Job(request=request, key=key, items=items, guides=guides, steering=steering)

    def _loras_for(self, request: ImageRequest, opts: SDOptions) -> ActiveLoras:
        chosen = opts.loras if opts.loras is not None else self.settings.loras
        specs = [(spec, spec.weight) for spec in chosen]
        if self.settings.style_loras:
            style = request.prompt.concrete_style(request.tags)
            source = self.style_loras.get(style)
            if source:
                specs.append((LoraSpec(source=source), self.settings.style_lora_weight))
        return tuple(specs)

    # --- step 2: run (GPU, locked, with fallbacks) -------------------------------------------------

    def run(self, key: CallKey, items: Sequence[Item]) -> list[Output]:
        """Generate ``items`` (which share ``key``) in pipeline calls of at most ``max_batch``.

        Out of memory: halve the batch, then shrink the image (resized back by :meth:`finish`), then
        raise :class:`SDOutOfMemoryError`. NaN/black images: retried with another seed up to
        ``nan_retries`` times, then :class:`SDBadOutputError`.
        """
        outputs: list[Output] = []
        batch = max(1, min(len(items), self.settings.max_batch))
        with self._lock:
            while len(outputs) < len(items):
                chunk = list(items[len(outputs) : len(outputs) + batch])
                try:
                    outputs.extend(self._run_checked(key, chunk))
                except Exception as exc:
                    if not is_oom(exc):
                        raise
                    free_memory()
                    if batch > 1:
                        batch //= 2
                        log.warning("out of memory at batch %d; retrying at batch %d", 2 * batch, batch)
                        continue
                    smaller = self._shrink(key)
                    if smaller is None:
                        detail = f"OOM at {key.width}×{key.height}, batch 1: {exc}"
                        raise SDOutOfMemoryError(detail=detail) from exc
                    log.warning(
                        "out of memory at %d×%d; retrying at %d×%d",
                        key.width,
                        key.height,
                        smaller.width,
                        smaller.height,
                    )
                    key = smaller
        return outputs

    def _shrink(self, key: CallKey) -> CallKey | None:
        w, h = plan_size(
            key.width,
            key.height,
            multiple=self.profile.size_multiple,
            max_pixels=int(key.width * key.height * OOM_SCALE**2),
            min_side=self.settings.min_side_px,
        )
        if (w, h) == (key.width, key.height) or w * h >= key.width * key.height:
            return None
        return dataclasses.replace(key, width=w, height=h)

    def _run_checked(self, key: CallKey, items: list[Item]) -> list[Output]:
        """One pipeline call, then retries of any NaN/black images with new seeds."""
        seeds = [it.seed for it in items]
        pixels, bad = self._call(key, items, seeds)
        for attempt in range(1, self.settings.nan_retries + 1):
            if not bad:
                break
            log.warning("NaN/black output for seeds %s; retrying with new seeds", [seeds[i] for i in bad])
            retry_seeds = [seeds[i] + attempt * NAN_SEED_STEP for i in bad]
            again, still_bad = self._call(key, [items[i] for i in bad], retry_seeds)
            for j, i in enumerate(bad):
                pixels[i] = again[j]
                seeds[i] = retry_seeds[j]
            bad = [bad[j] for j in still_bad]
        if bad:
            raise SDBadOutputError(
                detail=f"NaN/black output for seeds {[seeds[i] for i in bad]} "
                f"after {self.settings.nan_retries} retries"
            )
        return [
            Output(pixels=p, seed_used=sd, size=(key.width, key.height))
            for p, sd in zip(pixels, seeds, strict=True)
        ]

    def _call(
        self, key: CallKey, items: list[Item], seeds: list[int]
    ) -> tuple[list[torch.Tensor], list[int]]:
        """Encode → denoise → decode once; returns per-item pixels and the indices that are bad."""
        self.calls += 1
        self.loras.activate(key.loras)
        generators = self._generators(seeds)
        embeds = self._encode(key, items)
        latents = self._denoise(key, items, embeds, generators)
        bad = set(bad_items(latents))
        pixels = self._decode(key, latents)
        bad |= set(bad_items(pixels, decoded=True))
        return list(pixels.unbind(0)), sorted(bad)

    def _generators(self, seeds: list[int]) -> list[torch.Generator]:
        device = self.pipeline.device
        if self.settings.seed_device == "cpu" or device.type == "mps":
            device = torch.device("cpu")
        return [torch.Generator(device).manual_seed(int(seed)) for seed in seeds]

    def _encode(self, key: CallKey, items: list[Item]) -> dict[str, torch.Tensor]:
        needs_negative = key.guidance > 1.0 and self.pipeline.unet.config.time_cond_proj_dim is None
        return self.encoder.encode(
            [it.prompt for it in items], weighting=key.phrase_weighting, negative=needs_negative
        ).pipeline_kwargs()

    def _denoise(
        self,
        key: CallKey,
        items: list[Item],
        embeds: dict[str, torch.Tensor],
        generators: list[torch.Generator],
    ) -> torch.Tensor:
        scheduler = self.schedulers.get(key.scheduler)
        kwargs: dict[str, Any] = {
            "guidance_scale": key.guidance,
            "generator": generators,
            "output_type": "latent",
            **embeds,
        }
        if key.strength is None:
            pipe = self.pipeline
            kwargs.update(height=key.height, width=key.width, num_inference_steps=key.steps)
        else:
            pipe = self._img2img_pipeline()
            size = (key.width, key.height)
            inits = [(it.init_image or Image.new("RGB", size, (128, 128, 128))) for it in items]
            kwargs.update(
                image=[im if im.size == size else im.resize(size, Image.Resampling.LANCZOS) for im in inits],
                strength=key.strength,
                # ``steps`` counts the denoising steps actually run, as in text-to-image
                num_inference_steps=max(key.steps, math.ceil(key.steps / key.strength)),
            )
        pipe.scheduler = scheduler
        with torch.inference_mode():
            return pipe(**kwargs).images

    def _img2img_pipeline(self) -> Any:
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipeline)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    @torch.inference_mode()
    def _decode(self, key: CallKey, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images in 0..1 (N×3×H×W, CPU float). An fp16 VAE that overflows to NaN (SDXL's
        does) is moved to fp32 for good and the batch decoded again."""
        vae = self.pipeline.vae
        if use_vae_tiling(self.settings, key.width, key.height):
            vae.enable_tiling()
        else:
            vae.disable_tiling()
        if vae.dtype == torch.float16 and (self._vae_fp32 or getattr(vae.config, "force_upcast", False)):
            vae.to(torch.float32)
            self._vae_fp32 = True
        images = self._vae_decode(vae, latents)
        if vae.dtype == torch.float16 and bad_items(images) and not bad_items(latents):
            log.warning("fp16 VAE produced NaNs; decoding in fp32 from now on")
            vae.to(torch.float32)
            self._vae_fp32 = True
            images = self._vae_decode(vae, latents)
        return images.float().cpu()

    @staticmethod
    def _vae_decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
        cfg = vae.config
        z = latents.to(device=vae.device, dtype=vae.dtype)
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        if mean is not None and std is not None:
            c = z.shape[1]
            z = z * torch.tensor(std, device=z.device, dtype=z.dtype).view(
                1, c, 1, 1
            ) / cfg.scaling_factor + torch.tensor(mean, device=z.device, dtype=z.dtype).view(1, c, 1, 1)
        else:
            z = z / cfg.scaling_factor
        images = vae.decode(z, return_dict=False)[0]
        finite = torch.isfinite(images)
        return torch.where(finite, (images / 2 + 0.5).clamp(0, 1), images)

    # --- step 3: finish (CPU) ------------------------------------------------------------------------

    def finish(self, job: Job, outputs: Sequence[Output]) -> list[GeneratedImage]:
        """Pictures at the requested size, with the palette transfer and how each was made."""
        req = job.request
        images = []
        for i, (out, guide) in enumerate(zip(outputs, job.guides, strict=True)):
            arr = (out.pixels.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype("uint8")
            image = Image.fromarray(arr, mode="RGB")
            if image.size != (req.width, req.height):
                image = image.resize((req.width, req.height), Image.Resampling.LANCZOS)
            image = self.steering.finish(image, guide, job.steering)
            images.append(
                GeneratedImage(
                    image=image,
                    seed=req.seed + i,
                    backend=self.name,
                    meta=self._meta(job, out, guide, req.seed + i),
                )
            )
        return images

    def _meta(self, job: Job, out: Output, guide: MusicGuide, seed: int) -> dict[str, object]:
        key = job.key
        meta: dict[str, object] = {
            "model": self.model_name,
            "family": self.profile.family,
            "steps": key.steps,
            "guidance": key.guidance,
            "scheduler": key.scheduler or type(self.schedulers.base).__name__,
            "generated_size": list(out.size),
            "loras": [[spec.source, w] for spec, w in key.loras if w],
            "steering": {
                "init": job.steering.init if key.strength is not None else "none",
                "init_strength": key.strength,
                "palette_transfer": job.steering.palette_transfer,
                "phrase_weighting": key.phrase_weighting,
            },
            "style": job.request.prompt.style.value,
        }
        if guide.palette:
            meta["palette"] = list(guide.palette)
        if guide.note:
            meta["steering_note"] = guide.note
        if out.seed_used != seed:
            meta["retry_seed"] = out.seed_used
        if out.size != (key.width, key.height):
            meta["oom_fallback_size"] = list(out.size)
        return meta

    # --- serving -----------------------------------------------------------------------------------

    def warmup(self) -> None:
        """One small generation so the first user doesn't pay for kernel selection / compilation."""
        prompt = Prompt(text="warm up", negative="", style=Style.cover)
        w, h = plan_size(
            10**6, 10**6, multiple=self.profile.size_multiple, max_pixels=self.profile.native_pixels
        )
        key = CallKey(
            width=w,
            height=h,
            steps=min(2, self.profile.default_steps),
            guidance=self.profile.default_guidance,
            scheduler=self.profile.default_scheduler,
            loras=(),
            strength=None,
            phrase_weighting=0.0,
        )
        self.run(key, [Item(prompt=prompt, seed=0)])
        self.calls = 0

    def close(self) -> None:
        """Nothing to release beyond the pipeline itself; here for symmetry with the batcher."""

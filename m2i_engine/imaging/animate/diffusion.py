"""The Stable Diffusion path: keyframes per bar, and every frame between them diffused from an
interpolated start — spherical between the keyframes' noise, linear between their prompt embeddings.

A keyframe sits on each bar's downbeat (at least two per loop). Its noise comes from its own seed and
its prompt is the song's prompt plus words for that bar's energy, so a calm bar and a loud bar differ in
what they say as well as in their noise. A frame between keyframes *k* and *k+1* starts from
``slerp(z_k, z_k+1, α)`` (noise stays on the Gaussian shell, so every in-between is as sharp as a
keyframe) with ``lerp(e_k, e_k+1, α)`` as its text, and is denoised and decoded like any image; the last
keyframe leads back to the first, so the loop closes. ``α`` advances in steps that start on each beat and
ease out within it, so the picture moves on the beat; a light zoom-and-brightness kick on the decoded
frame marks each beat as the renderer's camera does.

Runs under the backend's pipeline lock with its LoRAs and scheduler; only correctness is tested here
(tiny CPU pipelines), the speed is a GPU's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from m2i_engine.imaging.animate.clock import LoopClock
from m2i_engine.imaging.base import ImageBackend, ImageRequest
from m2i_engine.imaging.renderer.motion import Motion
from m2i_engine.imaging.sd.backend import CallKey, SDBackend, SDOptions
from m2i_engine.imaging.sd.prompt_embeds import EncodedPrompts
from m2i_engine.prompt import Prompt

#: (upper energy bound, words) for a keyframe's bar, first match wins
ENERGY_WORDS: tuple[tuple[float, str], ...] = (
    (0.35, "calm, still, soft drifting light"),
    (0.6, "flowing, steady pulse of light"),
    (1.01, "explosive, bursting with intense light and motion"),
)
#: brightness lift of a decoded frame at a full beat envelope
FLASH = 0.1


@dataclass(frozen=True)
class Keyframe:
    """One keyframe: where it sits in the loop, its seed, and the prompt for its bar."""

    t_s: float
    seed: int
    prompt: Prompt
    energy: float
    #: the words for the bar's energy that were added to the song's prompt
    words: str


def sd_backend_of(backend: ImageBackend) -> SDBackend | None:
    """The :class:`SDBackend` behind ``backend`` (itself, or the one a micro-batcher wraps)."""
    inner = getattr(backend, "backend", backend)
    return inner if isinstance(inner, SDBackend) else None


def energy_words(energy: float) -> str:
    return next(words for bound, words in ENERGY_WORDS if energy < bound)


def keyframes(request: ImageRequest, clock: LoopClock) -> list[Keyframe]:
    """One keyframe per bar (two for a one-bar loop), each with ``request.seed + k`` and the prompt plus
    its bar's energy words."""
    sec = clock.section
    count = max(2, sec.bars)
    out = []
    for k in range(count):
        t0, t1 = k * sec.length_s / count, (k + 1) * sec.length_s / count
        energy = float(np.mean(sec.energy_at(np.linspace(t0, t1, 16))))
        words = energy_words(energy)
        base = request.prompt
        prompt = Prompt(
            text=f"{base.text}, {words}",
            negative=base.negative,
            style=base.style,
            phrases=(*base.phrases, (words, 1.0)),
        )
        out.append(Keyframe(t_s=t0, seed=request.seed + k, prompt=prompt, energy=energy, words=words))
    return out


def progress_at(clock: LoopClock, count: int, t_s: float) -> tuple[int, float]:
    """(keyframe *k*, 0 ≤ α < 1) at ``t_s``: α moves toward keyframe *k+1* in steps that start on each
    beat and ease out within it (smoothly over the segment when it isn't a whole number of beats)."""
    beats_total = len(clock.section.beats_s)
    seg = beats_total / count
    pos = clock.beats_at(t_s) / seg
    k = min(int(pos), count - 1)
    local = pos - k
    if abs(seg - round(seg)) < 1e-9:
        b = local * round(seg)
        whole = math.floor(b)
        frac = b - whole
        alpha = (whole + 1.0 - (1.0 - frac) ** 3) / round(seg)
    else:
        alpha = local * local * (3.0 - 2.0 * local)
    return k, min(max(alpha, 0.0), 1.0)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, *, eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (linear when they are nearly parallel)."""
    a64, b64 = a.double(), b.double()
    cos = float((a64 * b64).sum() / (a64.norm() * b64.norm()).clamp_min(1e-12))
    omega = math.acos(min(max(cos, -1.0), 1.0))
    if math.sin(omega) < eps:
        out = (1.0 - t) * a64 + t * b64
    else:
        out = (math.sin((1.0 - t) * omega) * a64 + math.sin(t * omega) * b64) / math.sin(omega)
    return out.to(a.dtype)


def plain_key(backend: SDBackend, request: ImageRequest) -> CallKey:
    """The pipeline call ``request`` would make as one plain text-to-image picture (no guide
    images, no palette transfer): what every interpolated frame of a loop or a video scene shares."""
    steering = backend.settings.steering.model_copy(update={"init": "none", "palette_transfer": 0.0})
    return backend.prepare(
        ImageRequest(
            tags=request.tags,
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            seed=request.seed,
            num_images=1,
        ),
        SDOptions(steering=steering),
    ).key


@dataclass(frozen=True)
class Diffusion:
    """The backend's pipeline, held under its lock with the call's LoRAs and scheduler, and ``prompts``
    encoded once: interpolated start latents and prompt mixes in, pictures out (:func:`diffusion`)."""

    backend: SDBackend
    key: CallKey
    encoded: EncodedPrompts
    prompts: int

    def noise(self, seed: int) -> torch.Tensor:
        """A start latent for one picture at the call's size, from ``seed`` (on the CPU: reproducible)."""
        pipe, vae = self.backend.pipeline, self.backend.profile.vae_scale_factor
        shape = (1, pipe.unet.config.in_channels, self.key.height // vae, self.key.width // vae)
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))

    def images(
        self,
        latents: Sequence[torch.Tensor],
        mixes: Sequence[tuple[int, float]],
        *,
        seed: int,
        width: int,
        height: int,
    ) -> list[Image.Image]:
        """One picture per start latent, its prompt embedding ``mixes[i] = (k, α)`` of the way from
        prompt *k* to *k+1*; batched by the backend's ``max_batch``, resized to ``width × height``."""
        pipe, key = self.backend.pipeline, self.key
        out_images: list[Image.Image] = []
        batch = max(1, self.backend.settings.max_batch)
        for start in range(0, len(latents), batch):
            chunk = list(latents[start : start + batch])
            kwargs = _mix(self.encoded, list(mixes[start : start + batch]), self.prompts).pipeline_kwargs()
            out = pipe(
                **kwargs,
                latents=torch.cat(chunk).to(pipe.device, pipe.unet.dtype),
                height=key.height,
                width=key.width,
                num_inference_steps=key.steps,
                guidance_scale=key.guidance,
                output_type="np",
                generator=[torch.Generator("cpu").manual_seed(seed) for _ in chunk],
            )
            self.backend.calls += 1
            out_images += [_to_image(arr, width, height) for arr in out.images]
        return out_images


@contextmanager
def diffusion(backend: SDBackend, key: CallKey, prompts: Sequence[Prompt]) -> Iterator[Diffusion]:
    """Hold the backend's pipeline for ``key`` (its lock, LoRAs, scheduler; no autograd) with
    ``prompts`` encoded, for the loops' frames and the videos' scenes alike."""
    pipe = backend.pipeline
    lock: AbstractContextManager[Any] = getattr(backend, "_lock", None) or nullcontext()
    with lock, torch.inference_mode():
        backend.loras.activate(key.loras)
        pipe.scheduler = backend.schedulers.get(key.scheduler)
        negative = key.guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None
        encoded = backend.encoder.encode(list(prompts), weighting=key.phrase_weighting, negative=negative)
        yield Diffusion(backend, key, encoded, len(prompts))


def sd_frames(
    backend: SDBackend, request: ImageRequest, clock: LoopClock
) -> tuple[list[Image.Image], dict[str, object]]:
    """Every frame of the loop from Stable Diffusion, at ``request``'s size; and metadata (keyframes,
    which frame shows each, steps)."""
    key = plain_key(backend, request)
    keys = keyframes(request, clock)
    with diffusion(backend, key, [kf.prompt for kf in keys]) as diff:
        noise = [diff.noise(kf.seed) for kf in keys]
        plan = [progress_at(clock, len(keys), float(t)) for t in clock.frame_times()]
        latents = [slerp(noise[k], noise[(k + 1) % len(keys)], a) for k, a in plan]
        images = diff.images(latents, plan, seed=request.seed, width=request.width, height=request.height)
    frames = [kick(im, motion) for im, motion in zip(images, clock.motions(), strict=True)]
    step = clock.length_s / clock.frames
    meta: dict[str, object] = {
        "keyframes": [
            {
                "t_s": round(kf.t_s, 3),
                "seed": kf.seed,
                "energy": round(kf.energy, 3),
                "words": kf.words,
                "frame": min(round(kf.t_s / step), clock.frames - 1),
            }
            for kf in keys
        ],
        "steps": key.steps,
        "guidance": key.guidance,
        "generated_size": [key.width, key.height],
        "interpolation": "slerp(noise), lerp(prompt embeddings), eased per beat",
    }
    return frames, meta


def kick(image: Image.Image, motion: Motion) -> Image.Image:
    """The beat on a finished frame: the camera's zoom and pan, and a brightness flash."""
    out = image
    if motion.has_camera:
        w, h = image.size
        unit = min(w, h)
        cw, ch = w / motion.zoom, h / motion.zoom
        cx, cy = w / 2 - motion.pan_x * unit / motion.zoom, h / 2 - motion.pan_y * unit / motion.zoom
        out = image.resize(
            (w, h), Image.Resampling.BICUBIC, box=(cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
        )
    if motion.pulse > 0:
        lift = 1.0 + FLASH * motion.pulse
        out = out.point(lambda v: min(255, round(v * lift)))
    return out


def _mix(encoded: EncodedPrompts, chunk: list[tuple[int, float]], count: int) -> EncodedPrompts:
    """The prompt embeddings of each frame: linear between its two keyframes'."""

    def lerp(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return torch.stack([(1.0 - a) * t[k] + a * t[(k + 1) % count] for k, a in chunk])

    embeds = lerp(encoded.embeds)
    assert embeds is not None
    return EncodedPrompts(
        embeds=embeds,
        negative=lerp(encoded.negative),
        pooled=lerp(encoded.pooled),
        negative_pooled=lerp(encoded.negative_pooled),
    )


def _to_image(arr: np.ndarray, width: int, height: int) -> Image.Image:
    image = Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mode="RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image

"""Fine-tune a LoRA adapter for the Stable Diffusion backend on a folder of (image, caption) pairs.

The adapter teaches a base model (SD 1.x/2.x-class) a look — e.g. album covers captioned by m2i's own
tagger — without touching its weights: peft ``LoraConfig`` on the UNet attention projections
(``to_q``, ``to_k``, ``to_v``, ``to_out.0``), trained with the standard noise-prediction loss. The
result is ``<output>/pytorch_lora_weights.safetensors`` (+ ``m2i_lora.json``), which the backend loads
with ``M2I_SD__LORAS='[{"source": "<output>", "weight": 0.8}]'`` or a style preset's ``lora``.

Data (``--data``): ``*.png|*.jpg|*.jpeg|*.webp`` images, each with a same-name ``.txt`` caption, or a
``metadata.jsonl`` as in the diffusers examples (``{"file_name": "a.png", "text": "..."}`` per line).

Example (GPU)::

    python training/train_lora.py --model runwayml/stable-diffusion-v1-5 --data covers/ \\
        --output loras/covers --rank 16 --alpha 16 --lr 1e-4 --steps 2000 --batch-size 4 \\
        --resolution 512 --mixed-precision fp16 --gradient-checkpointing \\
        --checkpoint-every 500 --validation-prompt "album cover art, jazz, calm" --validate-every 250

Also callable as ``main(argv)`` (the tests train a tiny adapter this way). See docs/sd.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger("train_lora")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"


# --- data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    image: Path
    caption: str


def read_examples(
    folder: Path, *, image_column: str = "file_name", caption_column: str = "text"
) -> list[Example]:
    """(image, caption) pairs from ``metadata.jsonl`` if present, else from same-name ``.txt`` files."""
    meta = folder / "metadata.jsonl"
    examples: list[Example] = []
    if meta.is_file():
        for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if image_column not in row or caption_column not in row:
                raise ValueError(f"{meta}:{n}: needs '{image_column}' and '{caption_column}'")
            examples.append(Example(folder / str(row[image_column]), str(row[caption_column]).strip()))
    else:
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            caption = image.with_suffix(".txt")
            if caption.is_file():
                examples.append(Example(image, caption.read_text(encoding="utf-8").strip()))
            else:
                log.warning("skipping %s: no %s", image.name, caption.name)
    missing = [e.image for e in examples if not e.image.is_file()]
    if missing:
        raise ValueError(f"{len(missing)} image(s) listed but missing, e.g. {missing[0]}")
    return examples


class CaptionedImages(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Images resized (shorter side) and cropped to ``resolution``, in -1..1, with tokenised captions."""

    def __init__(
        self,
        examples: Sequence[Example],
        tokenizer: Any,
        *,
        resolution: int,
        center_crop: bool = True,
        random_flip: bool = False,
        seed: int = 0,
    ) -> None:
        self.examples = list(examples)
        self.resolution = resolution
        self.center_crop = center_crop
        self.random_flip = random_flip
        self.rng = random.Random(seed)
        self.input_ids = tokenizer(
            [e.caption for e in self.examples],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = Image.open(self.examples[i].image).convert("RGB")
        r = self.resolution
        scale = r / min(image.size)
        image = image.resize(
            (max(r, round(image.width * scale)), max(r, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
        if self.center_crop:
            left, top = (image.width - r) // 2, (image.height - r) // 2
        else:
            left, top = self.rng.randint(0, image.width - r), self.rng.randint(0, image.height - r)
        image = image.crop((left, top, left + r, top + r))
        if self.random_flip and self.rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        return {"pixel_values": pixels, "input_ids": self.input_ids[i]}


# --- model ------------------------------------------------------------------------------------------


@dataclass
class Components:
    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    noise_scheduler: Any


def load_components(model: str, *, revision: str | None = None, variant: str | None = None) -> Components:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    kw: dict[str, Any] = {"revision": revision}
    return Components(
        tokenizer=CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **kw),
        text_encoder=CLIPTextModel.from_pretrained(model, subfolder="text_encoder", variant=variant, **kw),
        vae=AutoencoderKL.from_pretrained(model, subfolder="vae", variant=variant, **kw),
        unet=UNet2DConditionModel.from_pretrained(model, subfolder="unet", variant=variant, **kw),
        noise_scheduler=DDPMScheduler.from_pretrained(model, subfolder="scheduler", **kw),
    )


def add_lora(unet: Any, *, rank: int, alpha: int) -> Any:
    """Attach a trainable LoRA to the UNet's attention projections; returns the peft config."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=TARGET_MODULES)
    unet.add_adapter(config)
    return config


def save_adapter(unet: Any, folder: Path, *, config: Any, info: dict[str, Any]) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (diffusers/peft format, with the LoRA config as
    metadata so rank ≠ alpha loads correctly) and ``m2i_lora.json``."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in layers.items()}
    metadata = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.to_dict().items()}
    try:
        StableDiffusionPipeline.save_lora_weights(
            folder, unet_lora_layers=layers, safe_serialization=True, unet_lora_adapter_metadata=metadata
        )
    except TypeError:  # diffusers before adapter metadata
        StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    (folder / "m2i_lora.json").write_text(json.dumps(info, indent=2, default=str))
    return folder / WEIGHTS_NAME


@torch.no_grad()
def run_validation(
    c: Components,
    prompts: Sequence[str],
    *,
    folder: Path,
    step: int,
    device: torch.device,
    dtype: torch.dtype,
    resolution: int,
    steps: int,
    seed: int,
) -> list[Path]:
    """Generate one image per validation prompt with the adapter as trained so far."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=DPMSolverMultistepScheduler.from_config(c.noise_scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    folder.mkdir(parents=True, exist_ok=True)
    was_training = c.unet.training
    c.unet.eval()
    paths = []
    with _autocast(device, dtype):
        for i, prompt in enumerate(prompts):
            gen = torch.Generator(device).manual_seed(seed + i)
            image = pipe(
                prompt, num_inference_steps=steps, height=resolution, width=resolution, generator=gen
            ).images[0]
            path = folder / f"step{step:06d}-{i}.png"
            image.save(path)
            paths.append(path)
    c.unet.train(was_training)
    return paths


def _autocast(device: torch.device, dtype: torch.dtype) -> Any:
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


# --- training ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--model", required=True, help="Base model: diffusers folder or hub id (SD 1.x/2.x).")
    p.add_argument("--revision", default=None)
    p.add_argument("--variant", default=None, help="Weights variant, e.g. fp16.")
    p.add_argument("--data", type=Path, required=True, help="Folder of images + captions.")
    p.add_argument("--image-column", default="file_name", help="metadata.jsonl image field.")
    p.add_argument("--caption-column", default="text", help="metadata.jsonl caption field.")
    p.add_argument("--output", type=Path, required=True, help="Where the adapter is written.")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank r.")
    p.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default: = rank).")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate.")
    p.add_argument(
        "--lr-scheduler", default="constant", choices=["constant", "constant_with_warmup", "linear", "cosine"]
    )
    p.add_argument("--lr-warmup-steps", type=int, default=0)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=1000, help="Optimizer steps.")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--gradient-accumulation", type=int, default=1)
    p.add_argument("--resolution", type=int, default=512, help="Training images are cropped to this square.")
    p.add_argument("--random-crop", action="store_true", help="Random instead of centre crops.")
    p.add_argument("--random-flip", action="store_true", help="Mirror half of the images.")
    p.add_argument(
        "--mixed-precision",
        default="no",
        choices=["no", "fp16", "bf16"],
        help="Frozen weights and forward passes in half precision (fp16 needs CUDA).",
    )
    p.add_argument("--gradient-checkpointing", action="store_true", help="Less memory, ~20%% slower.")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="Save the adapter to checkpoint-<step>/ every N steps (0: only at the end).",
    )
    p.add_argument("--validation-prompt", action="append", default=[], help="Repeatable.")
    p.add_argument("--validate-every", type=int, default=0, help="Validation images every N steps.")
    p.add_argument("--validation-inference-steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu.")
    p.add_argument("--workers", type=int, default=0, help="Data loader worker processes.")
    p.add_argument("--quiet", action="store_true", help="No progress bar.")
    args = p.parse_args(argv)
    if args.alpha is None:
        args.alpha = args.rank
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Train; returns 0 on success, 2 on unusable arguments or data."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from tqdm.auto import tqdm

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    if args.mixed_precision == "fp16" and device.type != "cuda":
        print("error: --mixed-precision fp16 needs a CUDA GPU (use bf16 or no on the CPU)", file=sys.stderr)
        return 2
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.mixed_precision]
    try:
        examples = read_examples(
            args.data, image_column=args.image_column, caption_column=args.caption_column
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not examples:
        print(f"error: no (image, caption) pairs in {args.data}", file=sys.stderr)
        return 2

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    c = load_components(args.model, revision=args.revision, variant=args.variant)
    for module in (c.vae, c.text_encoder, c.unet):
        module.requires_grad_(False)
    for module, dtype in (
        (c.vae, torch.float32 if weight_dtype == torch.float16 else weight_dtype),
        (c.text_encoder, weight_dtype),
        (c.unet, weight_dtype),
    ):
        module.to(device)
        if dtype != torch.float32:  # the fp16 VAE overflows; it stays fp32 under fp16 training
            module.to(dtype=dtype)
    lora_config = add_lora(c.unet, rank=args.rank, alpha=args.alpha)
    if weight_dtype != torch.float32:
        cast_training_params(c.unet, dtype=torch.float32)  # trainable LoRA weights stay fp32
    if args.gradient_checkpointing:
        c.unet.enable_gradient_checkpointing()
    c.unet.train()

    params = [p for p in c.unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps,
        num_training_steps=args.steps,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=weight_dtype == torch.float16)
    dataset = CaptionedImages(
        examples,
        c.tokenizer,
        resolution=args.resolution,
        center_crop=not args.random_crop,
        random_flip=args.random_flip,
        seed=args.seed,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=False,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    info: dict[str, Any] = {
        "base_model": args.model,
        "rank": args.rank,
        "alpha": args.alpha,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "resolution": args.resolution,
        "mixed_precision": args.mixed_precision,
        "examples": len(examples),
        "target_modules": TARGET_MODULES,
        "seed": args.seed,
    }
    log.info(
        "training a rank-%d LoRA on %d examples for %d steps on %s",
        args.rank,
        len(examples),
        args.steps,
        device,
    )

    validate = functools.partial(  # the prompt's pictures at a step, the same way each time
        run_validation,
        c,
        args.validation_prompt,
        folder=args.output / "validation",
        device=device,
        dtype=weight_dtype,
        resolution=args.resolution,
        steps=args.validation_inference_steps,
        seed=args.seed,
    )
    step, loss_ema, started = 0, math.nan, time.perf_counter()
    bar = tqdm(total=args.steps, desc="lora", disable=args.quiet, unit="step")
    batches = _forever(loader)
    while step < args.steps:
        for _ in range(args.gradient_accumulation):
            loss = _loss(c, next(batches), device=device, dtype=weight_dtype) / args.gradient_accumulation
            scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        value = float(loss.detach()) * args.gradient_accumulation
        loss_ema = value if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * value
        bar.update(1)
        bar.set_postfix(loss=f"{loss_ema:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}")
        if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.steps:
            save_adapter(
                c.unet,
                args.output / f"checkpoint-{step}",
                config=lora_config,
                info={**info, "steps": step, "loss_ema": loss_ema},
            )
        if args.validation_prompt and args.validate_every and step % args.validate_every == 0:
            validate(step=step)
    bar.close()
    path = save_adapter(
        c.unet,
        args.output,
        config=lora_config,
        info={
            **info,
            "steps": step,
            "loss_ema": loss_ema,
            "train_s": round(time.perf_counter() - started, 1),
        },
    )
    if args.validation_prompt and not (args.validate_every and step % args.validate_every == 0):
        validate(step=step)
    log.info("saved %s (loss %.4f)", path, loss_ema)
    return 0


def _forever(loader: torch.utils.data.DataLoader[Any]) -> Any:
    while True:
        yield from loader


def _loss(
    c: Components, batch: dict[str, torch.Tensor], *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The denoising loss: predict the noise (or velocity) added at a random timestep."""
    pixels = batch["pixel_values"].to(device, dtype=c.vae.dtype)
    with torch.no_grad():
        latents = c.vae.encode(pixels).latent_dist.sample() * c.vae.config.scaling_factor
        latents = latents.to(dtype)
        hidden = c.text_encoder(batch["input_ids"].to(device))[0]
    noise = torch.randn_like(latents)
    sched = c.noise_scheduler
    t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), device=device).long()
    noisy = sched.add_noise(latents, noise, t)
    if sched.config.prediction_type == "v_prediction":
        target = sched.get_velocity(latents, noise, t)
    else:
        target = noise
    with _autocast(device, dtype):
        pred = c.unet(noisy, t, hidden, return_dict=False)[0]
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


if __name__ == "__main__":
    sys.exit(main())

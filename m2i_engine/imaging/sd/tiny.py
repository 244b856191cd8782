"""Tiny random Stable Diffusion / CLIP models built from configs, for tests and smoke runs without downloads.

Nothing here downloads anything: every component is built from a config with random weights and a
byte-level CLIP tokenizer is written from a generated vocabulary, then the pipeline is saved with
``save_pretrained`` so it loads through exactly the path a real model folder takes. The pictures are
noise-like — these models are for plumbing, determinism and speed of the code around the model, never
for judging images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

#: token ids of the generated vocabulary's special tokens (512 bytes + 4 merges come first)
BOS_ID, EOS_ID, VOCAB_SIZE = 516, 517, 518


def _byte_chars() -> list[str]:
    """GPT-2/CLIP byte→unicode table: every byte gets a printable character."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer_files(folder: Path) -> Path:
    """A byte-level CLIP vocabulary (vocab.json + merges.txt) with a few merges: 518 tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = chars + [c + "</w>" for c in chars]
    merges = ["#version: 0.2", "j a", "z z</w>", "r o", "c k</w>"]
    vocab += ["ja", "zz</w>", "ro", "ck</w>", "<|startoftext|>", "<|endoftext|>"]
    assert vocab.index("<|startoftext|>") == BOS_ID and len(vocab) == VOCAB_SIZE
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    return folder


def tiny_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(write_tokenizer_files(folder), model_max_length=77)


def text_config(*, hidden: int = 32, layers: int = 2, projection: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    kw = {"projection_dim": projection} if projection else {}
    return CLIPTextConfig(
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=layers,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=77,
        **kw,
    )


def _vae(**extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        sample_size=64,
        **extra,
    )


def build_tiny_sd(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny SD 1.5-class pipeline (UNet (32, 64), VAE ×2, 2-layer CLIP; 64² native) to ``folder``."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(text_config()),
        tokenizer=tiny_tokenizer(folder.parent / f"{folder.name}-tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny SDXL-class pipeline (two CLIPs, pooled projection, text-time conditioning)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
    )
    tok_dir = folder.parent / f"{folder.name}-tokenizer"
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(force_upcast=True),
        text_encoder=CLIPTextModel(text_config()),
        text_encoder_2=CLIPTextModelWithProjection(text_config(projection=32)),
        tokenizer=tiny_tokenizer(tok_dir),
        tokenizer_2=tiny_tokenizer(tok_dir),
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny random CLIP (text + vision, 32-d projection) with its tokenizer to ``folder``."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    config = CLIPConfig(
        text_config=text_config().to_dict(), vision_config=vision.to_dict(), projection_dim=32
    )
    CLIPModel(config).save_pretrained(folder)
    tiny_tokenizer(folder.parent / f"{folder.name}-tokenizer").save_pretrained(folder)
    return folder

"""Is Stable Diffusion fast enough to answer a chat message? Request→PNG timings on the serving path.

Builds the FULL-SIZE Stable Diffusion 1.5 architecture from its published configs (UNet 860 M, VAE
84 M, CLIP ViT-L/14 text encoder 123 M — written below) with random weights, which take exactly as
long as real ones, wraps it in the same :class:`~m2i_engine.imaging.sd.backend.SDBackend` and
:class:`~m2i_engine.imaging.sd.batcher.SDBatcher` users get, and measures on a CUDA device:

1. request → PNG, 512², 25 steps (DPM++), p50 — goal ≤ 2 s on an H100;
2. request → PNG, 512², 4 steps (LCM scheduler, no CFG: what an LCM/turbo model costs) — goal ≤ 0.5 s;
3. throughput of 4 concurrent requests through the batcher (one batch of 4) vs the same 4 one by one
   — goal ≥ 1.8×.

Each case runs with the default music steering (the renderer's composition as img2img init) and is
also reported text-only, so its cost is visible. Usage::

    python bench/sd_speed.py                      # CUDA only; refuses to run on a CPU
    python bench/sd_speed.py --compile --out bench/out/sd_speed.json
    python bench/sd_speed.py --tiny               # CPU smoke test of this script on a tiny model
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m2i_engine.imaging.base import ImageRequest
from m2i_engine.imaging.renderer import Renderer
from m2i_engine.imaging.sd import SDSettings, SteeringSettings
from m2i_engine.imaging.sd.backend import SDBackend, SDOptions
from m2i_engine.imaging.sd.batcher import SDBatcher
from m2i_engine.imaging.sd.runtime import prepare_pipeline, resolve_runtime
from m2i_engine.imaging.sd.tiny import build_tiny_sd, tiny_tokenizer
from m2i_engine.options import VisualizeOptions
from m2i_engine.prompt import build_prompt
from m2i_engine.tags import AudioInfo, Classification, Key, LabelScore, Loudness, Mood, Tags, Tempo, Timbre

# --- the published Stable Diffusion 1.5 configs (runwayml/stable-diffusion-v1-5) --------------------

SD15_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}
SD15_TEXT: dict[str, Any] = {  # CLIP ViT-L/14 text tower; token ids follow the bench tokenizer
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
    "bos_token_id": 516,
    "eos_token_id": 517,
    "pad_token_id": 517,
}
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
}

GOAL_25_STEP_S = 2.0
GOAL_4_STEP_S = 0.5
GOAL_BATCH_SPEEDUP = 1.8


def build_sd15(device: str, dtype: torch.dtype, tokenizer_dir: Path) -> Any:
    """The SD 1.5 pipeline with random weights, built directly on ``device``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET).to(dtype)
        vae = AutoencoderKL(**SD15_VAE).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT)).to(dtype)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tiny_tokenizer(tokenizer_dir),
        unet=unet,
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_request(seed: int, size: int) -> ImageRequest:
    beat = 60.0 / 124
    tags = Tags(
        audio=AudioInfo(
            container="wav", codec="pcm", sample_rate_hz=44_100, channels=2, duration_s=30.0, analysed_s=30.0
        ),
        tempo=Tempo(
            bpm=124,
            confidence=0.9,
            beats_s=[i * beat for i in range(60)],
            downbeats_s=[i * 4 * beat for i in range(15)],
            beats_per_bar=4,
        ),
        key=Key(tonic="F", mode="major", confidence=0.8),
        loudness=Loudness(integrated_lufs=-9.0, peak_dbfs=-0.3, dynamic_range_db=5.0, energy=0.8),
        timbre=Timbre(brightness=0.7, percussiveness=0.7, onset_rate_hz=5.0),
        mood=Mood(valence=0.7, arousal=0.7, source="emotion_model"),
        genre=Classification(status="ok", labels=[LabelScore(label="disco", score=0.8)], model="bench"),
        emotion=Classification(
            status="ok", labels=[LabelScore(label="joyful_activation", score=0.7)], model="bench"
        ),
        energy_curve=[0.8] * 64,
    )
    return ImageRequest(
        tags=tags, prompt=build_prompt(tags, VisualizeOptions()), width=size, height=size, seed=seed
    )


def to_png(generate: Callable[[ImageRequest], Any], request: ImageRequest) -> float:
    """Seconds from request to PNG bytes (what a bot uploads)."""
    started = time.perf_counter()
    images = generate(request)
    for image in images:
        _ = image.png  # encoded once, as every front end then sends it
    return time.perf_counter() - started


def p50_case(
    backend: SDBackend,
    *,
    size: int,
    steps: int,
    scheduler: str,
    guidance: float | None,
    steering: SteeringSettings,
    runs: int,
) -> dict[str, float]:
    opts = SDOptions(steps=steps, scheduler=scheduler, guidance=guidance, steering=steering)
    to_png(lambda r: backend.generate(r, opts), bench_request(0, size))  # warm this configuration
    times = [to_png(lambda r: backend.generate(r, opts), bench_request(1 + i, size)) for i in range(runs)]
    return {
        "p50_s": statistics.median(times),
        "p90_s": sorted(times)[int(0.9 * (len(times) - 1))],
        "min_s": min(times),
        "runs": runs,
    }


def throughput_case(
    backend: SDBackend, *, size: int, steps: int, steering: SteeringSettings, rounds: int, window_ms: float
) -> dict[str, float]:
    opts = SDOptions(steps=steps, scheduler="dpm++", steering=steering)
    requests = [bench_request(100 + i, size) for i in range(4)]
    with SDBatcher(backend, max_batch=4, window_ms=window_ms) as batcher, ThreadPoolExecutor(4) as pool:

        def batched() -> None:
            list(pool.map(lambda r: [im.png for im in batcher.generate(r, opts)], requests))

        def one_by_one() -> None:
            for r in requests:
                for im in backend.generate(r, opts):
                    _ = im.png

        batched()  # warm batch-4 shapes
        one_by_one()
        seq, bat = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            one_by_one()
            seq.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            batched()
            bat.append(time.perf_counter() - t0)
        sizes = list(batcher.stats.batch_sizes)
    s, b = statistics.median(seq), statistics.median(bat)
    return {
        "sequential_4_s": s,
        "batched_4_s": b,
        "speedup": s / b,
        "images_per_s_batch1": 4 / s,
        "images_per_s_batch4": 4 / b,
        "batch_sizes_seen": sorted(set(sizes)),
    }  # type: ignore[dict-item]


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--tiny", action="store_true", help="Tiny random model on the CPU: checks this script only."
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--runs", type=int, default=10, help="Timed requests per latency case.")
    p.add_argument("--rounds", type=int, default=3, help="Timed rounds of the throughput case.")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet first.")
    p.add_argument("--window-ms", type=float, default=20.0, help="Batcher window.")
    p.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    args = p.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="m2i-sd-speed-")
    root = Path(tmp.name)
    if args.tiny:
        torch.set_num_threads(1)  # tiny models on a shared CPU: one thread is fastest and steadiest
        device, size, steps, few_steps, runs, rounds = "cpu", 64, 4, 2, min(args.runs, 3), 1
        settings = SDSettings(model=str(build_tiny_sd(root / "tiny")), allow_cpu=True, warmup=False)
        from m2i_engine.imaging.sd.runtime import load_pipeline

        runtime = resolve_runtime(settings)
        pipe = load_pipeline(settings, runtime)
    else:
        if not (args.device.startswith("cuda") and torch.cuda.is_available()):
            print(
                "sd_speed: no CUDA device here. The full SD 1.5 benchmark only means something on a GPU "
                "(one 25-step image takes minutes on a CPU); run it on a GPU machine, or use --tiny "
                "to smoke-test this script.",
                file=sys.stderr,
            )
            return 2
        device, size, steps, few_steps, runs, rounds = args.device, 512, 25, 4, args.runs, args.rounds
        settings = SDSettings(model="bench:sd15-random", device=device, compile=args.compile, warmup=False)
        runtime = resolve_runtime(settings)
        pipe = build_sd15(device, runtime.dtype, root / "tokenizer")
    prepare_pipeline(pipe, settings, runtime)
    backend = SDBackend.from_pipeline(pipe, settings, renderer=Renderer(), model_name="sd15 (random weights)")

    steered, text_only = SteeringSettings(), SteeringSettings(init="none")
    header = {
        "device": device_name(device),
        "dtype": runtime.dtype_name,
        "torch": torch.__version__,
        "compile": args.compile,
        "size": size,
        "tiny": args.tiny,
    }
    print(json.dumps(header), flush=True)
    results: dict[str, Any] = {}
    for name, steer in (("steered", steered), ("text_only", text_only)):
        full, few = f"{steps}_steps_{name}", f"{few_steps}_steps_lcm_{name}"
        results[full] = p50_case(
            backend, size=size, steps=steps, scheduler="dpm++", guidance=None, steering=steer, runs=runs
        )
        results[few] = p50_case(
            backend, size=size, steps=few_steps, scheduler="lcm", guidance=1.0, steering=steer, runs=runs
        )
        for key in (full, few):
            r = results[key]
            print(
                f"{key:>24}: p50 {r['p50_s']:.3f} s  p90 {r['p90_s']:.3f} s  min {r['min_s']:.3f} s",
                flush=True,
            )
    results["batch4_vs_batch1"] = throughput_case(
        backend, size=size, steps=steps, steering=steered, rounds=rounds, window_ms=args.window_ms
    )
    t = results["batch4_vs_batch1"]
    print(
        f"{'batch4_vs_batch1':>24}: 4 one by one {t['sequential_4_s']:.3f} s, "
        f"batched {t['batched_4_s']:.3f} s → {t['speedup']:.2f}× ({t['images_per_s_batch4']:.2f} images/s)",
        flush=True,
    )
    goals = {
        f"p50 {steps} steps ≤ {GOAL_25_STEP_S} s": results[f"{steps}_steps_steered"]["p50_s"]
        <= GOAL_25_STEP_S,
        f"p50 {few_steps} steps ≤ {GOAL_4_STEP_S} s": results[f"{few_steps}_steps_lcm_steered"]["p50_s"]
        <= GOAL_4_STEP_S,
        f"batch-4 speed-up ≥ {GOAL_BATCH_SPEEDUP}×": t["speedup"] >= GOAL_BATCH_SPEEDUP,
    }
    if args.tiny:
        print("NOTE: --tiny is a CPU smoke test of this script; the goals apply to the full model on a GPU.")
    else:
        for goal, ok in goals.items():
            print(f"{'PASS' if ok else 'MISS'}  {goal}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({**header, "results": results, "goals": goals if not args.tiny else None}, indent=2)
        )
    backend.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

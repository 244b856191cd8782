"""Does music steering make each song's pictures more its own? CLIP retrieval over songs × steering modes.

For every steering mode (text only → + phrase weights → + palette init → + composition init → +
palette transfer) the script draws ``--images`` pictures for each of a set of contrasting songs and asks
CLIP two questions:

- **tag retrieval**: is the picture closer to its own song's tag description ("jazz music, calm,
  slow tempo, minor key") than to every other song's? (top-1 accuracy; chance = 1/songs) and by what
  margin (own similarity − mean of the others);
- **separability**: are pictures of one song more alike than pictures of different songs? (mean
  image-image cosine within songs − across songs).

The tag descriptions are written from the tags, not from the prompt, so a mode can't win by copying
its own words. Run with real weights on a GPU machine::

    python bench/sd_steering.py --model runwayml/stable-diffusion-v1-5 \\
        --clip openai/clip-vit-large-patch14 --images 8 --out bench/out/sd_steering.json

``--tiny`` runs the same code on a tiny random pipeline and a tiny random CLIP (CPU, seconds): a
smoke test of the script only — its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m2i_engine.imaging.base import ImageRequest
from m2i_engine.imaging.sd import SDSettings, SteeringSettings, load_sd_backend
from m2i_engine.imaging.sd.backend import SDBackend, SDOptions
from m2i_engine.options import VisualizeOptions
from m2i_engine.prompt import build_prompt
from m2i_engine.tags import Tags
from m2i_engine.testing import make_tags

MODES: dict[str, SteeringSettings] = {
    "text": SteeringSettings(init="none", phrase_weighting=0.0),
    "weighted": SteeringSettings(init="none", phrase_weighting=1.0),
    "palette_init": SteeringSettings(init="palette", init_strength=0.9, phrase_weighting=1.0),
    "composition": SteeringSettings(init="composition", init_strength=0.85, phrase_weighting=1.0),
    "composition_transfer": SteeringSettings(
        init="composition", init_strength=0.85, phrase_weighting=1.0, palette_transfer=0.5
    ),
}

#: contrasting songs: (genre, emotion, bpm, mode, tonic, energy, valence, arousal)
SONGS: dict[str, tuple[str, str, float, str, str, float, float, float]] = {
    "calm jazz": ("jazz", "calmness", 72, "minor", "D", 0.25, 0.2, -0.6),
    "metal anthem": ("metal", "power", 168, "minor", "E", 0.95, -0.3, 0.9),
    "sunny reggae": ("reggae", "joyful_activation", 96, "major", "G", 0.55, 0.8, 0.3),
    "sad classical": ("classical", "sadness", 60, "minor", "C#", 0.2, -0.8, -0.5),
    "disco night": ("disco", "joyful_activation", 124, "major", "F", 0.8, 0.7, 0.7),
    "tense electronic": ("electronic", "tension", 140, "minor", "A", 0.85, -0.6, 0.8),
}


def song_tags(
    genre: str, emotion: str, bpm: float, mode: str, tonic: str, energy: float, valence: float, arousal: float
) -> Tags:
    """A song whose loudness and timbre follow its energy (louder, brighter, busier when energetic)."""
    return make_tags(
        genre=genre,
        genre_score=0.8,
        emotion={emotion: 0.7},
        model="bench",
        bpm=bpm,
        mode=mode,
        tonic=tonic,
        energy=energy,
        valence=valence,
        arousal=arousal,
        tempo_confidence=0.85,
        integrated_lufs=-20 + 14 * energy,
        brightness=0.3 + 0.5 * energy,
        percussiveness=energy,
        onset_rate_hz=1 + 6 * energy,
        mood_source="emotion_model",
        codec="pcm",
        curve=[energy] * 64,
    )


def tag_description(tags: Tags) -> str:
    """Neutral words for the tags (deliberately not the prompt's imagery)."""
    genre = tags.genre.top.label if tags.genre.top else "music"
    emotion = (tags.emotion.top.label if tags.emotion.top else "").replace("_", " ")
    pace = "slow" if tags.tempo.bpm < 90 else "fast" if tags.tempo.bpm >= 130 else "medium"
    return f"{genre} music, {emotion}, {pace} tempo, {tags.key.mode} key"


# --- CLIP ------------------------------------------------------------------------------------------


class Clip:
    """Image and text embeddings from a CLIP checkpoint (L2-normalised)."""

    MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
    STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

    def __init__(self, source: str, device: str) -> None:
        from transformers import CLIPModel, CLIPTokenizer

        self.model = CLIPModel.from_pretrained(source).to(device).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(source)
        self.device = device
        self.size = int(self.model.config.vision_config.image_size)

    @torch.inference_mode()
    def images(self, images: Sequence[Image.Image]) -> np.ndarray:
        batch = np.stack([self._pixels(im) for im in images])
        out = self.model.get_image_features(pixel_values=torch.from_numpy(batch).to(self.device))
        return _normed(_features(out))

    @torch.inference_mode()
    def texts(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        return _normed(_features(self.model.get_text_features(**enc)))

    def _pixels(self, image: Image.Image) -> np.ndarray:
        s = self.size
        w, h = image.size
        scale = s / min(w, h)
        im = image.convert("RGB").resize(
            (max(s, round(w * scale)), max(s, round(h * scale))), Image.Resampling.BICUBIC
        )
        left, top = (im.width - s) // 2, (im.height - s) // 2
        arr = np.asarray(im.crop((left, top, left + s, top + s)), dtype=np.float32) / 255.0
        return ((arr - self.MEAN) / self.STD).transpose(2, 0, 1)


def _features(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _normed(x: torch.Tensor) -> np.ndarray:
    arr = x.float().cpu().numpy()
    return arr / np.linalg.norm(arr, axis=1, keepdims=True).clip(1e-8)


# --- the measurement -------------------------------------------------------------------------------


def scores(image_emb: np.ndarray, song_of: np.ndarray, text_emb: np.ndarray) -> dict[str, float]:
    """Retrieval and separability for images (rows) of songs ``song_of`` against song texts."""
    sims = image_emb @ text_emb.T
    own = sims[np.arange(len(sims)), song_of]
    others = (sims.sum(1) - own) / max(1, sims.shape[1] - 1)
    ii = image_emb @ image_emb.T
    same = song_of[:, None] == song_of[None, :]
    off_diag = ~np.eye(len(ii), dtype=bool)
    within = ii[same & off_diag].mean() if (same & off_diag).any() else float("nan")
    return {
        "top1": float((sims.argmax(1) == song_of).mean()),
        "margin": float((own - others).mean()),
        "separability": float(within - ii[~same].mean()),
    }


def run(
    backend: SDBackend,
    clip: Clip,
    *,
    images_per_song: int,
    seed: int,
    size: int,
    modes: Sequence[str],
    save_dir: Path | None,
) -> dict[str, Any]:
    songs = {name: song_tags(*spec) for name, spec in SONGS.items()}
    text_emb = clip.texts([tag_description(t) for t in songs.values()])
    results: dict[str, Any] = {}
    for mode in modes:
        steering = MODES[mode]
        pictures: list[Image.Image] = []
        song_of: list[int] = []
        started = time.perf_counter()
        for s, (name, tags) in enumerate(songs.items()):
            prompt = build_prompt(tags, VisualizeOptions())
            request = ImageRequest(
                tags=tags, prompt=prompt, width=size, height=size, seed=seed, num_images=images_per_song
            )
            for i, out in enumerate(backend.generate(request, SDOptions(steering=steering))):
                pictures.append(out.image)
                song_of.append(s)
                if save_dir is not None:
                    folder = save_dir / mode
                    folder.mkdir(parents=True, exist_ok=True)
                    out.image.save(folder / f"{name.replace(' ', '_')}-{i}.png")
        seconds = time.perf_counter() - started
        results[mode] = {
            **scores(clip.images(pictures), np.array(song_of), text_emb),
            "s_per_image": round(seconds / len(pictures), 3),
        }
        print(f"{mode:>22}: " + "  ".join(f"{k}={v:.3f}" for k, v in results[mode].items()), flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="Stable Diffusion folder or hub id.")
    p.add_argument("--clip", default="openai/clip-vit-large-patch14", help="CLIP folder or hub id.")
    p.add_argument("--images", type=int, default=4, help="Pictures per song and mode.")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--modes", default=",".join(MODES), help=f"Comma-separated subset of {', '.join(MODES)}.")
    p.add_argument("--save-images", type=Path, default=None, help="Keep the pictures here.")
    p.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    p.add_argument(
        "--tiny", action="store_true", help="Smoke test on tiny random models (numbers meaningless)."
    )
    p.add_argument("--allow-cpu", action="store_true", help="Run real weights on the CPU (very slow).")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"unknown mode(s): {', '.join(unknown)}")

    tmp = tempfile.TemporaryDirectory(prefix="m2i-sd-steering-") if args.tiny else None
    if tmp is not None:
        from m2i_engine.imaging.sd.tiny import build_tiny_clip, build_tiny_sd

        model = str(build_tiny_sd(Path(tmp.name) / "sd"))
        clip_source = str(build_tiny_clip(Path(tmp.name) / "clip"))
        size, steps = 64, args.steps or 2
    elif not args.model:
        p.error("--model is required (or --tiny)")
    else:
        model, clip_source, size, steps = args.model, args.clip, args.size, args.steps
    settings = SDSettings(
        model=model, allow_cpu=args.tiny or args.allow_cpu, steps=steps, max_batch=4, warmup=False
    )
    backend = load_sd_backend(settings, batching=False)
    assert isinstance(backend, SDBackend)
    device = str(backend.pipeline.device)
    clip = Clip(clip_source, device)
    header = {
        "model": model if not args.tiny else "tiny-random",
        "clip": clip_source if not args.tiny else "tiny-random",
        "device": _device_name(device),
        "songs": list(SONGS),
        "images_per_song": args.images,
        "size": size,
        "steps": backend.profile.default_steps if steps is None else steps,
        "python": platform.python_version(),
    }
    print(json.dumps(header), flush=True)
    if args.tiny:
        print("NOTE: --tiny uses random weights; the numbers below only show that the script runs.")
    results = run(
        backend,
        clip,
        images_per_song=args.images,
        seed=args.seed,
        size=size,
        modes=modes,
        save_dir=args.save_images,
    )
    best = {
        metric: max(results, key=lambda m: results[m][metric])
        for metric in ("top1", "margin", "separability")
    }
    print("best per metric: " + ", ".join(f"{k}: {v}" for k, v in best.items()))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({**header, "tiny": args.tiny, "results": results, "best": best}, indent=2)
        )
    if tmp is not None:
        tmp.cleanup()
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{device} ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    sys.exit(main())

"""Decode both datasets once and cache every model input on disk, so training and re-runs are cheap.

Each song is decoded exactly as the engine decodes uploads (``m2i_engine.audio.decode_audio`` → mono
22.05 kHz) and turned into:

- GTZAN: the seed genre CNN's input, 5 × MFCC-13 segments ``(5, 259, 13)``;
- Emotify: the seed emotion CNN's input, 6 × 10-s log-spectrograms, stored 4 × 4 average-pooled
  ``(6, 256, 107)`` float16 (full resolution would be 4 GB and cannot be trained here anyway);
- both: musicnn outputs per non-overlapping 3-s patch (``penultimate``, ``mean_pool``, ``max_pool``,
  ``tags``) for the MSD and the MTT backbone — what the engine computes at serving time.

Per-song shards go to ``.cache/features/songs/`` (an interrupted run resumes); the assembled arrays
to ``.cache/features/<dataset>.npz`` and ``<dataset>_musicnn_<backbone>.npz``. Use
:func:`load_seed` / :func:`load_musicnn` to read them.

    python -m training.features            # both datasets, both backbones (~15 min on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

from training.common import CACHE, Song, data_dir, songs

#: bump when what a shard contains changes (old shards are then recomputed)
VERSION = 1
BACKBONES = ("msd", "mtt")
EMBEDDINGS = ("penultimate", "mean_pool", "max_pool", "tags")
SHARDS = CACHE / "songs"
DATASETS = ("gtzan", "emotify", "mer4q")
#: the seed CNN's input cached per dataset (mer4q has no seed baseline)
SEED_INPUTS = {"gtzan": "mfcc", "emotify": "logspec"}

_TAGGERS: dict[str, Any] = {}


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _tagger(backbone: str) -> Any:
    from m2i_engine.models.musicnn import WEIGHTS_ROOT, MusicnnTagger

    if backbone not in _TAGGERS:
        _TAGGERS[backbone] = MusicnnTagger.load(WEIGHTS_ROOT / f"musicnn_{backbone}")
    return _TAGGERS[backbone]


def shard_path(song: Song) -> Path:
    return SHARDS / song.dataset / f"{song.track}.npz"


def song_features(song: Song, backbones: Sequence[str] = BACKBONES) -> dict[str, np.ndarray]:
    """Every cached input of one song (see the module docstring)."""
    from m2i_engine.audio import decode_audio
    from m2i_engine.config import AudioLimits
    from training import original_cnns

    audio = decode_audio(song.path, limits=AudioLimits(), target_sr=original_cnns.SEED_SR)
    y, sr = audio.samples, audio.sample_rate_hz
    out: dict[str, np.ndarray] = {"version": np.array(VERSION), "duration_s": np.array(len(y) / sr)}
    if song.dataset == "gtzan":
        out["mfcc"] = original_cnns.genre_mfcc_segments(y, sr)
    elif song.dataset == "emotify":
        spec = original_cnns.emotion_logspec_segments(y, sr)
        out["logspec"] = original_cnns.pool_logspec(spec).astype(np.float16)
    for b in backbones:
        pp = _tagger(b).per_patch(y, sr)
        for k in EMBEDDINGS:
            out[f"{b}/{k}"] = pp[k].astype(np.float32)
    return out


def _compute_shard(song: Song, backbones: Sequence[str]) -> str:
    path = shard_path(song)
    path.parent.mkdir(parents=True, exist_ok=True)
    feats = song_features(song, backbones)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k.replace("/", "__"): v for k, v in feats.items()})
    tmp.replace(path)
    return song.track


def _shard_ok(song: Song, backbones: Sequence[str]) -> bool:
    path = shard_path(song)
    if not path.is_file():
        return False
    try:
        with np.load(path) as z:
            return int(z["version"]) == VERSION and all(f"{b}__penultimate" in z for b in backbones)
    except Exception:
        return False


def extract(
    dataset: str, *, backbones: Sequence[str] = BACKBONES, jobs: int = 2, limit: int | None = None
) -> None:
    """Compute the missing shards of ``dataset`` (``jobs`` processes, one torch thread each); assemble."""
    from tqdm import tqdm

    todo_all = songs(dataset)[:limit] if limit else songs(dataset)
    todo = [s for s in todo_all if not _shard_ok(s, backbones)]
    print(f"{dataset}: {len(todo_all) - len(todo)} songs cached, {len(todo)} to compute", flush=True)
    if todo:
        if jobs <= 1:
            _init_worker(1)
            for s in tqdm(todo, desc=dataset, unit="song"):
                _compute_shard(s, backbones)
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(1,)) as pool:
                futures = [pool.submit(_compute_shard, s, backbones) for s in todo]
                for fut in tqdm(as_completed(futures), total=len(futures), desc=dataset, unit="song"):
                    fut.result()
    if limit is None:
        assemble(dataset, backbones)


def assemble(dataset: str, backbones: Sequence[str] = BACKBONES) -> None:
    """Stack the shards of all songs into the per-dataset arrays."""
    all_songs = songs(dataset)
    seed_key = SEED_INPUTS.get(dataset)
    seed_arr, durations = [], []
    per_b: dict[str, dict[str, list[np.ndarray]]] = {b: {k: [] for k in EMBEDDINGS} for b in backbones}
    song_idx: list[np.ndarray] = []
    for i, s in enumerate(all_songs):
        with np.load(shard_path(s)) as z:
            if seed_key:
                seed_arr.append(z[seed_key])
            durations.append(float(z["duration_s"]))
            n = z[f"{backbones[0]}__penultimate"].shape[0]
            song_idx.append(np.full(n, i, np.int32))
            for b in backbones:
                for k in EMBEDDINGS:
                    per_b[b][k].append(z[f"{b}__{k}"])
    meta = {
        "track": np.array([s.track for s in all_songs]),
        "genre": np.array([s.genre for s in all_songs]),
        "duration_s": np.array(durations, np.float32),
    }
    if dataset == "emotify":
        meta["emotions"] = np.array([s.emotions for s in all_songs], np.float32)
        meta["n_raters"] = np.array([s.n_raters for s in all_songs], np.int32)
    seed_input = {seed_key: np.stack(seed_arr)} if seed_key else {}
    np.savez(CACHE / f"{dataset}.npz", **meta, **seed_input)
    for b in backbones:
        np.savez(
            CACHE / f"{dataset}_musicnn_{b}.npz",
            song=np.concatenate(song_idx),
            **{k: np.concatenate(v) for k, v in per_b[b].items()},
        )
    print(f"{dataset}: wrote {CACHE / f'{dataset}.npz'} and musicnn arrays for {', '.join(backbones)}")


def load_seed(dataset: str) -> dict[str, np.ndarray]:
    """Labels and the seed CNN input of ``dataset`` (gtzan: ``mfcc``, emotify: ``logspec``, mer4q: none)."""
    path = CACHE / f"{dataset}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `python -m training.features` first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_musicnn(dataset: str, backbone: str = "msd") -> dict[str, np.ndarray]:
    """Per-patch musicnn outputs of ``dataset``: ``song`` (patch → song index) and one array per embedding."""
    path = CACHE / f"{dataset}_musicnn_{backbone}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `python -m training.features` first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.features", description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    p.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each (default 2)")
    p.add_argument("--limit", type=int, help="only the first N songs (smoke test; does not assemble)")
    args = p.parse_args(argv)
    print(f"data: {data_dir()}  cache: {CACHE}")
    t0 = time.perf_counter()
    for d in args.datasets:
        extract(d, backbones=args.backbones, jobs=args.jobs, limit=args.limit)
    print(f"features done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

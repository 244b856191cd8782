"""How much faster ``m2i analyze DIR`` tags a folder than one ``m2i analyze FILE`` process per song.

Each ``m2i`` process pays its start-up (imports, the genre/emotion models loaded) before it tags
anything, so a folder tagged in one process should be several times faster than a shell loop over
the files. Both ways run in the same run, on the same K songs, as a user would type them:

- **one process**: ``m2i analyze DIR --jsonl`` (``--jobs N`` too when asked), timed from outside
  (start-up included), checked for K lines that all carry tags;
- **one process per song** (the baseline): ``m2i analyze FILE --json`` K times, one after another.

One untimed ``m2i analyze FILE --json`` runs first so both find the beat tracker's numba cache warm.
Songs: K synthetic 30-s clips (:mod:`m2i_engine.synth`, styles, tempi and keys varied, FLAC at
22.05 kHz, in a temporary folder), or with ``--source gtzan`` K clips of
``$M2I_DATA_DIR/gtzan_mini/audio`` (one genre after another).

Usage (from the repository root)::

    python bench/analyze_batch.py                     # 8 synthetic songs
    python bench/analyze_batch.py --songs 20 --jobs 1 2 4
    python bench/analyze_batch.py --source gtzan --songs 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout


def _data_dir() -> Path:
    return Path(os.environ.get("M2I_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def synth_songs(folder: Path, k: int, seconds: float) -> list[Path]:
    """``k`` different synthetic songs as FLAC files in ``folder``."""
    import soundfile as sf

    from m2i_engine.synth import STYLES, SongSpec, render_song
    from m2i_engine.tags import PITCH_CLASSES

    paths = []
    for i in range(k):
        spec = SongSpec(
            bpm=80.0 + (i * 13) % 90,
            tonic=PITCH_CLASSES[(i * 5) % 12],
            mode="minor" if i % 2 else "major",
            style=STYLES[i % len(STYLES)],
            duration_s=seconds,
            seed=i,
        )
        path = folder / f"song{i:03d}-{spec.style}.flac"
        sf.write(path, render_song(spec), spec.sr, format="FLAC")
        paths.append(path)
    return paths


def gtzan_songs(folder: Path, k: int) -> list[Path]:
    """``k`` GTZAN clips, round-robin over the genres, linked into ``folder``."""
    audio = _data_dir() / "gtzan_mini" / "audio"
    if not audio.is_dir():
        raise SystemExit(f"{audio} not found: set M2I_DATA_DIR to the shared data folder")
    genres = [sorted(p for p in g.iterdir() if p.is_file()) for g in sorted(audio.iterdir()) if g.is_dir()]
    picked = [g[i] for i in range(max(map(len, genres))) for g in genres if i < len(g)][:k]
    paths = []
    for src in picked:
        link = folder / src.name
        link.symlink_to(src)
        paths.append(link)
    return paths


def m2i(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``m2i`` as a user would (a fresh interpreter); seconds from start to exit."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "m2i_engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return time.perf_counter() - t0, proc


def batch_run(folder: Path, k: int, jobs: int) -> tuple[float, str]:
    seconds, proc = m2i("analyze", str(folder), "--jsonl", "--jobs", str(jobs))
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    bad = [d for d in docs if "tags" not in d]
    if proc.returncode != 0 or len(docs) != k or bad:
        raise SystemExit(
            f"batch run failed (exit {proc.returncode}, {len(docs)} lines, {bad[:2]}):\n{proc.stderr[-2000:]}"
        )
    return seconds, proc.stderr.strip().splitlines()[-1]


def per_file_runs(paths: list[Path]) -> float:
    total = 0.0
    for path in paths:
        seconds, proc = m2i("analyze", str(path), "--json")
        if proc.returncode != 0 or "tags" not in json.loads(proc.stdout):
            raise SystemExit(f"m2i analyze {path} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        total += seconds
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--songs", type=int, default=8, metavar="K", help="how many songs (default 8)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each synthetic song (default 30)")
    p.add_argument(
        "--source",
        choices=["synth", "gtzan"],
        default="synth",
        help="synthetic songs (default) or GTZAN clips from $M2I_DATA_DIR",
    )
    p.add_argument(
        "--jobs",
        type=int,
        nargs="+",
        default=[1],
        metavar="N",
        help="--jobs values for the one-process run; one row each (default: 1)",
    )
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="m2i-batch-") as tmp:
        folder = Path(tmp)
        if args.source == "gtzan":
            paths = gtzan_songs(folder, args.songs)
            what = f"GTZAN clips from {_data_dir() / 'gtzan_mini' / 'audio'}"
        else:
            paths = synth_songs(folder, args.songs, args.seconds)
            what = f"synthetic {args.seconds:g}-s songs (FLAC, 22.05 kHz)"
        k = len(paths)
        print(f"{k} {what}; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}", flush=True)
        warm_s, _ = m2i("analyze", str(paths[0]), "--json")  # numba cache, disk cache: untimed
        print(f"warm-up (one m2i analyze FILE, untimed): {warm_s:.2f} s", flush=True)

        t_files = per_file_runs(paths)
        base_rate = k / t_files
        print(
            f"{'one process per song (m2i analyze FILE --json)':52s} {t_files:7.2f} s  "
            f"{base_rate:6.2f} songs/s  (baseline, {t_files / k:.2f} s a song)",
            flush=True,
        )
        for jobs in args.jobs:
            t_batch, summary = batch_run(folder, k, jobs)
            rate = k / t_batch
            label = f"one process (m2i analyze DIR --jsonl --jobs {jobs})"
            print(
                f"{label:52s} {t_batch:7.2f} s  {rate:6.2f} songs/s  ratio {rate / base_rate:5.1f}x",
                flush=True,
            )
            print(f"{'':52s} its summary: {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much faster m2i's full analysis is than the seed project's pipeline, on the same clips, one CPU thread.

Both pipelines run warm (models loaded, one untimed run first) on the same files, in one process:

- **seed-style**: ``librosa.load`` (22.05 kHz) → 5 × MFCC-13 (6-s windows) → seed genre CNN;
  6 × log-spectrogram (10-s windows, n_fft 2048, hop 512, full 1025 × 431 resolution) → seed
  emotion CNN; ``librosa.beat.beat_track`` on the whole clip. The windows are evenly spread over
  the clip (overlapping on a 30-s clip), so the seed's CNN work is the same for every length — the
  most favourable reading for the seed on long songs. The seed CNNs run with freshly initialised
  weights: their cost does not depend on the weights' values.
- **ours**: ``m2i_engine.pipeline.analyse_audio`` with the shipped models — decode (any format, the
  90-s representative window of a long song), signal analysis (tempo/beats, key, loudness, timbre,
  energy), one musicnn pass (≤ 6 patches) shared by the genre and emotion heads, run by the serving
  runtime (``--runtime numpy``, the default; ``keras`` for the Keras port on torch).

Clips: a 30-s GTZAN track and a 5-min MP3 made of five consecutive Emotify excerpts (from
``$M2I_DATA_DIR``; written to a temporary folder). Goals: ours ≥ 10× faster on the 30-s clip; the
5-min song analysed in ≤ 1.5 s. ``--memory`` also measures RSS in a fresh process per runtime, stage
by stage (goal: the analysis models together ≤ 300 MB).

Usage (from the repository root)::

    python bench/analysis_speed.py                 # prints the table and the ratio
    python bench/analysis_speed.py --memory --save # + RSS; saves training/reports/results/speed.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("KERAS_BACKEND", "torch")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

RESULT = REPO / "training" / "reports" / "results" / "speed.json"


def _data_dir() -> Path:
    return Path(os.environ.get("M2I_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def make_clips(folder: Path) -> list[tuple[str, Path]]:
    """The 30-s GTZAN clip and a 5-min MP3 (five Emotify rock excerpts back to back)."""
    import soundfile as sf

    from m2i_engine.audio import decode_audio
    from m2i_engine.config import AudioLimits

    data = _data_dir()
    clip30 = data / "gtzan_mini" / "audio" / "rock" / "rock.00003.opus"
    if not clip30.is_file():
        raise SystemExit(f"{clip30} not found: set M2I_DATA_DIR to the shared data folder")
    limits = AudioLimits(analysis_s=10_000.0)
    parts = [
        decode_audio(data / "emotify" / "audio" / f"{i}.opus", limits=limits, target_sr=44_100).samples
        for i in range(101, 106)
    ]
    song = np.concatenate(parts)[: 300 * 44_100]
    long_path = folder / "five_minutes.mp3"
    sf.write(long_path, song, 44_100, format="MP3")
    return [("30-s clip (GTZAN rock.00003, Opus)", clip30), ("5-min song (MP3, 44.1 kHz)", long_path)]


class SeedPipeline:
    """The seed app's analysis, rebuilt from the seed README (see the module docstring)."""

    def __init__(self) -> None:
        from training import original_cnns

        self.seed = original_cnns
        self.genre_cnn = original_cnns.build_seed_genre_cnn()
        self.emotion_cnn = original_cnns.build_seed_emotion_cnn()

    def __call__(self, path: Path) -> dict[str, Any]:
        import librosa

        from m2i_engine.models.musicnn import _to_numpy, inference_context

        s = self.seed
        y, sr = librosa.load(str(path), sr=s.SEED_SR)
        mfcc = np.stack(
            [
                librosa.feature.mfcc(y=w, sr=sr, n_mfcc=13, n_fft=s.N_FFT, hop_length=s.HOP_LENGTH).T
                for w in _windows(y, int(6 * sr), 5)
            ]
        )
        spec = np.stack(
            [
                librosa.amplitude_to_db(np.abs(librosa.stft(w, n_fft=s.N_FFT, hop_length=s.HOP_LENGTH)))
                for w in _windows(y, int(10 * sr), 6)
            ]
        )
        with inference_context():
            genre = _to_numpy(self.genre_cnn(mfcc[..., None], training=False)).mean(0)
            emotion = np.mean(
                [_to_numpy(self.emotion_cnn(x[None, ..., None], training=False))[0] for x in spec], axis=0
            )
        tempo, _beats = librosa.beat.beat_track(y=y, sr=sr)
        return {"genre": genre, "emotion": emotion, "tempo": tempo}


def _windows(y: np.ndarray, length: int, n: int) -> list[np.ndarray]:
    """``n`` windows of ``length`` samples evenly spread over ``y`` (zero-padded if ``y`` is shorter)."""
    if len(y) < length:
        y = np.pad(y, (0, length - len(y)))
    starts = np.linspace(0, len(y) - length, n).round().astype(int)
    return [y[s : s + length] for s in starts]


class OurPipeline:
    """The engine's decode → analyse → classify, with the shipped models."""

    def __init__(self, runtime: str) -> None:
        from m2i_engine.config import AudioLimits
        from m2i_engine.models import ModelRegistry

        self.limits = AudioLimits()
        self.models = ModelRegistry.load(runtime=runtime)
        missing = [t for t in ("genre", "emotion") if t not in self.models.classifiers]
        if missing:
            raise SystemExit(f"shipped models missing: {missing} ({self.models.problems})")
        self.last_timings: dict[str, float] = {}

    def __call__(self, path: Path) -> Any:
        from m2i_engine.pipeline import analyse_audio

        tags, timings = analyse_audio(path.read_bytes(), limits=self.limits, models=self.models)
        self.last_timings = timings
        return tags


def timed(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_mb() -> float:
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _proc_status_mb("VmHWM")


def memory_probe(song: Path, runtime: str) -> dict[str, float]:
    """RSS after each stage, in this (fresh) process: the signal analysis runs once before any model
    code is imported, so what comes after is the models' (their runtime, weights, activations, caches)."""
    from m2i_engine.config import AudioLimits
    from m2i_engine.models.registry import ModelRegistry
    from m2i_engine.pipeline import analyse_audio

    data = song.read_bytes()
    out = {"base_mb": rss_mb()}
    analyse_audio(data, limits=AudioLimits(), models=ModelRegistry())  # no models: signal analysis only
    out["signal_only_mb"] = rss_mb()
    if runtime == "keras":
        import keras  # noqa: F401
        import torch

        torch.set_num_threads(1)
    else:
        import h5py  # noqa: F401  (all the NumPy runtime adds to the process)
    out["frameworks_mb"] = rss_mb()
    models = ModelRegistry.load(runtime=runtime)
    out["models_loaded_mb"] = rss_mb()
    for _ in range(3):
        analyse_audio(data, limits=AudioLimits(), models=models)
    out["after_analysis_mb"] = rss_mb()
    out["peak_mb"] = peak_rss_mb()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="timed runs per clip and pipeline (median)")
    p.add_argument("--memory", action="store_true", help="also measure RSS in a fresh process")
    p.add_argument("--save", action="store_true", help=f"write the numbers to {RESULT.relative_to(REPO)}")
    p.add_argument(
        "--runtime",
        choices=["numpy", "keras"],
        default="numpy",
        help="what runs our models (default: numpy, the serving default)",
    )
    p.add_argument("--memory-probe", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.runtime)))
        return 0

    import torch  # the seed pipeline's Keras models run on torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp))
        seed, ours = SeedPipeline(), OurPipeline(args.runtime)
        rows = []
        for name, path in clips:
            t_seed = timed(lambda path=path: seed(path), args.repeat)
            t_ours = timed(lambda path=path: ours(path), args.repeat)
            rows.append(
                {
                    "name": name,
                    "seed_s": t_seed,
                    "ours_s": t_ours,
                    "ratio": t_seed / t_ours,
                    "ours_stages_ms": dict(ours.last_timings),
                }
            )
            print(
                f"{name:40s} seed-style {t_seed:7.2f} s   ours {t_ours:6.2f} s   "
                f"ratio {t_seed / t_ours:6.1f}x"
                f"   (ours: {', '.join(f'{k[:-3]} {v:.0f} ms' for k, v in ours.last_timings.items())})",
                flush=True,
            )
        tags = ours(clips[0][1])
        print(
            "ours on the 30-s clip: genre",
            [(ls.label, round(ls.score, 2)) for ls in tags.genre.labels[:3]],
            "emotion",
            [(ls.label, round(ls.score, 2)) for ls in tags.emotion.labels[:3]],
        )
        result: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%d"),
            "repeat": args.repeat,
            "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs (shared), 1 thread (torch, BLAS)",
            "runtime": args.runtime,
            "clips": rows,
            "ours_stages_ms": rows[-1]["ours_stages_ms"],
        }
        print(
            f"\nratio on the 30-s clip: {rows[0]['ratio']:.1f}x (goal >= 10x); "
            f"5-min song, ours: {rows[1]['ours_s']:.2f} s (goal <= 1.5 s)"
        )
        if args.memory:
            result["memory"] = {}
            for runtime in ("numpy", "keras"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--memory-probe", str(clips[1][1]), "--runtime", runtime],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ},
                )
                mem = json.loads(proc.stdout.strip().splitlines()[-1])
                result["memory"][runtime] = mem
                stages = ", ".join(f"{k[:-3]} {v:.0f}" for k, v in mem.items())
                print(f"RSS (MB), {runtime} runtime: {stages}")
    if args.save:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
        print("saved", RESULT.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the shipped backbone + heads on whichever Keras backend is set, to compare torch and TensorFlow.

The same weight files must give the same predictions on the torch backend (serving) and on
TensorFlow (the optional extra). This script needs only numpy, keras and a backend — it loads
``m2i_engine/models/musicnn.py`` and ``heads.py`` by path, so it also runs in the bare TensorFlow
venv (``.venv-tf``, no pydantic/librosa)::

    KERAS_BACKEND=tensorflow .venv-tf/bin/python training/backend_check.py --inputs in.npz --out tf.npz

``in.npz`` holds ``patches``: ``(n, 187, 96)`` musicnn log-mel patches (compute them with
``MusicnnTagger.input``); ``out.npz`` gets ``backend``, and ``genre`` / ``emotion`` ``(n, labels)``
per-patch head outputs. ``tests/test_models_backends.py`` drives it; to record the comparison for
the report (``training/reports/results/backends.json``)::

    KERAS_BACKEND=torch python training/backend_check.py --compare .venv-tf/bin/python \
        --song ../shared/data/gtzan_mini/audio/rock/rock.00003.opus
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "m2i_engine" / "models"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _load_port() -> ModuleType:
    """The Keras port; it imports its input module by package name, which a bare TensorFlow venv lacks."""
    try:
        import m2i_engine.models.musicnn_input  # noqa: F401
    except ImportError:
        _load("m2i_engine.models.musicnn_input", MODELS / "musicnn_input.py")
    return _load("m2i_backend_check_musicnn", MODELS / "musicnn.py")


def run(patches: np.ndarray, weights_root: Path = MODELS / "weights") -> dict[str, np.ndarray]:
    """Per-patch genre/emotion head outputs of the shipped models on ``patches``, current backend."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    musicnn = _load_port()
    heads = _load("m2i_backend_check_heads", MODELS / "heads.py")
    out: dict[str, np.ndarray] = {"backend": np.array(keras.backend.backend())}
    backbones: dict[str, dict[str, np.ndarray]] = {}
    for task in ("genre", "emotion"):
        manifest = json.loads((weights_root / task / "manifest.json").read_text())
        per_patch: dict[str, np.ndarray] = {}
        for i, (name, sub) in enumerate(manifest["backbones"].items()):
            if sub not in backbones:
                m = json.loads((weights_root / sub / "manifest.json").read_text())
                net = musicnn.build_from_manifest(m)
                net.load_weights(str(weights_root / sub / m["file"]))
                res = net.predict(patches, batch_size=1, verbose=0)
                backbones[sub] = {k: np.asarray(v) for k, v in res.items()}
            for k, v in backbones[sub].items():
                per_patch[f"{name}:{k}"] = v
                if i == 0:
                    per_patch[k] = v
        spec = heads.HeadSpec.from_dict(manifest["head"])
        head = heads.build_head(spec)
        head.load_weights(str(weights_root / task / manifest["file"]))
        rows = heads.patch_matrix(per_patch, spec.inputs)
        out[task] = np.asarray(head.predict(rows, verbose=0), np.float32)
    return out


def compare(tf_python: Path, song: Path | None = None) -> dict[str, object]:
    """Run here (torch) and under ``tf_python`` (TensorFlow) on one input: max |difference| per head."""
    import subprocess
    import tempfile

    import librosa

    musicnn = _load_port()
    if song is not None:
        y, sr = librosa.load(str(song), sr=22050)
    else:
        sr = 22050
        t = np.arange(7 * sr) / sr
        y = (0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    patches = musicnn.musicnn_input(y=y, sr=sr)
    ours = run(patches)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "in.npz", patches=patches)
        env = {
            **os.environ,
            "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "",
        }
        subprocess.run(
            [
                str(tf_python),
                __file__,
                "--inputs",
                str(Path(tmp) / "in.npz"),
                "--out",
                str(Path(tmp) / "tf.npz"),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        with np.load(Path(tmp) / "tf.npz") as z:
            theirs = {k: z[k] for k in z.files}
    return {
        "torch": str(ours["backend"]),
        "other": str(theirs["backend"]),
        "patches": len(patches),
        "song": str(song.name) if song else "synthetic 7-s tone",
        **{f"{t}_max_abs_diff": float(np.abs(ours[t] - theirs[t]).max()) for t in ("genre", "emotion")},
        **{
            f"{t}_same_argmax": bool(np.array_equal(ours[t].argmax(1), theirs[t].argmax(1)))
            for t in ("genre", "emotion")
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--compare",
        type=Path,
        metavar="TF_PYTHON",
        help="compare this process (torch) with TF_PYTHON; saves reports/results/backends.json",
    )
    p.add_argument("--song", type=Path, help="audio for --compare (default: a synthetic tone)")
    args = p.parse_args(argv)
    if args.compare:
        res = compare(args.compare, args.song)
        print(json.dumps(res, indent=1))
        out = REPO / "training" / "reports" / "results" / "backends.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")
        return 0
    if args.inputs is None or args.out is None:
        p.error("--inputs and --out are required (or use --compare)")
    with np.load(args.inputs) as z:
        patches = z["patches"].astype(np.float32)
    np.savez(args.out, **run(patches))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert musicnn's TF1 checkpoints to Keras 3 weights once, and prove the port computes what TF1 computes.

The ``musicnn`` 0.1.0 wheel (ISC licence, Pons & Serra, LBD-ISMIR 2019) ships TF1 checkpoints of
taggers trained on the Million Song Dataset (``MSD_musicnn``) and MagnaTagATune (``MTT_musicnn``),
but its own inference code no longer works (TF 2 / NumPy 2). This script:

1. gets the wheel (``--source``: a wheel, or a folder holding the unpacked ``musicnn`` package; by
   default ``pip download musicnn==0.1.0`` into ``.cache/musicnn``);
2. in a separate TensorFlow venv (``.venv-tf``; ``--setup-tf`` creates it), builds the *original*
   graph from the wheel's own ``models.py``, restores the checkpoint strictly (every graph variable
   must come from it), dumps the inference variables (no optimizer slots) and runs reference
   patches through it;
3. builds the Keras 3 port (:mod:`m2i_engine.models.musicnn`, torch backend), loads the variables,
   saves ``<name>.weights.h5``, reloads that file into a fresh model and compares every output
   (tags, penultimate, pools, frame-level features) with TF1 — failing above ``--tolerance``;
4. runs the same weight file under ``KERAS_BACKEND=tensorflow`` in the TF venv and compares again;
5. writes ``manifest.json`` (labels, input spec, architecture, provenance, licence, the measured
   differences) and the wheel's ISC ``LICENSE.md`` next to the weights.

Run from the repository root with the main venv::

    python training/convert_musicnn.py --setup-tf          # first time: creates .venv-tf (~1.6 GB)
    python training/convert_musicnn.py                     # MSD_musicnn and MTT_musicnn

The ``tf-reference`` and ``keras-run`` subcommands are the workers the TF venv runs; they import only
the standard library and NumPy at module level.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MUSICNN_PY = REPO / "m2i_engine" / "models" / "musicnn.py"
WEIGHTS_ROOT = REPO / "m2i_engine" / "models" / "weights"
TF_VENV = REPO / ".venv-tf"
CACHE = REPO / ".cache" / "musicnn"
WHEEL = "musicnn==0.1.0"
TF_REQUIREMENTS = ("tensorflow-cpu==2.21.0", "tf-keras==2.21.0")  # tf-keras: tf.compat.v1.layers needs it

#: Output folder, architecture and training corpus of each converted checkpoint.
MODELS: dict[str, dict[str, Any]] = {
    "MSD_musicnn": {
        "folder": "musicnn_msd",
        "labels_attr": "MSD_LABELS",
        "num_filt_midend": 64,
        "num_units_backend": 200,
        "dataset": "Million Song Dataset (last.fm top-50 tags)",
    },
    "MTT_musicnn": {
        "folder": "musicnn_mtt",
        "labels_attr": "MTT_LABELS",
        "num_filt_midend": 64,
        "num_units_backend": 200,
        "dataset": "MagnaTagATune (top-50 tags)",
    },
}

#: Keras layer of the port -> the TF1 variables it holds, in the layer's weight order. The front-end
#: layers fuse a conv2d with the batch_normalization after it (creation order of musicnn's models.py).
BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


def _bn(i: int) -> list[str]:
    scope = "batch_normalization" + (f"_{i}" if i else "")
    return [f"{scope}/{v}" for v in BN_VARS]


def _conv(i: int) -> list[str]:
    scope = "conv2d" + (f"_{i}" if i else "")
    return [f"{scope}/kernel", f"{scope}/bias"]


KERAS_FROM_TF: dict[str, list[str]] = {
    "input_bn": _bn(0),
    "timbral_74": _conv(0) + _bn(1),
    "timbral_77": _conv(1) + _bn(2),
    "temporal_128": _conv(2) + _bn(3),
    "temporal_64": _conv(3) + _bn(4),
    "temporal_32": _conv(4) + _bn(5),
    "midend_1_conv": _conv(5),
    "midend_1_bn": _bn(6),
    "midend_2_conv": _conv(6),
    "midend_2_bn": _bn(7),
    "midend_3_conv": _conv(7),
    "midend_3_bn": _bn(8),
    "pool_bn": _bn(9),
    "penultimate_dense": ["dense/kernel", "dense/bias"],
    "penultimate_bn": _bn(10),
    "logits": ["dense_1/kernel", "dense_1/bias"],
}
OUTPUTS = (
    "tags",
    "logits",
    "penultimate",
    "mean_pool",
    "max_pool",
    "timbral",
    "temporal",
    "cnn1",
    "cnn2",
    "cnn3",
)

INPUT_SPEC: dict[str, Any] = {
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "n_frames": 187,
    "patch_seconds": 3.0,
    "patch_hop_frames": 187,
    "center": True,
    "pad_mode": "reflect",
    "power": 2.0,
    "mel_norm": "slaney",
    "htk": False,
    "window": "hann",
    "short_input": "repeat-pad",
    "log_compression": "mel power -> float16 -> float32; log10(10000 * mel + 1)",
    "resampling": "librosa.resample(res_type='soxr_hq') from any rate to 16 kHz, mono",
    "notes": (
        "As musicnn/extractor.py with the librosa of its time (0.7: centred frames, reflect "
        "padding, Slaney mel). The 10000* product is taken in float32, as NumPy < 2 promoted it; "
        "NumPy 2 keeps float16 and overflows to inf for mel > 6.55."
    ),
}
PROVENANCE: dict[str, Any] = {
    "source": "PyPI wheel musicnn 0.1.0 (github.com/jordipons/musicnn), TF1 checkpoint",
    "authors": "Jordi Pons, Xavier Serra (Music Technology Group, Universitat Pompeu Fabra)",
    "citation": (
        'J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music '
        'audio tagging", Late-Breaking/Demo session of ISMIR 2019.'
    ),
    "licence": "ISC",
    "licence_file": "LICENSE.md",
    "copyright": "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. "
    "Code developed by Jordi Pons (www.jordipons.me).",
}


# -------------------------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(f"[convert_musicnn] {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _key(name: str) -> str:
    return name.replace("/", "__")


def _import_file(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def find_package(source: Path | None) -> tuple[Path, dict[str, Any]]:
    """The folder that holds the ``musicnn`` package (parent of ``musicnn/models.py``), and its provenance."""
    info: dict[str, Any] = {}
    if source is None:
        wheels = sorted(CACHE.glob("musicnn-0.1.0-*.whl"))
        if not wheels:
            _log(f"downloading {WHEEL} into {CACHE}")
            CACHE.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                    str(CACHE),
                    WHEEL,
                ],
                check=True,
            )
            wheels = sorted(CACHE.glob("musicnn-0.1.0-*.whl"))
        source = wheels[0]
    source = source.resolve()
    if source.is_file() and source.suffix == ".whl":
        info.update(wheel=source.name, wheel_sha256=_sha256(source))
        dest = CACHE / source.stem
        if not (dest / "musicnn" / "models.py").is_file():
            with zipfile.ZipFile(source) as zf:
                zf.extractall(dest)
        return dest, info
    for cand in (source, source.parent):
        if (cand / "musicnn" / "models.py").is_file():
            return cand, info
    raise SystemExit(f"{source}: neither the musicnn wheel nor a folder holding musicnn/models.py")


def setup_tf_venv(venv: Path) -> None:
    _log(f"creating {venv} with {' '.join(TF_REQUIREMENTS)}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *TF_REQUIREMENTS], check=True)


def reference_inputs(
    n_frames: int = 187, n_mels: int = 96, data_dir: Path | None = None
) -> dict[str, np.ndarray]:
    """Deterministic test patches: log-mel-like noise, synthetic music, and real music when available."""
    sys.path.insert(0, str(REPO))
    from m2i_engine.models.musicnn import musicnn_input

    rng = np.random.default_rng(1234)
    noise = np.clip(rng.gamma(2.0, 0.7, size=(3, n_frames, n_mels)), 0, 6).astype(np.float32)
    sr = 22050
    t = np.arange(int(10 * sr)) / sr
    f0 = 110 * 2 ** (np.floor(t * 2) % 12 / 12)
    y = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 8))
    y = y + 0.05 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9)
    y = y + 0.8 * np.exp(-((t % 0.5) * 40)) * np.sin(2 * np.pi * 60 * t)
    inputs = {"noise": noise, "synthetic": musicnn_input(y=np.asarray(y, np.float32), sr=sr)}
    if data_dir is not None and (data_dir / "gtzan_mini" / "tracks.csv").is_file():
        import soundfile as sf

        real = []
        for g in ("classical", "metal", "hiphop", "jazz"):
            yy, ssr = sf.read(data_dir / "gtzan_mini" / "audio" / g / f"{g}.00001.opus", dtype="float32")
            real.append(musicnn_input(y=yy, sr=ssr)[:2])
        inputs["gtzan"] = np.concatenate(real)
    return inputs


# ----------------------------------------------------------------------------- workers (TF venv side)


def tf_reference(pkg_parent: Path, model: str, inputs_npz: Path, out_npz: Path) -> None:
    """Build the wheel's own TF1 graph, restore the checkpoint strictly, dump variables and outputs."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    sys.path.insert(0, str(pkg_parent))
    from musicnn import configuration, models  # the original code, unmodified

    ckpt = str(pkg_parent / "musicnn" / model) + "/"
    labels = list(getattr(configuration, MODELS[model]["labels_attr"]))
    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, configuration.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, penultimate = models.define_model(
            x, is_training, model, len(labels)
        )
        fetch = {
            "tags": tf.nn.sigmoid(y),
            "logits": y,
            "penultimate": penultimate,
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "timbral": timbral,
            "temporal": temporal,
            "cnn1": tf.squeeze(cnn1, [3]),
            "cnn2": tf.squeeze(cnn2, [3]),
            "cnn3": tf.squeeze(cnn3, [3]),
        }
        graph_vars = tf.compat.v1.global_variables()
        reader = tf.compat.v1.train.NewCheckpointReader(ckpt)
        in_ckpt = {
            k
            for k in reader.get_variable_to_shape_map()
            if "Adam" not in k and not k.startswith("beta1_power") and not k.startswith("beta2_power")
        }
        names = {v.op.name for v in graph_vars}
        if names != in_ckpt:
            raise SystemExit(
                f"graph/checkpoint variables differ: only graph {sorted(names - in_ckpt)}, "
                f"only checkpoint {sorted(in_ckpt - names)}"
            )
        with tf.compat.v1.Session(graph=graph) as sess:
            tf.compat.v1.train.Saver(var_list=graph_vars).restore(sess, ckpt)  # raises on any mismatch
            values = dict(zip([v.op.name for v in graph_vars], sess.run(graph_vars), strict=True))
            for k, v in values.items():  # restored == stored
                assert np.array_equal(v, reader.get_tensor(k)), k
            result: dict[str, Any] = {f"var/{_key(k)}": v for k, v in values.items()}
            with np.load(inputs_npz) as data:
                for name in data.files:
                    outs = sess.run(fetch, feed_dict={x: data[name], is_training: False})
                    result.update({f"out/{name}/{k}": v for k, v in outs.items()})
    result["labels"] = np.array(labels)
    result["tf_version"] = np.array(tf.__version__)
    np.savez(out_npz, **result)


def keras_run(folder: Path, inputs_npz: Path, out_npz: Path) -> None:
    """Run the port with the current ``KERAS_BACKEND`` on the saved weight file; save every output."""
    try:  # the port imports its input module by package name, which a bare TensorFlow venv lacks
        import m2i_engine.models.musicnn_input  # noqa: F401
    except ImportError:
        _import_file("m2i_engine.models.musicnn_input", MUSICNN_PY.with_name("musicnn_input.py"))
    mod = _import_file("m2i_musicnn_port", MUSICNN_PY)
    manifest = json.loads((folder / "manifest.json").read_text())
    model = mod.build_from_manifest(manifest, frames=True)
    model.load_weights(str(folder / manifest["file"]))
    result: dict[str, Any] = {}
    with np.load(inputs_npz) as data:
        for name in data.files:
            outs = model(data[name], training=False)
            result.update({f"out/{name}/{k}": mod.keras.ops.convert_to_numpy(v) for k, v in outs.items()})
    result["backend"] = np.array(mod.keras.backend.backend())
    result["keras_version"] = np.array(mod.keras.__version__)
    np.savez(out_npz, **result)


# --------------------------------------------------------------------------- conversion (main venv)


def assign_weights(model: Any, variables: dict[str, np.ndarray]) -> None:
    """Put TF1 variables into the port's layers, checking every shape and that none is left over."""
    used: set[str] = set()
    for layer_name, names in KERAS_FROM_TF.items():
        layer = model.get_layer(layer_name)
        ws = [variables[n] for n in names]
        used.update(names)
        if layer_name.startswith("midend") and layer_name.endswith("_conv"):
            # Conv2D (7, C, 1, F) over the full height of (time, C, 1) == Conv1D (7, C, F) over time.
            assert ws[0].shape[2] == 1, ws[0].shape
            ws[0] = ws[0][:, :, 0, :]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [w.shape for w in ws]:
            raise SystemExit(f"{names} -> {layer_name}: shapes {[w.shape for w in ws]} != {expected}")
        layer.set_weights(ws)
    if set(variables) != used:
        raise SystemExit(f"unused checkpoint variables: {sorted(set(variables) - used)}")


def compare(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, relative: bool = False
) -> dict[str, float]:
    """Max abs difference per output over all input sets (keys ``out/<set>/<output>``).

    ``relative=True`` divides by the output's largest magnitude in ``a`` (float32 round-off is relative).
    """
    diffs: dict[str, float] = {}
    scale: dict[str, float] = {}
    for key, ref in a.items():
        if not key.startswith("out/"):
            continue
        out = key.rsplit("/", 1)[1]
        r = np.asarray(ref, np.float64)
        d = float(np.max(np.abs(r - np.asarray(b[key], np.float64))))
        diffs[out] = max(diffs.get(out, 0.0), d)
        scale[out] = max(scale.get(out, 0.0), float(np.max(np.abs(r))))
    if relative:
        return {k: v / max(scale[k], 1e-12) for k, v in diffs.items()}
    return diffs


def convert(
    model_name: str,
    pkg_parent: Path,
    provenance: dict[str, Any],
    tf_python: Path,
    out_root: Path,
    tolerance: float,
    data_dir: Path | None,
) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from m2i_engine.models import musicnn as port

    cfg = MODELS[model_name]
    ckpt_dir = pkg_parent / "musicnn" / model_name
    folder = out_root / cfg["folder"]
    wheel_cfg = json.loads((ckpt_dir / "config.json").read_text())
    with tempfile.TemporaryDirectory(prefix="musicnn_") as tmp_s:
        tmp = Path(tmp_s)
        inputs = reference_inputs(data_dir=data_dir)
        arrays: dict[str, Any] = dict(inputs)
        np.savez(tmp / "inputs.npz", **arrays)
        env = {
            **os.environ,
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONWARNINGS": "ignore",
        }
        _log(f"{model_name}: TF1 reference graph in {tf_python}")
        subprocess.run(
            [
                str(tf_python),
                __file__,
                "tf-reference",
                "--package",
                str(pkg_parent),
                "--model",
                model_name,
                "--inputs",
                str(tmp / "inputs.npz"),
                "--out",
                str(tmp / "tf.npz"),
            ],
            check=True,
            env=env,
        )
        tf_out = dict(np.load(tmp / "tf.npz"))
        variables = {k[4:].replace("__", "/"): v for k, v in tf_out.items() if k.startswith("var/")}
        labels = [str(s) for s in tf_out["labels"]]
        manifest: dict[str, Any] = {
            "task": "embedding",
            "name": cfg["folder"],
            "version": "1.0.0",
            "format": "keras3-weights",
            "file": f"{cfg['folder']}.weights.h5",
            "labels": labels,
            "architecture": {
                "type": "musicnn",
                "num_filt_frontend": 1.6,
                "num_filt_midend": cfg["num_filt_midend"],
                "num_units_backend": cfg["num_units_backend"],
                "num_classes": len(labels),
                "dropout": "omitted (inference only)",
            },
            "input": {
                **INPUT_SPEC,
                "n_frames": int(wheel_cfg["n_frames"]),
                "n_mels": int(wheel_cfg["audio_rep"]["n_mels"]),
            },
            "outputs": {
                "tags": "sigmoid probabilities, one per label",
                "penultimate": f"{cfg['num_units_backend']}-d dense layer (after BN)",
                "mean_pool": "753-d mean over time of the mid-end features",
                "max_pool": "753-d max over time of the mid-end features",
            },
            "training_data": cfg["dataset"],
            "provenance": {
                **PROVENANCE,
                **provenance,
                "checkpoint": model_name,
                "checkpoint_sha256": {
                    p.name: _sha256(p) for p in sorted(ckpt_dir.iterdir()) if p.name.startswith(".")
                },
                "published_result": (ckpt_dir / "experiment.result").read_text().strip(),
            },
        }
        assert manifest["input"]["n_frames"] == 187 and manifest["input"]["n_mels"] == 96

        model = port.build_from_manifest(manifest, frames=True)
        assign_weights(model, variables)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.weights.h5"):
            stale.unlink()
        weights = folder / manifest["file"]
        model.save_weights(str(weights))
        licences = sorted(pkg_parent.glob("musicnn-*.dist-info/LICENSE*"))
        if not licences:
            raise SystemExit(f"no LICENSE in the dist-info under {pkg_parent}: the ISC notice must ship")
        shutil.copyfile(licences[0], folder / "LICENSE.md")
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

        # Reload the written file into a fresh model: what ships is what is checked.
        fresh = port.build_from_manifest(manifest, frames=True)
        fresh.load_weights(str(weights))
        ours: dict[str, np.ndarray] = {}
        with port.inference_context():
            for name, x in inputs.items():
                outs = fresh(x, training=False)
                ours.update({f"out/{name}/{k}": keras.ops.convert_to_numpy(v) for k, v in outs.items()})
        diff_torch = compare(tf_out, ours)
        _log(f"{model_name}: keras[{keras.backend.backend()}] vs TF1 max abs diff {diff_torch}")

        subprocess.run(
            [
                str(tf_python),
                __file__,
                "keras-run",
                "--folder",
                str(folder),
                "--inputs",
                str(tmp / "inputs.npz"),
                "--out",
                str(tmp / "ktf.npz"),
            ],
            check=True,
            env={
                **os.environ,
                "KERAS_BACKEND": "tensorflow",
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONWARNINGS": "ignore",
            },
        )
        ktf = dict(np.load(tmp / "ktf.npz"))
        diff_ktf = compare(tf_out, ktf)
        diff_backends = compare(ours, ktf)
        _log(f"{model_name}: keras[tensorflow] vs TF1 max abs diff {diff_ktf}")

    worst = max(*diff_torch.values(), *diff_ktf.values())
    manifest["conversion"] = {
        "date": dt.date.today().isoformat(),
        "tool": "training/convert_musicnn.py",
        "reference": f"the wheel's own models.py graph, TensorFlow {tf_out['tf_version']} (tf.compat.v1)",
        "keras_version": keras.__version__,
        "test_inputs": {k: list(v.shape) for k, v in inputs.items()},
        "max_abs_diff": max(diff_torch.values()),
        "max_abs_diff_vs_tf1": {"torch": diff_torch, "tensorflow": diff_ktf},
        "max_rel_diff_vs_tf1": {
            "torch": compare(tf_out, ours, relative=True),
            "tensorflow": compare(tf_out, ktf, relative=True),
        },
        "max_abs_diff_torch_vs_tensorflow_backend": max(diff_backends.values()),
        "max_abs_output": {
            k: max(
                float(np.max(np.abs(v)))
                for kk, v in tf_out.items()
                if kk.startswith("out/") and kk.endswith("/" + k)
            )
            for k in OUTPUTS
        },
        "tolerance": tolerance,
        "weights_sha256": _sha256(weights),
        "weights_bytes": weights.stat().st_size,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if worst > tolerance:
        raise SystemExit(f"{model_name}: port differs from TF1 by {worst:.3g} > {tolerance}")
    _log(f"{model_name}: wrote {folder} ({weights.stat().st_size / 1e6:.2f} MB), max abs diff {worst:.2e}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("convert", help="(default) convert and verify")
    for p in (ap, c):
        p.add_argument(
            "--source",
            type=Path,
            default=None,
            help="musicnn wheel, or folder holding the unpacked package (default: pip download)",
        )
        p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
        p.add_argument("--out-root", type=Path, default=WEIGHTS_ROOT)
        p.add_argument("--tf-python", type=Path, default=TF_VENV / "bin" / "python")
        p.add_argument("--setup-tf", action="store_true", help=f"create {TF_VENV.name} first if missing")
        p.add_argument("--tolerance", type=float, default=1e-3)
        p.add_argument(
            "--data-dir",
            type=Path,
            default=Path(os.environ.get("M2I_DATA_DIR", REPO.parent / "shared" / "data")),
            help="adds real GTZAN patches to the comparison when present",
        )
    w = sub.add_parser("tf-reference", help="worker: TF1 graph outputs and variables (TF venv)")
    w.add_argument("--package", type=Path, required=True)
    w.add_argument("--model", required=True, choices=list(MODELS))
    w.add_argument("--inputs", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("keras-run", help="worker: run the port on a weight folder with $KERAS_BACKEND")
    k.add_argument("--folder", type=Path, required=True)
    k.add_argument("--inputs", type=Path, required=True)
    k.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    if args.cmd == "tf-reference":
        tf_reference(args.package, args.model, args.inputs, args.out)
        return 0
    if args.cmd == "keras-run":
        keras_run(args.folder, args.inputs, args.out)
        return 0

    if not args.tf_python.exists():
        if args.setup_tf and args.tf_python == TF_VENV / "bin" / "python":
            setup_tf_venv(TF_VENV)
        else:
            raise SystemExit(
                f"no TensorFlow python at {args.tf_python}: run with --setup-tf, or create it: "
                f"`python -m venv .venv-tf && .venv-tf/bin/pip install "
                f"{' '.join(TF_REQUIREMENTS)}`"
            )
    pkg_parent, provenance = find_package(args.source)
    data_dir = args.data_dir if args.data_dir and args.data_dir.is_dir() else None
    for name in args.models:
        convert(name, pkg_parent, provenance, args.tf_python, args.out_root, args.tolerance, data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

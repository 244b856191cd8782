"""One set of weights, two Keras backends: the shipped backbone + heads agree on torch and TensorFlow.

The TensorFlow side runs in a subprocess (``training/backend_check.py``): the current interpreter if
it can import TensorFlow, else the project's bare TensorFlow venv ``.venv-tf``; without either the
test skips and says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("keras", reason="keras not installed (pip install -e '.[train]')")
pytest.importorskip("librosa")

from m2i_engine.models import ModelRegistry
from m2i_engine.models.heads import patch_matrix
from m2i_engine.models.registry import TASKS

REPO = Path(__file__).resolve().parents[1]
TF_VENV_PYTHON = REPO / ".venv-tf" / "bin" / "python"
RUNNER = REPO / "training" / "backend_check.py"


def _tensorflow_python() -> Path | None:
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True)
    if probe.returncode == 0:
        return Path(sys.executable)
    return TF_VENV_PYTHON if TF_VENV_PYTHON.exists() else None


def _patches(registry: ModelRegistry) -> np.ndarray:
    rng = np.random.default_rng(0)
    sr = 22050
    t = np.arange(7 * sr) / sr
    y = (
        0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))
        + 0.1 * rng.standard_normal(t.size)
    ).astype(np.float32)
    tagger = next(iter(registry.classifiers["genre"].backbone.taggers.values()))  # type: ignore[attr-defined]
    return np.asarray(tagger.input(y, sr), np.float32)


@pytest.mark.slow
def test_torch_and_tensorflow_give_the_same_predictions(tmp_path: Path) -> None:
    python = _tensorflow_python()
    if python is None:
        pytest.skip(
            "TensorFlow is not importable here and there is no .venv-tf "
            "(pip install tensorflow-cpu, or create .venv-tf) — backend equality not checked"
        )
    registry = ModelRegistry.load(runtime="keras")  # the Keras port, on torch here
    assert set(registry.classifiers) == set(TASKS), registry.problems
    patches = _patches(registry)
    ours: dict[str, np.ndarray] = {}
    for task in ("genre", "emotion"):
        clf = registry.classifiers[task]
        tagger = next(iter(clf.backbone.taggers.values()))  # type: ignore[attr-defined]
        per_patch = tagger.predict_patches(patches)
        ours[task] = clf.head(patch_matrix(per_patch, clf.spec.inputs))  # type: ignore[attr-defined]
    np.savez(tmp_path / "in.npz", patches=patches)
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
    }
    proc = subprocess.run(
        [str(python), str(RUNNER), "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "tf.npz")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = dict(np.load(tmp_path / "tf.npz"))
    assert str(theirs["backend"]) == "tensorflow"
    for task in ("genre", "emotion"):
        assert theirs[task].shape == ours[task].shape
        # musicnn's port agrees with itself across backends to ~1e-4; the heads keep that order
        np.testing.assert_allclose(theirs[task], ours[task], atol=1e-3, err_msg=task)
        assert np.array_equal(theirs[task].argmax(1), ours[task].argmax(1))

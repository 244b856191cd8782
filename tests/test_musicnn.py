"""The musicnn port: same numbers as the original TF1 graph, sensible tags on real music, stable shapes.

The TF1 comparisons need the TensorFlow venv (``.venv-tf``) and the unpacked musicnn wheel that
``training/convert_musicnn.py`` leaves in ``.cache/musicnn``; CI has neither, so they skip there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # as the module under test does; keras reads it on import
pytest.importorskip("keras", reason="keras not installed (pip install -e '.[train]')")
pytest.importorskip("librosa")

from m2i_engine.models import musicnn

REPO = Path(__file__).resolve().parents[1]
TF_PYTHON = REPO / ".venv-tf" / "bin" / "python"
CONVERTER = REPO / "training" / "convert_musicnn.py"
FOLDER = musicnn.WEIGHTS_ROOT / musicnn.DEFAULT_MODEL


@pytest.fixture(scope="module")
def tagger() -> musicnn.MusicnnTagger:
    assert (FOLDER / "manifest.json").is_file(), f"converted weights missing in {FOLDER}"
    return musicnn.MusicnnTagger.load()


def _song(seconds: float, sr: int = 22050, seed: int = 0, f0: float = 110.0) -> np.ndarray:
    """A few seconds of synthetic 'music': a stepping harmonic tone, a kick and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * 2 ** (np.floor(t * 2) % 12 / 12)
    y = sum(0.3 / k * np.sin(2 * np.pi * k * f * t) for k in range(1, 6))
    y = y + 0.7 * np.exp(-(t % 0.5) * 40) * np.sin(2 * np.pi * 60 * t) + 0.02 * rng.standard_normal(t.size)
    return np.asarray(y, dtype=np.float32)


def _converter() -> Any:
    spec = importlib.util.spec_from_file_location("convert_musicnn", CONVERTER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------- manifest, shapes


def test_manifest_describes_the_shipped_weights() -> None:
    m = musicnn.load_manifest()
    assert m["name"] == "musicnn_msd" and len(m["labels"]) == 50
    assert {"rock", "metal", "heavy metal", "Hip-Hop", "jazz", "instrumental", "sad"} <= set(m["labels"])
    spec = m["input"]
    assert (spec["sample_rate"], spec["n_fft"], spec["hop_length"], spec["n_mels"], spec["n_frames"]) == (
        16000,
        512,
        256,
        96,
        187,
    )
    assert m["provenance"]["licence"] == "ISC" and "Pons" in m["provenance"]["citation"]
    assert (FOLDER / "LICENSE.md").is_file()
    weights = FOLDER / m["file"]
    assert weights.stat().st_size < 5_000_000  # inference weights only, no optimizer slots
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == m["conversion"]["weights_sha256"]
    assert m["conversion"]["max_abs_diff"] < 1e-3


def test_input_patches_shape_and_no_float16_overflow() -> None:
    x = musicnn.musicnn_input(y=_song(10.0), sr=22050)
    assert x.shape == (3, 187, 96) and x.dtype == np.float32  # 10 s = 625 frames -> 3 full patches
    # A full-scale tone: mel power far above 6.55, where NumPy 2's float16 product overflowed to inf.
    t = np.arange(3 * 16000) / 16000
    loud = musicnn.musicnn_input(y=np.sin(2 * np.pi * 440 * t).astype(np.float32), sr=16000)
    assert np.isfinite(loud).all() and loud.max() > np.log10(10000 * 6.55 + 1)
    # Shorter than one patch: repeated to fill it. Stereo (channels, samples) is downmixed.
    assert musicnn.musicnn_input(y=_song(1.0), sr=22050).shape == (1, 187, 96)
    stereo = np.stack([_song(4.0), _song(4.0)])
    np.testing.assert_allclose(
        musicnn.musicnn_input(y=stereo, sr=22050), musicnn.musicnn_input(y=_song(4.0), sr=22050), atol=1e-5
    )
    assert musicnn.musicnn_input(y=_song(10.0), sr=22050, hop_frames=93).shape[0] == 5


def test_outputs_shapes_and_determinism(tagger: musicnn.MusicnnTagger) -> None:
    y = _song(7.0)
    per = tagger.per_patch(y, 22050)
    assert {k: v.shape for k, v in per.items()} == {
        "tags": (2, 50),
        "logits": (2, 50),
        "penultimate": (2, 200),
        "mean_pool": (2, 753),
        "max_pool": (2, 753),
    }
    emb = tagger.embeddings(y, 22050)
    assert {k: v.shape for k, v in emb.items()} == {
        "tags": (50,),
        "penultimate": (200,),
        "penultimate_std": (200,),
        "mean_pool": (753,),
        "max_pool": (753,),
    }
    assert all(np.isfinite(v).all() and v.dtype == np.float32 for v in emb.values())
    again = tagger.pool(per)  # a second run gives the very same numbers
    assert all(np.array_equal(emb[k], again[k]) for k in emb)
    tags = tagger.tags(y, 22050)
    assert list(tags) == sorted(tags, key=lambda k: -tags[k]) and len(tags) == 50
    assert all(0.0 <= v <= 1.0 for v in tags.values())
    np.testing.assert_allclose([tags[k] for k in tagger.labels], emb["tags"], atol=1e-6)
    # Batching does not change the numbers.
    x = tagger.input(y, 22050)
    batched = musicnn.MusicnnTagger(FOLDER, batch_size=8).predict_patches(x)["penultimate"]
    np.testing.assert_allclose(batched, per["penultimate"], atol=1e-4)
    frames = tagger.predict_patches(x[:1], frames=True)
    assert frames["timbral"].shape == (1, 187, 408) and frames["temporal"].shape == (1, 187, 153)
    assert frames["cnn3"].shape == (1, 187, 64)
    with pytest.raises(ValueError):
        tagger.predict_patches(np.zeros((2, 100, 96), np.float32))
    capped = tagger.per_patch(y, 22050, max_patches=1)  # the first patch of the two
    np.testing.assert_allclose(capped["penultimate"], per["penultimate"][:1], atol=1e-5)


# ------------------------------------------------------------------------------------- real music


TRACKS = {  # GTZAN track -> tags one of which must be among its top 3 (MSD has no 'classical' tag)
    "classical.00000": {"instrumental", "ambient", "easy listening", "beautiful"},
    "metal.00000": {"metal", "heavy metal", "hard rock"},
    "hiphop.00001": {"Hip-Hop", "rnb"},
    "jazz.00001": {"jazz"},
    "blues.00002": {"blues"},
}


@pytest.mark.data
def test_published_tag_behaviour_on_real_music(tagger: musicnn.MusicnnTagger, shared_data: Path) -> None:
    import soundfile as sf

    embs: dict[str, dict[str, np.ndarray]] = {}
    for track, expected in TRACKS.items():
        genre = track.split(".")[0]
        y, sr = sf.read(shared_data / "gtzan_mini" / "audio" / genre / f"{track}.opus", dtype="float32")
        embs[track] = tagger.embeddings(y, sr)
        tags = tagger.tags_from_vector(embs[track]["tags"])
        top = list(tags)[:3]
        assert expected & set(top), f"{track}: top tags {list(tags.items())[:5]}"
    probs = {t: tagger.tags_from_vector(e["tags"]) for t, e in embs.items()}
    assert probs["classical.00000"]["metal"] < 0.05 and probs["classical.00000"]["Hip-Hop"] < 0.05
    assert probs["hiphop.00001"]["Hip-Hop"] > 0.5 and probs["metal.00000"]["Hip-Hop"] < 0.05
    # Different songs, clearly different embeddings (the original package returned identical ones).
    for key in ("penultimate", "mean_pool"):
        x = np.stack([e[key] for e in embs.values()])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        dist = 1.0 - x @ x.T
        assert dist[np.triu_indices(len(x), 1)].min() > 0.05, key


# -------------------------------------------------------------------------------- against TensorFlow


def _tf_inputs(tagger: musicnn.MusicnnTagger) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    noise = np.clip(rng.gamma(2.0, 0.7, size=(2, 187, 96)), 0, 6).astype(np.float32)
    return {"noise": noise, "synthetic": tagger.input(_song(7.0, seed=3, f0=196.0), 22050)}


def _compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], name: str) -> dict[str, float]:
    diffs = {}
    for key, ref in theirs.items():
        if key.startswith(f"out/{name}/"):
            out = key.rsplit("/", 1)[1]
            diffs[out] = float(np.max(np.abs(ours[out] - ref)))
    return diffs


def test_port_matches_the_tf1_graph(tagger: musicnn.MusicnnTagger, tmp_path: Path) -> None:
    if not TF_PYTHON.exists():
        pytest.skip(f"no TensorFlow venv at {TF_PYTHON} (python training/convert_musicnn.py --setup-tf)")
    conv = _converter()
    pkgs = sorted(p.parent.parent for p in conv.CACHE.glob("*/musicnn/models.py"))
    src = Path(os.environ["M2I_MUSICNN_SRC"]) if "M2I_MUSICNN_SRC" in os.environ else next(iter(pkgs), None)
    if src is None or not (src / "musicnn" / "MSD_musicnn").is_dir():
        pytest.skip(f"unpacked musicnn wheel not found in {conv.CACHE} (run training/convert_musicnn.py)")
    inputs = _tf_inputs(tagger)
    arrays: dict[str, Any] = dict(inputs)
    np.savez(tmp_path / "in.npz", **arrays)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    subprocess.run(
        [
            str(TF_PYTHON),
            str(CONVERTER),
            "tf-reference",
            "--package",
            str(src),
            "--model",
            "MSD_musicnn",
            "--inputs",
            str(tmp_path / "in.npz"),
            "--out",
            str(tmp_path / "tf.npz"),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    theirs = dict(np.load(tmp_path / "tf.npz"))
    assert [str(s) for s in theirs["labels"]] == list(tagger.labels)
    for name, x in inputs.items():
        diffs = _compare(tagger.predict_patches(x, frames=True), theirs, name)
        assert set(diffs) == set(conv.OUTPUTS)
        assert max(diffs[k] for k in ("tags", "logits", "penultimate", "mean_pool")) < 1e-4, diffs
        assert max(diffs.values()) < 1e-3, diffs  # frame features/max_pool reach ~175: float32 round-off


def _tensorflow_python() -> Path | None:
    """The main venv's python if TensorFlow imports there, else the TF venv's (which has Keras 3 too)."""
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True)
    if probe.returncode == 0:
        return Path(sys.executable)
    return TF_PYTHON if TF_PYTHON.exists() else None


def test_tensorflow_backend_gives_the_same_outputs(tagger: musicnn.MusicnnTagger, tmp_path: Path) -> None:
    python = _tensorflow_python()
    if python is None:
        pytest.skip("TensorFlow is not importable in this venv and there is no .venv-tf")
    inputs = _tf_inputs(tagger)
    arrays: dict[str, Any] = dict(inputs)
    np.savez(tmp_path / "in.npz", **arrays)
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore",
    }
    subprocess.run(
        [
            str(python),
            str(CONVERTER),
            "keras-run",
            "--folder",
            str(FOLDER),
            "--inputs",
            str(tmp_path / "in.npz"),
            "--out",
            str(tmp_path / "k.npz"),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    theirs = dict(np.load(tmp_path / "k.npz"))
    assert str(theirs["backend"]) == "tensorflow"
    for name, x in inputs.items():
        diffs = _compare(tagger.predict_patches(x, frames=True), theirs, name)
        assert max(diffs[k] for k in ("tags", "logits", "penultimate", "mean_pool")) < 1e-4, diffs
        assert max(diffs.values()) < 1e-3, diffs


def test_manifest_records_the_measured_difference() -> None:
    conv = json.loads((FOLDER / "manifest.json").read_text())["conversion"]
    assert set(conv["max_abs_diff_vs_tf1"]) == {"torch", "tensorflow"}
    assert conv["max_abs_diff"] == max(conv["max_abs_diff_vs_tf1"]["torch"].values())

"""The NumPy runtime that serves the models equals the Keras port on the shipped weights, and keeps
torch and Keras out of the serving process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("keras", reason="keras not installed (pip install -e '.[train]')")

from m2i_engine.models import ModelRegistry
from m2i_engine.models.npnet import NumpyMusicnn
from m2i_engine.models.registry import TASKS
from m2i_engine.synth import SongSpec, render_song

REPO = Path(__file__).resolve().parents[1]


class _Features:
    """What the heads read from the engine's analysis: the analysed signal and its rate."""

    def __init__(self, y: np.ndarray, sr: int = 22050) -> None:
        self.y, self.sr = y, sr


def _song(style: str, bpm: float, seed: int) -> np.ndarray:
    return render_song(SongSpec(bpm=bpm, style=style, duration_s=16.0, sr=22050, seed=seed))


@pytest.fixture(scope="module")
def registries() -> dict[str, ModelRegistry]:
    out = {rt: ModelRegistry.load(runtime=rt) for rt in ("numpy", "keras")}
    for rt, reg in out.items():
        assert set(reg.classifiers) == set(TASKS), (rt, reg.problems)
    return out


def test_backbone_is_as_exact_as_the_keras_port(registries: dict[str, ModelRegistry]) -> None:
    """Against a float64 run of the same network, NumPy and Keras-on-torch are off by round-off alone."""
    keras_tagger = next(iter(registries["keras"].classifiers["genre"].backbone.taggers.values()))  # type: ignore[attr-defined]
    numpy_tagger = next(iter(registries["numpy"].classifiers["genre"].backbone.taggers.values()))  # type: ignore[attr-defined]
    assert isinstance(numpy_tagger, NumpyMusicnn) and not isinstance(keras_tagger, NumpyMusicnn)
    patches = keras_tagger.input(_song("rock", 128, 1), 22050)
    ours, ref = numpy_tagger.predict_patches(patches), keras_tagger.predict_patches(patches)
    exact = NumpyMusicnn(numpy_tagger.folder, dtype=np.float64).predict_patches(patches)
    assert set(ours) == set(ref) == set(exact)
    for name in ref:
        assert ours[name].dtype == np.float32 and ours[name].shape == ref[name].shape
        err_ours = float(np.abs(ours[name] - exact[name]).max())
        err_keras = float(np.abs(ref[name] - exact[name]).max())
        scale = max(1.0, float(np.abs(exact[name]).max()))
        assert err_ours <= max(4 * err_keras, 2e-6 * scale), (name, err_ours, err_keras)  # float32 round-off


@pytest.mark.parametrize(("style", "bpm"), [("rock", 128), ("ballad", 66), ("house", 124)])
def test_songs_get_the_same_genre_and_emotion_scores(
    registries: dict[str, ModelRegistry], style: str, bpm: float
) -> None:
    features = {rt: _Features(_song(style, bpm, 7)) for rt in registries}
    for task in ("genre", "emotion", "mood"):
        a = registries["numpy"].classify(task, features["numpy"])
        b = registries["keras"].classify(task, features["keras"])
        assert a.status == b.status == "ok"
        assert [ls.label for ls in a.labels][:3] == [ls.label for ls in b.labels][:3]
        for x, y in zip(a.labels, b.labels, strict=True):
            # float32 round-off in the backbone (both runtimes equally far from float64, test above),
            # amplified by the heads' standardisation of near-constant channels
            assert abs(x.score - y.score) < 3e-3, (task, x, y)


def test_heads_alone_are_identical(registries: dict[str, ModelRegistry]) -> None:
    rng = np.random.default_rng(3)
    for task in ("genre", "emotion", "mood"):
        n, k = registries["numpy"].classifiers[task], registries["keras"].classifiers[task]
        # rows on the head's own scale (its standardisation), three spreads out
        norm = n._run  # type: ignore[attr-defined]
        rows = (norm.mean + 3 * norm.std * rng.standard_normal((5, n.spec.input_dim))).astype(np.float32)  # type: ignore[attr-defined]
        np.testing.assert_allclose(n.head(rows), k.head(rows), atol=1e-6, err_msg=task)  # type: ignore[attr-defined]


def test_frame_outputs_need_the_keras_port(registries: dict[str, ModelRegistry]) -> None:
    tagger = next(iter(registries["numpy"].classifiers["genre"].backbone.taggers.values()))  # type: ignore[attr-defined]
    with pytest.raises(NotImplementedError, match="Keras port"):
        tagger.predict_patches(np.zeros((1, 187, 96), np.float32), frames=True)


def test_the_serving_engine_never_imports_torch_or_keras(tmp_path: Path) -> None:
    """The default engine tags a song with both models in a process where torch and Keras never load."""
    script = """
import asyncio, io, sys
import soundfile as sf
from m2i_engine.config import Settings
from m2i_engine.engine import Engine
from m2i_engine.synth import SongSpec, render_song

async def main():
    async with Engine(Settings()) as engine:
        buf = io.BytesIO()
        sf.write(buf, render_song(SongSpec(bpm=120, duration_s=12, sr=22050)), 22050, format="WAV")
        tags = (await engine.analyze(buf.getvalue())).tags
        assert tags.genre.status == tags.emotion.status == "ok", (tags.genre, tags.emotion)
asyncio.run(main())
print(sorted(m for m in ("torch", "keras", "tensorflow") if m in sys.modules))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("M2I_MODEL_RUNTIME", "KERAS_BACKEND")}
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"

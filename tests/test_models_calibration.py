"""Genre calibration (temperature, confidence floor → ``uncertain``) and the mood model's valence/arousal.

The heads here are real Keras heads saved to a temporary model folder and loaded through the same
registry path users take; expected values come from the head's own raw scores, not from constants.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("keras", reason="keras not installed (pip install -e '.[train]')")

from m2i_engine.models import ModelRegistry, mood_from_quadrants
from m2i_engine.models.heads import HeadSpec, build_head, patch_matrix
from m2i_engine.models.registry import default_model_dir
from m2i_engine.tags import Classification, LabelScore, StyleTag

LABELS = ["a", "b", "c"]


class _Features:
    def __init__(self, y: np.ndarray, sr: int = 16000) -> None:
        self.y, self.sr = y, sr


def _song(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(8 * 16000) / 16000
    return (0.4 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def _model_dir(tmp: Path, *, pool: str, calibration: dict | None, seed: int = 0, scale: float = 0.15) -> Path:
    """A genre model folder with a random linear head (small weights: scores well inside 0..1)."""
    spec = HeadSpec(inputs=("penultimate",), n_out=3, activation="softmax", pool=pool)  # type: ignore[arg-type]
    head = build_head(spec)
    rng = np.random.default_rng(seed)
    kernel, bias = head.get_layer("scores").get_weights()
    head.get_layer("scores").set_weights([rng.normal(0, scale, kernel.shape).astype(np.float32), bias])
    folder = tmp / "genre"
    folder.mkdir(parents=True)
    head.save_weights(str(folder / "head.weights.h5"))
    manifest = {
        "task": "genre",
        "name": "tiny",
        "version": "0",
        "labels": LABELS,
        "format": "keras-musicnn-head",
        "file": "head.weights.h5",
        "backbones": {"msd": "musicnn_msd"},
        "max_patches": 4,
        "head": spec.to_dict(),
    }
    if calibration is not None:
        manifest["calibration"] = calibration
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return tmp


def _raw(reg: ModelRegistry, features: _Features) -> np.ndarray:
    clf = reg.classifiers["genre"]
    rows = patch_matrix(clf.backbone.per_patch(features), clf.spec.inputs)  # type: ignore[attr-defined]
    if clf.spec.pool == "song":  # type: ignore[attr-defined]
        rows = rows.mean(0, keepdims=True)
    return clf.head(rows).mean(0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("pool", ["patches", "song"])
def test_temperature_flattens_scores_and_the_floor_marks_uncertain(tmp_path: Path, pool: str) -> None:
    plain = ModelRegistry.load(_model_dir(tmp_path / "plain", pool=pool, calibration=None))
    f = _Features(_song(1))
    raw = _raw(plain, f)
    ans = plain.classify("genre", f)
    assert not ans.uncertain and abs(ans.top.score - raw.max()) < 1e-5  # type: ignore[union-attr]
    t = 3.0
    expected = np.exp(np.log(raw) / t) / np.exp(np.log(raw) / t).sum()
    floor_above = float(expected.max()) + 0.01
    hot = ModelRegistry.load(
        _model_dir(tmp_path / "hot", pool=pool, calibration={"temperature": t, "min_confidence": floor_above})
    )
    got = hot.classify("genre", f)
    assert [ls.label for ls in got.labels] == [ls.label for ls in ans.labels]  # the order never changes
    assert abs(got.top.score - expected.max()) < 1e-4  # type: ignore[union-attr]
    assert got.top.score < ans.top.score  # type: ignore[union-attr]
    assert got.uncertain and got.confident_top is None and got.top is not None
    below = ModelRegistry.load(
        _model_dir(
            tmp_path / "below",
            pool=pool,
            calibration={"temperature": t, "min_confidence": floor_above - 0.02},
        )
    )
    assert not below.classify("genre", f).uncertain


def test_a_style_with_its_own_floor_makes_a_middling_genre_uncertain(tmp_path: Path) -> None:
    f = _Features(_song(1))
    top = ModelRegistry.load(_model_dir(tmp_path / "plain", pool="song", calibration=None)).classify(
        "genre", f
    )
    assert top.top is not None
    reg = ModelRegistry.load(
        _model_dir(
            tmp_path / "styled",
            pool="song",
            calibration={"min_confidence": 0.0, "style_floors": {"electronic": top.top.score + 0.01}},
        )
    )
    electronic, dance = (
        StyleTag(label="electronic", group="style", score=0.8),
        StyleTag(label="dance", group="style", score=0.7),
    )
    assert not reg.classify("genre", f).uncertain  # no styles: the plain floor
    assert not reg.classify("genre", f, styles=[dance]).uncertain  # a word without a floor of its own
    got = reg.classify("genre", f, styles=[dance, electronic])
    assert got.uncertain and got.labels == top.labels  # the same scores, only called unsure
    lower = ModelRegistry.load(
        _model_dir(
            tmp_path / "lower",
            pool="song",
            calibration={"min_confidence": 0.0, "style_floors": {"electronic": top.top.score - 0.01}},
        )
    )
    assert not lower.classify("genre", f, styles=[electronic]).uncertain  # sure enough even so


def test_song_pooling_scores_the_mean_embedding(tmp_path: Path) -> None:
    reg = ModelRegistry.load(_model_dir(tmp_path, pool="song", calibration=None, scale=1.0))
    half = 4 * 16000
    f = _Features(np.concatenate([_song(0)[:half], 3 * _song(6)[half:]]))  # two different halves
    clf = reg.classifiers["genre"]
    rows = patch_matrix(clf.backbone.per_patch(f), clf.spec.inputs)  # type: ignore[attr-defined]
    assert len(rows) > 1
    per_patch_mean = clf.head(rows).mean(0)  # type: ignore[attr-defined]
    song = clf.head(rows.mean(0, keepdims=True))[0]  # type: ignore[attr-defined]
    got = np.array([reg.classify("genre", f).score_of(lab) for lab in LABELS])
    assert np.allclose(got, song, atol=1e-5) and not np.allclose(got, per_patch_mean, atol=1e-3)


def test_a_bad_temperature_is_a_load_problem_not_a_crash(tmp_path: Path) -> None:
    reg = ModelRegistry.load(_model_dir(tmp_path, pool="song", calibration={"temperature": 0}))
    assert "genre" not in reg.classifiers and "temperature" in reg.problems["genre"]
    assert reg.classify("genre", None).status == "error"


@pytest.mark.parametrize(
    ("probs", "signs"),
    [
        ({"Q1": 0.7, "Q2": 0.1, "Q3": 0.1, "Q4": 0.1}, (1, 1)),
        ({"Q1": 0.1, "Q2": 0.6, "Q3": 0.2, "Q4": 0.1}, (-1, 1)),
        ({"Q1": 0.05, "Q2": 0.15, "Q3": 0.7, "Q4": 0.1}, (-1, -1)),
        ({"Q1": 0.2, "Q2": 0.05, "Q3": 0.15, "Q4": 0.6}, (1, -1)),
    ],
)
def test_quadrant_probabilities_give_valence_and_arousal(
    probs: dict[str, float], signs: tuple[int, int]
) -> None:
    mood = mood_from_quadrants(
        Classification(
            status="ok",
            labels=[LabelScore(label=q, score=p) for q, p in sorted(probs.items(), key=lambda kv: -kv[1])],
        )
    )
    assert mood is not None and mood.source == "emotion_model"
    v = probs["Q1"] + probs["Q4"] - probs["Q2"] - probs["Q3"]
    a = probs["Q1"] + probs["Q2"] - probs["Q3"] - probs["Q4"]
    assert mood.valence == pytest.approx(v) and mood.arousal == pytest.approx(a)
    assert (np.sign(mood.valence), np.sign(mood.arousal)) == signs
    assert mood.quadrant == max(probs, key=probs.__getitem__)


def test_no_mood_model_answer_means_no_model_mood() -> None:
    assert mood_from_quadrants(Classification(status="model_missing")) is None
    assert mood_from_quadrants(Classification(status="error")) is None


def test_the_shipped_mood_and_genre_models_say_what_they_are() -> None:
    root = default_model_dir()
    mood = json.loads((root / "mood" / "manifest.json").read_text())
    assert mood["labels"] == ["Q1", "Q2", "Q3", "Q4"] and mood["head"]["activation"] == "softmax"
    genre = json.loads((root / "genre" / "manifest.json").read_text())
    cal = genre["calibration"]
    assert cal["temperature"] > 0 and 0 < cal["min_confidence"] < 1
    assert HeadSpec.from_dict(genre["head"]).n_out == len(genre["labels"]) == 10


def test_the_pipeline_reads_mood_from_the_mood_model(tmp_path: Path) -> None:
    """With the mood model removed, mood falls back to the GEMS mapping: the two differ on a real song."""
    from m2i_engine.analysis import analyze_signal

    root = tmp_path / "models"
    shutil.copytree(default_model_dir(), root)
    with_mood = ModelRegistry.load(root)
    shutil.rmtree(root / "mood")
    without = ModelRegistry.load(root)
    assert "mood" in with_mood.classifiers and "mood" not in without.classifiers
    sig = analyze_signal(y=_song(3), sr=16000)
    q = with_mood.classify("mood", sig.features)
    assert q.status == "ok" and abs(sum(ls.score for ls in q.labels) - 1) < 1e-4
    assert without.classify("mood", sig.features).status == "model_missing"

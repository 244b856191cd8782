"""The shipped genre/emotion heads load through the registry, score validly and share one backbone pass."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("keras", reason="keras not installed (pip install -e '.[train]')")
pytest.importorskip("librosa")

from m2i_engine.models import GEMS, ModelRegistry, mood_from_emotions
from m2i_engine.models import heads as heads_mod
from m2i_engine.models.heads import HeadSpec, build_head, patch_matrix, predict_rows, select_patches
from m2i_engine.models.keras_loader import FORMAT, MusicnnHeadClassifier
from m2i_engine.models.musicnn_input import PatchTagger
from m2i_engine.models.registry import TASKS, default_model_dir

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
WEIGHTS = default_model_dir()


def _song(seconds: float = 12.0, sr: int = 22050, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = 110.0 * 2 ** (np.floor(t * 2) % 12 / 12)
    y = sum(0.3 / k * np.sin(2 * np.pi * k * f * t) for k in range(1, 6))
    y = y + 0.7 * np.exp(-(t % 0.5) * 40) * np.sin(2 * np.pi * 60 * t) + 0.02 * rng.standard_normal(t.size)
    return np.asarray(y, dtype=np.float32)


class _Features:
    """The part of ``m2i_engine.analysis.Features`` the classifiers read."""

    def __init__(self, y: np.ndarray, sr: int = 22050) -> None:
        self.y, self.sr = y, sr


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    reg = ModelRegistry.load()
    assert set(reg.classifiers) == set(TASKS), reg.problems
    return reg


def test_shipped_manifests_point_at_small_hashed_weights() -> None:
    for task, labels in (("genre", GTZAN_GENRES), ("emotion", GEMS)):
        m = json.loads((WEIGHTS / task / "manifest.json").read_text())
        assert m["task"] == task and m["format"] == FORMAT and tuple(m["labels"]) == labels
        weights = WEIGHTS / task / m["file"]
        assert weights.stat().st_size < 3_000_000  # a few MB at most beyond the shared backbone
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == m["weights_sha256"]
        assert HeadSpec.from_dict(m["head"]).n_out == len(labels)
        assert m["backbones"] == {"msd": "musicnn_msd"}  # one backbone for both heads


def test_the_registry_loads_every_model_on_one_backbone(registry: ModelRegistry) -> None:
    for task in ("genre", "emotion", "mood"):
        assert isinstance(registry.classifiers[task], MusicnnHeadClassifier)
    backbones = {id(registry.classifiers[t].backbone) for t in TASKS}  # type: ignore[attr-defined]
    assert len(backbones) == 1  # genre, emotion, mood and styles cost one musicnn pass per song


def test_scores_are_a_distribution_and_fractions(registry: ModelRegistry) -> None:
    features = _Features(_song())
    genre = registry.classify("genre", features)
    emotion = registry.classify("emotion", features)
    assert genre.status == emotion.status == "ok"
    g = [ls.score for ls in genre.labels]
    e = [ls.score for ls in emotion.labels]
    assert sorted(ls.label for ls in genre.labels) == sorted(GTZAN_GENRES)
    assert sorted(ls.label for ls in emotion.labels) == sorted(GEMS)
    assert g == sorted(g, reverse=True) and e == sorted(e, reverse=True)  # best first
    assert abs(sum(g) - 1.0) < 1e-3 and all(0.0 <= s <= 1.0 for s in g)
    assert all(0.0 <= s <= 1.0 for s in e) and sum(e) > 0.3  # independent fractions, not a distribution
    assert genre.model == registry.classifiers["genre"].name
    mood = mood_from_emotions(emotion)
    assert mood is not None and mood.source == "emotion_model"


def test_genre_and_emotion_share_one_backbone_pass(registry: ModelRegistry, monkeypatch: Any) -> None:
    calls: list[int] = []
    real = PatchTagger.per_patch  # what both runtimes' taggers inherit

    def counting(self: PatchTagger, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PatchTagger, "per_patch", counting)
    features = _Features(_song(seed=1))
    registry.classify("genre", features)
    registry.classify("emotion", features)
    assert len(calls) == 1
    registry.classify("genre", _Features(_song(seed=2)))  # a new song: a new pass
    assert len(calls) == 2


def test_long_songs_use_at_most_max_patches(registry: ModelRegistry) -> None:
    features = _Features(_song(90.0))
    per_patch = registry.classifiers["genre"].backbone.per_patch(features)
    assert per_patch["penultimate"].shape == (heads_mod.MAX_PATCHES, 200)


def test_features_without_a_signal_are_an_error_status(registry: ModelRegistry) -> None:
    assert registry.classify("genre", object()).status == "error"


def test_objects_without_weak_references_still_share_one_pass(registry: ModelRegistry) -> None:
    from types import SimpleNamespace

    plain = SimpleNamespace(y=_song(seed=3), sr=22050)
    backbone = registry.classifiers["genre"].backbone  # type: ignore[attr-defined]
    assert backbone.per_patch(plain) is backbone.per_patch(plain)


def test_select_patches_matches_the_tagger_rule() -> None:
    assert select_patches(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert select_patches(10, None).tolist() == list(range(10))
    idx = select_patches(30, 8)
    assert len(idx) == 8 and idx[0] == 0 and idx[-1] == 29 and np.all(np.diff(idx) > 0)


def test_head_spec_round_trip_and_shapes(tmp_path: Path) -> None:
    spec = HeadSpec(inputs=("penultimate", "max_pool"), n_out=9, activation="sigmoid", hidden=16, l2=1e-3)
    assert HeadSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.input_dim == 953
    model = build_head(spec)
    rows = patch_matrix({"penultimate": np.ones((4, 200)), "max_pool": np.zeros((4, 753))}, spec.inputs)
    model.get_layer("standardize").adapt(np.random.default_rng(0).normal(size=(32, 953)).astype(np.float32))
    out = predict_rows(model, rows)
    assert out.shape == (4, 9) and np.all((out > 0) & (out < 1))
    model.save_weights(str(tmp_path / "h.weights.h5"))
    again = build_head(spec)
    again.load_weights(str(tmp_path / "h.weights.h5"))  # standardisation statistics travel with the weights
    np.testing.assert_allclose(predict_rows(again, rows), out, atol=1e-6)

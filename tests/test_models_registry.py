"""The model registry: shipped models load once; a missing or broken one is reported, not invented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from m2i_engine.models import Manifest, ModelRegistry, mood_from_emotions, register_loader
from m2i_engine.tags import Classification, LabelScore


class _CentroidClassifier:
    """A real (if tiny) classifier: nearest label centroid on the mean of a feature vector."""

    def __init__(self, manifest: Manifest) -> None:
        self.name = manifest.id
        self.labels = manifest.labels
        self.centroids = np.asarray(json.loads((manifest.folder / manifest.file).read_text()))

    def predict(self, features: Any) -> Classification:
        x = np.asarray(features, dtype=float)
        d = np.linalg.norm(self.centroids - x, axis=1)
        p = np.exp(-d) / np.exp(-d).sum()
        order = np.argsort(-p)
        return Classification(
            status="ok",
            model=self.name,
            labels=[LabelScore(label=self.labels[i], score=float(p[i])) for i in order],
        )


register_loader("test-centroid")(_CentroidClassifier)


def _write_model(root: Path, task: str, fmt: str, labels: list[str], centroids: list[list[float]]) -> None:
    folder = root / task
    folder.mkdir(parents=True)
    (folder / "centroids.json").write_text(json.dumps(centroids))
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "task": task,
                "name": f"{task}-test",
                "version": 1,
                "labels": labels,
                "format": fmt,
                "file": "centroids.json",
            }
        )
    )


def test_missing_models_say_so(tmp_path: Path) -> None:
    reg = ModelRegistry.load(tmp_path)
    assert reg.classify("genre", None).status == "model_missing"
    assert reg.classify("emotion", None).status == "model_missing"


def test_a_model_folder_is_loaded_through_its_format_loader(tmp_path: Path) -> None:
    _write_model(tmp_path, "genre", "test-centroid", ["rock", "jazz"], [[0.0, 0.0], [5.0, 5.0]])
    reg = ModelRegistry.load(tmp_path)
    near_jazz = reg.classify("genre", [4.0, 5.0])
    assert near_jazz.status == "ok" and near_jazz.top is not None and near_jazz.top.label == "jazz"
    assert reg.classify("genre", [0.5, 0.0]).top.label == "rock"  # type: ignore[union-attr]
    assert near_jazz.model == "genre-test@1"


def test_an_unloadable_model_is_an_error_status_not_a_crash(tmp_path: Path) -> None:
    _write_model(tmp_path, "emotion", "no-such-format", ["calmness"], [[0.0]])
    reg = ModelRegistry.load(tmp_path)
    assert reg.classify("emotion", [0.0]).status == "error"
    assert "emotion" in reg.problems


def test_a_model_that_fails_at_predict_time_reports_error(tmp_path: Path) -> None:
    _write_model(tmp_path, "genre", "test-centroid", ["a", "b"], [[0.0, 0.0], [1.0, 1.0]])
    reg = ModelRegistry.load(tmp_path)
    assert reg.classify("genre", [1.0, 2.0, 3.0]).status == "error"  # wrong feature shape


def test_mood_from_emotions_places_songs_on_the_valence_arousal_plane() -> None:
    def c(**scores: float) -> Classification:
        return Classification(status="ok", labels=[LabelScore(label=k, score=v) for k, v in scores.items()])

    happy = mood_from_emotions(c(joyful_activation=0.8, power=0.3))
    sad = mood_from_emotions(c(sadness=0.7, nostalgia=0.4))
    calm = mood_from_emotions(c(calmness=0.9))
    assert happy and sad and calm
    assert happy.valence > 0.3 > -0.3 > sad.valence
    assert happy.arousal > 0.3 and calm.arousal < -0.3
    assert happy.source == "emotion_model"
    assert mood_from_emotions(Classification()) is None

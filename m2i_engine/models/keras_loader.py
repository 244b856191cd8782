"""Loads m2i's shipped Keras heads into the model registry (manifest ``format: keras-musicnn-head``).

A model folder holds ``manifest.json`` and the head's ``*.weights.h5``; the manifest names the
musicnn backbone(s) it reads (``"backbones": {"msd": "musicnn_msd"}`` — folders next to the model
folder, else in the package's weights), the cap on patches per song and the head's
:class:`~m2i_engine.models.heads.HeadSpec`. Every head that names the same backbones and cap shares
one :class:`~m2i_engine.models.heads.SharedBackbone`, so genre and emotion cost one musicnn pass per
song. The weights run in NumPy (:mod:`m2i_engine.models.npnet`, the default: no framework in the
serving process) or, with ``M2I_MODEL_RUNTIME=keras``, on any Keras 3 backend (torch by default,
TensorFlow with ``KERAS_BACKEND=tensorflow``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from m2i_engine.models.heads import (
    MAX_PATCHES,
    RUNTIMES,
    HeadSpec,
    SharedBackbone,
    build_head,
    head_rows,
    predict_rows,
)
from m2i_engine.models.registry import Manifest, register_loader
from m2i_engine.tags import Classification, LabelScore, StyleTag

FORMAT = "keras-musicnn-head"


class MusicnnHeadClassifier:
    """A Keras head on shared musicnn patches: ``predict(features)`` → labels with scores, best first.

    Genre scores are class probabilities (softmax, summing to 1); emotion scores are predicted listener
    fractions per GEMS emotion (independent sigmoids, each in 0..1). A manifest ``calibration``
    (``temperature``, ``min_confidence``) tempers softmax scores (``softmax(log p / T)``, fitted on
    held-out songs) and marks the answer ``uncertain`` when the best tempered score is below the floor;
    its ``style_floors`` (style word → floor) hold a song whose styles include the word to a higher one
    (:meth:`given_styles`: GTZAN's ten genres have no word for electronic music).
    """

    def __init__(self, manifest: Manifest) -> None:
        extra = manifest.extra
        self.name = manifest.id
        self.task = manifest.task
        self.labels = manifest.labels
        self.spec = HeadSpec.from_dict(extra["head"])
        if self.spec.n_out != len(self.labels):
            raise ValueError(f"head has {self.spec.n_out} outputs for {len(self.labels)} labels")
        self.runtime = manifest.runtime
        self.backbone = shared_backbone(manifest)
        self._run = head_runner(manifest.folder / manifest.file, self.spec, self.runtime)
        cal = dict(extra.get("calibration") or {})
        self.temperature = float(cal.get("temperature", 1.0))
        self.min_confidence = float(cal.get("min_confidence", 0.0))
        self.style_floors = {str(w): float(f) for w, f in (cal.get("style_floors") or {}).items()}
        if self.temperature <= 0:
            raise ValueError(f"calibration temperature must be > 0, not {self.temperature}")

    def scores(self, features: Any) -> np.ndarray:
        """The song's calibrated score per label (head outputs averaged over the backbone patches)."""
        rows = head_rows(self.backbone.per_patch(features), self.spec)
        s = np.clip(self.head(rows).mean(axis=0), 0.0, 1.0)
        if self.temperature != 1.0 and self.spec.activation == "softmax":
            z = np.log(np.clip(s, 1e-9, 1.0)) / self.temperature
            z = np.exp(z - z.max())
            s = z / z.sum()
        return s

    def given_styles(self, c: Classification, styles: Sequence[StyleTag]) -> Classification:
        """``c`` once the song's styles are known: ``uncertain`` too when a style with its own floor is
        among them and the best score is below that floor."""
        floors = [self.style_floors[s.label] for s in styles if s.label in self.style_floors]
        if c.uncertain or c.top is None or not floors or c.top.score >= max(floors):
            return c
        return c.model_copy(update={"uncertain": True})

    def head(self, rows: np.ndarray) -> np.ndarray:
        """The head alone on ``(patches, input_dim)`` rows: ``(patches, labels)`` scores."""
        return self._run(rows)

    def predict(self, features: Any) -> Classification:
        s = self.scores(features)
        order = np.argsort(-s, kind="stable")
        return Classification(
            status="ok",
            model=self.name,
            uncertain=bool(s[order[0]] < self.min_confidence),
            labels=[LabelScore(label=self.labels[i], score=float(s[i])) for i in order],
        )


def head_runner(weights: Path, spec: HeadSpec, runtime: str) -> Callable[[np.ndarray], np.ndarray]:
    """A head's weights as a function ``(rows, input_dim)`` → ``(rows, n_out)`` scores, in NumPy or on
    Keras (``runtime``): the one way every head (genre, emotion, mood, the learned style tags) is run.

    Safe to call from several threads: a NumPy head is a pure function of its weights, and a Keras
    (torch/TensorFlow) model, which is not safe to share across threads, runs under its own lock."""
    if runtime == "numpy":
        from m2i_engine.models.npnet import NumpyHead

        return NumpyHead(weights, spec.activation)
    model = build_head(spec)
    model.load_weights(str(weights))
    lock = threading.Lock()

    def run(rows: np.ndarray) -> np.ndarray:
        with lock:
            return predict_rows(model, rows)

    return run


def shared_backbone(manifest: Manifest) -> SharedBackbone:
    """The process-wide backbone a model's manifest names (``backbones``, ``max_patches``, its runtime):
    every head and the styles model that agree on them share one musicnn pass per song."""
    folders = {
        name: _backbone_folder(manifest.folder, sub)
        for name, sub in dict(manifest.extra.get("backbones", {"msd": "musicnn_msd"})).items()
    }
    if manifest.runtime not in RUNTIMES:
        raise ValueError(f"unknown model runtime {manifest.runtime!r} (one of {', '.join(RUNTIMES)})")
    cap = manifest.extra.get("max_patches", MAX_PATCHES)
    return SharedBackbone.get(
        folders, max_patches=None if cap is None else int(cap), runtime=manifest.runtime
    )  # type: ignore[arg-type]


def _backbone_folder(model_folder: Path, sub: str) -> Path:
    """A backbone next to the model folder (a custom model dir), else the one shipped in the package."""
    from m2i_engine.models.musicnn_input import WEIGHTS_ROOT

    for cand in (model_folder.parent / sub, WEIGHTS_ROOT / sub):
        if (cand / "manifest.json").is_file():
            return cand
    raise FileNotFoundError(f"musicnn backbone {sub!r} not found next to {model_folder} or in {WEIGHTS_ROOT}")


@register_loader(FORMAT)
def load_musicnn_head(manifest: Manifest) -> MusicnnHeadClassifier:
    return MusicnnHeadClassifier(manifest)

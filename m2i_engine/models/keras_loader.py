"""Loads m2i's shipped Keras heads into the model registry (manifest ``format: keras-musicnn-head``).

A model folder holds ``manifest.json`` and the head's ``*.weights.h5``; the manifest names the
musicnn backbone(s) it reads (``"backbones": {"msd": "musicnn_msd"}`` — folders next to the model
folder, else in the package's weights), the cap on patches per song and the head's
:class:`~m2i_engine.models.heads.HeadSpec`. Every head that names the same backbones and cap shares
one :class:`~m2i_engine.models.heads.SharedBackbone`, so genre and emotion cost one musicnn pass per
song. The weights run on any Keras 3 backend (torch by default, TensorFlow with
``KERAS_BACKEND=tensorflow``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from m2i_engine.models.heads import (
    MAX_PATCHES,
    HeadSpec,
    SharedBackbone,
    build_head,
    patch_matrix,
    predict_rows,
)
from m2i_engine.models.registry import Manifest, register_loader
from m2i_engine.tags import Classification, LabelScore

FORMAT = "keras-musicnn-head"


class MusicnnHeadClassifier:
    """A Keras head on shared musicnn patches: ``predict(features)`` → labels with scores, best first.

    Genre scores are class probabilities (softmax, summing to 1); emotion scores are predicted listener
    fractions per GEMS emotion (independent sigmoids, each in 0..1).
    """

    def __init__(self, manifest: Manifest) -> None:
        extra = manifest.extra
        self.name = manifest.id
        self.task = manifest.task
        self.labels = manifest.labels
        self.spec = HeadSpec.from_dict(extra["head"])
        if self.spec.n_out != len(self.labels):
            raise ValueError(f"head has {self.spec.n_out} outputs for {len(self.labels)} labels")
        folders = {name: _backbone_folder(manifest.folder, sub)
                   for name, sub in dict(extra.get("backbones", {"msd": "musicnn_msd"})).items()}
        cap = extra.get("max_patches", MAX_PATCHES)
        self.backbone = SharedBackbone.get(folders, max_patches=None if cap is None else int(cap))
        self.model = build_head(self.spec)
        self.model.load_weights(str(manifest.folder / manifest.file))
        self._lock = threading.Lock()

    def scores(self, features: Any) -> np.ndarray:
        """The song's score per label (mean of the head's outputs over the backbone patches)."""
        rows = patch_matrix(self.backbone.per_patch(features), self.spec.inputs)
        with self._lock:
            out = predict_rows(self.model, rows)
        return np.clip(out.mean(axis=0), 0.0, 1.0)

    def predict(self, features: Any) -> Classification:
        s = self.scores(features)
        order = np.argsort(-s, kind="stable")
        return Classification(status="ok", model=self.name,
                              labels=[LabelScore(label=self.labels[i], score=float(s[i])) for i in order])


def _backbone_folder(model_folder: Path, sub: str) -> Path:
    """A backbone next to the model folder (a custom model dir), else the one shipped in the package."""
    from m2i_engine.models.musicnn import WEIGHTS_ROOT

    for cand in (model_folder.parent / sub, WEIGHTS_ROOT / sub):
        if (cand / "manifest.json").is_file():
            return cand
    raise FileNotFoundError(f"musicnn backbone {sub!r} not found next to {model_folder} or in {WEIGHTS_ROOT}")


@register_loader(FORMAT)
def load_musicnn_head(manifest: Manifest) -> MusicnnHeadClassifier:
    return MusicnnHeadClassifier(manifest)

"""Whether a song sounds like the recorded music m2i's models learned from, so they can say when it does not.

Every head (genre, mood, emotion, styles) was trained on three collections of recorded songs. Far from
them — a synthesised demo, a spoken voice note, a test tone — the heads still answer, confidently and
meaninglessly: the built-in house demo read "calm, relaxed" with arousal −0.94. This model measures how
far the song's mean musicnn embedding lies from the training songs (a Mahalanobis distance under a shrunk
covariance, on the same backbone pass the heads use, so it costs no extra musicnn run) and compares it
with a limit set on songs the fit never saw (``python -m training.train_familiarity``), one for each
number of patches below the engine's cap: a short clip's mean is noisier and lies farther from
everything. Beyond the limit the engine takes the mood from the signal and calls genre and emotion
uncertain.

A model folder holds ``manifest.json`` (``format: musicnn-familiarity``: the backbone, the patch cap, the
embedding it reads, the limit) and ``familiarity.npz`` (``location`` and ``precision``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from m2i_engine.models.keras_loader import shared_backbone
from m2i_engine.models.registry import Manifest, register_loader, verified_bytes
from m2i_engine.tags import Familiarity

FORMAT = "musicnn-familiarity"


class FamiliarityModel:
    """``assess(features)`` → :class:`~m2i_engine.tags.Familiarity` of the song (distance and limit)."""

    def __init__(self, manifest: Manifest) -> None:
        extra = manifest.extra
        self.name = manifest.id
        self.labels = manifest.labels
        self.input = str(extra.get("input", "penultimate"))
        self.limit = float(extra["limit"])
        #: a clip the backbone sees as fewer patches has a noisier mean, so its own (larger) limit
        self.limits = {int(n): float(v) for n, v in (extra.get("limits_by_patches") or {}).items()}
        if min([self.limit, *self.limits.values()]) <= 0:
            raise ValueError(f"familiarity limits must be > 0, not {self.limit} / {self.limits}")
        blob = verified_bytes(manifest.folder / manifest.file, extra.get("weights_sha256"), "familiarity")
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            self.location = np.asarray(z["location"], np.float64)
            self.precision = np.asarray(z["precision"], np.float64)
        d = len(self.location)
        if self.precision.shape != (d, d):
            raise ValueError(f"precision is {self.precision.shape}, expected ({d}, {d})")
        self.backbone = shared_backbone(manifest)

    def distance(self, embedding: np.ndarray) -> float:
        """The Mahalanobis distance of one song's mean embedding from the training songs."""
        diff = np.asarray(embedding, np.float64) - self.location
        return float(np.sqrt(max(diff @ self.precision @ diff, 0.0)))

    def assess(self, features: Any) -> Familiarity:
        rows = np.asarray(self.backbone.per_patch(features)[self.input], np.float64)
        dist = self.distance(rows.reshape(len(rows), -1).mean(axis=0))
        limit = self.limits.get(len(rows), self.limit)
        return Familiarity(distance=round(dist, 2), limit=round(limit, 2), model=self.name)


@register_loader(FORMAT)
def load_familiarity(manifest: Manifest) -> Any:
    return FamiliarityModel(manifest)

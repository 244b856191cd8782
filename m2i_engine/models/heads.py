"""Small Keras heads on the pretrained musicnn backbone: how m2i's genre and emotion models are built and fed.

A head sees one row per 3-s musicnn patch (some of the backbone's per-patch outputs, concatenated),
standardises it, and maps it through a linear layer — or one hidden layer — to genre probabilities
(softmax) or GEMS listener fractions (sigmoid). A song's scores are the mean over its patches.

The genre and emotion heads read the *same* backbone outputs: :class:`SharedBackbone` computes them
once per analysed song, memoised on the :class:`~m2i_engine.analysis.Features` object, so the
engine's ``classify("genre", f)`` then ``classify("emotion", f)`` costs one musicnn pass. At most
``max_patches`` patches, evenly spread over the analysed audio, are computed (the cost cap of long
songs); training evaluates songs with the same selection (:func:`select_patches`).

Keras defines and trains the heads; the engine runs them, and the backbone, with the NumPy runtime
(:mod:`m2i_engine.models.npnet`) unless ``M2I_MODEL_RUNTIME=keras``. Keras is imported only when a
Keras model is built, so a serving process never loads it (or torch) for analysis.

Offers
------
- :class:`HeadSpec` — a head's configuration, stored in the model's manifest.
- :func:`build_head` — the Keras model of a spec.
- :func:`patch_matrix` — a head's input rows from per-patch backbone outputs.
- :func:`head_rows` — the rows a head scores: the patch rows, or their song mean (``pool="song"``).
- :func:`select_patches` — which patches of a song are used (same rule as ``MusicnnTagger.per_patch``).
- :class:`SharedBackbone` — one backbone pass per song, shared by the heads.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import keras

#: how the analysis models run: "numpy" (:mod:`.npnet`, the serving default: no framework in the
#: process) or "keras" (the Keras port on its configured backend, torch by default)
Runtime = Literal["numpy", "keras"]
RUNTIMES: tuple[str, ...] = ("numpy", "keras")


def _keras() -> Any:
    """Keras, imported on first use (torch backend unless KERAS_BACKEND says otherwise)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


#: per-patch backbone outputs a head may read, with their widths (musicnn MSD/MTT)
EMBEDDING_DIMS = {"penultimate": 200, "mean_pool": 753, "max_pool": 753, "tags": 50}
#: default cap on backbone patches per song (6 x 3 s, ~55 ms each on one CPU core): the largest cap
#: that keeps the full analysis of a 30-s clip >= 10x faster than the seed pipeline (bench/analysis_speed.py)
MAX_PATCHES = 6


@dataclass(frozen=True)
class HeadSpec:
    """What a head reads and how it is shaped; round-trips through a manifest as a dict.

    ``inputs`` are names of per-patch backbone outputs, optionally prefixed with a backbone
    (``"msd:penultimate"``); ``hidden=0`` is a linear head (multinomial/multi-output logistic regression).
    ``pool="patches"`` scores every patch and averages the scores; ``pool="song"`` averages the patch
    rows first and scores the song's mean embedding once (a song-level model).
    """

    inputs: tuple[str, ...]
    n_out: int
    activation: Literal["softmax", "sigmoid"]
    hidden: int = 0
    dropout: float = 0.5
    l2: float = 1e-3
    pool: Literal["patches", "song"] = "patches"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeadSpec:
        return cls(
            inputs=tuple(d["inputs"]),
            n_out=int(d["n_out"]),
            activation=d["activation"],
            hidden=int(d.get("hidden", 0)),
            dropout=float(d.get("dropout", 0.5)),
            l2=float(d.get("l2", 1e-3)),
            pool=d.get("pool", "patches"),
        )

    @property
    def input_dim(self) -> int:
        return sum(EMBEDDING_DIMS[name.split(":")[-1]] for name in self.inputs)

    @property
    def short(self) -> str:
        """A compact description, e.g. ``penultimate+mean_pool · linear · l2 3e-03``."""
        body = "linear" if not self.hidden else f"mlp{self.hidden}"
        pooled = " · song mean" if self.pool == "song" else ""
        return f"{'+'.join(self.inputs)} · {body} · l2 {self.l2:.0e}{pooled}"


def build_head(spec: HeadSpec) -> keras.Model:
    """``(rows, input_dim)`` → ``(rows, n_out)``: standardise, [Dense-ReLU-Dropout], Dense-activation.

    The standardisation is a ``Normalization`` layer whose mean/variance are saved with the weights
    (set them with ``model.get_layer("standardize").adapt(rows)`` before training).
    """
    K = _keras()
    L = K.layers
    reg = K.regularizers.L2(spec.l2)
    x_in = K.Input(shape=(spec.input_dim,), name="embedding")
    x = L.Normalization(axis=-1, name="standardize")(x_in)
    if spec.hidden:
        x = L.Dense(spec.hidden, activation="relu", kernel_regularizer=reg, name="hidden")(x)
        x = L.Dropout(spec.dropout, name="dropout")(x)
    out = L.Dense(spec.n_out, activation=spec.activation, kernel_regularizer=reg, name="scores")(x)
    return K.Model(x_in, out, name="head")


def patch_matrix(per_patch: Mapping[str, np.ndarray], inputs: Sequence[str]) -> np.ndarray:
    """Concatenate the named per-patch outputs into ``(patches, dim)`` float32 rows."""
    return np.concatenate(
        [np.asarray(per_patch[name], np.float32).reshape(len(per_patch[name]), -1) for name in inputs], axis=1
    )


def head_rows(per_patch: Mapping[str, np.ndarray], spec: HeadSpec) -> np.ndarray:
    """The rows ``spec``'s head scores: one per patch, or (``pool="song"``) the song's mean row alone."""
    rows = patch_matrix(per_patch, spec.inputs)
    return rows.mean(axis=0, keepdims=True) if spec.pool == "song" else rows


def select_patches(n_patches: int, max_patches: int | None) -> np.ndarray:
    """Indices of the patches used for a song of ``n_patches``: all, or ``max_patches`` evenly spread.

    The same rule as :meth:`m2i_engine.models.musicnn.MusicnnTagger.per_patch`.
    """
    if max_patches is None or n_patches <= max_patches:
        return np.arange(n_patches)
    return np.linspace(0, n_patches - 1, max_patches).round().astype(int)


def predict_rows(model: keras.Model, rows: np.ndarray) -> np.ndarray:
    """Run a head on ``(rows, dim)`` without autograd bookkeeping; float32 ``(rows, n_out)``."""
    from m2i_engine.models.musicnn import _to_numpy, inference_context

    with inference_context():
        return _to_numpy(model(np.asarray(rows, np.float32), training=False)).astype(np.float32)


class SharedBackbone:
    """musicnn outputs per patch of a song, computed once per analysed song and shared by every head.

    ``per_patch(features)`` reads ``features.y`` / ``features.sr`` (the analysed window) and memoises
    the result per ``features`` object (by weak reference, so nothing outlives the request; an object
    that cannot be weakly referenced is remembered until the next song).
    """

    def __init__(
        self,
        folders: Mapping[str, Path],
        *,
        max_patches: int | None = MAX_PATCHES,
        runtime: Runtime = "numpy",
    ) -> None:
        if runtime == "numpy":
            from m2i_engine.models.npnet import NumpyMusicnn as tagger_class
        elif runtime == "keras":
            from m2i_engine.models.musicnn import MusicnnTagger as tagger_class
        else:
            raise ValueError(f"unknown model runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
        self.runtime = runtime
        self.taggers = {name: tagger_class.load(folder) for name, folder in folders.items()}
        self.max_patches = max_patches
        self._memo: weakref.WeakKeyDictionary[Any, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()
        self._last: tuple[Any, dict[str, np.ndarray]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def get(
        cls, folders: Mapping[str, Path], *, max_patches: int | None = MAX_PATCHES, runtime: Runtime = "numpy"
    ) -> SharedBackbone:
        """The process-wide instance for these backbones, cap and runtime (heads that agree share it)."""
        key = (tuple(sorted((k, str(Path(v).resolve())) for k, v in folders.items())), max_patches, runtime)
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = cls(folders, max_patches=max_patches, runtime=runtime)
            return _SHARED[key]

    def per_patch(self, features: Any) -> dict[str, np.ndarray]:
        """``{"<backbone>:<output>": (patches, dim)}`` plus unprefixed names for the first backbone."""
        hit = self._recall(features)
        if hit is not None:
            return hit
        y, sr = getattr(features, "y", None), getattr(features, "sr", None)
        if y is None or sr is None or len(y) == 0:
            raise ValueError("the backbone needs the analysed signal (features.y, features.sr)")
        out: dict[str, np.ndarray] = {}
        for i, (name, tagger) in enumerate(self.taggers.items()):
            pp = tagger.per_patch(np.asarray(y, np.float32), int(sr), max_patches=self.max_patches)
            for k, v in pp.items():
                out[f"{name}:{k}"] = v
                if i == 0:
                    out[k] = v
        self._remember(features, out)
        return out

    def _recall(self, features: Any) -> dict[str, np.ndarray] | None:
        with self._lock:
            try:
                return self._memo.get(features)
            except TypeError:  # not weak-referenceable: a one-song strong memo instead
                last = self._last
                return last[1] if last is not None and last[0] is features else None

    def _remember(self, features: Any, out: dict[str, np.ndarray]) -> None:
        with self._lock:
            try:
                self._memo[features] = out
            except TypeError:
                self._last = (features, out)


_SHARED: dict[tuple[Any, ...], SharedBackbone] = {}
_SHARED_LOCK = threading.Lock()

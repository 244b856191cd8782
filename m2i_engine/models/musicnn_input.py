"""What musicnn sees and how a song becomes its patches, with no deep-learning framework imported.

Shared by the two runtimes of the network — the Keras port (:mod:`m2i_engine.models.musicnn`, used
for training and on torch/TensorFlow) and the NumPy one (:mod:`m2i_engine.models.npnet`, the
serving default) — so both see exactly the same input and pick the same patches of a song.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

WEIGHTS_ROOT = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "musicnn_msd"

#: Per-patch outputs of :meth:`MusicnnTagger.predict_patches` (all float32).
PATCH_OUTPUTS = ("tags", "logits", "penultimate", "mean_pool", "max_pool")
#: Frame-level outputs (per patch: frames x channels), only from ``predict_patches(..., frames=True)``.
FRAME_OUTPUTS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3")


# ---------------------------------------------------------------------------------------------- input


def load_manifest(folder: Path | str | None = None) -> dict[str, Any]:
    """The ``manifest.json`` of a converted model folder (default: the shipped MSD model)."""
    folder = Path(folder) if folder is not None else WEIGHTS_ROOT / DEFAULT_MODEL
    return dict(json.loads((folder / "manifest.json").read_text()))


_DEFAULT_INPUT: dict[str, Any] = {
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "n_frames": 187,
    "center": True,
    "pad_mode": "reflect",
    "power": 2.0,
    "mel_norm": "slaney",
    "htk": False,
}


def log_mel(y16: np.ndarray, spec: dict[str, Any] | None = None) -> np.ndarray:
    """musicnn's input representation of 16-kHz mono audio: ``(frames, n_mels)`` float32.

    As ``musicnn/extractor.py`` computes it: librosa's power mel spectrogram, quantised to float16,
    then ``log10(10000 * mel + 1)``. The product is taken in float32, as NumPy < 2 did: under
    NumPy 2's promotion rules ``10000 * float16`` stays float16 and overflows to ``inf`` for any
    mel value above 6.55 — one reason why the original package misbehaves today.
    """
    import librosa

    s = {**_DEFAULT_INPUT, **(spec or {})}
    mel = librosa.feature.melspectrogram(
        y=np.ascontiguousarray(y16, dtype=np.float32),
        sr=s["sample_rate"],
        n_fft=s["n_fft"],
        hop_length=s["hop_length"],
        n_mels=s["n_mels"],
        center=s["center"],
        pad_mode=s["pad_mode"],
        power=s["power"],
        norm=s["mel_norm"],
        htk=s["htk"],
    ).T
    f16_max = float(np.finfo(np.float16).max)
    mel16 = np.minimum(mel, f16_max).astype(np.float16)
    return np.log10(10000.0 * mel16.astype(np.float32) + 1.0).astype(np.float32)


def to_mono_16k(y: np.ndarray, sr: int, target_sr: int = 16000) -> np.ndarray:
    """Mono float32 at ``target_sr``, from ``(samples,)``, ``(channels, samples)`` or ``(samples, chans)``."""
    x = np.asarray(y, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    elif x.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {x.shape}")
    if sr <= 0:
        raise ValueError(f"bad sample rate {sr}")
    if sr != target_sr:
        import librosa

        x = librosa.resample(x, orig_sr=sr, target_sr=target_sr, res_type="soxr_hq")
    return np.ascontiguousarray(x, dtype=np.float32)


def patchify(rep: np.ndarray, n_frames: int = 187, hop_frames: int | None = None) -> np.ndarray:
    """Split ``(frames, bands)`` into ``(patches, n_frames, bands)``, as musicnn's ``batch_data`` does.

    Patches start every ``hop_frames`` (default ``n_frames``: no overlap); a trailing part shorter
    than a patch is dropped. A representation shorter than one patch is repeated to fill it
    (the ``repeat-pad`` the models were trained with).
    """
    hop = n_frames if hop_frames is None else int(hop_frames)
    if hop <= 0:
        raise ValueError("hop_frames must be positive")
    if rep.shape[0] == 0:
        raise ValueError("empty audio")
    if rep.shape[0] < n_frames:
        rep = np.tile(rep, (int(np.ceil(n_frames / rep.shape[0])), 1))[:n_frames]
    starts = range(0, rep.shape[0] - n_frames + 1, hop)
    return np.stack([rep[t : t + n_frames] for t in starts]).astype(np.float32)


def musicnn_input(
    *, y: np.ndarray, sr: int, hop_frames: int | None = None, spec: dict[str, Any] | None = None
) -> np.ndarray:
    """Audio at any rate -> ``(patches, 187, 96)`` float32 log-mel patches at 16 kHz (see :func:`log_mel`)."""
    s = {**_DEFAULT_INPUT, **(spec or {})}
    y16 = to_mono_16k(y, sr, s["sample_rate"])
    return patchify(log_mel(y16, s), s["n_frames"], hop_frames)


# ------------------------------------------------------------------------------------------ the tagger


class PatchTagger(ABC):
    """A converted musicnn model, loaded once: audio in, per-patch outputs, song tags and embeddings out.

    Subclasses run the network (:meth:`predict_patches`); everything about songs lives here. ``load``
    keeps one instance per folder and class in the process. Thread-safe.
    """

    _instances: ClassVar[dict[tuple[type, str], PatchTagger]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder) if folder is not None else WEIGHTS_ROOT / DEFAULT_MODEL
        self.manifest = load_manifest(self.folder)
        self.name = f"{self.manifest['name']}@{self.manifest['version']}"
        self.labels: tuple[str, ...] = tuple(self.manifest["labels"])
        self.input_spec: dict[str, Any] = {**_DEFAULT_INPUT, **self.manifest["input"]}

    @classmethod
    def load(cls, folder: Path | str | None = None) -> Any:
        """The process-wide instance for ``folder`` (default: the shipped MSD model), loaded on first use."""
        key = (cls, str(Path(folder).resolve()) if folder is not None else "")
        with PatchTagger._instances_lock:
            if key not in PatchTagger._instances:
                PatchTagger._instances[key] = cls(folder)
            return PatchTagger._instances[key]

    # -- raw patches ---------------------------------------------------------------------------------

    def input(self, y: np.ndarray, sr: int, *, hop_frames: int | None = None) -> np.ndarray:
        return musicnn_input(y=y, sr=sr, hop_frames=hop_frames, spec=self.input_spec)

    def check_patches(self, patches: np.ndarray) -> np.ndarray:
        x = np.asarray(patches, dtype=np.float32)
        want = (self.input_spec["n_frames"], self.input_spec["n_mels"])
        if x.ndim != 3 or x.shape[1:] != want:
            raise ValueError(f"expected (patches, {want[0]}, {want[1]}) log-mel patches, got {x.shape}")
        return x

    @abstractmethod
    def predict_patches(self, patches: np.ndarray, *, frames: bool = False) -> dict[str, np.ndarray]:
        """Per-patch outputs for ``(patches, 187, 96)`` log-mel input: ``{name: (patches, ...)}``."""

    # -- songs ---------------------------------------------------------------------------------------

    def per_patch(
        self, y: np.ndarray, sr: int, *, hop_frames: int | None = None, max_patches: int | None = None
    ) -> dict[str, np.ndarray]:
        """Per-patch ``tags``, ``logits``, ``penultimate``, ``mean_pool``, ``max_pool`` (for training).

        ``hop_frames`` < 187 gives overlapping patches (more training samples per song).
        ``max_patches`` keeps that many patches evenly spread over the song (a cap on the cost of
        long songs: ~50 ms a patch on one CPU core); ``None`` keeps all.
        """
        x = self.input(y, sr, hop_frames=hop_frames)
        if max_patches is not None and len(x) > max_patches:
            if max_patches < 1:
                raise ValueError("max_patches must be at least 1")
            x = x[np.linspace(0, len(x) - 1, max_patches).round().astype(int)]
        return self.predict_patches(x)

    @staticmethod
    def pool(per_patch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Song-level embeddings from per-patch outputs: means over patches, and ``penultimate``'s spread."""
        emb = {k: per_patch[k].mean(axis=0) for k in ("tags", "penultimate", "mean_pool", "max_pool")}
        emb["penultimate_std"] = per_patch["penultimate"].std(axis=0)
        return {k: v.astype(np.float32) for k, v in emb.items()}

    def embeddings(self, y: np.ndarray, sr: int, *, max_patches: int | None = None) -> dict[str, np.ndarray]:
        """Song-level embeddings: ``penultimate`` (200), ``penultimate_std`` (200), ``mean_pool`` (753),
        ``max_pool`` (753; mean over patches of each 3-s patch's maximum) and ``tags`` (50 probabilities)."""
        return self.pool(self.per_patch(y, sr, max_patches=max_patches))

    def tags(self, y: np.ndarray, sr: int, *, max_patches: int | None = None) -> dict[str, float]:
        """Song-level tag probabilities (mean over patches), highest first."""
        probs = self.per_patch(y, sr, max_patches=max_patches)["tags"].mean(axis=0)
        return self.tags_from_vector(probs)

    def tags_from_vector(self, probs: np.ndarray) -> dict[str, float]:
        """``{label: probability}`` for a 50-vector (e.g. ``embeddings(...)["tags"]``), highest first."""
        order = np.argsort(-probs, kind="stable")
        return {self.labels[i]: float(probs[i]) for i in order}

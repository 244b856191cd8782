"""Pretrained music tagger (musicnn): features learned from a million songs for our small genre/emotion sets.

A Keras 3 port of *musicnn* (Pons & Serra, "musicnn: pre-trained convolutional neural networks for
music audio tagging", LBD-ISMIR 2019; ISC licence), with weights converted once from the TF1
checkpoints of the ``musicnn`` 0.1.0 wheel by ``training/convert_musicnn.py``. The same weights run
under any Keras backend; we serve with ``KERAS_BACKEND=torch`` (the default this module sets when
Keras has not been imported yet).

The network sees 3-s patches (187 frames) of a 96-band log-mel spectrogram at 16 kHz:

- front-end: musically motivated convolutions over the batch-normalised input — *timbral* filters
  (7 frames x 38 and x 67 mel bands) and *temporal* filters (128, 64 and 32 frames x 1 band), each
  max-pooled over frequency and concatenated (561 channels per frame);
- mid-end: three 1-D convolutions over time (64 filters, kernel 7) with residual connections, densely
  concatenated with the front-end (753 channels per frame);
- back-end: max and mean pooling over time (``max_pool``/``mean_pool``, 753 each), then a dense
  layer (``penultimate``, 200 units for MSD) and the 50 sigmoid tags.

Song-level values are means over the non-overlapping patches of a song.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras

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
    "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 96, "n_frames": 187,
    "center": True, "pad_mode": "reflect", "power": 2.0, "mel_norm": "slaney", "htk": False,
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
        y=np.ascontiguousarray(y16, dtype=np.float32), sr=s["sample_rate"], n_fft=s["n_fft"],
        hop_length=s["hop_length"], n_mels=s["n_mels"], center=s["center"], pad_mode=s["pad_mode"],
        power=s["power"], norm=s["mel_norm"], htk=s["htk"]).T
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
    return np.stack([rep[t:t + n_frames] for t in starts]).astype(np.float32)


def musicnn_input(*, y: np.ndarray, sr: int, hop_frames: int | None = None,
                  spec: dict[str, Any] | None = None) -> np.ndarray:
    """Audio at any rate -> ``(patches, 187, 96)`` float32 log-mel patches at 16 kHz (see :func:`log_mel`)."""
    s = {**_DEFAULT_INPUT, **(spec or {})}
    y16 = to_mono_16k(y, sr, s["sample_rate"])
    return patchify(log_mel(y16, s), s["n_frames"], hop_frames)


# ---------------------------------------------------------------------------------------- the network


@keras.saving.register_keras_serializable(package="m2i_musicnn")
class FreqPooledConv(keras.layers.Layer):
    """musicnn's front-end block — valid Conv2D, ReLU, BatchNorm, max over all frequencies — fused.

    Input ``(batch, time, freq)`` (already padded in time), output ``(batch, time', filters)``.
    ReLU and the inference-time BatchNorm are monotone per channel, so the maximum over frequency
    is taken first, on the raw convolution, and the affine parts run on a tensor ``freq'`` times
    smaller. A channel whose BatchNorm scale is negative needs the *minimum*: its kernel is negated
    (``min z = -max(-z)``). Exactly TF1's ``batch_norm(relu(conv2d(x) + b))`` then ``max_pool``, up
    to float32 round-off. Weights: ``kernel`` (kh, kw, 1, filters), ``bias``, ``gamma``, ``beta``,
    ``moving_mean``, ``moving_variance``.
    """

    def __init__(self, filters: int, kernel_size: tuple[int, int], epsilon: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = (int(kernel_size[0]), int(kernel_size[1]))
        self.epsilon = float(epsilon)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        c = (self.filters,)
        add = self.add_weight
        self.kernel = add(name="kernel", shape=(*self.kernel_size, 1, *c), initializer="glorot_uniform")
        self.bias = add(name="bias", shape=c, initializer="zeros")
        self.gamma = add(name="gamma", shape=c, initializer="ones")
        self.beta = add(name="beta", shape=c, initializer="zeros")
        self.moving_mean = add(name="moving_mean", shape=c, initializer="zeros", trainable=False)
        self.moving_variance = add(name="moving_variance", shape=c, initializer="ones", trainable=False)

    def call(self, x: Any) -> Any:
        ops = keras.ops
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        sign = ops.where(scale < 0, -1.0, 1.0)
        kernel = self.kernel * sign
        if keras.backend.backend() == "torch":  # NCHW: no layout copies of the large conv output
            z = ops.conv(ops.expand_dims(x, 1), kernel, padding="valid", data_format="channels_first")
            m = ops.transpose(ops.max(z, axis=-1), (0, 2, 1))
        else:  # TF's CPU convolution wants NHWC
            z = ops.conv(ops.expand_dims(x, -1), kernel, padding="valid", data_format="channels_last")
            m = ops.max(z, axis=2)
        return ops.relu(m * sign + self.bias) * scale + (self.beta - self.moving_mean * scale)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        t = input_shape[1]
        return (input_shape[0], None if t is None else t - self.kernel_size[0] + 1, self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "epsilon": self.epsilon}


def build_musicnn(*, n_mels: int = 96, n_frames: int | None = 187, num_classes: int = 50,
                  num_filt_frontend: float = 1.6, num_filt_midend: int = 64,
                  num_units_backend: int = 200, frames: bool = False) -> keras.Model:
    """musicnn's ``build_musicnn`` in Keras 3 (inference only: dropout left out).

    Outputs a dict: ``tags`` (sigmoid), ``logits``, ``penultimate``, ``mean_pool``, ``max_pool``
    and, with ``frames=True``, the frame-level ``timbral``, ``temporal``, ``cnn1``..``cnn3``.
    Layer names are the keys the converter and the weight file use.
    """
    L = keras.layers
    x_in = keras.Input(shape=(n_frames, n_mels), name="logmel")
    x = L.Reshape((-1, n_mels, 1), name="expand")(x_in)
    x = L.BatchNormalization(epsilon=1e-3, name="input_bn")(x)
    x = L.Reshape((-1, n_mels), name="squeeze")(x)

    n_timbral, n_temporal = int(num_filt_frontend * 128), int(num_filt_frontend * 32)
    x_pad = L.ZeroPadding1D((3, 3), name="timbral_pad")(x)  # time only; frequency is pooled away
    fronts = [FreqPooledConv(n_timbral, (7, int(frac * n_mels)), name=f"timbral_{tag}")(x_pad)
              for tag, frac in (("74", 0.4), ("77", 0.7))]
    # TF's "same" padding for an even kernel k pads (k-1)//2 before and k//2 after.
    fronts += [FreqPooledConv(n_temporal, (k, 1), name=f"temporal_{k}")(
                   L.ZeroPadding1D(((k - 1) // 2, k // 2), name=f"temporal_{k}_pad")(x))
               for k in (128, 64, 32)]
    front = L.Concatenate(axis=-1, name="frontend")(fronts)

    def mid_conv(inp: Any, i: int) -> Any:
        h = L.ZeroPadding1D(3, name=f"midend_{i}_pad")(inp)
        h = L.Conv1D(num_filt_midend, 7, padding="valid", activation="relu", name=f"midend_{i}_conv")(h)
        return L.BatchNormalization(epsilon=1e-3, name=f"midend_{i}_bn")(h)

    cnn1 = mid_conv(front, 1)
    cnn2 = L.Add(name="midend_2_res")([mid_conv(cnn1, 2), cnn1])
    cnn3 = L.Add(name="midend_3_res")([mid_conv(cnn2, 3), cnn2])
    mid = L.Concatenate(axis=-1, name="midend")([front, cnn1, cnn2, cnn3])
    n_mid = mid.shape[-1]

    max_pool = L.GlobalMaxPooling1D(name="max_pool")(mid)
    mean_pool = L.GlobalAveragePooling1D(name="mean_pool")(mid)
    # TF flattens concat([max, mean], axis=2) of shape (753, 2): max and mean interleave per channel.
    pair = L.Concatenate(axis=-1, name="pool_pair")([L.Reshape((n_mid, 1), name="max_col")(max_pool),
                                                     L.Reshape((n_mid, 1), name="mean_col")(mean_pool)])
    flat = L.Flatten(name="pool_flat")(pair)
    flat = L.BatchNormalization(epsilon=1e-3, name="pool_bn")(flat)
    dense = L.Dense(num_units_backend, activation="relu", name="penultimate_dense")(flat)
    penultimate = L.BatchNormalization(epsilon=1e-3, name="penultimate_bn")(dense)
    logits = L.Dense(num_classes, name="logits")(penultimate)
    tags = L.Activation("sigmoid", name="tags")(logits)

    outputs: dict[str, Any] = {"tags": tags, "logits": logits, "penultimate": penultimate,
                               "mean_pool": mean_pool, "max_pool": max_pool}
    if frames:
        outputs["timbral"] = L.Concatenate(axis=-1, name="timbral")(fronts[:2])
        outputs["temporal"] = L.Concatenate(axis=-1, name="temporal")(fronts[2:])
        outputs.update(cnn1=cnn1, cnn2=cnn2, cnn3=cnn3)
    return keras.Model(x_in, outputs, name="musicnn")


def build_from_manifest(manifest: dict[str, Any], *, frames: bool = False) -> keras.Model:
    arch = manifest["architecture"]
    return build_musicnn(n_mels=int(manifest["input"]["n_mels"]), n_frames=int(manifest["input"]["n_frames"]),
                         num_classes=len(manifest["labels"]),
                         num_filt_frontend=float(arch["num_filt_frontend"]),
                         num_filt_midend=int(arch["num_filt_midend"]),
                         num_units_backend=int(arch["num_units_backend"]), frames=frames)


@contextmanager
def inference_context() -> Iterator[None]:
    """No autograd bookkeeping while predicting (torch backend); a no-op elsewhere."""
    if keras.backend.backend() == "torch":
        import torch

        with torch.inference_mode():
            yield
    else:
        yield


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):  # torch: avoid keras' np.array(tensor), which warns under NumPy 2
        return np.asarray(v.detach().cpu().numpy())
    return np.asarray(keras.ops.convert_to_numpy(v))


# ------------------------------------------------------------------------------------------ the tagger


class MusicnnTagger:
    """A converted musicnn model, loaded once: audio in, song-level tags and embeddings out.

    ``tags``/``embeddings`` take audio at any sample rate (resampled to 16 kHz). Patches run
    ``batch_size`` at a time: on CPU one patch per call is fastest (the 9-MB front-end activations of
    one patch stay in cache; ten at once ran ~30 % slower per patch) and keeps memory flat for long
    songs. Thread-safe.
    """

    def __init__(self, folder: Path | str | None = None, *, batch_size: int = 1) -> None:
        self.folder = Path(folder) if folder is not None else WEIGHTS_ROOT / DEFAULT_MODEL
        self.manifest = load_manifest(self.folder)
        self.name = f"{self.manifest['name']}@{self.manifest['version']}"
        self.labels: tuple[str, ...] = tuple(self.manifest["labels"])
        self.input_spec: dict[str, Any] = {**_DEFAULT_INPUT, **self.manifest["input"]}
        self.batch_size = int(batch_size)
        self._model = build_from_manifest(self.manifest)
        self._model.load_weights(str(self.folder / self.manifest["file"]))
        self._frame_model: keras.Model | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, folder: Path | str | None = None) -> MusicnnTagger:
        """The process-wide instance for ``folder`` (default: the shipped MSD model), loaded on first use."""
        key = str(Path(folder).resolve()) if folder is not None else ""
        with _INSTANCES_LOCK:
            if key not in _INSTANCES:
                _INSTANCES[key] = cls(folder)
            return _INSTANCES[key]

    # -- raw patches ---------------------------------------------------------------------------------

    def input(self, y: np.ndarray, sr: int, *, hop_frames: int | None = None) -> np.ndarray:
        return musicnn_input(y=y, sr=sr, hop_frames=hop_frames, spec=self.input_spec)

    def predict_patches(self, patches: np.ndarray, *, frames: bool = False) -> dict[str, np.ndarray]:
        """Per-patch outputs for ``(patches, 187, 96)`` log-mel input: ``{name: (patches, ...)}``."""
        x = np.asarray(patches, dtype=np.float32)
        want = (self.input_spec["n_frames"], self.input_spec["n_mels"])
        if x.ndim != 3 or x.shape[1:] != want:
            raise ValueError(f"expected (patches, {want[0]}, {want[1]}) log-mel patches, got {x.shape}")
        with self._lock:
            model = self._model
            if frames:
                if self._frame_model is None:
                    self._frame_model = build_from_manifest(self.manifest, frames=True)
                    self._frame_model.set_weights(self._model.get_weights())
                model = self._frame_model
            chunks: list[dict[str, np.ndarray]] = []
            with inference_context():
                for i in range(0, max(len(x), 1), self.batch_size):
                    out = model(x[i:i + self.batch_size], training=False)
                    chunks.append({k: _to_numpy(v) for k, v in out.items()})
        return {k: np.concatenate([c[k] for c in chunks]).astype(np.float32) for k in chunks[0]}

    # -- songs ---------------------------------------------------------------------------------------

    def per_patch(self, y: np.ndarray, sr: int, *, hop_frames: int | None = None,
                  max_patches: int | None = None) -> dict[str, np.ndarray]:
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


_INSTANCES: dict[str, MusicnnTagger] = {}
_INSTANCES_LOCK = threading.Lock()

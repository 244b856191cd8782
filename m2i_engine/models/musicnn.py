"""Pretrained music tagger (musicnn): features learned from a million songs for our small genre/emotion sets.

A Keras 3 port of *musicnn* (Pons & Serra, "musicnn: pre-trained convolutional neural networks for
music audio tagging", LBD-ISMIR 2019; ISC licence), with weights converted once from the TF1
checkpoints of the ``musicnn`` 0.1.0 wheel by ``training/convert_musicnn.py``. The same weights run
under any Keras backend (``KERAS_BACKEND=torch`` is the default this module sets when Keras has not
been imported yet) and in NumPy (:mod:`m2i_engine.models.npnet`, what the engine serves with).

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

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras

from m2i_engine.models.musicnn_input import (
    DEFAULT_MODEL,
    FRAME_OUTPUTS,
    PATCH_OUTPUTS,
    WEIGHTS_ROOT,
    PatchTagger,
    load_manifest,
    log_mel,
    musicnn_input,
    patchify,
    to_mono_16k,
)

__all__ = [
    "DEFAULT_MODEL",
    "FRAME_OUTPUTS",
    "PATCH_OUTPUTS",
    "WEIGHTS_ROOT",
    "FreqPooledConv",
    "MusicnnTagger",
    "build_from_manifest",
    "build_musicnn",
    "load_manifest",
    "log_mel",
    "musicnn_input",
    "patchify",
    "to_mono_16k",
]


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

    def __init__(
        self, filters: int, kernel_size: tuple[int, int], epsilon: float = 1e-3, **kwargs: Any
    ) -> None:
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
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "epsilon": self.epsilon,
        }


def build_musicnn(
    *,
    n_mels: int = 96,
    n_frames: int | None = 187,
    num_classes: int = 50,
    num_filt_frontend: float = 1.6,
    num_filt_midend: int = 64,
    num_units_backend: int = 200,
    frames: bool = False,
) -> keras.Model:
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
    fronts = [
        FreqPooledConv(n_timbral, (7, int(frac * n_mels)), name=f"timbral_{tag}")(x_pad)
        for tag, frac in (("74", 0.4), ("77", 0.7))
    ]
    # TF's "same" padding for an even kernel k pads (k-1)//2 before and k//2 after.
    fronts += [
        FreqPooledConv(n_temporal, (k, 1), name=f"temporal_{k}")(
            L.ZeroPadding1D(((k - 1) // 2, k // 2), name=f"temporal_{k}_pad")(x)
        )
        for k in (128, 64, 32)
    ]
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
    pair = L.Concatenate(axis=-1, name="pool_pair")(
        [L.Reshape((n_mid, 1), name="max_col")(max_pool), L.Reshape((n_mid, 1), name="mean_col")(mean_pool)]
    )
    flat = L.Flatten(name="pool_flat")(pair)
    flat = L.BatchNormalization(epsilon=1e-3, name="pool_bn")(flat)
    dense = L.Dense(num_units_backend, activation="relu", name="penultimate_dense")(flat)
    penultimate = L.BatchNormalization(epsilon=1e-3, name="penultimate_bn")(dense)
    logits = L.Dense(num_classes, name="logits")(penultimate)
    tags = L.Activation("sigmoid", name="tags")(logits)

    outputs: dict[str, Any] = {
        "tags": tags,
        "logits": logits,
        "penultimate": penultimate,
        "mean_pool": mean_pool,
        "max_pool": max_pool,
    }
    if frames:
        outputs["timbral"] = L.Concatenate(axis=-1, name="timbral")(fronts[:2])
        outputs["temporal"] = L.Concatenate(axis=-1, name="temporal")(fronts[2:])
        outputs.update(cnn1=cnn1, cnn2=cnn2, cnn3=cnn3)
    return keras.Model(x_in, outputs, name="musicnn")


def build_from_manifest(manifest: dict[str, Any], *, frames: bool = False) -> keras.Model:
    arch = manifest["architecture"]
    return build_musicnn(
        n_mels=int(manifest["input"]["n_mels"]),
        n_frames=int(manifest["input"]["n_frames"]),
        num_classes=len(manifest["labels"]),
        num_filt_frontend=float(arch["num_filt_frontend"]),
        num_filt_midend=int(arch["num_filt_midend"]),
        num_units_backend=int(arch["num_units_backend"]),
        frames=frames,
    )


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


class MusicnnTagger(PatchTagger):
    """The Keras port of musicnn (training, and serving with ``M2I_MODEL_RUNTIME=keras``).

    Patches run ``batch_size`` at a time: on CPU one patch per call is fastest (the 9-MB front-end
    activations of one patch stay in cache; ten at once ran ~30 % slower per patch) and keeps memory
    flat for long songs. Thread-safe.
    """

    def __init__(self, folder: Path | str | None = None, *, batch_size: int = 1) -> None:
        super().__init__(folder)
        self.batch_size = int(batch_size)
        self._model = build_from_manifest(self.manifest)
        self._model.load_weights(str(self.folder / self.manifest["file"]))
        self._frame_model: keras.Model | None = None
        self._lock = threading.Lock()

    def predict_patches(self, patches: np.ndarray, *, frames: bool = False) -> dict[str, np.ndarray]:
        """Per-patch outputs for ``(patches, 187, 96)`` log-mel input: ``{name: (patches, ...)}``."""
        x = self.check_patches(patches)
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
                    out = model(x[i : i + self.batch_size], training=False)
                    chunks.append({k: _to_numpy(v) for k, v in out.items()})
        return {k: np.concatenate([c[k] for c in chunks]).astype(np.float32) for k in chunks[0]}

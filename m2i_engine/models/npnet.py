"""musicnn and the genre/emotion heads in plain NumPy: the shipped Keras weights, no framework loaded.

Why: serving needs only inference of a small network (about 0.8 M parameters), and importing torch
and Keras costs ~270 MB of RSS and seconds of start-up in every API, bot and CLI process. This module
reads the same ``.weights.h5`` files the Keras models save (Keras stays the source of truth: training,
conversion and the torch/TensorFlow checks use :mod:`m2i_engine.models.musicnn`) and computes the same
outputs with NumPy matrix products — equal to the Keras port to float32 round-off
(``tests/test_models_runtimes.py``). ``M2I_MODEL_RUNTIME=keras`` serves with Keras instead.

The weight files store each layer's variables under ``layers/<class name>[_<n>]/vars/<i>`` in the
order the layers are created in :func:`m2i_engine.models.musicnn.build_musicnn` and
:func:`m2i_engine.models.heads.build_head`; the readers below follow that order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

from m2i_engine.models.musicnn_input import PatchTagger

_BN_EPS = 1e-3
_NORM_EPS = 1e-7  # keras.backend.epsilon(), the floor of Normalization's standard deviation


def read_weights(path: Path | str) -> dict[str, list[np.ndarray]]:
    """``{layer key: [variables in order]}`` of a Keras 3 ``.weights.h5`` file."""
    import h5py

    out: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        layers = f["layers"]
        for key in layers:
            group = layers[key].get("vars")
            if group is None:
                continue
            out[key] = [np.asarray(group[str(i)][()]) for i in range(len(group))]
    return out


def _ordered(weights: dict[str, list[np.ndarray]], kind: str) -> list[list[np.ndarray]]:
    """The variables of every ``kind`` layer (``dense``, ``dense_1``, …) in creation order."""
    keys = [k for k in weights if k == kind or (k.startswith(kind + "_") and k[len(kind) + 1 :].isdigit())]
    keys.sort(key=lambda k: 0 if k == kind else int(k[len(kind) + 1 :]))
    return [weights[k] for k in keys]


class _BatchNorm:
    """Inference-time batch normalisation as one multiply-add."""

    def __init__(
        self,
        gamma: np.ndarray,
        beta: np.ndarray,
        mean: np.ndarray,
        var: np.ndarray,
        *,
        dtype: type = np.float32,
    ) -> None:
        self.scale = (gamma / np.sqrt(var + _BN_EPS)).astype(dtype)
        self.shift = (beta - mean * self.scale).astype(dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x * self.scale + self.shift


class _FreqPooledConv:
    """Valid 2-D convolution over (time, mel), max over frequency, ReLU, batch norm — as the Keras layer."""

    def __init__(
        self,
        kernel: np.ndarray,
        bias: np.ndarray,
        gamma: np.ndarray,
        beta: np.ndarray,
        mean: np.ndarray,
        var: np.ndarray,
        *,
        dtype: type = np.float32,
    ) -> None:
        self.kh, self.kw = int(kernel.shape[0]), int(kernel.shape[1])
        scale = gamma / np.sqrt(var + _BN_EPS)
        # ReLU and a positive affine map are monotone, so max over frequency can come first; a
        # negative scale turns max into min, done as max of the negated convolution.
        self.sign = np.where(scale < 0, -1.0, 1.0).astype(dtype)
        self.kernel = (kernel.reshape(self.kh * self.kw, -1) * self.sign).astype(dtype)
        self.bias = bias.astype(dtype)
        self.scale = scale.astype(dtype)
        self.shift = (beta - mean * scale).astype(dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(time, mel)`` (padded in time) → ``(time - kh + 1, filters)``."""
        win = sliding_window_view(x, (self.kh, self.kw))  # (t', f', kh, kw), a view
        t_out, f_out = win.shape[:2]
        z = win.reshape(t_out * f_out, self.kh * self.kw) @ self.kernel
        m = z.reshape(t_out, f_out, -1).max(axis=1)
        return np.maximum(m * self.sign + self.bias, 0.0) * self.scale + self.shift


def _pad_time(x: np.ndarray, before: int, after: int) -> np.ndarray:
    return np.pad(x, ((before, after), (0, 0)))


def _conv1d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Valid 1-D convolution over time: ``(time, in)`` with kernel ``(k, in, out)`` → ``(time-k+1, out)``."""
    k, c_in, c_out = kernel.shape
    win = sliding_window_view(x, k, axis=0)  # (t', in, k)
    cols = np.ascontiguousarray(win.transpose(0, 2, 1)).reshape(win.shape[0], k * c_in)
    return cols @ kernel.reshape(k * c_in, c_out) + bias


class NumpyMusicnn(PatchTagger):
    """musicnn inference in NumPy: the interface and outputs of :class:`.musicnn.MusicnnTagger`."""

    def __init__(self, folder: Path | str | None = None, *, dtype: type = np.float32) -> None:
        """``dtype=np.float64`` gives a slower, exact-as-can-be reference (what the tests compare with)."""
        super().__init__(folder)
        arch = self.manifest["architecture"]
        self.dtype = dtype
        w = read_weights(self.folder / self.manifest["file"])
        bns = [_BatchNorm(*v, dtype=dtype) for v in _ordered(w, "batch_normalization")]
        convs = [_FreqPooledConv(*v, dtype=dtype) for v in _ordered(w, "freq_pooled_conv")]
        mids = _ordered(w, "conv1d")
        dense = _ordered(w, "dense")
        if len(bns) != 6 or len(convs) != 5 or len(mids) != 3 or len(dense) != 2:
            raise ValueError(f"{self.folder}: not a musicnn weight file this runtime knows")
        self.input_bn, self.mid_bns, self.pool_bn, self.penultimate_bn = bns[0], bns[1:4], bns[4], bns[5]
        self.timbral, self.temporal = convs[:2], convs[2:]
        self.mid_convs = [(k.astype(dtype), b.astype(dtype)) for k, b in mids]
        self.dense, self.logits = [(k.astype(dtype), b.astype(dtype)) for k, b in dense]
        n_mid = int(arch["num_filt_midend"])
        if self.mid_convs[0][0].shape[-1] != n_mid:
            raise ValueError(f"{self.folder}: mid-end width {self.mid_convs[0][0].shape[-1]} != {n_mid}")

    def _patch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = self.input_bn(x)
        xp = _pad_time(x, 3, 3)
        fronts = [conv(xp) for conv in self.timbral]
        fronts += [conv(_pad_time(x, (conv.kh - 1) // 2, conv.kh // 2)) for conv in self.temporal]
        front = np.concatenate(fronts, axis=1)
        layers = [front]
        h = front
        for i, ((kernel, bias), bn) in enumerate(zip(self.mid_convs, self.mid_bns, strict=True)):
            out = bn(np.maximum(_conv1d(_pad_time(h, 3, 3), kernel, bias), 0.0))
            h = out if i == 0 else out + h
            layers.append(h)
        mid = np.concatenate(layers, axis=1)
        max_pool, mean_pool = mid.max(axis=0), mid.mean(axis=0)
        flat = self.pool_bn(np.stack([max_pool, mean_pool], axis=1).reshape(-1))  # max/mean interleaved
        penultimate = self.penultimate_bn(np.maximum(flat @ self.dense[0] + self.dense[1], 0.0))
        logits = penultimate @ self.logits[0] + self.logits[1]
        tags = expit(logits)
        return {
            "tags": tags,
            "logits": logits,
            "penultimate": penultimate,
            "mean_pool": mean_pool,
            "max_pool": max_pool,
        }

    def predict_patches(self, patches: np.ndarray, *, frames: bool = False) -> dict[str, np.ndarray]:
        if frames:
            raise NotImplementedError("frame-level outputs need the Keras port (m2i_engine.models.musicnn)")
        x = self.check_patches(patches).astype(self.dtype)
        outs = [self._patch(p) for p in x]
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


class NumpyHead:
    """A genre/emotion head (:func:`m2i_engine.models.heads.build_head`) in NumPy: rows in, scores out."""

    def __init__(self, weights_file: Path | str, activation: str) -> None:
        w = read_weights(weights_file)
        [norm] = _ordered(w, "normalization")
        self.mean = norm[0].astype(np.float32)
        self.std = np.maximum(np.sqrt(norm[1]), _NORM_EPS).astype(np.float32)
        self.layers = [(k.astype(np.float32), b.astype(np.float32)) for k, b in _ordered(w, "dense")]
        if activation not in ("softmax", "sigmoid") or not 1 <= len(self.layers) <= 2:
            raise ValueError(f"{weights_file}: not a head this runtime knows")
        self.activation = activation

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        h = (np.asarray(rows, np.float32) - self.mean) / self.std
        for kernel, bias in self.layers[:-1]:
            h = np.maximum(h @ kernel + bias, 0.0)  # hidden layer; dropout is off at inference
        z = h @ self.layers[-1][0] + self.layers[-1][1]
        if self.activation == "sigmoid":
            return expit(z).astype(np.float32)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

"""Frame-wise beat and downbeat probabilities from BeatNet's pretrained CRNN, without madmom or torch.

Hand-placed DSP rules decide the metrical level (is it 87 or 174 BPM?) poorly; a network trained
on annotated beats has learnt where listeners tap. This module re-implements, in numpy/numba, the
feature front end and the network of BeatNet (Heydari, Cwitkowitz & Duan, "BeatNet: CRNN and
particle filtering for online joint beat downbeat and meter tracking", ISMIR 2021) and runs the
published weights of its model 1 — the one trained *without* GTZAN — shipped in
``bench/weights/`` under CC BY 4.0 (see the README there). It lives beside the benchmark that
uses it (``bench/tempo_accuracy.py --beatnet``), not in the runtime package: measured there, it did
not beat the DSP tracker, so serving never loads it.

Front end (madmom's ``LogarithmicFilteredSpectrogram`` + positive first difference, as BeatNet
uses it): 1411-sample Hann frames every 441 samples at 22 050 Hz (50 frames/s, centred, zero
padded), |FFT| of the 705 lowest bins, 136 overlapping triangular filters at 24 per octave
(30 Hz … 17 kHz, unit area), log10(1 + x), and the half-wave rectified difference to the previous
frame stacked beside it (272 values per frame). Network: Conv1d(1→2, k=10) over the feature axis,
ReLU, max-pool 2, Linear(262→150), a 2-layer unidirectional LSTM (150 units), Linear(150→3) and a
softmax over (beat, downbeat, no beat).

Offers
------
- :func:`beat_activations` — (beat, downbeat) probabilities at :data:`FPS` frames per second.
- :func:`log_filtered_spectrogram_diff` — the 272-dimensional input features.
- :func:`weights_available` — whether the weight file is installed.
- :func:`convert_torch_checkpoint` — one-off: BeatNet ``.pt`` state dict → our ``.npz``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numba
import numpy as np

SR = 22_050
FRAME_SIZE = 1411  # int(0.064 * 22050)
HOP_SIZE = 441  # int(0.020 * 22050)
FPS = SR / HOP_SIZE  # 50 frames per second
N_FFT_BINS = FRAME_SIZE >> 1  # madmom drops the last bin of the odd-length FFT
WEIGHTS_PATH = Path(__file__).with_name("weights") / "beatnet_model1.npz"


def weights_available() -> bool:
    """True when the BeatNet weight file is installed next to this module."""
    return WEIGHTS_PATH.is_file()


def log_filtered_spectrogram_diff(*, y: np.ndarray) -> np.ndarray:
    """BeatNet's input features of a 22 050 Hz mono signal, shape (frames, 272), float32."""
    y = np.asarray(y, dtype=np.float32)
    n_frames = max(1, int(np.ceil(len(y) / HOP_SIZE)))
    half = FRAME_SIZE // 2
    padded = np.zeros(half + n_frames * HOP_SIZE + FRAME_SIZE, dtype=np.float32)
    padded[half : half + len(y)] = y
    frames = np.lib.stride_tricks.sliding_window_view(padded, FRAME_SIZE)[::HOP_SIZE][:n_frames]
    spec = np.abs(np.fft.rfft(frames * _hann(), axis=1)[:, :N_FFT_BINS]).astype(np.float32)
    log_spec = np.log10(spec @ _log_filterbank() + 1.0)
    diff = np.zeros_like(log_spec)
    diff[1:] = np.maximum(log_spec[1:] - log_spec[:-1], 0.0)
    return np.hstack([log_spec, diff]).astype(np.float32)


def beat_activations(*, y: np.ndarray) -> np.ndarray:
    """Beat and downbeat probabilities of a 22 050 Hz mono signal.

    Returns
    -------
    np.ndarray, shape (frames, 2), float32
        Column 0: probability that a (non-downbeat) beat falls in the frame; column 1: that a
        downbeat does. Frame ``t`` is centred at ``t / FPS`` seconds. Their sum is the probability
        of any beat.

    Raises
    ------
    FileNotFoundError
        When the weights are not installed (see :func:`weights_available`).
    """
    feats = log_filtered_spectrogram_diff(y=y)
    w = _weights()
    # Conv1d(1→2, k=10) along the 272 features, ReLU, max-pool 2 → (frames, 2, 131).
    windows = np.lib.stride_tricks.sliding_window_view(feats, 10, axis=1)  # (T, 263, 10)
    conv = np.einsum("tpk,ck->tcp", windows, w["conv1.weight"][:, 0, :], optimize=True)
    conv = np.maximum(conv + w["conv1.bias"][None, :, None], 0.0)
    n_pool = conv.shape[2] // 2
    pooled = conv[:, :, : 2 * n_pool].reshape(conv.shape[0], 2, n_pool, 2).max(axis=3)
    x = pooled.reshape(conv.shape[0], -1) @ w["linear0.weight"].T + w["linear0.bias"]
    for layer in (0, 1):
        gates_in = (
            x @ w[f"lstm.weight_ih_l{layer}"].T + w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]
        ).astype(np.float32)
        x = _lstm_recurrence(np.ascontiguousarray(gates_in), w[f"lstm.weight_hh_l{layer}"])
    logits = x @ w["linear.weight"].T + w["linear.bias"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[:, :2].astype(np.float32)


def convert_torch_checkpoint(pt_path: str | Path, npz_path: str | Path = WEIGHTS_PATH) -> None:
    """Convert a BeatNet ``model_*_weights.pt`` state dict to the ``.npz`` this module reads.

    Needs torch (only for this one-off conversion).
    """
    import torch

    state = torch.load(str(pt_path), map_location="cpu", weights_only=True)
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state.items()}
    np.savez_compressed(str(npz_path), **arrays)  # type: ignore[arg-type]


# --- private helpers ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    if not WEIGHTS_PATH.is_file():
        raise FileNotFoundError(f"BeatNet weights not found at {WEIGHTS_PATH}")
    with np.load(WEIGHTS_PATH) as data:
        return {k: np.ascontiguousarray(data[k], dtype=np.float32) for k in data.files}


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return np.hanning(FRAME_SIZE).astype(np.float32)


@lru_cache(maxsize=1)
def _log_filterbank(
    bands_per_octave: int = 24, fmin: float = 30.0, fmax: float = 17_000.0, fref: float = 440.0
) -> np.ndarray:
    """madmom's LogarithmicFilterbank (unique bins, overlapping triangles, unit area)."""
    bin_freqs = np.fft.fftfreq(N_FFT_BINS * 2, 1.0 / SR)[:N_FFT_BINS]
    left = np.floor(np.log2(fmin / fref) * bands_per_octave)
    right = np.ceil(np.log2(fmax / fref) * bands_per_octave)
    freqs = fref * 2.0 ** (np.arange(left, right) / bands_per_octave)
    freqs = freqs[np.searchsorted(freqs, fmin) :]
    freqs = freqs[: np.searchsorted(freqs, fmax, "right")]
    idx = np.clip(bin_freqs.searchsorted(freqs), 1, len(bin_freqs) - 1)
    idx -= (freqs - bin_freqs[idx - 1] < bin_freqs[idx] - freqs).astype(idx.dtype)
    bins = np.unique(idx)
    bank = np.zeros((N_FFT_BINS, len(bins) - 2), dtype=np.float32)
    for band in range(len(bins) - 2):
        start, center, stop = (int(b) for b in bins[band : band + 3])
        if stop - start < 2:
            center, stop = start, start + 1
        tri = np.zeros(stop - start, dtype=np.float32)
        tri[: center - start] = np.linspace(0.0, 1.0, center - start, endpoint=False)
        tri[center - start :] = np.linspace(1.0, 0.0, stop - center, endpoint=False)
        tri /= tri.sum()
        stop_c = min(stop, N_FFT_BINS)
        np.maximum(bank[start:stop_c, band], tri[: stop_c - start], out=bank[start:stop_c, band])
    return bank


@numba.njit(cache=True, fastmath=False)
def _lstm_recurrence(gates_in: np.ndarray, w_hh: np.ndarray) -> np.ndarray:  # pragma: no cover
    """One LSTM layer (PyTorch gate order i, f, g, o) given the input projections of all steps."""
    n_steps = gates_in.shape[0]
    hidden = w_hh.shape[1]
    out = np.empty((n_steps, hidden), dtype=np.float32)
    h = np.zeros(hidden, dtype=np.float32)
    c = np.zeros(hidden, dtype=np.float32)
    for t in range(n_steps):
        z = gates_in[t] + w_hh @ h
        for j in range(hidden):
            i_g = 1.0 / (1.0 + np.exp(-z[j]))
            f_g = 1.0 / (1.0 + np.exp(-z[hidden + j]))
            g_g = np.tanh(z[2 * hidden + j])
            o_g = 1.0 / (1.0 + np.exp(-z[3 * hidden + j]))
            c[j] = f_g * c[j] + i_g * g_g
            h[j] = o_g * np.tanh(c[j])
        out[t] = h
    return out

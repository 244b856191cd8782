"""Compute the expensive spectral intermediates of a song once, so every analyser reads the same ones.

The STFT, mel spectrogram, onset envelopes, chroma and a harmonic/percussive split are computed
here and nowhere else; tempo, key, timbre, energy (and later the genre/emotion CNNs) read them
from the frozen :class:`Features` object instead of recomputing.

Offers
------
- :class:`Features` — the shared intermediates, with their frame rates.
- :func:`compute_features` — build them from a mono signal.
- :data:`ANALYSIS_SR` — the sample rate all features are computed at.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import librosa
import numpy as np
from scipy.ndimage import median_filter

ANALYSIS_SR = 22_050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
CHROMA_HOP_LENGTH = 2048
#: Upper edges (Hz) of the onset sub-bands: kick/bass, low-mid, mid (snare body, chords), high (hats).
ONSET_BAND_EDGES_HZ = (200.0, 1000.0, 4000.0)


@dataclass(frozen=True, eq=False)
class Features:
    """Spectral intermediates of one mono signal at :data:`ANALYSIS_SR`.

    Frame ``t`` of the STFT-based arrays is centred on sample ``t * hop_length``.
    """

    sr: int
    hop_length: int
    n_fft: int
    duration_s: float
    #: |STFT|, shape (1 + n_fft // 2, frames), float32.
    stft_mag: np.ndarray = field(repr=False)
    #: Mel power spectrogram, shape (n_mels, frames), float32 (128 bands, Slaney mel, 0 … sr/2).
    mel_power: np.ndarray = field(repr=False)
    #: Percussive part of ``mel_power`` (median-filter HPSS), same shape.
    mel_percussive: np.ndarray = field(repr=False)
    #: Broadband onset strength (positive log-mel flux), shape (frames,), float32.
    onset_env: np.ndarray = field(repr=False)
    #: Onset strength per sub-band (see :data:`ONSET_BAND_EDGES_HZ`), shape (4, frames).
    onset_env_bands: np.ndarray = field(repr=False)
    #: Frame RMS of the signal, shape (frames,).
    rms: np.ndarray = field(repr=False)
    #: Tonal-peak constant-Q chroma (see ``_chroma``), shape (12, chroma_frames), one frame every
    #: ``chroma_hop_length`` samples; index 0 = C.
    chroma: np.ndarray = field(repr=False)
    chroma_hop_length: int = CHROMA_HOP_LENGTH
    #: The analysed signal itself (mono float32 at ``sr``), for models with their own front end
    #: (the pretrained musicnn backbone of the genre/emotion heads).
    y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    @property
    def frame_rate_hz(self) -> float:
        """Frames per second of the STFT-based arrays."""
        return self.sr / self.hop_length

    @property
    def n_frames(self) -> int:
        return int(self.onset_env.shape[0])


def compute_features(*, y: np.ndarray, sr: int) -> Features:
    """Compute the shared spectral intermediates of ``y``.

    Parameters
    ----------
    y : np.ndarray
        Mono signal (float, any length; a stereo array is averaged to mono).
    sr : int
        Sample rate of ``y``; it is resampled to :data:`ANALYSIS_SR` if different.

    Returns
    -------
    Features
        Frozen container of the STFT magnitude, mel power spectrogram, onset envelopes, chroma …

    Examples
    --------
    >>> from m2i_engine.synth import demo_song
    >>> f = compute_features(y=demo_song(), sr=22_050)
    >>> f.mel_power.shape[0]
    128
    """
    y = _prepare_signal(y, sr)
    sr = ANALYSIS_SR
    duration_s = len(y) / sr
    # Pad very short input so every transform has at least one full window.
    y_an = y if len(y) >= N_FFT else np.pad(y, (0, N_FFT - len(y)))

    stft_mag = np.abs(librosa.stft(y_an, n_fft=N_FFT, hop_length=HOP_LENGTH)).astype(np.float32)
    power = stft_mag**2
    mel_basis = _mel_basis(sr)
    mel_power = (mel_basis @ power).astype(np.float32)
    percussive = _percussive_part(mel_power)

    log_mel = librosa.power_to_db(mel_power, ref=float(np.max(mel_power)) or 1.0, top_db=80.0)
    flux = _positive_flux(log_mel)
    onset_env = flux.mean(axis=0)
    mel_hz = librosa.mel_frequencies(n_mels=N_MELS, fmin=0.0, fmax=sr / 2)
    edges = np.searchsorted(mel_hz, ONSET_BAND_EDGES_HZ)
    bands = np.split(flux, edges, axis=0)
    onset_env_bands = np.stack([b.mean(axis=0) if len(b) else np.zeros(flux.shape[1]) for b in bands])

    rms = np.sqrt(np.maximum(power.sum(axis=0) * 2.0 / (N_FFT * np.sum(np.hanning(N_FFT) ** 2)), 0.0)).astype(
        np.float32
    )
    chroma = _chroma(y_an, sr)

    return Features(
        sr=sr,
        hop_length=HOP_LENGTH,
        n_fft=N_FFT,
        duration_s=float(duration_s),
        stft_mag=stft_mag,
        mel_power=mel_power,
        mel_percussive=percussive.astype(np.float32),
        onset_env=onset_env.astype(np.float32),
        onset_env_bands=onset_env_bands.astype(np.float32),
        rms=rms,
        chroma=chroma,
        chroma_hop_length=CHROMA_HOP_LENGTH,
        y=np.ascontiguousarray(y, dtype=np.float32),
    )


# --- private helpers ---------------------------------------------------------------------------


def _prepare_signal(y: np.ndarray, sr: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        # Accept (channels, samples) or (samples, channels): average the shorter axis.
        y = y.mean(axis=0 if y.shape[0] <= y.shape[1] else 1)
    if y.ndim != 1:
        raise ValueError(f"expected a mono signal, got shape {y.shape}")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if not np.all(np.isfinite(y)):
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    if sr != ANALYSIS_SR and len(y):
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SR).astype(np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)


_MEL_CACHE: dict[int, np.ndarray] = {}


def _mel_basis(sr: int) -> np.ndarray:
    if sr not in _MEL_CACHE:
        _MEL_CACHE[sr] = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
    return _MEL_CACHE[sr]


def _percussive_part(mel_power: np.ndarray) -> np.ndarray:
    """Percussive part of a mel spectrogram by median-filter HPSS (Fitzgerald 2010).

    The soft masks are computed on adjacent band pairs (64 bands; 17 frames × 9 band-pairs
    medians) to halve the cost, then applied to all 128 bands.
    """
    n_bands, n_frames = mel_power.shape
    pooled = mel_power[: n_bands // 2 * 2].reshape(n_bands // 2, 2, n_frames).mean(axis=1)
    harmonic = median_filter(pooled, size=(1, 17), mode="reflect")
    percussive = median_filter(pooled, size=(9, 1), mode="reflect")
    mask = percussive**2 / np.maximum(harmonic**2 + percussive**2, 1e-20)
    mask = np.repeat(mask, 2, axis=0)
    if mask.shape[0] < n_bands:
        mask = np.vstack([mask, mask[-1:]])
    return (mel_power * mask).astype(np.float32)


def _positive_flux(log_spec: np.ndarray) -> np.ndarray:
    """Half-wave rectified first difference along time (same length).

    The first ``n_fft / hop / 2`` frames are zeroed: their windows reach into the zero padding
    before the signal, so their "onset" is the start of the file, not of a note.
    """
    flux = np.zeros_like(log_spec)
    if log_spec.shape[1] > 1:
        flux[:, 1:] = np.maximum(log_spec[:, 1:] - log_spec[:, :-1], 0.0)
    flux[:, : N_FFT // HOP_LENGTH // 2 + 1] = 0.0
    return flux


def _chroma(y: np.ndarray, sr: int) -> np.ndarray:
    """Tonal-peak chroma: log CQT minus its median over ±1/4 octave, folded to 12 pitch classes.

    Subtracting the local spectral median removes broadband energy (drums, noise) that would
    otherwise fill every pitch class; only spectral peaks (notes) remain.
    """
    n_frames = 1 + len(y) // CHROMA_HOP_LENGTH
    if not np.any(y):
        return np.zeros((12, n_frames), dtype=np.float32)
    with warnings.catch_warnings():  # short clips: librosa warns about its downsampled octaves
        warnings.simplefilter("ignore", UserWarning)
        cqt = np.abs(
            librosa.cqt(
                y,
                sr=sr,
                hop_length=CHROMA_HOP_LENGTH,
                fmin=librosa.note_to_hz("C1"),
                n_bins=_CQT_BINS_PER_OCTAVE * _CQT_OCTAVES,
                bins_per_octave=_CQT_BINS_PER_OCTAVE,
            )
        )
    peak = float(cqt.max())
    if peak <= 0:
        return np.zeros((12, cqt.shape[1]), dtype=np.float32)
    log_cqt = np.log1p(1000.0 * cqt / peak)
    tonal = np.maximum(log_cqt - median_filter(log_cqt, size=(18, 1), mode="nearest"), 0.0)
    # Bin 0 is C1 (centre of a semitone); group bins (-1, 0, +1) around each semitone centre.
    per_semitone = np.roll(tonal, 1, axis=0).reshape(_CQT_OCTAVES * 12, 3, -1).sum(axis=1)
    return per_semitone.reshape(_CQT_OCTAVES, 12, -1).sum(axis=0).astype(np.float32)


_CQT_BINS_PER_OCTAVE = 36
_CQT_OCTAVES = 7  # C1 (33 Hz) … C8 (4.2 kHz): bass notes up to the upper partials of melodies

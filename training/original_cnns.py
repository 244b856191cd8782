"""The seed project's two CNNs and their input features, exactly as the seed wrote them (our baselines).

Source: ``../shared/seed/*.txt`` (the original project's README), sections 3.1 and 3.2.

- Genre: each 30-s GTZAN track cut into 5 equal segments (6 s); per segment 13 MFCCs with
  ``n_fft=2048, hop_length=512`` at 22.05 kHz (librosa's default rate) → ``(259, 13)``; a 3-conv CNN
  with a 64-unit dense layer and a 10-way softmax. The seed's code follows *DeepLearningForAudioWithPython*
  (Adam, learning rate 1e-4, batch 32, 30 epochs), which we keep.
- Emotion: each 1-min Emotify excerpt cut into 6 × 10-s segments; per segment a log-spectrogram
  (``|STFT|`` in dB, ``n_fft=2048, hop_length=512``) → ``(1025, 431)``; the 11-conv "A2E base"
  network with a 9-way softmax.

Both builders reproduce the seed's layers one for one; only ``input_shape`` is a parameter (the
emotion baseline is trained on a 4 x 4 average-pooled spectrogram for cost reasons — see
``training/README.md``).
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras

SEED_SR = 22_050
N_FFT = 2048
HOP_LENGTH = 512

GENRE_N_MFCC = 13
GENRE_TRACK_S = 30.0
GENRE_N_SEGMENTS = 5

EMOTION_SEGMENT_S = 10.0
EMOTION_N_SEGMENTS = 6
#: Average-pooling factors (frequency, time) of the seed log-spectrogram used to *train* the
#: emotion baseline on 2 CPU cores; the speed benchmark runs the seed network at full resolution.
EMOTION_POOL = (4, 4)


def genre_mfcc_segments(
    y: np.ndarray, sr: int = SEED_SR, *, track_s: float = GENRE_TRACK_S, n_segments: int = GENRE_N_SEGMENTS
) -> np.ndarray:
    """The seed's genre input: ``(n_segments, 259, 13)`` MFCC frames of equal segments of a 30-s track.

    As the seed (``DeepLearningForAudioWithPython``): ``samples_per_segment = sr * 30 // 5``; a track
    shorter than 30 s is zero-padded so every song yields all segments.
    """
    import librosa

    per_seg = int(sr * track_s / n_segments)
    y = np.asarray(y, np.float32)
    if len(y) < per_seg * n_segments:
        y = np.pad(y, (0, per_seg * n_segments - len(y)))
    segs = [
        librosa.feature.mfcc(
            y=y[i * per_seg : (i + 1) * per_seg],
            sr=sr,
            n_mfcc=GENRE_N_MFCC,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
        ).T
        for i in range(n_segments)
    ]
    return np.stack(segs).astype(np.float32)


def emotion_logspec_segments(
    y: np.ndarray,
    sr: int = SEED_SR,
    *,
    segment_s: float = EMOTION_SEGMENT_S,
    n_segments: int | None = EMOTION_N_SEGMENTS,
) -> np.ndarray:
    """The seed's emotion input: ``(segments, 1025, 431)`` log-spectrograms (dB) of 10-s segments.

    ``n_segments=None`` takes every whole 10-s segment of ``y`` (at least one: a shorter clip is
    zero-padded); a fixed count zero-pads a short song to that many.
    """
    import librosa

    per_seg = int(sr * segment_s)
    y = np.asarray(y, np.float32)
    n = n_segments if n_segments is not None else max(1, len(y) // per_seg)
    if len(y) < per_seg * n:
        y = np.pad(y, (0, per_seg * n - len(y)))
    out = []
    for i in range(n):
        mag = np.abs(librosa.stft(y[i * per_seg : (i + 1) * per_seg], n_fft=N_FFT, hop_length=HOP_LENGTH))
        out.append(librosa.amplitude_to_db(mag))
    return np.stack(out).astype(np.float32)


def pool_logspec(spec: np.ndarray, pool: tuple[int, int] = EMOTION_POOL) -> np.ndarray:
    """Average-pool ``(..., freq, time)`` log-spectrograms by ``pool`` (the Nyquist bin and a ragged tail
    are dropped): ``(..., 1025, 431)`` → ``(..., 256, 107)`` for the default 4 x 4."""
    pf, pt = pool
    f, t = spec.shape[-2] // pf, spec.shape[-1] // pt
    x = spec[..., : f * pf, : t * pt]
    x = x.reshape(*x.shape[:-2], f, pf, t, pt).mean(axis=(-3, -1))
    return x.astype(np.float32)


def build_seed_genre_cnn(
    input_shape: tuple[int, int, int] = (259, GENRE_N_MFCC, 1), n_classes: int = 10
) -> keras.Model:
    """Seed section 3.1, layer for layer."""
    L = keras.layers
    cnn = keras.Sequential(name="seed_genre_cnn")
    cnn.add(keras.Input(shape=input_shape))
    cnn.add(L.Conv2D(32, (3, 3), activation="relu"))
    cnn.add(L.MaxPooling2D((3, 3), strides=(2, 2), padding="same"))
    cnn.add(L.Conv2D(64, (3, 3), activation="relu"))
    cnn.add(L.MaxPooling2D((3, 3), strides=(2, 2), padding="same"))
    cnn.add(L.Conv2D(128, (2, 2), activation="relu"))
    cnn.add(L.Flatten())
    cnn.add(L.Dense(64, activation="relu"))
    cnn.add(L.Dropout(0.1))
    cnn.add(L.Dense(n_classes, activation="softmax"))
    return cnn


def build_seed_emotion_cnn(
    input_shape: tuple[int, int, int] = (1025, 431, 1), n_outputs: int = 9
) -> keras.Model:
    """Seed section 3.2 (the A2E base model), layer for layer: 11 conv layers, then a 9-way softmax."""
    L = keras.layers
    m = keras.Sequential(name="seed_emotion_cnn")
    m.add(keras.Input(shape=input_shape))
    m.add(L.Conv2D(64, (5, 5), strides=2, activation="relu", padding="valid"))
    m.add(L.BatchNormalization())
    m.add(L.Conv2D(64, (3, 3), strides=1, activation="relu", padding="same"))
    m.add(L.BatchNormalization())
    m.add(L.MaxPooling2D((2, 2)))
    m.add(L.Dropout(0.3))
    for filters in (128, 128):
        m.add(L.Conv2D(filters, (3, 3), strides=1, activation="relu", padding="same"))
        m.add(L.BatchNormalization())
    m.add(L.MaxPooling2D((2, 2)))
    m.add(L.Dropout(0.3))
    for filters in (256, 256, 384, 512, 256):
        m.add(L.Conv2D(filters, (3, 3), strides=1, activation="relu", padding="same"))
        m.add(L.BatchNormalization())
    m.add(L.Flatten())
    m.add(L.Dense(n_outputs, activation="softmax"))
    return m

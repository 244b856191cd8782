"""Audio files in every format a chat app sends, generated in memory so no audio is committed to git.

Tests import this to turn a numpy signal into the bytes of a real file (wav, aiff, flac, mp3,
ogg/vorbis, ogg/opus, m4a/aac, raw aac, webm/opus, caf) and to hand-craft broken headers.
Encoders are the ones users' apps use: libsndfile for the PCM/FLAC/Vorbis family, ffmpeg (PyAV)
for libmp3lame, libopus and aac.

Offers
------
- :func:`encode` — signal → file bytes in one of :data:`FORMATS`.
- :func:`encode_with` — the same with any ffmpeg container/encoder pair, for rarer files.
- :data:`SAMPLE_RATES` / :data:`MAX_CHANNELS` / :func:`decoded_rate` — what each encoder
  accepts and what its decoder reports.
- :func:`sine` / :func:`dominant_hz` — test tones and checking them after a round trip.
- :func:`wav_header` — a WAV header with any field set to any (absurd) value.
- :func:`id3_tag` — an ID3v2 tag with a cover image of a chosen size, as music apps write.
"""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import soundfile as sf
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream

#: Every format :func:`encode` writes, named as a user would call the file type.
FORMATS: tuple[str, ...] = (
    "wav",
    "wavex",
    "aiff",
    "flac",
    "mp3",
    "ogg",
    "opus",
    "m4a",
    "aac",
    "webm",
    "caf",
)

_ANY_RATE = (8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000, 192_000)
_OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
#: Sample rates each format's encoder accepts (tests pick from these).
SAMPLE_RATES: dict[str, tuple[int, ...]] = {
    "wav": _ANY_RATE,
    "wavex": _ANY_RATE,
    "aiff": _ANY_RATE,
    "flac": _ANY_RATE,
    "caf": _ANY_RATE,
    "ogg": _ANY_RATE,
    "mp3": (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000),
    "m4a": (8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000),
    "aac": (8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000),
    "opus": _OPUS_RATES,
    "webm": _OPUS_RATES,
}
#: Most channels each format's encoder accepts.
MAX_CHANNELS: dict[str, int] = {
    "wav": 8,
    "wavex": 8,
    "aiff": 8,
    "flac": 8,
    "caf": 8,
    "ogg": 8,
    "mp3": 2,
    "m4a": 8,
    "aac": 8,
    "opus": 8,
    "webm": 8,
}


def decoded_rate(fmt: str, sr: int) -> int:
    """The sample rate a decoder reports for ``fmt`` encoded at ``sr`` (Opus always uses 48 kHz)."""
    return 48_000 if fmt in ("opus", "webm") else sr


_SNDFILE = {  # fmt -> (libsndfile major format, default subtype)
    "wav": ("WAV", "PCM_16"),
    "wavex": ("WAVEX", "PCM_16"),
    "aiff": ("AIFF", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "caf": ("CAF", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
}
_FFMPEG = {  # fmt -> (container, encoder)
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "m4a": ("ipod", "aac"),
    "aac": ("adts", "aac"),
    "webm": ("webm", "libopus"),
}
_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def encode(y: np.ndarray, sr: int, fmt: str, *, channels: int = 1, subtype: str | None = None) -> bytes:
    """Encode ``y`` as a file of type ``fmt`` and return its bytes.

    ``y`` is mono ``(n,)`` — copied to ``channels`` channels, each slightly quieter than the
    one before so channels are distinguishable — or already ``(n, channels)``. ``subtype`` picks
    the sample format of PCM/FLAC files with libsndfile names (``PCM_U8``, ``PCM_16``,
    ``PCM_24``, ``PCM_32``, ``FLOAT``, ``DOUBLE``).
    """
    frames = _to_channels(np.asarray(y, dtype=np.float32), channels)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    if sr not in SAMPLE_RATES[fmt] and fmt in _FFMPEG:
        raise ValueError(f"{fmt} cannot be encoded at {sr} Hz")
    if frames.shape[1] > MAX_CHANNELS[fmt]:
        raise ValueError(f"{fmt} cannot hold {frames.shape[1]} channels")
    if fmt in _SNDFILE:
        major, default_subtype = _SNDFILE[fmt]
        return _encode_sndfile(frames, sr, major=major, subtype=subtype or default_subtype)
    container, codec = _FFMPEG[fmt]
    return _encode_ffmpeg(frames, sr, container=container, codec=codec)


def encode_with(
    y: np.ndarray, sr: int, *, container: str, codec: str, channels: int = 1, bit_rate: int | None = None
) -> bytes:
    """Encode with any ffmpeg muxer and encoder pair (e.g. ``asf``/``wmav2``, ``ipod``/``alac``)."""
    return _encode_ffmpeg(
        _to_channels(np.asarray(y, dtype=np.float32), channels),
        sr,
        container=container,
        codec=codec,
        bit_rate=bit_rate,
    )


def sine(freq_hz: float, duration_s: float, sr: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A pure tone, float32 mono."""
    t = np.arange(round(duration_s * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def dominant_hz(y: np.ndarray, sr: int) -> float:
    """Frequency of the strongest spectral peak (Hann window, parabolic interpolation)."""
    n = len(y)
    spec = np.abs(np.fft.rfft(y * np.hanning(n)))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) else 0.0
    return float((k + offset) * sr / n)


def wav_header(
    *,
    channels: int = 1,
    sample_rate: int = 44_100,
    bits: int = 16,
    format_tag: int = 1,
    data_size: int | None = None,
    riff_size: int | None = None,
    byte_rate: int | None = None,
    block_align: int | None = None,
    n_frames: int = 0,
    fmt_size: int = 16,
) -> bytes:
    """A canonical 44-byte WAV header whose fields may hold any value, absurd ones included.

    Sizes are written as unsigned 32-bit; pass ``-1`` for the 0xFFFFFFFF a crashed recorder
    leaves behind (read as negative by signed parsers).
    """
    align = block_align if block_align is not None else max(channels, 0) * bits // 8
    rate = byte_rate if byte_rate is not None else sample_rate * align
    data = data_size if data_size is not None else n_frames * align
    riff = riff_size if riff_size is not None else 36 + data
    u32 = lambda v: struct.pack("<I", v & 0xFFFFFFFF)  # noqa: E731
    fmt_chunk = struct.pack("<HH", format_tag & 0xFFFF, channels & 0xFFFF) + u32(sample_rate)
    fmt_chunk += u32(rate) + struct.pack("<HH", align & 0xFFFF, bits & 0xFFFF)
    return b"RIFF" + u32(riff) + b"WAVEfmt " + u32(fmt_size) + fmt_chunk + b"data" + u32(data)


def id3_tag(*, cover_bytes: int = 0, title: str = "m2i test") -> bytes:
    """An ID3v2.3 tag with a title and, if ``cover_bytes``, an attached picture of that size."""
    frames = _id3_frame(b"TIT2", b"\x03" + title.encode())
    if cover_bytes:
        picture = b"\x00image/jpeg\x00\x03\x00" + bytes(
            np.random.default_rng(0).integers(0, 256, cover_bytes, dtype=np.uint8)
        )
        frames += _id3_frame(b"APIC", picture)
    return b"ID3\x03\x00\x00" + _synchsafe(len(frames)) + frames


# --- private helpers ---------------------------------------------------------------------------


def _id3_frame(frame_id: bytes, payload: bytes) -> bytes:
    return frame_id + struct.pack(">I", len(payload)) + b"\x00\x00" + payload


def _synchsafe(n: int) -> bytes:
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))


def _to_channels(y: np.ndarray, channels: int) -> np.ndarray:
    """``(n, channels)`` float32, clipped to [-1, 1]."""
    if y.ndim == 2:
        return np.clip(y, -1.0, 1.0)
    gains = 1.0 - 0.05 * np.arange(channels, dtype=np.float32)
    return np.clip(y[:, None] * gains[None, :], -1.0, 1.0)


def _encode_sndfile(frames: np.ndarray, sr: int, *, major: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    buf.name = f"x.{major.lower()}"  # libsndfile wants a name for some formats
    with sf.SoundFile(buf, "w", sr, frames.shape[1], subtype, format=major) as out:
        for start in range(0, len(frames), 65_536):  # one huge write crashes libvorbis
            out.write(frames[start : start + 65_536])
    return buf.getvalue()


def _encode_ffmpeg(
    frames: np.ndarray, sr: int, *, container: str, codec: str, bit_rate: int | None = None
) -> bytes:
    n, channels = frames.shape
    layout = _LAYOUTS[channels]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        assert isinstance(stream, AudioStream)
        if bit_rate:
            stream.bit_rate = bit_rate
        block = 4096
        for start in range(0, n, block):
            # packed 'flt' (interleaved): PyAV mis-counts planes for 8-channel planar frames
            chunk = np.ascontiguousarray(frames[start : start + block]).reshape(1, -1)
            frame = AudioFrame.from_ndarray(chunk, format="flt", layout=layout)
            frame.sample_rate = sr
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()

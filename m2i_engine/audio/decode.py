"""Turn whatever a chat user sends into one mono signal the analysers can trust, or a clear refusal.

Uploads come from phones (m4a, Telegram's ogg/opus voice notes), browsers (webm/opus), DAWs
(24-bit or float wav, aiff, flac, up to 192 kHz and 8 channels) and the odd renamed PNG. This
module checks the cheap limits first (bytes, then the container's own duration), then streams
the audio through ffmpeg (PyAV), downmixing to mono and resampling to ``target_sr`` one frame at
a time so a long multichannel hi-res file never exists in memory at full rate. Anything that goes
wrong becomes an :class:`~m2i_engine.errors.M2IError` whose message a chat user understands.

Policy for damaged files: a player would play what is intact, so do we. Packets the decoder
rejects are skipped and a cut-off file is decoded up to the cut; the result is accepted when at
least ``min_duration_s`` of sound came out (``info.duration_s`` is then what was decoded).
Otherwise, or when most packets fail, the file is :class:`CorruptAudioError`.

Offers
------
- :class:`DecodedAudio` — the analysed samples, their rate, :class:`AudioInfo` and window.
- :func:`decode_audio` — bytes or path → :class:`DecodedAudio`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import numbers
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

from m2i_engine.audio.sniff import (
    DEMUXERS,
    HEAD_BYTES,
    id3_end,
    looks_cut_off,
    sniff_format,
)
from m2i_engine.audio.windows import representative_window
from m2i_engine.config import AudioLimits
from m2i_engine.errors import (
    CorruptAudioError,
    EmptyAudioError,
    InputError,
    InvalidOptionError,
    M2IError,
    NotAudioError,
    SilentAudioError,
    TooLargeError,
    TooLongError,
    TooShortError,
    UnsupportedAudioError,
)
from m2i_engine.tags import AudioInfo

log = logging.getLogger(__name__)

_DEFAULT_LIMITS = AudioLimits()
#: Peak and RMS below this are digital silence (the 16-bit noise floor; dither is about -92 dBFS).
SILENCE_DBFS = -90.0
#: Slack on the duration limits for codec padding, priming and header rounding.
_DURATION_SLACK_S = 0.5
_MIN_DURATION_SLACK_S = 0.05
#: A file where more than this share of packets fails to decode is called corrupt.
_MAX_BAD_PACKET_SHARE = 0.5
#: Output frames of this many samples keep the per-frame Python overhead small.
_OUT_FRAME = 8192
# Downmix as the plain mean of the channels (ffmpeg's default matrix can exceed full scale).
_SWR_OPTIONS = {"rematrix_maxval": "1.0"}
_MB = 1024 * 1024


@dataclass(frozen=True)
class DecodedAudio:
    """Audio ready for analysis: the chosen window of the song, mono, at ``sample_rate_hz``."""

    #: float32, mono, in [-1, 1]; only the analysed window of a long song
    samples: np.ndarray
    sample_rate_hz: int
    #: what the file was: container, codec, original rate and channels, full and analysed length
    info: AudioInfo
    #: (start, end) in seconds of ``samples`` within the decoded song
    window_s: tuple[float, float]


def decode_audio(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    limits: AudioLimits = _DEFAULT_LIMITS,
    target_sr: int = 22_050,
) -> DecodedAudio:
    """Decode a song or voice note from bytes or a path, checking ``limits`` along the way.

    The container is detected from content, never from a file name. Raises only
    :class:`~m2i_engine.errors.M2IError` subclasses: ``EmptyAudioError``, ``NotAudioError``,
    ``TooLargeError``, ``TooLongError``, ``TooShortError``, ``SilentAudioError``,
    ``UnsupportedAudioError``, ``CorruptAudioError`` (with the decoder's exception in
    ``detail``), or ``InputError`` when a path cannot be read.

    Examples
    --------
    >>> audio = decode_audio("voice.oga")                          # doctest: +SKIP
    >>> audio.info.codec, audio.sample_rate_hz, audio.window_s     # doctest: +SKIP
    ('opus', 22050, (0.0, 12.48))
    """
    if not isinstance(target_sr, numbers.Integral) or not 1_000 <= target_sr <= 192_000:
        raise InvalidOptionError("The analysis sample rate must be between 1 and 192 kHz.")
    target_sr = int(target_sr)
    try:
        with contextlib.ExitStack() as stack:
            file, size = _open_source(source, stack)
            return _decode_file(file, size, limits=limits, target_sr=target_sr)
    except M2IError:
        raise
    except Exception as exc:  # any decoder surprise is a damaged file to the user
        raise CorruptAudioError(detail=f"{type(exc).__name__}: {exc}") from exc


def read_audio_bytes(path: str | os.PathLike[str], *, limits: AudioLimits = _DEFAULT_LIMITS) -> bytes:
    """Read a file's bytes for later decoding, refusing an oversize file before reading it.

    Front ends that hash or cache the upload (the engine) read once with this, then call
    :func:`decode_audio` on the bytes; errors are the same ``InputError``/``TooLargeError``.
    """
    with contextlib.ExitStack() as stack:
        file, size = _open_source(path, stack)
        _check_size(size, limits)
        return file.read()


# --- steps -------------------------------------------------------------------------------------


def _open_source(
    source: bytes | bytearray | memoryview | str | os.PathLike[str], stack: contextlib.ExitStack
) -> tuple[BinaryIO, int]:
    """A seekable binary file for ``source`` and its size, without reading a path into memory."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return io.BytesIO(data), len(data)
    try:
        path = os.fspath(source)
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a folder, a pipe or a device: nothing to decode
            raise IsADirectoryError(f"not a regular file: {path}")
        size = info.st_size
        file = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
    except (OSError, TypeError, ValueError) as exc:
        raise InputError(
            "The audio file couldn't be opened — please send it again.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc
    return file, size


def _decode_file(file: BinaryIO, size: int, *, limits: AudioLimits, target_sr: int) -> DecodedAudio:
    _check_size(size, limits)
    head = _read_head(file)
    container_name = sniff_format(head)
    file.seek(max(0, size - HEAD_BYTES))
    cut_off = looks_cut_off(container_name, head=head, tail=file.read(HEAD_BYTES), size=size)
    file.seek(0)
    with _open_container(file, container_name) as container:
        stream = _audio_stream(container)
        header_s = _header_duration_s(container, stream)
        _check_header(stream, header_s, limits)
        decoded = _decode_stream(container, stream, limits=limits, target_sr=target_sr, header_s=header_s)
    _check_decoded(decoded, limits=limits, header_s=header_s, cut_off=cut_off)
    return _window(decoded, container_name, limits=limits)


def _check_size(size: int, limits: AudioLimits) -> None:
    if size <= 0:
        raise EmptyAudioError()
    if size > limits.max_bytes:
        raise TooLargeError(
            f"The file is {size / _MB:.1f} MB but the limit is {_fmt_mb(limits.max_bytes)} MB — "
            "send a shorter clip or an mp3."
        )


def _read_head(file: BinaryIO) -> bytes:
    """The file's first bytes, extended past ID3 tags so the stream behind them can be sniffed."""
    head = file.read(HEAD_BYTES)
    tags_end = id3_end(head)
    if tags_end > len(head) - 4096:
        file.seek(0)
        head = file.read(tags_end + 4096)
    return head


def _open_container(file: BinaryIO, container_name: str) -> InputContainer:
    """Open with the demuxer named by sniffing, so ffmpeg never guesses on arbitrary bytes."""
    try:
        return av.open(file, mode="r", format=DEMUXERS[container_name], metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise CorruptAudioError(detail=f"open {container_name}: {exc}") from exc


def _audio_stream(container: InputContainer) -> AudioStream:
    streams = container.streams.audio
    if not streams:
        raise NotAudioError(
            "That file has no sound track — send a song or voice note "
            "(mp3, wav, flac, ogg, opus, m4a, webm or aiff)."
        )
    stream = streams[0]
    if stream.codec_context is None:
        raise UnsupportedAudioError(
            "This audio is compressed with a codec m2i can't decode — export it as mp3 or wav.",
            detail=f"no decoder for codec id of stream {stream.index}",
        )
    return stream


def _header_duration_s(container: InputContainer, stream: AudioStream) -> float | None:
    """Duration the container declares, if any (may be an estimate, may be a lie)."""
    seconds: float | None = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / av.time_base
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def _check_header(stream: AudioStream, header_s: float | None, limits: AudioLimits) -> None:
    """Refuse absurd or over-limit values the container declares, before decoding anything."""
    cc = stream.codec_context
    _check_channels(cc.channels, limits)
    _check_rate(cc.sample_rate, limits)
    if header_s is not None and header_s > limits.max_duration_s + _DURATION_SLACK_S:
        raise _too_long(limits, detail=f"header says {header_s:.1f} s")


def _check_channels(channels: int, limits: AudioLimits) -> None:
    if not 1 <= channels <= limits.max_channels:
        raise UnsupportedAudioError(
            f"This audio says it has {channels} channels, but m2i reads 1 to "
            f"{limits.max_channels} — export it as stereo."
        )


def _check_rate(rate: int, limits: AudioLimits) -> None:
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise UnsupportedAudioError(
            f"This audio says its sample rate is {rate:,} Hz, but m2i reads "
            f"{limits.min_sample_rate / 1000:g}–{limits.max_sample_rate / 1000:g} kHz — "
            "export it at 44.1 or 48 kHz."
        )


# --- streaming decode --------------------------------------------------------------------------


@dataclass
class _DecodeStats:
    """How streaming went: what the policy for damaged, short and silent files looks at."""

    decoded_s: float = 0.0
    packets: int = 0
    bad_packets: int = 0
    stopped_early: bool = False
    peak: float = 0.0
    sum_squares: float = 0.0


@dataclass(frozen=True)
class _Decoded:
    """The whole song as mono float32 at ``sr``, with what the file said about itself."""

    samples: np.ndarray
    sr: int
    codec: str
    source_rate: int
    channels: int
    stats: _DecodeStats


@dataclass
class _Growable:
    """A float32 buffer that grows geometrically, so appends don't keep a list of chunks."""

    data: np.ndarray
    size: int = 0
    cap: int = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self.size + len(chunk)
        if end > len(self.data):
            new_len = max(end, int(len(self.data) * 1.5) + 1)
            if self.cap:
                new_len = max(end, min(new_len, self.cap))
            grown = np.empty(new_len, dtype=np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = chunk
        self.size = end

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class _MonoResampler:
    """Downmix to mono and resample frame by frame; restarts when a stream changes format midway."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler: AudioResampler | None = None
        self._key: tuple[str, str, int] | None = None
        self._pts = 0

    def push(self, frame: AudioFrame) -> Iterator[np.ndarray]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            yield from self.flush()
            self._resampler = AudioResampler(
                format="flt",
                layout="mono",
                rate=self.rate,
                frame_size=_OUT_FRAME,
                options=_SWR_OPTIONS,
            )
            self._key, self._pts = key, 0
        # Contiguous timestamps: damaged files carry jumps the resampler would try to honour.
        frame.pts, frame.time_base = self._pts, Fraction(1, frame.sample_rate)
        self._pts += frame.samples
        assert self._resampler is not None
        for out in self._resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)

    def flush(self) -> Iterator[np.ndarray]:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield out.to_ndarray().reshape(-1)
        self._resampler, self._key = None, None


def _decode_stream(
    container: InputContainer,
    stream: AudioStream,
    *,
    limits: AudioLimits,
    target_sr: int,
    header_s: float | None,
) -> _Decoded:
    """Stream every frame through the mono resampler, stopping as soon as the song is too long."""
    cc = stream.codec_context  # described as the file begins: damaged streams may change midway
    codec, source_rate, channels = cc.codec.canonical_name, cc.sample_rate, cc.channels
    expected_s = min(header_s or 60.0, limits.max_duration_s) + 1.0
    cap = int((limits.max_duration_s + _DURATION_SLACK_S + 1.0) * target_sr)
    buf = _Growable(np.empty(int(expected_s * target_sr), dtype=np.float32), cap=cap)
    stats = _DecodeStats()
    mono = _MonoResampler(target_sr)
    max_s = limits.max_duration_s + _DURATION_SLACK_S
    for frame in _frames(container, stream, stats):
        _check_frame(frame, limits)
        stats.decoded_s += frame.samples / frame.sample_rate
        if stats.decoded_s > max_s:
            raise _too_long(limits, detail=f"decoded past {max_s:.1f} s")
        for chunk in mono.push(frame):
            _add_chunk(buf, chunk, stats)
    for chunk in mono.flush():
        _add_chunk(buf, chunk, stats)
    return _Decoded(
        samples=buf.view(), sr=target_sr, codec=codec, source_rate=source_rate, channels=channels, stats=stats
    )


def _frames(container: InputContainer, stream: AudioStream, stats: _DecodeStats) -> Iterator[AudioFrame]:
    """Decoded frames; packets the decoder rejects are skipped, a damaged demux ends the stream."""
    cc = stream.codec_context
    try:
        for packet in container.demux(stream):
            stats.packets += 1
            try:
                frames = cc.decode(packet)
            except av.error.FFmpegError as exc:
                stats.bad_packets += 1
                log.debug("skipping undecodable packet: %s", exc)
                continue
            yield from frames
    except av.error.FFmpegError as exc:
        stats.stopped_early = True
        log.debug("demuxer stopped: %s", exc)
        with contextlib.suppress(av.error.FFmpegError):
            yield from cc.decode(None)


def _check_frame(frame: AudioFrame, limits: AudioLimits) -> None:
    """Damaged streams can change rate or channel count midway; hold every frame to the limits."""
    _check_channels(frame.layout.nb_channels, limits)
    _check_rate(frame.sample_rate, limits)


def _add_chunk(buf: _Growable, chunk: np.ndarray, stats: _DecodeStats) -> None:
    """Sanitise (NaN → 0, clip overs to ±1) and append, tracking peak and energy for silence."""
    if not len(chunk):
        return
    peak = float(max(chunk.max(), -chunk.min()))
    if not math.isfinite(peak) or peak > 1.0:  # rare: float files with overs or broken samples
        np.nan_to_num(chunk, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        np.clip(chunk, -1.0, 1.0, out=chunk)
        peak = float(max(chunk.max(), -chunk.min()))
    stats.peak = max(stats.peak, peak)
    stats.sum_squares += float(np.dot(chunk, chunk))
    buf.append(chunk)


# --- after decoding ----------------------------------------------------------------------------


def _check_decoded(decoded: _Decoded, *, limits: AudioLimits, header_s: float | None, cut_off: bool) -> None:
    """Apply the policy for damaged, short and silent results (see the module docstring)."""
    stats = decoded.stats
    duration_s = len(decoded.samples) / decoded.sr
    if stats.packets and stats.bad_packets > _MAX_BAD_PACKET_SHARE * stats.packets:
        raise CorruptAudioError(detail=f"{stats.bad_packets}/{stats.packets} packets failed")
    damaged = stats.bad_packets > 0 or stats.stopped_early
    cut_off = cut_off or (header_s is not None and duration_s < header_s - max(1.0, 0.05 * header_s))
    if cut_off or damaged:
        log.info(
            "damaged or cut-off audio: decoded %.1f s of %s s (%d/%d bad packets)",
            duration_s,
            header_s,
            stats.bad_packets,
            stats.packets,
        )
    if duration_s < limits.min_duration_s - _MIN_DURATION_SLACK_S:
        if damaged or cut_off:
            raise CorruptAudioError(detail=f"only {duration_s:.2f} s decodable of {header_s} s")
        raise TooShortError(
            f"The audio is only {duration_s:.1f} seconds long — send at least "
            f"{limits.min_duration_s:g} seconds of music."
        )
    if _is_silent(stats, n_samples=len(decoded.samples)):
        raise SilentAudioError("The audio is completely silent — check the recording and send it again.")


def _is_silent(stats: _DecodeStats, *, n_samples: int) -> bool:
    """Digital silence: peak or RMS below :data:`SILENCE_DBFS` (a quiet song is far above)."""
    rms = math.sqrt(stats.sum_squares / n_samples) if n_samples else 0.0
    floor = 10.0 ** (SILENCE_DBFS / 20.0)
    return stats.peak < floor or rms < floor


def _window(decoded: _Decoded, container_name: str, *, limits: AudioLimits) -> DecodedAudio:
    """Cut the representative ``analysis_s`` window (the whole song if shorter) and describe it."""
    y, sr = decoded.samples, decoded.sr
    start, end = representative_window(y=y, sr=sr, window_s=limits.analysis_s)
    samples = y[start:end].copy()  # owns its memory: the full-length buffer can be freed
    info = AudioInfo(
        container=container_name,
        codec=decoded.codec,
        sample_rate_hz=decoded.source_rate,
        channels=decoded.channels,
        duration_s=round(len(y) / sr, 3),
        analysed_s=round(len(samples) / sr, 3),
    )
    return DecodedAudio(
        samples=samples, sample_rate_hz=sr, info=info, window_s=(round(start / sr, 3), round(end / sr, 3))
    )


# --- small helpers -----------------------------------------------------------------------------


def _too_long(limits: AudioLimits, *, detail: str) -> TooLongError:
    return TooLongError(
        f"The audio is longer than {_fmt_minutes(limits.max_duration_s)} — "
        "send a shorter clip or just the part you want drawn.",
        detail=detail,
    )


def _fmt_minutes(seconds: float) -> str:
    minutes = seconds / 60.0
    if minutes < 1.0:
        return f"{seconds:g} seconds"
    text = f"{minutes:.1f}".removesuffix(".0")
    return f"{text} minute" + ("" if text == "1" else "s")


def _fmt_mb(n_bytes: int) -> str:
    return f"{n_bytes / _MB:.1f}".removesuffix(".0")

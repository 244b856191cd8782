"""Every way an upload can be wrong ends in one typed error with a sentence a chat user understands.

Each error has its own test built from files generated here (nothing is committed), and a
property-style test throws a few hundred damaged files at the decoder to show that nothing but
an :class:`M2IError` ever comes out, and quickly.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2i_engine.audio import decode_audio, sniff_format
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
from m2i_engine.synth import SongSpec, render_song
from tests.audiofiles import FORMATS, dominant_hz, encode, sine, wav_header

SR = 22_050


def _song(seconds: float, sr: int = 44_100) -> np.ndarray:
    return render_song(SongSpec(duration_s=seconds, sr=sr, seed=4))


def assert_user_sentence(exc: M2IError) -> None:
    """One sentence, no jargon a chat user can't read: no newline, no traceback, one full stop."""
    msg = exc.message
    assert re.fullmatch(r"[A-Z][^\n]*[.!?]", msg), msg
    assert not re.search(r"[.!?]\s+[A-Z]", msg[:-1]), f"more than one sentence: {msg}"
    assert "Errno" not in msg and "Error" not in msg and "ffmpeg" not in msg.lower(), msg
    assert len(msg) < 200, msg


def decode_error(source: object, **kwargs: object) -> M2IError:
    with pytest.raises(M2IError) as info:
        decode_audio(source, **kwargs)  # type: ignore[arg-type]
    assert_user_sentence(info.value)
    return info.value


# --- empty and not audio -----------------------------------------------------------------------


@pytest.mark.parametrize("source", [b"", bytearray(), "path"])
def test_empty_file(tmp_path: Path, source: object) -> None:
    if source == "path":
        source = tmp_path / "voice.ogg"
        source.write_bytes(b"")
    assert isinstance(decode_error(source), EmptyAudioError)
    with pytest.raises(EmptyAudioError):
        sniff_format(b"")


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 90)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (20, 130, 90)).save(buf, format="JPEG")
    return buf.getvalue()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("song.mp3", b"not really")
    return buf.getvalue()


def _pdf() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PDF")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: b"Here are the lyrics of my song, la la la.\n" * 50, "text"),
        (lambda: b"<!DOCTYPE html><html><body>404</body></html>", "a web page"),
        (_png, "a PNG image"),
        (_jpeg, "a JPEG image"),
        (_zip, "a ZIP archive"),
        (_pdf, "a PDF document"),
        (lambda: b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0" + bytes(64), "a MIDI file"),
    ],
)
def test_not_audio_named_mp3(tmp_path: Path, make, named: str) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(make())
    for source in (path, path.read_bytes()):
        exc = decode_error(source)
        assert isinstance(exc, NotAudioError)
        assert named in exc.message
        assert "mp3, wav" in exc.message  # says what to send instead


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_not_audio(seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    assert isinstance(decode_error(data), NotAudioError)


def test_zero_bytes_are_not_audio() -> None:
    assert isinstance(decode_error(bytes(10_000)), NotAudioError)


def test_video_without_sound_is_not_audio() -> None:
    import av
    from av.video.frame import VideoFrame

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(10):
            frame = VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    exc = decode_error(buf.getvalue())
    assert isinstance(exc, NotAudioError) and "no sound" in exc.message


# --- size and duration limits ------------------------------------------------------------------


def test_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.wav"
    with huge.open("wb") as f:  # sparse: 10 GB on paper, nothing on disk
        f.write(wav_header(channels=2, sample_rate=44_100, n_frames=1))
        f.truncate(10 * 1024**3)
    started = time.perf_counter()
    exc = decode_error(huge)
    assert time.perf_counter() - started < 0.1
    assert isinstance(exc, TooLargeError)
    assert "25 MB" in exc.message  # the default limit, in MB


def test_too_large_bytes_say_the_limit_in_mb() -> None:
    data = encode(sine(440.0, 10.0, 44_100), 44_100, "wav")  # 0.84 MB
    exc = decode_error(data, limits=AudioLimits(max_bytes=512 * 1024))
    assert isinstance(exc, TooLargeError) and "0.5 MB" in exc.message
    # size is checked first: garbage over the limit is "too large", not "not audio"
    assert isinstance(decode_error(bytes(600_000), limits=AudioLimits(max_bytes=512 * 1024)), TooLargeError)


def test_too_long_by_header_is_refused_before_decoding() -> None:
    data = encode(sine(440.0, 70.0, 8_000), 8_000, "flac")
    exc = decode_error(data, limits=AudioLimits(max_duration_s=60.0))
    assert isinstance(exc, TooLongError)
    assert "1 minute" in exc.message
    assert "header" in (exc.detail or "")


def test_too_long_message_in_minutes() -> None:
    data = encode(sine(440.0, 100.0, 8_000), 8_000, "flac")
    exc = decode_error(data, limits=AudioLimits(max_duration_s=90.0))
    assert isinstance(exc, TooLongError) and "1.5 minutes" in exc.message


def _lie_about_mp3_length(mp3: bytes, *, frames: int) -> bytes:
    """Rewrite the Xing/Info header's frame count, as a broken tagger might."""
    at = max(mp3.find(b"Xing"), mp3.find(b"Info"))
    assert at > 0
    flags = struct.unpack(">I", mp3[at + 4 : at + 8])[0]
    assert flags & 1
    return mp3[: at + 8] + struct.pack(">I", frames) + mp3[at + 12 :]


def test_a_lying_short_header_does_not_let_a_long_file_through() -> None:
    mp3 = encode(sine(440.0, 75.0, 8_000), 8_000, "mp3")
    liar = _lie_about_mp3_length(mp3, frames=20)  # claims ~1.4 s
    assert decode_audio(liar, limits=AudioLimits(max_duration_s=90.0)).info.duration_s > 70
    exc = decode_error(liar, limits=AudioLimits(max_duration_s=60.0))
    assert isinstance(exc, TooLongError)
    assert "decoded past" in (exc.detail or "")  # caught while streaming, not from the header


def test_stream_without_duration_is_stopped_while_decoding() -> None:
    adts = encode(sine(440.0, 70.0, 8_000), 8_000, "aac")  # raw AAC: no header duration at all
    exc = decode_error(adts, limits=AudioLimits(max_duration_s=60.0))
    assert isinstance(exc, TooLongError)


@pytest.mark.parametrize("seconds", [0.0, 0.3, 1.5])
def test_too_short(seconds: float) -> None:
    data = encode(sine(440.0, seconds, 44_100), 44_100, "wav")
    exc = decode_error(data)
    assert isinstance(exc, TooShortError)
    assert "2 seconds" in exc.message


def test_min_duration_is_configurable() -> None:
    data = encode(sine(440.0, 0.5, 44_100), 44_100, "ogg")
    assert decode_audio(data, limits=AudioLimits(min_duration_s=0.25)).info.duration_s > 0.45


# --- silence -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "m4a"])
def test_digital_silence(fmt: str) -> None:
    sr = 48_000
    exc = decode_error(encode(np.zeros(5 * sr, np.float32), sr, fmt, channels=2))
    assert isinstance(exc, SilentAudioError)


def test_dithered_silence_is_silence() -> None:
    lsb = 1.0 / 32768.0
    dither = np.random.default_rng(0).integers(-1, 2, 5 * 44_100).astype(np.float32) * lsb
    assert isinstance(decode_error(encode(dither, 44_100, "wav")), SilentAudioError)


@pytest.mark.parametrize(
    ("fmt", "subtype", "gain_db"), [("wav", "PCM_24", -60.0), ("flac", "PCM_16", -50.0), ("mp3", None, -45.0)]
)
def test_a_quiet_real_song_is_not_silence(fmt: str, subtype: str | None, gain_db: float) -> None:
    y = _song(4.0)
    loud = decode_audio(encode(y, 44_100, fmt, subtype=subtype)).samples
    quiet = decode_audio(encode(y * 10 ** (gain_db / 20), 44_100, fmt, subtype=subtype)).samples
    level_db = 20 * np.log10(np.abs(quiet).max() / np.abs(loud).max())
    assert level_db == pytest.approx(gain_db, abs=1.0)


def test_a_pause_in_a_song_is_not_silence() -> None:
    y = _song(6.0)
    y[: 5 * 44_100] = 0.0  # five silent seconds, then music
    assert decode_audio(encode(y, 44_100, "flac")).info.duration_s == pytest.approx(6.0, abs=0.01)


# --- absurd header values ----------------------------------------------------------------------


def _wav_with(n_frames: int = 3 * 8_000, **fields: int) -> bytes:
    noise = (np.random.default_rng(1).standard_normal(n_frames) * 3000).astype("<i2").tobytes()
    base = {"channels": 1, "sample_rate": 8_000, "bits": 16, "n_frames": n_frames}
    return wav_header(**{**base, **fields}) + noise


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"sample_rate": 0}, (UnsupportedAudioError, CorruptAudioError)),
        ({"sample_rate": 10_000_000}, UnsupportedAudioError),
        ({"sample_rate": 4_000}, UnsupportedAudioError),
        ({"sample_rate": 0x7FFFFFFF}, (UnsupportedAudioError, CorruptAudioError)),
        ({"channels": 0}, UnsupportedAudioError),
        ({"channels": 1000}, UnsupportedAudioError),
        ({"channels": 65535}, (UnsupportedAudioError, CorruptAudioError)),
        ({"bits": 0}, (UnsupportedAudioError, CorruptAudioError)),
        ({"format_tag": 0x1234}, UnsupportedAudioError),
        ({"fmt_size": -1}, (UnsupportedAudioError, CorruptAudioError)),
        ({"fmt_size": 0}, (UnsupportedAudioError, CorruptAudioError)),
    ],
)
def test_absurd_wav_header_values(fields: dict[str, int], expected: type | tuple[type, ...]) -> None:
    started = time.perf_counter()
    exc = decode_error(_wav_with(**fields))
    assert time.perf_counter() - started < 1.0
    assert isinstance(exc, expected), repr(exc)


def test_absurd_rate_is_named_in_the_message() -> None:
    exc = decode_error(_wav_with(sample_rate=10_000_000))
    assert "10,000,000 Hz" in exc.message and "8–192 kHz" in exc.message


@pytest.mark.parametrize(
    "fields", [{"data_size": -1}, {"riff_size": -1}, {"data_size": 0}, {"block_align": 0}, {"byte_rate": 0}]
)
def test_streaming_or_sloppy_wav_sizes_still_decode(fields: dict[str, int]) -> None:
    """Recorders that crash leave 0/0xFFFFFFFF sizes; the samples that are there are used."""
    audio = decode_audio(_wav_with(**fields))
    assert audio.info.duration_s == pytest.approx(3.0, abs=0.01)


def test_too_many_channels_for_the_limits() -> None:
    data = encode(sine(440.0, 3.0, 44_100), 44_100, "wav", channels=4)
    exc = decode_error(data, limits=AudioLimits(max_channels=2))
    assert isinstance(exc, UnsupportedAudioError) and "4 channels" in exc.message


# --- damaged files -----------------------------------------------------------------------------


@functools.cache
def _sine_file(fmt: str, seconds: float = 10.0) -> bytes:
    """Stereo 440 Hz tone; cached because several damage tests start from the same file."""
    sr = 48_000 if fmt in ("opus", "webm") else 44_100
    return encode(sine(440.0, seconds, sr), sr, fmt, channels=2)


# Share of a 20-s file left after cutting its bytes at 40 %: a partly received Ogg page
# (~1.7 s of Vorbis here) or the unfinished AAC frame is lost; PCM keeps every whole sample.
@pytest.mark.parametrize(
    ("fmt", "least_s"),
    [
        ("wav", 7.9),
        ("aiff", 7.9),
        ("flac", 7.8),
        ("mp3", 7.8),
        ("aac", 7.5),
        ("ogg", 6.0),
        ("opus", 6.5),
        ("webm", 6.5),
    ],
)
def test_cut_at_40_percent_decodes_what_is_there(fmt: str, least_s: float) -> None:
    data = _sine_file(fmt, 20.0)
    audio = decode_audio(data[: int(len(data) * 0.4)])
    assert least_s <= audio.info.duration_s <= 8.1
    assert dominant_hz(audio.samples, SR) == pytest.approx(440.0, abs=1.0)


def test_cut_m4a_is_corrupt() -> None:
    """An m4a's index is written last; cut off, no player can find its samples."""
    data = _sine_file("m4a")
    assert isinstance(decode_error(data[: int(len(data) * 0.4)]), CorruptAudioError)


@pytest.mark.parametrize("fmt", ["wav", "wavex", "aiff", "flac", "mp3", "ogg", "opus", "webm", "m4a"])
@pytest.mark.parametrize("keep", [0.05, 0.002])
def test_cut_below_the_minimum_is_corrupt_not_short(fmt: str, keep: float) -> None:
    data = _sine_file(fmt)
    exc = decode_error(data[: max(64, int(len(data) * keep))])
    assert isinstance(exc, CorruptAudioError), repr(exc)
    assert "damaged or cut off" in exc.message


# Seconds of a 10-s file that must survive: a few packets, an Ogg page (1–1.7 s) or, for webm, the
# Matroska cluster (up to 5 s) that holds the garbage is lost; the rest plays.
@pytest.mark.parametrize(
    ("fmt", "least_s"),
    [
        ("wav", 9.9),
        ("flac", 9.5),
        ("mp3", 9.0),
        ("ogg", 8.0),
        ("opus", 8.0),
        ("m4a", 9.0),
        ("webm", 4.5),
    ],
)
def test_garbage_in_the_middle_is_skipped(fmt: str, least_s: float) -> None:
    data = _sine_file(fmt)
    middle = len(data) // 2
    junk = np.random.default_rng(7).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    audio = decode_audio(data[:middle] + junk + data[middle + len(junk) :])
    assert least_s <= audio.info.duration_s <= 10.1
    assert dominant_hz(audio.samples, SR) == pytest.approx(440.0, abs=1.0)


def test_unexpected_decoder_exceptions_become_corrupt_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    def broken_open(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(av, "open", broken_open)
    exc = decode_error(_sine_file("wav", 3.0))
    assert isinstance(exc, CorruptAudioError)
    assert "RuntimeError: decoder exploded" in (exc.detail or "")


@pytest.mark.parametrize("make", [lambda p: p / "missing.mp3", lambda p: p])
def test_unreadable_path_is_an_input_error(tmp_path: Path, make) -> None:
    exc = decode_error(make(tmp_path))
    assert isinstance(exc, InputError)


# --- property: nothing but M2IError, and fast --------------------------------------------------


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random damage: cut, flipped bytes, overwritten/zeroed/deleted/duplicated span, header."""
    n = len(data)
    kind = int(rng.integers(7))
    pos = int(rng.integers(0, n))
    span = int(rng.integers(1, 4096))
    if kind == 0:
        return data[:pos]
    if kind == 1:
        out = bytearray(data)
        for i in rng.integers(0, n, int(rng.integers(1, 64))):
            out[i] ^= 1 << int(rng.integers(8))
        return bytes(out)
    if kind == 2:
        return data[:pos] + rng.integers(0, 256, span, dtype=np.uint8).tobytes() + data[pos + span :]
    if kind == 3:
        return data[:pos] + bytes(span) + data[pos + span :]
    if kind == 4:
        return data[:pos] + data[pos + span :]
    if kind == 5:
        return data[:pos] + data[pos : pos + span] * 2 + data[pos + span :]
    out = bytearray(data)
    for i in rng.integers(0, min(n, 256), int(rng.integers(1, 8))):
        out[i] = int(rng.integers(256))
    return bytes(out)


def test_random_damage_only_ever_raises_m2i_errors() -> None:
    rng = np.random.default_rng(2024)
    y = _song(3.0, sr=22_050)
    bases = [
        encode(
            y,
            22_050 if fmt not in ("opus", "webm") else 24_000,
            fmt,
            channels=2 if fmt != "wavex" else 6,
            subtype="PCM_24" if fmt == "wavex" else None,
        )
        for fmt in FORMATS
    ]
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for i in range(220):
        damaged = _mutate(bases[i % len(bases)], rng)
        t0 = time.perf_counter()
        try:
            audio = decode_audio(damaged)
        except M2IError as exc:
            assert_user_sentence(exc)
            outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
        else:
            assert audio.samples.dtype == np.float32 and np.isfinite(audio.samples).all()
            assert np.abs(audio.samples).max() <= 1.0
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        assert time.perf_counter() - t0 < 2.0, f"mutation {i} took too long"
    assert time.perf_counter() - started < 20.0
    assert outcomes.get("ok", 0) > 50 and len(outcomes) >= 3, outcomes  # the mix is real


@pytest.mark.parametrize("target_sr", [0, -22_050, 500, 10**7])
def test_invalid_target_rate_is_an_option_error(target_sr: int) -> None:
    with pytest.raises(InvalidOptionError):
        decode_audio(_sine_file("wav", 3.0), target_sr=target_sr)

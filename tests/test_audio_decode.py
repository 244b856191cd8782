"""Decoding works for every format, rate and channel count a chat app sends, and keeps the content.

Files are generated in memory by ``audiofiles``; each test checks what a listener would notice:
length, reported rate and channels, pitch, alignment, and which part of a long song is analysed.
"""

from __future__ import annotations

import io
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from m2i_engine.audio import DecodedAudio, decode_audio, representative_window, sniff_format
from m2i_engine.audio.sniff import id3_end
from m2i_engine.config import AudioLimits
from m2i_engine.synth import SongSpec, render_song
from m2i_engine.tags import AudioInfo
from tests.audiofiles import (
    FORMATS,
    MAX_CHANNELS,
    SAMPLE_RATES,
    decoded_rate,
    dominant_hz,
    encode,
    encode_with,
    id3_tag,
    sine,
)

SR = 22_050
#: container and codec names decode_audio reports for each test format
EXPECTED = {
    "wav": ("wav", "pcm_s16le"),
    "wavex": ("wav", "pcm_s16le"),
    "aiff": ("aiff", "pcm_s16be"),
    "flac": ("flac", "flac"),
    "mp3": ("mp3", "mp3"),
    "ogg": ("ogg", "vorbis"),
    "opus": ("ogg", "opus"),
    "m4a": ("mp4", "aac"),
    "aac": ("aac", "aac"),
    "webm": ("webm", "opus"),
    "caf": ("caf", "pcm_s16be"),
}
BIG = AudioLimits(max_bytes=1 << 30)


def _padding_s(fmt: str, sr: int) -> float:
    """Trailing codec padding a decoder may return: AAC rounds up to whole 1024-sample frames."""
    return 1024 / sr if fmt in ("m4a", "aac") else 0.0


def _cases() -> list[tuple[str, int, int]]:
    """Each format at its lowest, a common and its highest rate, in mono, stereo and most channels."""
    cases = []
    for fmt in FORMATS:
        rates = SAMPLE_RATES[fmt]
        common = 44_100 if 44_100 in rates else 48_000
        for sr in sorted({rates[0], common, rates[-1]}):
            for channels in sorted({1, 2, MAX_CHANNELS[fmt]}):
                cases.append((fmt, sr, channels))
    return cases


@pytest.mark.parametrize(("fmt", "sr", "channels"), _cases())
def test_every_format_rate_and_channel_count_decodes(fmt: str, sr: int, channels: int) -> None:
    freq = 1000.0 if sr > 8_000 else 440.0
    data = encode(sine(freq, 2.0, sr), sr, fmt, channels=channels)
    audio = decode_audio(data, limits=BIG)

    assert audio.sample_rate_hz == SR
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert np.all(np.abs(audio.samples) <= 1.0)
    assert (audio.info.container, audio.info.codec) == EXPECTED[fmt]
    assert audio.info.sample_rate_hz == decoded_rate(fmt, sr)
    assert audio.info.channels == channels
    assert abs(audio.info.duration_s - 2.0) <= 0.05 + _padding_s(fmt, sr)
    assert len(audio.samples) / SR == pytest.approx(audio.info.duration_s, abs=1e-3)
    assert audio.window_s == (0.0, audio.info.analysed_s)
    assert dominant_hz(audio.samples, SR) == pytest.approx(freq, abs=2.0)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f not in ("wav", "wavex", "caf", "aac")])
def test_music_survives_the_round_trip_in_time(fmt: str) -> None:
    """A real song decodes aligned with the original (codec delay removed) and highly correlated.

    Raw ADTS ``aac`` is left out: it has nowhere to record the encoder delay, so it starts 1024
    samples late in every player.
    """
    song = render_song(SongSpec(duration_s=3.0, sr=SR, seed=3))
    song_48k = resample_poly(song, 320, 147).astype(np.float32)
    audio = decode_audio(encode(song_48k, 48_000, fmt, channels=2))
    n = min(len(song), len(audio.samples))
    x, y = audio.samples[:n], song[:n]
    lags = range(-50, 51)
    corr = [np.dot(x[max(0, k) : n + min(0, k)], y[max(0, -k) : n - max(0, k)]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    assert np.corrcoef(x, y)[0, 1] > 0.95


@pytest.mark.parametrize("sr", [8_000, 11_025, 44_100, 48_000, 96_000, 192_000])
@pytest.mark.parametrize("target_sr", [16_000, 22_050, 44_100])
def test_resampling_keeps_pitch_and_length(sr: int, target_sr: int) -> None:
    audio = decode_audio(encode(sine(1000.0, 2.0, sr), sr, "flac"), target_sr=target_sr)
    assert audio.sample_rate_hz == target_sr
    assert len(audio.samples) == 2 * target_sr
    assert dominant_hz(audio.samples, target_sr) == pytest.approx(1000.0, abs=0.5)
    middle = audio.samples[target_sr // 2 : -target_sr // 2]
    assert np.abs(middle).max() == pytest.approx(0.5, abs=0.02)  # gain unchanged


@pytest.mark.parametrize("fmt", ["wav", "wavex"])
@pytest.mark.parametrize(
    ("subtype", "codec"),
    [
        ("PCM_U8", "pcm_u8"),
        ("PCM_16", "pcm_s16le"),
        ("PCM_24", "pcm_s24le"),
        ("PCM_32", "pcm_s32le"),
        ("FLOAT", "pcm_f32le"),
        ("DOUBLE", "pcm_f64le"),
    ],
)
def test_wav_sample_formats(fmt: str, subtype: str, codec: str) -> None:
    data = encode(sine(1000.0, 2.0, 44_100), 44_100, fmt, channels=2, subtype=subtype)
    format_tag = int.from_bytes(data[20:22], "little")
    assert format_tag == 0xFFFE if fmt == "wavex" else format_tag in (1, 3)  # EXTENSIBLE or plain
    audio = decode_audio(data)
    assert audio.info.codec == codec
    assert dominant_hz(audio.samples, SR) == pytest.approx(1000.0, abs=0.5)
    # stereo downmix is the mean of the channels (0.5 and 0.475 here), never louder than either
    middle = audio.samples[SR // 2 : -SR // 2]
    assert np.abs(middle).max() == pytest.approx(0.4875, abs=0.01)


def test_multichannel_downmix_is_the_channel_mean() -> None:
    frames = np.stack([sine(1000.0, 2.0, 48_000, amplitude=0.8)] * 8, axis=1)
    audio = decode_audio(encode(frames, 48_000, "wavex", subtype="FLOAT"))
    assert audio.info.channels == 8
    # LFE (channel 4 of 7.1) is not mixed in; the other seven average to the same 0.8 sine
    assert np.abs(audio.samples[SR // 2 : -SR // 2]).max() == pytest.approx(0.8, abs=0.01)


def test_float_overs_are_clipped_to_full_scale() -> None:
    data = encode(sine(1000.0, 2.0, 44_100, amplitude=1.5), 44_100, "wav", subtype="FLOAT")
    audio = decode_audio(data)
    assert np.abs(audio.samples).max() <= 1.0
    assert np.abs(audio.samples).max() == pytest.approx(1.0, abs=1e-6)


# --- input forms and detection by content ------------------------------------------------------


def test_bytes_str_path_and_bytearray_give_the_same_result(tmp_path: Path) -> None:
    data = encode(sine(440.0, 2.5, 44_100), 44_100, "flac")
    path = tmp_path / "clip.flac"
    path.write_bytes(data)
    results = [decode_audio(src) for src in (data, str(path), path, bytearray(data), memoryview(data))]
    for audio in results[1:]:
        assert audio.info == results[0].info
        np.testing.assert_array_equal(audio.samples, results[0].samples)


def test_container_is_detected_from_content_not_name(tmp_path: Path) -> None:
    wav_named_mp3 = tmp_path / "song.mp3"
    wav_named_mp3.write_bytes(encode(sine(440.0, 2.5, 44_100), 44_100, "wav"))
    assert decode_audio(wav_named_mp3).info.container == "wav"
    voice_note = tmp_path / "voice.oga"  # how Telegram names opus voice notes
    voice_note.write_bytes(encode(sine(440.0, 2.5, 48_000), 48_000, "opus"))
    assert decode_audio(voice_note).info.codec == "opus"


@pytest.mark.parametrize("fmt", FORMATS)
def test_sniff_names_every_format(fmt: str) -> None:
    sr = 48_000
    data = encode(sine(440.0, 0.5, sr), sr, fmt)
    assert sniff_format(data[: 64 * 1024]) == EXPECTED[fmt][0]


@pytest.mark.parametrize(
    ("container", "codec", "sr", "expected"),
    [
        ("ipod", "alac", 44_100, ("mp4", "alac")),  # Apple Lossless from iTunes
        ("3gp", "libopencore_amrnb", 8_000, ("mp4", "amr_nb")),  # old Android voice memos
        ("amr", "libopencore_amrnb", 8_000, ("amr", "amr_nb")),
        ("mov", "aac", 44_100, ("mp4", "aac")),
        ("matroska", "flac", 44_100, ("matroska", "flac")),
        ("asf", "wmav2", 44_100, ("asf", "wmav2")),  # Windows Media Audio
        ("mp2", "mp2", 44_100, ("mp3", "mp2")),  # MPEG layer II, found by frame sync
        ("wav", "pcm_mulaw", 8_000, ("wav", "pcm_mulaw")),  # telephony recorders
        ("wav", "adpcm_ima_wav", 22_050, ("wav", "adpcm_ima_wav")),  # dictaphones
    ],
)
def test_rarer_containers_and_codecs(container: str, codec: str, sr: int, expected: tuple[str, str]) -> None:
    data = encode_with(
        sine(440.0, 3.0, sr),
        sr,
        container=container,
        codec=codec,
        bit_rate=128_000 if codec == "wmav2" else None,
    )
    audio = decode_audio(data)
    assert (audio.info.container, audio.info.codec) == expected
    assert audio.info.duration_s == pytest.approx(3.0, abs=0.07)
    assert dominant_hz(audio.samples, SR) == pytest.approx(440.0, abs=1.0)


@pytest.mark.parametrize(("major", "expected"), [("W64", "w64"), ("RF64", "wav")])
def test_large_file_wav_variants(major: str, expected: str) -> None:
    buf = io.BytesIO()
    sf.write(buf, sine(440.0, 3.0, 44_100), 44_100, format=major)
    audio = decode_audio(buf.getvalue())
    assert audio.info.container == expected
    assert audio.info.duration_s == pytest.approx(3.0, abs=1e-3)


def test_mp3_without_id3_is_found_by_frame_sync() -> None:
    data = encode(sine(440.0, 2.5, 44_100), 44_100, "mp3")
    bare = data[id3_end(data) :]
    assert bare[:3] != b"ID3"
    assert sniff_format(bare) == "mp3"
    assert decode_audio(bare).info.codec == "mp3"


@pytest.mark.parametrize("as_path", [False, True])
def test_mp3_behind_a_large_id3_cover_image(tmp_path: Path, as_path: bool) -> None:
    mp3 = encode(sine(440.0, 2.5, 44_100), 44_100, "mp3")
    data = id3_tag(cover_bytes=300_000) + mp3[id3_end(mp3) :]
    source: bytes | Path = data
    if as_path:
        source = tmp_path / "tagged.mp3"
        source.write_bytes(data)
    audio = decode_audio(source)
    assert audio.info.container == "mp3"
    assert audio.info.duration_s == pytest.approx(2.5, abs=0.05)


def test_flac_behind_an_id3_tag() -> None:
    data = id3_tag() + encode(sine(440.0, 2.5, 44_100), 44_100, "flac")
    assert sniff_format(data) == "flac"
    assert decode_audio(data).info.codec == "flac"


# --- long songs: one representative window ----------------------------------------------------


def _sectioned_song(sections: list[tuple[float, float]], *, sr: int = SR) -> np.ndarray:
    """Concatenate (seconds, gain) sections of one song, so loud and quiet parts are known."""
    total = sum(s for s, _ in sections)
    song = render_song(SongSpec(duration_s=total, sr=sr, style="rock", seed=1))
    gains = np.concatenate([np.full(round(s * sr), g, np.float32) for s, g in sections])
    return song[: len(gains)] * gains[: len(song)]


def test_long_song_is_analysed_on_its_loudest_sustained_part() -> None:
    #              intro      verse      chorus     outro
    y = _sectioned_song([(12, 0.05), (24, 0.2), (12, 1.0), (12, 0.1)])
    limits = AudioLimits(analysis_s=10.0)
    audio = decode_audio(encode(y, SR, "flac"), limits=limits)

    start, end = audio.window_s
    assert start >= 36.0 - 0.5 and end <= 48.0 + 0.5
    assert end - start == pytest.approx(10.0, abs=1e-3)
    assert audio.info.analysed_s == pytest.approx(10.0, abs=1e-3)
    assert audio.info.duration_s == pytest.approx(60.0, abs=0.01)
    assert len(audio.samples) == round(10.0 * SR)
    # the window holds exactly those seconds of the decoded song
    whole = decode_audio(encode(y, SR, "flac"), limits=AudioLimits(analysis_s=100.0)).samples
    s = round(start * SR)
    np.testing.assert_array_equal(audio.samples, whole[s : s + len(audio.samples)])


def test_a_single_loud_hit_does_not_attract_the_window() -> None:
    y = _sectioned_song([(30, 0.3), (10, 0.6), (20, 0.3)])
    y[round(15 * SR) : round(15.05 * SR)] = 1.0  # one clap, far from the louder part
    start, end = representative_window(y=y, sr=SR, window_s=8.0)
    assert start >= 30 * SR - SR // 2 and end <= 40 * SR + SR // 2


def test_window_skips_intro_and_outro_of_a_steady_song() -> None:
    y = np.ones(100 * 100, dtype=np.float32)  # 100 s at 100 Hz, equal energy everywhere
    start, end = representative_window(y=y, sr=100, window_s=30.0)
    assert start >= 10 * 100 and end <= 90 * 100


def test_window_fits_when_the_song_is_barely_longer() -> None:
    y = np.random.default_rng(0).standard_normal(100 * 33).astype(np.float32)
    start, end = representative_window(y=y, sr=100, window_s=30.0)
    assert start >= 0 and end <= len(y) and end - start == 3000


def test_short_song_is_returned_whole() -> None:
    audio = decode_audio(encode(sine(440.0, 5.0, 44_100), 44_100, "mp3"))
    assert audio.window_s == (0.0, 5.0)
    assert audio.info.analysed_s == audio.info.duration_s == 5.0


# --- the contract, memory and speed ------------------------------------------------------------


def test_result_types() -> None:
    audio = decode_audio(encode(sine(440.0, 2.5, 44_100), 44_100, "wav"))
    assert isinstance(audio, DecodedAudio) and isinstance(audio.info, AudioInfo)
    with pytest.raises(AttributeError):
        audio.sample_rate_hz = 1  # type: ignore[misc]  # frozen
    assert audio.samples.flags.c_contiguous and audio.samples.flags.owndata


def test_hi_res_multichannel_is_never_held_at_full_rate() -> None:
    """8 channels at 192 kHz stream through: Python never holds more than the mono output."""
    sr, seconds = 192_000, 10.0
    tone = sine(1000.0, seconds, sr)
    data = encode(np.repeat(tone[:, None], 8, axis=1), sr, "wavex")  # 30 MB of int16
    full_rate_bytes = round(seconds * sr) * 8 * 4  # what a naive float32 decode would hold: 61 MB
    tracemalloc.start()
    try:
        audio = decode_audio(data, limits=BIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert audio.info.channels == 8 and audio.info.sample_rate_hz == sr
    assert dominant_hz(audio.samples, SR) == pytest.approx(1000.0, abs=0.5)
    assert peak < 4 * audio.samples.nbytes + (2 << 20) < full_rate_bytes / 10


def test_thirty_second_mp3_decodes_in_a_fraction_of_a_second() -> None:
    y = render_song(SongSpec(duration_s=30.0, sr=44_100, seed=2))
    data = encode(y, 44_100, "mp3")
    decode_audio(data)  # warm up ffmpeg's tables
    started = time.perf_counter()
    decode_audio(data)
    assert time.perf_counter() - started < 0.5  # ~0.04 s measured on 2 cores


def test_sndfile_and_ffmpeg_agree_on_pcm() -> None:
    """Our decode of a 24-bit wav matches libsndfile's reading of the same bytes, resampled."""
    y = render_song(SongSpec(duration_s=3.0, sr=44_100, seed=5))
    data = encode(y, 44_100, "wav", subtype="PCM_24")
    reference, _ = sf.read(io.BytesIO(data), dtype="float32")
    expected = resample_poly(reference, 1, 2)
    audio = decode_audio(data)
    n = min(len(expected), len(audio.samples)) - 200
    assert np.corrcoef(audio.samples[200:n], expected[200:n])[0, 1] > 0.999


def test_stream_that_changes_rate_and_channels_midway() -> None:
    """Two mp3s glued together (44.1 kHz stereo, then 22.05 kHz mono) decode in full, in tune."""
    first = encode(sine(440.0, 3.0, 44_100), 44_100, "mp3", channels=2)
    second = encode(sine(880.0, 3.0, 22_050), 22_050, "mp3")
    audio = decode_audio(first + second[id3_end(second) :])
    assert audio.info.sample_rate_hz == 44_100 and audio.info.channels == 2  # as the file begins
    assert audio.info.duration_s == pytest.approx(6.0, abs=0.15)
    assert dominant_hz(audio.samples[: 2 * SR], SR) == pytest.approx(440.0, abs=1.0)
    assert dominant_hz(audio.samples[-2 * SR :], SR) == pytest.approx(880.0, abs=1.0)

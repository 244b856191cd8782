"""Frames and the song's samples → an MP4 file, one frame at a time, so memory stays flat however long.

H.264 (libx264, yuv420p, ``+faststart`` so it starts playing before it has all arrived) with AAC sound;
the same fallbacks as the loops' MP4 (:data:`~m2i_engine.imaging.animate.encode.MP4_CODECS`) where
FFmpeg lacks libx264, at a faster preset since a video has a minute of frames, not seconds. After each
video frame the audio up to that frame's end is encoded, so the muxer interleaves the two as they come.

Quality is x264's constant-rate factor by default; given a ``bit_rate`` (to fit a chat app's upload
limit) the encoder aims at that average instead, capped by a VBV buffer so the file can't overshoot
much. A frame may come with a crop box: FFmpeg's scaler then zooms it to the full size in the same pass
that converts it to YUV, which costs a third of a Pillow resize at 720×1280.
"""

from __future__ import annotations

import functools
import io
import logging
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from PIL import Image

from m2i_engine.imaging.animate.encode import MP4_CODECS

log = logging.getLogger(__name__)

#: "superfast": at 720×1280 about 1.5× quicker than "veryfast" (which alone takes a frame's whole 33 ms on
#: two cores) for ~15 % more bytes on these flat-shaded pictures; crf 23 is x264's default
VIDEO_CODECS: tuple[tuple[str, dict[str, str]], ...] = (
    ("libx264", {"crf": "23", "preset": "superfast", "profile": "high"}),
    ("h264", {"crf": "23", "preset": "superfast"}),
    *(c for c in MP4_CODECS if c[0] not in ("libx264", "h264")),
)
AUDIO_CODEC = "aac"
AUDIO_BIT_RATE = 128_000
#: options that only make sense in constant-quality mode, dropped when a bit rate is asked for
_QUALITY_OPTIONS = ("crf", "qscale")


@functools.cache
def video_codec() -> tuple[str, dict[str, str]]:
    """The first of :data:`VIDEO_CODECS` this FFmpeg can open (tried once on a tiny frame)."""
    last: Exception | None = None
    for codec, options in VIDEO_CODECS:
        try:
            with av.open(io.BytesIO(), mode="w", format="mp4") as out:
                stream: Any = out.add_stream(codec, rate=30, options=options)
                stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
                frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
                out.mux(stream.encode(frame))
                out.mux(stream.encode(None))
            return codec, options
        except Exception as exc:  # missing from this build, or refused the options
            log.debug("video encoder %s unavailable: %s", codec, exc)
            last = exc
    raise RuntimeError(f"no MP4 encoder worked: {last}")


class Mp4Writer:
    """``with Mp4Writer(path, …) as w: w.write(image)`` per frame; the audio rides along.

    ``audio`` is mono float32 at ``sample_rate`` covering the clip from its first frame; sides must be
    even (4:2:0). ``bit_rate`` (video, bits/s) replaces constant quality by an average rate."""

    def __init__(self, path: Path, *, width: int, height: int, fps: float, audio: np.ndarray | None,
                 sample_rate: int, bit_rate: int | None = None) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"4:2:0 video needs even sides, got {width}×{height}")
        self.path = path
        self.width, self.height = width, height
        self.rate = Fraction(fps).limit_denominator(1001)
        self.codec, options = video_codec()
        self.bit_rate = bit_rate
        if bit_rate is not None:
            options = {k: v for k, v in options.items() if k not in _QUALITY_OPTIONS}
            options.update(maxrate=str(bit_rate), bufsize=str(2 * bit_rate))
        self._audio = None if audio is None else np.ascontiguousarray(audio, dtype=np.float32)
        self._sr = sample_rate
        self._sent = 0  # audio samples encoded so far
        self.frames = 0
        self._out: Any = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            video: Any = self._out.add_stream(self.codec, rate=self.rate, options=options)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            self._video: Any = video
            if bit_rate is not None:
                self._video.codec_context.bit_rate = bit_rate
            elif self.codec == "mpeg4":
                self._video.codec_context.bit_rate = max(400_000, width * height * 8)
            self._sound: Any = None
            if self._audio is not None:
                self._sound = self._out.add_stream(AUDIO_CODEC, rate=sample_rate, layout="mono")
                self._sound.bit_rate = AUDIO_BIT_RATE
        except BaseException:
            self._out.close()
            raise

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if et is None:
                self._finish()
        finally:
            self._out.close()

    def write(self, image: Image.Image, *, crop: tuple[int, int, int, int] | None = None) -> None:
        """Encode one frame, then the sound up to its end. The frame is ``image`` (RGB) cut to ``crop``
        (left, top, right, bottom) when given, scaled to the writer's size."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if crop is not None:
            rgb = rgb.crop(crop)
        frame = av.VideoFrame.from_image(rgb)
        if frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p",
                                   interpolation="BILINEAR")
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        self._out.mux(self._video.encode(frame))
        self.frames += 1
        self._send_audio(until=round(self.frames / self.rate * self._sr))

    def _send_audio(self, *, until: int) -> None:
        if self._audio is None:
            return
        until = min(until, self._audio.size)
        if until <= self._sent:
            return
        chunk = self._audio[self._sent:until][None, :]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate = self._sr
        frame.pts = self._sent
        frame.time_base = Fraction(1, self._sr)
        self._out.mux(self._sound.encode(frame))
        self._sent = until

    def _finish(self) -> None:
        self._out.mux(self._video.encode(None))
        if self._sound is not None:
            self._send_audio(until=round(self.frames / self.rate * self._sr))
            self._out.mux(self._sound.encode(None))

"""Frames and the song's samples → an MP4 file, one frame at a time, so memory stays flat however long.

H.264 (libx264, yuv420p, ``+faststart`` so it starts playing before it has all arrived) with AAC sound;
the same fallbacks as the loops' MP4 (:data:`~m2i_engine.imaging.animate.encode.MP4_CODECS`) where
FFmpeg lacks libx264, at a faster preset since a video has a minute of frames, not seconds. After each
video frame the audio up to that frame's end is encoded, so the muxer interleaves the two as they come.

Quality is x264's constant-rate factor by default; given a ``bit_rate`` (to fit a chat app's upload
limit) the encoder aims at that average instead, capped by a VBV buffer so the file can't overshoot
much. A frame may come with a crop box: FFmpeg's scaler then zooms it to the full size, which costs a
third of a Pillow resize at 720×1280.

Frames come as Pillow RGB images or, cheaper, as :class:`Yuv420` — the encoder's own planes, which a music
video's frames are composed in (:func:`~m2i_engine.imaging.video.video.compose`): half of RGB's bytes to
blend, and no colour conversion per frame, only the zoom.
"""

from __future__ import annotations

import functools
import io
import logging
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from m2i_engine.imaging.animate.encode import MP4_CODECS

log = logging.getLogger(__name__)

#: "superfast": at 720×1280 about 1.5× quicker than "veryfast" (which alone takes a frame's whole 33 ms on
#: two cores) for ~15 % more bytes on these flat-shaded pictures; crf 23 is x264's default. libx264 runs
#: it under a bit rate; at constant quality it runs :data:`CONSTANT_QUALITY_X264`
VIDEO_CODECS: tuple[tuple[str, dict[str, str]], ...] = (
    ("libx264", {"crf": "23", "preset": "superfast", "profile": "high"}),
    ("h264", {"crf": "23", "preset": "superfast"}),
    *(c for c in MP4_CODECS if c[0] not in ("libx264", "h264")),
)
#: libx264 at constant quality (no byte limit): "ultrafast" with the tools that pay on these pictures put
#: back (CABAC, B-frames, sub-pixel motion, adaptive quantisation, deblocking) — about a third less
#: encoder time than "superfast" for a slightly smaller file at the same quality (PSNR 52.4 against
#: 52.6 dB, worst frame 51.8 against 52.1, at 720×1280 on the benchmark's song); under a bit rate the
#: entry above stays, as its motion search is worth more when bits are scarce
CONSTANT_QUALITY_X264 = {
    "crf": "23",
    "preset": "ultrafast",
    "x264-params": "cabac=1:bframes=3:b-adapt=0:subme=1:aq-mode=1:deblock=0,0",
}
AUDIO_CODEC = "aac"
AUDIO_BIT_RATE = 128_000
#: options that only make sense in constant-quality mode, dropped when a bit rate is asked for
_QUALITY_OPTIONS = ("crf", "qscale")
#: scalers kept, one per crop size: setting one up costs as much as scaling a frame, and the camera's
#: crop sizes repeat with every beat's zoom kick
SCALERS = 48


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


@dataclass(frozen=True)
class Yuv420:
    """A picture in the encoder's format: 4:2:0 planes as FFmpeg converts RGB (BT.601, limited range),
    as 8-bit Pillow images — ``y`` the luma (W × H), ``uv`` the two chroma planes stacked, U above V
    (W/2 × H) — so blends and lookup tables cost half what they do in RGB."""

    y: Image.Image
    uv: Image.Image

    @classmethod
    def from_rgb(cls, image: Image.Image) -> Yuv420:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        w, h = rgb.size
        if w % 2 or h % 2:
            raise ValueError(f"4:2:0 planes need even sides, got {w}×{h}")
        flat = av.VideoFrame.from_image(rgb).reformat(format="yuv420p").to_ndarray().reshape(-1)
        return cls(
            Image.fromarray(flat[: w * h].reshape(h, w)), Image.fromarray(flat[w * h :].reshape(h, w // 2))
        )

    @property
    def size(self) -> tuple[int, int]:
        return self.y.size

    @staticmethod
    def blend(a: Yuv420, b: Yuv420, alpha: float) -> Yuv420:
        """``a`` → ``b`` by ``alpha``, as :func:`PIL.Image.blend` (colour conversion is linear)."""
        return Yuv420(Image.blend(a.y, b.y, alpha), Image.blend(a.uv, b.uv, alpha))

    def point(self, luma: list[int], chroma: list[int]) -> Yuv420:
        """Lookup tables applied to the luma and to the chroma planes."""
        return Yuv420(self.y.point(luma), self.uv.point(chroma))

    def video_frame(self, crop: tuple[int, int, int, int] | None = None) -> av.VideoFrame:
        """A yuv420p frame of the picture, or of ``crop`` (left, top, right, bottom) trimmed to even
        sides; the chroma is cut at the half-pixel below an odd corner."""
        w, h = self.size
        left, top, right, bottom = crop or (0, 0, w, h)
        bw, bh = (right - left) & ~1, (bottom - top) & ~1
        cl, ct, cw, ch = left // 2, top // 2, bw // 2, bh // 2
        parts = (
            self.y.crop((left, top, left + bw, top + bh)),
            self.uv.crop((cl, ct, cl + cw, ct + ch)),
            self.uv.crop((cl, h // 2 + ct, cl + cw, h // 2 + ct + ch)),
        )
        frame = av.VideoFrame(bw, bh, "yuv420p")
        for plane, part in zip(frame.planes, parts, strict=True):
            pw, ph = part.size
            np.frombuffer(plane, np.uint8).reshape(ph, plane.line_size)[:, :pw] = np.asarray(part)
        return frame


class Mp4Writer:
    """``with Mp4Writer(path, …) as w: w.write(image)`` per frame; the audio rides along.

    ``audio`` is mono float32 at ``sample_rate`` covering the clip from its first frame; sides must be
    even (4:2:0). ``bit_rate`` (video, bits/s) replaces constant quality by an average rate."""

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: float,
        audio: np.ndarray | None,
        sample_rate: int,
        bit_rate: int | None = None,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"4:2:0 video needs even sides, got {width}×{height}")
        self.path = path
        self.width, self.height = width, height
        self.rate = Fraction(fps).limit_denominator(1001)
        self.codec, options = video_codec()
        self.bit_rate = bit_rate
        if bit_rate is None and self.codec == "libx264":
            options = dict(CONSTANT_QUALITY_X264)
        if bit_rate is not None:
            options = {k: v for k, v in options.items() if k not in _QUALITY_OPTIONS}
            options.update(maxrate=str(bit_rate), bufsize=str(2 * bit_rate))
        self._audio = None if audio is None else np.ascontiguousarray(audio, dtype=np.float32)
        self._sr = sample_rate
        self._sent = 0  # audio samples encoded so far
        self.frames = 0
        self._scalers: OrderedDict[tuple[int, int, str], VideoReformatter] = OrderedDict()
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

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is None:
                self._finish()
        finally:
            self._out.close()

    def write(
        self, image: Image.Image | Yuv420 | av.VideoFrame, *, crop: tuple[int, int, int, int] | None = None
    ) -> None:
        """Encode one frame, then the sound up to its end. The frame is ``image`` (RGB, or planes) cut to
        ``crop`` (left, top, right, bottom) when given, scaled to the writer's size (:meth:`frame`), or
        a frame :meth:`frame` made already."""
        frame = image if isinstance(image, av.VideoFrame) else self.frame(image, crop=crop)
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        self._out.mux(self._video.encode(frame))
        self.frames += 1
        self._send_audio(until=round(self.frames / self.rate * self._sr))

    def frame(
        self, image: Image.Image | Yuv420, *, crop: tuple[int, int, int, int] | None = None
    ) -> av.VideoFrame:
        """``image`` (cut to ``crop``) as the encoder takes it: yuv420p at the writer's size. Safe to
        call on another thread than :meth:`write` (one at a time): it is most of a frame's work outside
        the encoder."""
        if isinstance(image, Yuv420):
            frame = image.video_frame(crop)
        else:
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            if crop is not None:
                rgb = rgb.crop(crop)
            frame = av.VideoFrame.from_image(rgb)
        if frame.width != self.width or frame.height != self.height:
            frame = self._scaler(frame).reformat(
                frame, width=self.width, height=self.height, format="yuv420p", interpolation="BILINEAR"
            )
        return frame

    def _scaler(self, frame: av.VideoFrame) -> VideoReformatter:
        key = (frame.width, frame.height, frame.format.name)
        scaler = self._scalers.pop(key, None) or VideoReformatter()
        self._scalers[key] = scaler
        while len(self._scalers) > SCALERS:
            self._scalers.popitem(last=False)
        return scaler

    def _send_audio(self, *, until: int) -> None:
        if self._audio is None:
            return
        until = min(until, self._audio.size)
        if until <= self._sent:
            return
        chunk = self._audio[self._sent : until][None, :]
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

"""Frames → files people can send: a looping GIF (Pillow) and an MP4 that browsers and chat apps play.

- GIF: one global adaptive palette from a sample of the frames (so colours don't flicker between
  frames), no dithering (the renderer's film grain already breaks up banding), and pixels whose
  colour on screen is still as good as a redraw written as transparent, which shrinks a loop ~2–4×.
  Frame durations are whole centiseconds (GIF's unit) spread so the loop's total length is exact; a
  GIF over its byte budget is scaled down (the MP4 keeps the full size).
- MP4: H.264 (libx264, yuv420p, even sides, ``+faststart`` so it streams) when PyAV's FFmpeg has it,
  else MPEG-4 part 2; no audio track, so chat apps treat it as a silent looping clip.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

#: palette entries for colours; the last index of 256 is kept for "unchanged" (transparent)
GIF_COLOURS = 255
TRANSPARENT = 255
#: frames sampled for the global palette
PALETTE_SAMPLES = 8
#: a GIF bigger than this is scaled down (chat apps cap uploads near 8–10 MB; the MP4 stays full size)
GIF_MAX_BYTES = 6_000_000
GIF_MIN_SIDE = 128
#: a pixel is redrawn only when its new palette colour beats the one on screen by more than this
#: (0..255, worst channel): on these loops that halves a GIF for about +0.3 mean error per channel,
#: while a slow fade still updates
GIF_TOLERANCE = 3
#: the encoders tried for MP4, best first: (codec, options)
MP4_CODECS: tuple[tuple[str, dict[str, str]], ...] = (
    # "fast": about 3× quicker than "medium" for ~7 % more bytes on these loops
    ("libx264", {"crf": "20", "preset": "fast", "profile": "high"}),
    ("h264", {"crf": "20", "preset": "fast"}),
    ("mpeg4", {"qscale": "3"}),
)


def frame_durations_ms(frames: int, length_s: float) -> list[int]:
    """Per-frame GIF durations in ms, each a whole number of centiseconds, adding up to the loop's
    length (to the centisecond): frame *k* lasts from ``round(k·L/N)`` to ``round((k+1)·L/N)`` cs."""
    edges = np.round(np.arange(frames + 1) * (length_s * 100.0 / frames)).astype(int)
    return [int(max(d, 2)) * 10 for d in np.diff(edges)]  # browsers slow frames under 20 ms down


def encode_gif(frames: Sequence[Image.Image], *, length_s: float, tolerance: int = GIF_TOLERANCE) -> bytes:
    """A GIF that loops forever: one global adaptive palette, and in every frame after the first only
    the pixels whose new palette colour is more than ``tolerance`` (0..255, worst channel) closer to
    the frame than the colour already shown; the rest are transparent and the previous frame shows
    through (so no pixel is ever more than ``tolerance`` worse than a full redraw would make it)."""
    if not frames:
        raise ValueError("no frames to encode")
    palette = _global_palette(frames)
    colours = list(palette.getpalette() or [])[: 3 * GIF_COLOURS]
    pal_bytes = colours + [0] * (3 * 256 - len(colours))  # index 255: "unchanged", never a colour
    lut = np.asarray(pal_bytes, dtype=np.int16).reshape(256, 3)
    images = []
    shown: np.ndarray | None = None  # palette indices on screen after the previous frame
    for frame in frames:
        rgb = frame.convert("RGB")
        idx = np.asarray(rgb.quantize(palette=palette, dither=Image.Dither.NONE))
        if shown is None:
            out = shown = idx
        else:  # redraw where the new colour is clearly closer to the truth than what is shown
            want = np.asarray(rgb, dtype=np.int16)
            stale = np.abs(want - lut[shown]).max(axis=2)
            fresh = np.abs(want - lut[idx]).max(axis=2)
            moved = stale > fresh + tolerance
            out = np.where(moved, idx, TRANSPARENT).astype(np.uint8)
            shown = np.where(moved, idx, shown)
        im = Image.fromarray(out, mode="P")
        im.putpalette(pal_bytes)
        images.append(im)
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        loop=0,
        duration=frame_durations_ms(len(frames), length_s),
        disposal=1,
        transparency=TRANSPARENT,
        optimize=False,
    )
    return buf.getvalue()


def encode_gif_within(
    frames: Sequence[Image.Image], *, length_s: float, max_bytes: int = GIF_MAX_BYTES
) -> tuple[bytes, tuple[int, int]]:
    """:func:`encode_gif`, scaled down (never below :data:`GIF_MIN_SIDE` px) until it fits in
    ``max_bytes``; returns the bytes and the GIF's size. A GIF's bytes grow with its area, so each retry
    scales by the square root of how far over the budget the last one was."""
    width, height = frames[0].size
    scale = 1.0
    while True:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        shown = frames if scale == 1.0 else [f.resize(size, Image.Resampling.LANCZOS) for f in frames]
        data = encode_gif(shown, length_s=length_s)
        smallest = min(size) <= GIF_MIN_SIDE
        if len(data) <= max_bytes or smallest:
            return data, size
        scale *= max(0.5, 0.92 * (max_bytes / len(data)) ** 0.5)
        scale = max(scale, GIF_MIN_SIDE / min(width, height))


def encode_mp4(frames: Sequence[Image.Image], *, fps: float) -> tuple[bytes, str]:
    """An MP4 of ``frames`` at exactly ``fps`` (a rational close to it); returns the bytes and the
    codec used. Odd sides are cropped by one pixel (4:2:0 needs even sides)."""
    if not frames:
        raise ValueError("no frames to encode")
    width, height = frames[0].size
    width, height = width - width % 2, height - height % 2
    rate = Fraction(fps).limit_denominator(1001)
    last: Exception | None = None
    for codec, options in MP4_CODECS:
        try:
            return _encode_with(codec, options, frames, width, height, rate), codec
        except Exception as exc:  # encoder missing from this FFmpeg build, or refused the options
            log.debug("MP4 encoder %s unavailable: %s", codec, exc)
            last = exc
    raise RuntimeError(f"no MP4 encoder worked: {last}")


def _encode_with(
    codec: str,
    options: dict[str, str],
    frames: Sequence[Image.Image],
    width: int,
    height: int,
    rate: Fraction,
) -> bytes:
    import av

    # +faststart (the index first, so a browser can start playing at once) rewrites the file in a
    # second pass that FFmpeg can only do on a real file, not on a Python buffer
    with tempfile.TemporaryDirectory(prefix="m2i-mp4-") as tmp:
        path = Path(tmp) / "loop.mp4"
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            _write_frames(out, codec, options, frames, width, height, rate)
        return path.read_bytes()


def _write_frames(
    container: Any,
    codec: str,
    options: dict[str, str],
    frames: Sequence[Image.Image],
    width: int,
    height: int,
    rate: Fraction,
) -> None:
    import av

    stream = container.add_stream(codec, rate=rate, options=options)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    if codec == "mpeg4":
        stream.codec_context.bit_rate = max(400_000, width * height * 8)
    for k, image in enumerate(frames):
        rgb = image.convert("RGB")
        if rgb.size != (width, height):
            rgb = rgb.crop((0, 0, width, height))
        frame = av.VideoFrame.from_image(rgb)
        frame.pts = k
        frame.time_base = 1 / rate
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _global_palette(frames: Sequence[Image.Image]) -> Image.Image:
    """One adaptive palette of :data:`GIF_COLOURS` colours for every frame, from a strip of evenly
    sampled frames at reduced size (median cut on what the loop actually shows)."""
    step = max(1, len(frames) // PALETTE_SAMPLES)
    picks = [f.convert("RGB") for f in frames[::step][:PALETTE_SAMPLES]]
    side = 160
    thumbs = [
        p.resize((side, max(1, round(side * p.height / p.width))), Image.Resampling.BILINEAR) for p in picks
    ]
    strip = Image.new("RGB", (side, sum(t.height for t in thumbs)))
    y = 0
    for t in thumbs:
        strip.paste(t, (0, y))
        y += t.height
    return strip.quantize(colors=GIF_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)

"""One call from a song to a music video file: clip → tags → scenes → frames streamed with the sound.

:meth:`~m2i_engine.engine.Engine.video` decodes the clip (:mod:`.clip`) and analyses it, then calls
:func:`render_video`: the drawing and encoding alone (an image request and samples in, MP4 on disk), which
the tests and the benchmark call too. Each frame is composed from the section's scene (:mod:`.scenes`, or
:mod:`.sd_scenes` with Stable Diffusion) at the instant's beat, step and hit (:mod:`.timeline`),
crossfaded into a new section's scene on its first beat, lifted in brightness on each beat (downbeats
most), then moved by the camera (a zoom kick on each beat and a drift that grows with the energy) — two
blends, a lookup table and a crop the encoder's scaler zooms, so a frame costs milliseconds, not a redraw.
All of it happens in the encoder's own 4:2:0 planes (:class:`~.writer.Yuv420`, the keyframes converted
once per scene): half of RGB's bytes per blend, and no colour conversion per frame.

Given ``max_bytes``, a file over it is encoded again at the average bit rate that fits (the frames are a
pure function of the song, so the second pass draws the same video); when even that rate would be too low
to show a picture, or the second file still doesn't fit,
:class:`~m2i_engine.errors.VideoTooLargeError` says so.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from m2i_engine.config import AudioLimits
from m2i_engine.errors import VideoTooLargeError
from m2i_engine.imaging.base import ImageBackend, ImageRequest
from m2i_engine.imaging.renderer import look_from_tags
from m2i_engine.imaging.video.scenes import SceneCache
from m2i_engine.imaging.video.timeline import Instant, Timeline
from m2i_engine.imaging.video.writer import AUDIO_BIT_RATE, AUDIO_CODEC, Mp4Writer, Yuv420
from m2i_engine.prompt import build_prompt
from m2i_engine.tags import SongSection, Tags

#: frames composed ahead of the encoder
FRAMES_AHEAD = 3
#: a crop box: left, top, right, bottom
Box = tuple[int, int, int, int]
#: brightness lift of a full-height beat (gain and offset of the lookup table)
FLASH_GAIN, FLASH_OFFSET = 0.06, 6.0
#: how much of the flash a downbeat adds on top of its beat's (its hit is already the full height, an
#: off-beat's two thirds): more, and the bar's period outweighs the beat's in the picture's rhythm
DOWNBEAT_FLASH = 0.15
#: the lowest video bit rate a byte limit may push the encoder down to, in bits per pixel of each frame,
#: before the picture turns to blocks (≈ 220 kbit/s at 720×1280, 30 fps; the renderer's flat shading
#: needs about 0.03 at x264's default quality)
MIN_BITS_PER_PIXEL = 0.008
#: a fitted file aims this far under the limit (the container and the rate control's slack)
FIT_MARGIN = 0.92
#: encodes at a fitted bit rate before giving up (each one draws the video again)
FIT_PASSES = 2


@dataclass
class Video:
    """A finished video file and how it was made."""

    path: Path
    tags: Tags
    width: int
    height: int
    fps: float
    frames: int
    length_s: float
    #: where the clip starts in the song
    start_s: float
    #: the video encoder ("libx264" normally) and the sound's ("aac"; None for a silent video)
    codec: str
    audio_codec: str | None
    #: "renderer" or "sd"
    backend: str
    style: str
    motif: str
    seed: int
    sections: list[SongSection]
    #: scenes drawn (one per section label; a label seen again reuses its scene)
    scenes: int
    #: the file's size in bytes, and the average video bit rate it was held to (None: constant quality)
    size_bytes: int = 0
    bit_rate: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def read_bytes(self) -> bytes:
        """The MP4 file's bytes, for front ends that send it rather than point at it."""
        return self.path.read_bytes()

    def to_dict(self) -> dict[str, object]:
        """How the video was made, for JSON (the CLI's, the HTTP API's) and logs: everything but the
        file's path and the tags, which each front end gives its own way (a path, a URL; the result's
        tags)."""
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": self.frames,
            "length_s": round(self.length_s, 3),
            "start_s": round(self.start_s, 3),
            "codec": self.codec,
            "audio_codec": self.audio_codec,
            "backend": self.backend,
            "style": self.style,
            "motif": self.motif,
            "seed": self.seed,
            "scenes": self.scenes,
            "sections": [s.model_dump(mode="json") for s in self.sections],
            "bytes": self.size_bytes,
            "bit_rate": self.bit_rate,
            "notes": list(self.notes),
            "timings_ms": dict(self.timings_ms),
        }


def clip_limits(limits: AudioLimits) -> AudioLimits:
    """``limits`` for analysing a decoded clip: all of it, never a window of it (the picture's beat and
    section times must be the clip's own)."""
    from m2i_engine.options import MAX_VIDEO_S

    return limits.model_copy(update={"analysis_s": max(limits.analysis_s, MAX_VIDEO_S + 1.0)})


def render_video(
    request: ImageRequest | Tags,
    *,
    audio: np.ndarray | None,
    sample_rate: int,
    out: Path,
    fps: int = 30,
    width: int | None = None,
    height: int | None = None,
    backend: ImageBackend | None = None,
    length_s: float | None = None,
    max_bytes: int | None = None,
) -> Video:
    """Draw and encode the video of ``request`` (its tags' times from 0 = the clip's start; its size,
    style and seed) with ``audio`` as its sound (mono float32 at ``sample_rate``; ``None`` for a silent
    video) into ``out``. Bare tags stand for the request :func:`build_prompt` makes of them at
    ``width`` × ``height`` with seed 0.

    ``backend``: None or the renderer draw the scenes on the CPU; the Stable Diffusion backend (or its
    batcher) paints them (:mod:`.sd_scenes`). ``length_s`` defaults to the audio's length, else the tags'
    analysed length. Frames are composed and encoded one at a time; only the scenes' keyframes are kept.
    ``max_bytes``: see the module's docstring.
    """
    if isinstance(request, Tags):
        if width is None or height is None:
            raise ValueError("render_video(tags, …) needs width and height")
        request = ImageRequest(tags=request, prompt=build_prompt(request), width=width, height=height, seed=0)
    if length_s is None:
        length_s = audio.size / sample_rate if audio is not None else request.tags.audio.analysed_s
    t0 = time.perf_counter()
    render = functools.partial(
        _render_once,
        request,
        audio=audio,
        sample_rate=sample_rate,
        out=out,
        fps=fps,
        backend=backend,
        length_s=length_s,
    )
    video = render(bit_rate=None)
    if max_bytes is None or video.size_bytes <= max_bytes:
        return video
    rate = fit_bit_rate(max_bytes, length_s=video.length_s, audio=audio is not None)
    floor = min_bit_rate(video.width, video.height, video.fps)
    first = video.size_bytes
    for _attempt in range(FIT_PASSES):
        if rate < floor:
            out.unlink(missing_ok=True)  # no file over the limit is left behind
            raise _too_large(video, max_bytes, need=_bytes_at(floor, video.length_s, audio is not None))
        video = render(bit_rate=rate)
        if video.size_bytes <= max_bytes:
            video.notes.append(
                f"Encoded at {rate / 1000:.0f} kbit/s to fit {max_bytes / 1e6:.1f} MB "
                f"(at full quality it was {first / 1e6:.1f} MB)."
            )
            video.timings_ms["total_ms"] = _ms(time.perf_counter() - t0)
            return video
        # the rate control overshot (short clips, busy pictures): aim lower by as much as it missed
        rate = int(rate * max_bytes / video.size_bytes * FIT_MARGIN)
    out.unlink(missing_ok=True)
    raise _too_large(video, max_bytes, need=video.size_bytes)


def fit_bit_rate(max_bytes: int, *, length_s: float, audio: bool = True) -> int:
    """The average video bit rate (bits/s) whose file, with the sound, lands under ``max_bytes``."""
    total = FIT_MARGIN * max_bytes * 8 / max(length_s, 1e-3)
    return int(total - (AUDIO_BIT_RATE if audio else 0))


def min_bit_rate(width: int, height: int, fps: float) -> int:
    """The lowest video bit rate worth sending at this size and frame rate (:data:`MIN_BITS_PER_PIXEL`)."""
    return int(MIN_BITS_PER_PIXEL * width * height * fps)


def _bytes_at(video_rate: int, length_s: float, audio: bool) -> int:
    """About how big a file at this average video rate gets (the inverse of :func:`fit_bit_rate`)."""
    return int((video_rate + (AUDIO_BIT_RATE if audio else 0)) * length_s / 8 / FIT_MARGIN)


def _too_large(video: Video, max_bytes: int, *, need: int) -> VideoTooLargeError:
    return VideoTooLargeError(
        f"A {video.length_s:.0f}-s video at {video.width}×{video.height} can't fit in "
        f"{max_bytes / 1e6:.2f} MB: even at the lowest bit rate worth watching it needs about "
        f"{need / 1e6:.2f} MB. Ask for a shorter --length or a smaller --size."
    )


def _render_once(
    request: ImageRequest,
    *,
    audio: np.ndarray | None,
    sample_rate: int,
    out: Path,
    fps: int,
    backend: ImageBackend | None,
    length_s: float,
    bit_rate: int | None,
) -> Video:
    tags = request.tags
    concrete = request.prompt.concrete_style(tags)
    timeline = Timeline.from_tags(tags, length_s=length_s, fps=fps)
    width, height = request.width, request.height
    if backend is not None and backend.name == "sd":
        from m2i_engine.errors import BackendUnavailableError
        from m2i_engine.imaging.animate.diffusion import sd_backend_of
        from m2i_engine.imaging.video.sd_scenes import sd_scene_drawer

        sd = sd_backend_of(backend)
        if sd is None:
            raise BackendUnavailableError("This Stable Diffusion backend can't make videos.")
        scenes = SceneCache(sd_scene_drawer(sd, request, beats_per_bar=timeline.beats_per_bar))
        name = "sd"
    else:
        scenes = SceneCache.renderer(
            tags,
            beats_per_bar=timeline.beats_per_bar,
            style=concrete,
            width=width,
            height=height,
            seed=request.seed,
        )
        name = "renderer"
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    # frames are composed, cropped and zoomed on a second thread a few ahead of the encoder (Pillow,
    # FFmpeg's scaler and x264 all let go of the GIL), so two cores work at once; the queue is short, so
    # memory stays flat
    with (
        Mp4Writer(
            out, width=width, height=height, fps=fps, audio=audio, sample_rate=sample_rate, bit_rate=bit_rate
        ) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="m2i-frames") as pool,
    ):
        ahead: deque[Future[av.VideoFrame]] = deque()
        for k in range(timeline.frames):
            ahead.append(pool.submit(_frame, timeline, scenes, writer, k / fps))
            if len(ahead) > FRAMES_AHEAD:
                writer.write(ahead.popleft().result())
        while ahead:
            writer.write(ahead.popleft().result())
        frames, codec = writer.frames, writer.codec
    total = time.perf_counter() - t0
    draw_s = scenes.draw_s
    return Video(
        path=out,
        tags=tags,
        width=width,
        height=height,
        fps=float(fps),
        frames=frames,
        length_s=frames / fps,
        start_s=0.0,
        codec=codec,
        audio_codec=AUDIO_CODEC if audio is not None else None,
        backend=name,
        style=concrete.value,
        motif=look_from_tags(tags).motif.value,
        seed=request.seed,
        sections=list(timeline.sections),
        scenes=scenes.drawn,
        size_bytes=out.stat().st_size,
        bit_rate=bit_rate,
        timings_ms={"scenes_ms": _ms(draw_s), "frames_ms": _ms(total - draw_s)},
    )


def _frame(timeline: Timeline, scenes: SceneCache, writer: Mp4Writer, t_s: float) -> av.VideoFrame:
    image, box = compose(timeline, scenes, timeline.at(t_s))
    return writer.frame(image, crop=box)


def compose(timeline: Timeline, scenes: SceneCache, now: Instant) -> tuple[Yuv420, Box]:
    """The frame at ``now`` in the encoder's planes: the section's scene (crossfaded from the last one's
    after a cut) lifted by the beat's flash, and the camera's crop box (which the writer zooms back to
    the full size)."""

    def scene_frame(index: int) -> Yuv420:
        return scenes.get(timeline.sections[index]).frame_planes(now.position, now.step, now.hit)

    image = scene_frame(now.section)
    if now.previous is not None and now.fade_in < 0.99:
        image = Yuv420.blend(scene_frame(now.previous), image, now.fade_in)
    level = min(1.0, (1.0 - DOWNBEAT_FLASH) * now.hit + DOWNBEAT_FLASH * now.downbeat)
    if level > 0.02:
        image = image.point(*_flash_luts(round(level * 32)))
    return image, camera_box(image.size, zoom=now.zoom, pan_x=now.pan_x, pan_y=now.pan_y)


def camera_box(size: tuple[int, int], *, zoom: float, pan_x: float, pan_y: float) -> Box:
    """The crop a zoom of ``zoom`` (≥ 1) about the centre moved by the pan (fractions of the short side)
    shows, in whole pixels and kept inside the picture so no edge shows."""
    w, h = size
    unit = min(w, h)
    bw, bh = min(w, round(w / zoom)), min(h, round(h / zoom))
    left = int(np.clip(round(w / 2 + pan_x * unit - bw / 2), 0, w - bw))
    top = int(np.clip(round(h / 2 + pan_y * unit - bh / 2), 0, h - bh))
    return left, top, left + bw, top + bh


@functools.cache
def _flash_luts(level: int) -> tuple[list[int], list[int]]:
    """A brightness lift for a beat of height ``level / 32`` — each RGB channel times ``1 + gain`` plus
    an offset, then clipped at 255, as the RGB frames were — as it acts on limited-range luma (16..235)
    and chroma (centred on 128).

    The lift is linear, so on the planes it is exactly the unclipped RGB lift; the clip at 255 is left
    to the conversion back to RGB (every decoder clamps each channel), which clips just the channels
    RGB clipped. So luma may rise past white (235, up to 253 at a full flash; 8-bit headroom the
    encoder keeps): stopping it at 235 while the chroma still grew made bright tints over-saturated
    (cream 255,255,200 flashed to 255,255,204 instead of RGB's 255,255,218), and a chroma table cannot
    see the luma to make up for it. Only where 4:2:0 chroma spans a clipped edge do the two differ."""
    a = level / 32.0
    gain = 1.0 + FLASH_GAIN * a
    v = np.arange(256, dtype=float)
    luma = 16.0 + (v - 16.0) * gain + FLASH_OFFSET * a * 219.0 / 255.0
    chroma = 128.0 + (v - 128.0) * gain
    return (
        np.clip(np.round(luma), 0, 255).astype(int).tolist(),
        np.clip(np.round(chroma), 0, 255).astype(int).tolist(),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)

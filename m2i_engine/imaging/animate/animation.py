"""One call from a song's image request to a finished loop: section → clock → frames → GIF and MP4.

:func:`animate` is blocking and pure (the same request and options give the same bytes); the engine
runs it on its worker pool. It picks the renderer path or, given the Stable Diffusion backend, the
keyframe-interpolation path, and returns an :class:`Animation` with the frames, both files, the
section of the song the loop comes from and where the time went.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PIL import Image

from m2i_engine.errors import BackendUnavailableError
from m2i_engine.imaging.animate.clock import LoopClock
from m2i_engine.imaging.animate.encode import encode_gif_within, encode_mp4
from m2i_engine.imaging.animate.frames import MOVES, render_frames
from m2i_engine.imaging.animate.section import Section, choose_section
from m2i_engine.imaging.base import ImageBackend, ImageRequest
from m2i_engine.imaging.renderer import look_from_tags
from m2i_engine.options import AnimateOptions


@dataclass
class Animation:
    """A finished loop: its frames, its files and how it was made."""

    frames: list[Image.Image]
    gif: bytes
    mp4: bytes
    #: the encoder the MP4 got: "libx264" (H.264) normally, "mpeg4" where FFmpeg lacks H.264
    mp4_codec: str
    #: frames per second, exactly: ``len(frames) / length_s``
    fps: float
    length_s: float
    section: Section
    backend: str
    seed: int
    #: the GIF's size; smaller than the frames when the full size would pass the byte budget
    gif_size: tuple[int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size

    def to_dict(self) -> dict[str, object]:
        """Everything but the pixels and bytes, for JSON output and logs."""
        return {
            "backend": self.backend,
            "seed": self.seed,
            "frames": len(self.frames),
            "fps": round(self.fps, 4),
            "length_s": round(self.length_s, 3),
            "width": self.size[0],
            "height": self.size[1],
            "gif_bytes": len(self.gif),
            "gif_size": list(self.gif_size),
            "mp4_bytes": len(self.mp4),
            "mp4_codec": self.mp4_codec,
            "section": self.section.to_dict(),
            "timings_ms": self.timings_ms,
            **self.meta,
        }


def animate(
    request: ImageRequest, options: AnimateOptions | None = None, *, backend: ImageBackend | None = None
) -> Animation:
    """A beat-synced loop of ``request``'s song at ``request``'s size, style and seed.

    Parameters
    ----------
    request
        The song's tags and prompt, the frame size and the seed, as for a still (``num_images`` is
        ignored). With the renderer, frame 0 is the still of the same request.
    options
        Frame rate, bars, which section of the song.
    backend
        None or the built-in renderer: frames are drawn by the renderer; the Stable Diffusion backend
        (or its batcher): keyframes per bar, in-betweens by interpolation.

    Returns
    -------
    Animation
        Frames, GIF and MP4 bytes, the section and timings.
    """
    options = options or AnimateOptions()
    tags = request.tags
    section = choose_section(tags, bars=options.loop_bars, mode=options.section)
    look = look_from_tags(tags)
    clock = LoopClock.for_section(section, fps=options.fps, window_beats=look.rhythm.count)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if backend is not None and backend.name == "sd":
        from m2i_engine.imaging.animate.diffusion import sd_backend_of, sd_frames

        sd = sd_backend_of(backend)
        if sd is None:
            raise BackendUnavailableError("This Stable Diffusion backend can't make animations.")
        frames, meta = sd_frames(sd, request, clock)
        name = "sd"
    else:
        style = request.prompt.concrete_style(tags)
        frames = render_frames(
            tags, clock, style=style, width=request.width, height=request.height, seed=request.seed
        )
        meta = {"motif": look.motif.value, "style": style.value, "moves": MOVES[look.motif]}
        name = "renderer"
    t1 = time.perf_counter()
    gif, gif_size = encode_gif_within(frames, length_s=clock.length_s)
    t2 = time.perf_counter()
    mp4, codec = encode_mp4(frames, fps=clock.fps)
    t3 = time.perf_counter()
    timings.update(frames_ms=_ms(t1 - t0), gif_ms=_ms(t2 - t1), mp4_ms=_ms(t3 - t2))
    meta["beat_frames"] = clock.beat_frames()
    return Animation(
        frames=frames,
        gif=gif,
        mp4=mp4,
        mp4_codec=codec,
        fps=clock.fps,
        length_s=clock.length_s,
        section=section,
        backend=name,
        seed=request.seed,
        gif_size=gif_size,
        timings_ms=timings,
        meta=meta,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)

"""What a test needs to know of an MP4 a front end sent: decoded with PyAV, as a player would read it."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av


@dataclass(frozen=True)
class Mp4Info:
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    #: the longer of the two streams, in seconds
    duration_s: float
    frames: int


def probe_mp4(data: bytes) -> Mp4Info:
    """Decode every frame of ``data`` (so a broken file fails here) and report its streams."""
    with av.open(io.BytesIO(data)) as container:  # sniffed, as a player does
        assert "mp4" in container.format.name.split(","), container.format.name
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for _ in container.decode(video=0))
        ends = [float(s.duration * s.time_base) for s in (video, audio) if s is not None and s.duration]
        return Mp4Info(
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
            width=video.codec_context.width,
            height=video.codec_context.height,
            duration_s=max(ends, default=0.0),
            frames=frames,
        )

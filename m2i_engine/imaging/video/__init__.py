"""Music videos: a song's picture moving with its beats, energy and sections, with its own sound.

``m2i visualize SONG --video`` and :meth:`~m2i_engine.engine.Engine.video` end here. A video is a clip of
the song (its most representative part, or ``--start``/``--length``, at most 60 s) as an MP4 — H.264 +
AAC, 9:16 720×1280 at 30 fps by default. Modules, in the order a video is made:

- :mod:`.clip` — which part of the song, decoded at 44.1 kHz for the sound;
- :mod:`.timeline` — clip time → beat, place in the bar, hit, flow step, energy, camera, section
  (the loops' beat envelope and constants, without the wrap-round);
- :mod:`.scenes` — one scene of renderer keyframes per section label (rest and hit poses per beat of
  the bar), drawn once and blended per frame; :mod:`.sd_scenes` — the same scenes painted by Stable
  Diffusion (a keyframe per label, its poses by latent interpolation);
- :mod:`.writer` — frames and samples streamed into the MP4, one frame at a time, at constant quality
  or at a bit rate that fits a byte limit; :class:`Yuv420`, the encoder's planes frames are composed in;
- :mod:`.video` — :func:`render_video` (request + samples → file) and the :class:`Video` it returns.
"""

from m2i_engine.errors import VideoTooLargeError
from m2i_engine.imaging.video.clip import AUDIO_SR, Clip, load_clip
from m2i_engine.imaging.video.scenes import Scene, SceneCache, draw_scene
from m2i_engine.imaging.video.timeline import Instant, Timeline
from m2i_engine.imaging.video.video import (
    Video,
    clip_limits,
    compose,
    fit_bit_rate,
    render_video,
)
from m2i_engine.imaging.video.writer import Mp4Writer, Yuv420, video_codec

__all__ = [
    "AUDIO_SR",
    "Clip",
    "Instant",
    "Mp4Writer",
    "Scene",
    "SceneCache",
    "Timeline",
    "Video",
    "VideoTooLargeError",
    "Yuv420",
    "clip_limits",
    "compose",
    "draw_scene",
    "fit_bit_rate",
    "load_clip",
    "render_video",
    "video_codec",
]

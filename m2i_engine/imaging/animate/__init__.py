"""Beat-synced animation: a short loop of a song's picture whose motion follows its beats and energy.

``m2i visualize SONG --animate`` and :meth:`~m2i_engine.engine.Engine.animate` end here. A loop is a
whole number of bars taken from one section of the song; each beat makes the shapes linked to it pulse
(downbeats more), the section's energy sets how much everything moves, and the tempo how fast. Modules,
in the order a loop is made:

- :mod:`.section` — which bars (the most energetic, the typical ones or the first), their beats and
  energy, in the loop's time;
- :mod:`.clock` — time → :class:`~m2i_engine.imaging.renderer.motion.Motion` (beat envelopes, energy,
  flow, camera), and the frame grid that closes the loop;
- :mod:`.frames` — the renderer path: the still drawn again at each instant, its motifs moving;
- :mod:`.diffusion` — the Stable Diffusion path: keyframes per bar, slerped noise and lerped prompt
  embeddings in between (imported only when that backend is used);
- :mod:`.encode` — GIF (global palette, only changed pixels) and MP4 (H.264, else MPEG-4 part 2);
- :mod:`.animation` — :func:`animate`, the one call, and its result :class:`Animation`.
"""

from m2i_engine.imaging.animate.animation import Animation, animate
from m2i_engine.imaging.animate.clock import LoopClock
from m2i_engine.imaging.animate.encode import encode_gif, encode_mp4
from m2i_engine.imaging.animate.frames import MOVES, render_frames
from m2i_engine.imaging.animate.section import Section, choose_section, loop_bars_for

__all__ = [
    "MOVES",
    "Animation",
    "LoopClock",
    "Section",
    "animate",
    "choose_section",
    "encode_gif",
    "encode_mp4",
    "loop_bars_for",
    "render_frames",
]

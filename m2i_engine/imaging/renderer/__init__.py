"""The built-in renderer: the default image backend when no Stable Diffusion model or GPU exists.

It draws each song as generative artwork from its tags alone. Modules, in the order a picture is
made:

- :mod:`.look` — tags → drawing parameters (every music-to-picture mapping lives here);
- :mod:`.palette` — key, mood and genre → colours;
- :mod:`.treatment` — what each style preset does to the drawing;
- :mod:`.composition` — ground, light, framing per style, particles;
- :mod:`.motifs` — one shape family per genre (ribbons, shards, circles, pulses, …);
- :mod:`.ink`, :mod:`.geometry`, :mod:`.scene` — drawing surfaces, paths, what a motif draws with;
- :mod:`.texture` — flattening, paper, glow, vignette, grading, grain;
- :mod:`.motion` — :class:`Motion`, one instant of an animation as the motifs read it (``STILL``
  for a picture);
- :mod:`.backend` — :class:`Renderer`, :func:`render`; :func:`encode_png` is re-exported from
  :mod:`m2i_engine.imaging.png`, the one PNG encoder.
"""

from m2i_engine.imaging.png import encode_png
from m2i_engine.imaging.renderer.backend import Renderer, render
from m2i_engine.imaging.renderer.look import Look, Motif, look_from_tags
from m2i_engine.imaging.renderer.motion import STILL, Motion

__all__ = ["STILL", "Look", "Motif", "Motion", "Renderer", "encode_png", "look_from_tags", "render"]

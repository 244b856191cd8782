"""The motif families: one module per family, each a ``draw(scene)`` that fills the scene's frame.

Each module's docstring says which musical traits move which shapes. :data:`MOTIF_PAINTERS` maps a
:class:`~m2i_engine.imaging.renderer.look.Motif` to its painter.
"""

from __future__ import annotations

from collections.abc import Callable

from m2i_engine.imaging.renderer.look import Motif
from m2i_engine.imaging.renderer.motifs import (
    bands,
    blocks,
    bubbles,
    circles,
    landscape,
    pulses,
    ribbons,
    shards,
    smoke,
    waves,
)
from m2i_engine.imaging.renderer.scene import Scene

MotifPainter = Callable[[Scene], None]

MOTIF_PAINTERS: dict[Motif, MotifPainter] = {
    Motif.ribbons: ribbons.draw,
    Motif.shards: shards.draw,
    Motif.circles: circles.draw,
    Motif.pulses: pulses.draw,
    Motif.blocks: blocks.draw,
    Motif.waves: waves.draw,
    Motif.landscape: landscape.draw,
    Motif.smoke: smoke.draw,
    Motif.bubbles: bubbles.draw,
    Motif.bands: bands.draw,
}

"""How each style preset treats the same music: inking, density, framing, light and texture.

A style never changes *what* is drawn — the music decides that — only how: neon inks glowing
outlines on a dark ground, watercolor lays soft pigment washes on paper, minimal keeps a few
shapes in a small part of the frame, and so on. The table is data so a new style is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from m2i_engine.options import Style

InkMode = Literal["flat", "neon", "wash"]
Framing = Literal["full", "focal", "sparse"]


@dataclass(frozen=True)
class Treatment:
    ink: InkMode
    framing: Framing  # full bleed, a bold centred focal shape, or a small area in empty space
    density: float  # multiplier on how many shapes the motif draws
    shade: float  # 0..1 gradient shading inside filled shapes (depth)
    glow: float  # base strength of the glow layer (neon), added to the music's own bloom
    grain: float  # film grain amplitude, 0..1
    vignette: float  # 0..1 darkening toward the corners
    paper: float  # 0..1 paper texture and pigment granulation
    beams: bool  # wide volumetric light across the frame
    grade: float  # 0..1 cinematic split toning (cool shadows, warm highlights)


TREATMENTS: dict[Style, Treatment] = {
    Style.cover: Treatment("flat", "focal", 1.0, 0.25, 0.45, 0.25, 0.25, 0.0, False, 0.0),
    Style.abstract: Treatment("flat", "full", 1.25, 0.15, 0.4, 0.3, 0.1, 0.15, False, 0.0),
    Style.neon: Treatment("neon", "full", 0.85, 0.0, 0.85, 0.2, 0.35, 0.0, False, 0.0),
    Style.watercolor: Treatment("wash", "full", 0.8, 0.0, 0.2, 0.15, 0.0, 1.0, False, 0.0),
    Style.minimal: Treatment("flat", "sparse", 0.35, 0.0, 0.25, 0.15, 0.0, 0.0, False, 0.0),
    Style.cinematic: Treatment("flat", "full", 0.9, 0.45, 0.5, 0.8, 0.6, 0.0, True, 0.7),
}


def treatment_for(style: Style) -> Treatment:
    """The treatment of a concrete style (resolve ``auto`` first)."""
    return TREATMENTS[style]

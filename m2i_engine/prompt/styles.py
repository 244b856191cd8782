"""Style presets: what each named look adds to a prompt, and which look ``auto`` picks for a song.

A preset is data, not code, so the renderer, the Stable Diffusion backend (which may load a LoRA a
preset names) and the bots' option lists all read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from m2i_engine.options import Style
from m2i_engine.tags import Tags


@dataclass(frozen=True)
class StylePreset:
    style: Style
    description: str
    #: phrases placed first in the prompt: the medium and framing
    lead: str
    #: phrases placed last: finish and quality words
    finish: str
    negative: str
    #: optional LoRA adapter (folder or hub id) the SD backend loads for this preset
    lora: str | None = None


BASE_NEGATIVE = "text, letters, watermark, signature, logo, frame, lowres, blurry, jpeg artifacts"

PRESETS: dict[Style, StylePreset] = {
    p.style: p
    for p in (
        StylePreset(
            Style.cover,
            "Bold album-cover composition with one strong focal shape.",
            "album cover art, bold centered composition",
            "striking, high detail",
            "busy background, cluttered",
        ),
        StylePreset(
            Style.abstract,
            "Non-figurative shapes and colour fields.",
            "abstract painting, non-figurative",
            "layered shapes, expressive",
            "people, faces, realistic photo",
        ),
        StylePreset(
            Style.neon,
            "Glowing lines on a dark background.",
            "neon light art on a dark background",
            "glowing lines, synthwave, high contrast",
            "daylight, washed out, pastel",
        ),
        StylePreset(
            Style.watercolor,
            "Soft washes and bleeding edges on paper.",
            "watercolor painting on textured paper",
            "soft washes, bleeding edges, delicate",
            "hard edges, 3d render, neon",
        ),
        StylePreset(
            Style.minimal,
            "Few shapes, much negative space.",
            "minimalist poster, few simple shapes",
            "generous negative space, clean, flat color",
            "clutter, texture, many details",
        ),
        StylePreset(
            Style.cinematic,
            "Wide light, deep gradients and film grain.",
            "cinematic wide shot, dramatic lighting",
            "volumetric light, film grain, anamorphic",
            "flat lighting, cartoon",
        ),
    )
}

# Which look suits a genre when the user leaves the style on auto.
_AUTO_BY_GENRE: dict[str, Style] = {
    "classical": Style.watercolor,
    "jazz": Style.abstract,
    "blues": Style.cinematic,
    "country": Style.cinematic,
    "disco": Style.neon,
    "electronic": Style.neon,
    "hiphop": Style.cover,
    "metal": Style.cover,
    "pop": Style.minimal,
    "reggae": Style.abstract,
    "rock": Style.cover,
}
#: backbone style words that pick a look when no genre is sure (first match among the song's styles)
_AUTO_BY_STYLE: dict[str, Style] = {
    "house": Style.neon,
    "electro": Style.neon,
    "dance": Style.neon,
    "electronic": Style.neon,
    "electronica": Style.neon,
    "party": Style.neon,
    "ambient": Style.watercolor,
    "chillout": Style.watercolor,
    "chill": Style.watercolor,
    "mellow": Style.watercolor,
    "acoustic": Style.watercolor,
    "folk": Style.watercolor,
    "punk": Style.cover,
    "hard rock": Style.cover,
    "heavy metal": Style.cover,
    "funk": Style.abstract,
    "soul": Style.abstract,
    "rnb": Style.abstract,
    "experimental": Style.abstract,
}


def resolve_style(style: Style, tags: Tags) -> Style:
    """Turn ``auto`` into a concrete style from a sure genre, else the song's styles, else its energy."""
    if style is not Style.auto:
        return style
    top = tags.genre.confident_top
    if top is not None and top.label in _AUTO_BY_GENRE:
        return _AUTO_BY_GENRE[top.label]
    for st in tags.styles:
        if st.label in _AUTO_BY_STYLE:
            return _AUTO_BY_STYLE[st.label]
    energy = tags.loudness.energy
    if energy >= 0.66:
        return Style.neon
    if energy <= 0.33:
        return Style.watercolor
    return Style.cover


def preset(style: Style) -> StylePreset:
    """The preset for a concrete style (``auto`` must be resolved first)."""
    if style is Style.auto:
        raise ValueError("resolve 'auto' with resolve_style() first")
    return PRESETS[style]

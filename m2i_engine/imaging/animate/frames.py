"""The renderer path: the still picture drawn again at every instant of the loop, its shapes moving.

Each frame is :func:`~m2i_engine.imaging.renderer.render` with the same tags, style and seed as the still
plus that instant's :class:`~m2i_engine.imaging.renderer.motion.Motion`, so every frame has the still's
composition, and motion lives inside the motifs (a ring swells, a wave rolls) rather than on top of
the finished picture. :data:`MOVES` says, per motif, what each musical trait moves.
"""

from __future__ import annotations

from PIL import Image

from m2i_engine.imaging.animate.clock import LoopClock
from m2i_engine.imaging.renderer import Motif, render
from m2i_engine.options import Style
from m2i_engine.tags import Tags

#: what moves with the beats, the energy and the tempo, per motif (every motif also gets the camera:
#: a zoom kick on each beat and a drift whose size follows the energy, and glow flares on beats)
MOVES: dict[Motif, dict[str, str]] = {
    Motif.pulses: {
        "beats": "rings swell, the beat's own ring thickens; sun, mountains and lights jump",
        "energy": "ripple depth, swell size",
        "tempo": "sun stripes roll one per beat; "
        "floor lines scroll; ripple and mirror-ball lights turn per bar",
    },
    Motif.circles: {
        "beats": "each circle swells on its bar's downbeat; the beat's note grows",
        "energy": "circle drift, brush weight",
        "tempo": "circles drift per bar",
    },
    Motif.ribbons: {
        "beats": "ribbons swell; downbeat arcs flash",
        "energy": "flow and swell",
        "tempo": "the silk flows and turns over in step with the bars",
    },
    Motif.blocks: {
        "beats": "the beat's slab jumps out of the tower; the halftone sun pulses",
        "energy": "how far slabs jump and sway",
        "tempo": "backdrop blocks sway per bar",
    },
    Motif.waves: {
        "beats": "crests rise; the sun pulses",
        "energy": "wave height",
        "tempo": "the waves roll one crest per beat",
    },
    Motif.landscape: {
        "beats": "the beat's fence post jumps; near hills heave; the sun flares",
        "energy": "furrow strength, hill heave",
        "tempo": "the sun bobs per bar",
    },
    Motif.smoke: {
        "beats": "the beat's plume brightens; the lamp flickers on downbeats",
        "energy": "sway and spread",
        "tempo": "smoke rises and sways per bar",
    },
    Motif.bubbles: {
        "beats": "the beat's bubble hops and swells; bokeh lights pulse",
        "energy": "floating bubbles drift",
        "tempo": "drift per bar",
    },
    Motif.shards: {
        "beats": "shards burst outward; the beat's crack flashes; impact glows",
        "energy": "burst distance",
        "tempo": "cracks flash in beat order",
    },
    Motif.bands: {
        "beats": "saw teeth jump, the beat's tooth most; bands swell",
        "energy": "tilt sway",
        "tempo": "the tilt rocks per bar",
    },
}


def render_frames(
    tags: Tags,
    clock: LoopClock,
    *,
    style: Style = Style.auto,
    width: int = 512,
    height: int = 512,
    seed: int = 0,
) -> list[Image.Image]:
    """Every frame of the loop, drawn by the built-in renderer; frame 0 is the still at the loop's
    first downbeat."""
    return [
        render(tags, style=style, width=width, height=height, seed=seed, motion=motion)
        for motion in clock.motions()
    ]

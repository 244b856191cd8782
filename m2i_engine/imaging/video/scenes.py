"""One scene per kind of section: a few renderer keyframes drawn once, which every frame then blends.

Redrawing the picture 30 times a second costs 50–90 ms a frame at 720×1280; instead each section label
(intro, verse, chorus … or A, B, C) gets one :class:`Scene` of ``2 × beats per bar`` keyframes from the
renderer: a *rest* pose on each beat of the bar (the motifs' own flow — waves rolled on, silk turned —
at that beat) and a *hit* pose on each beat (the same flow with that beat's shapes swelling, downbeats
with their bar accent and glow flare). A frame is then two cheap blends: rest pose → next rest pose as
the beat's step eases out, and → the beat's hit pose by how hard the beat hits now.

Scenes differ where the song does: a section's energy sets its density and motion amount, and each
label gets its own composition seed, a colour turn along the circle of fifths and an arousal lift by
its energy — so a returning chorus comes back as the same scene.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from m2i_engine.imaging.renderer import Motion, look_from_tags, render
from m2i_engine.imaging.video.writer import Yuv420
from m2i_engine.options import Style
from m2i_engine.tags import PITCH_CLASSES, SongSection, Tags

#: key steps (in fifths) of each further label's palette: the first keeps the song's own colours
FIFTH_STEPS = (0, 1, -1, 2, -2, 3)
#: how much a section's energy above (below) the song's lifts (lowers) its arousal
AROUSAL_PER_ENERGY = 0.8
#: composition seed step between labels
SEED_STEP = 7919
#: the bar accent of a downbeat's hit pose: a loop's full 1.0 makes the bar outweigh the beat in a
#: video's rhythm (the downbeat must change the picture more, not swamp the other beats)
DOWNBEAT_ACCENT = 0.5
#: … and how far its own shapes swell: the look's accented shapes are its biggest, and at a loop's full
#: swell a downbeat changes the picture three times as much as another beat
DOWNBEAT_SHAPES = 0.4
#: scenes kept drawn at once (a returning label beyond these is drawn again)
CACHE_SCENES = 3


@dataclass(frozen=True)
class Scene:
    """A section label's keyframes in the encoder's planes: ``rest[i]`` and ``hit[i]`` for beat ``i`` of
    the bar. Made from the drawn RGB pictures by :meth:`from_rgb`, which converts them once and keeps
    only the planes (half the bytes; nothing reads the RGB afterwards)."""

    label: str
    rest: tuple[Yuv420, ...]
    hit: tuple[Yuv420, ...]

    @classmethod
    def from_rgb(cls, label: str, rest: Sequence[Image.Image], hit: Sequence[Image.Image]) -> Scene:
        return cls(label, tuple(map(Yuv420.from_rgb, rest)), tuple(map(Yuv420.from_rgb, hit)))

    def frame_planes(self, position: int, step: float, hit: float) -> Yuv420:
        """The scene at beat ``position`` of the bar, ``step`` (0..1) of the way to the next beat's
        pose, with the beat's hit pose blended in by ``hit`` (0..1)."""
        n = len(self.rest)
        p = position % n
        base = self.rest[p] if step <= 0.01 else Yuv420.blend(self.rest[p], self.rest[(p + 1) % n], step)
        return base if hit <= 0.01 else Yuv420.blend(base, self.hit[p], min(hit, 1.0))


def scene_tags(tags: Tags, section: SongSection, label_index: int) -> Tags:
    """The song's tags as this section sounds: the song's energy moved by how far the section's is
    above or below the average, an arousal nudged the same way, the key's colour turned
    ``FIFTH_STEPS[label_index]`` fifths."""
    mean = float(np.mean([s.energy for s in tags.sections])) if tags.sections else section.energy
    lift = section.energy - mean
    arousal = float(np.clip(tags.mood.arousal + AROUSAL_PER_ENERGY * lift, -1.0, 1.0))
    energy = float(np.clip(tags.loudness.energy + lift, 0.0, 1.0))
    fifths = FIFTH_STEPS[label_index % len(FIFTH_STEPS)]
    tonic = PITCH_CLASSES[(tags.key.tonic_index + 7 * fifths) % 12]
    return tags.model_copy(
        update={
            "loudness": tags.loudness.model_copy(update={"energy": energy}),
            "mood": tags.mood.model_copy(update={"arousal": arousal}),
            "key": tags.key.model_copy(update={"tonic": tonic}),
        }
    )


def draw_scene(
    tags: Tags,
    section: SongSection,
    label_index: int,
    *,
    beats_per_bar: int,
    style: Style,
    width: int,
    height: int,
    seed: int,
) -> Scene:
    """Draw a label's keyframes with the renderer (``2 × beats_per_bar`` pictures)."""
    local = scene_tags(tags, section, label_index)
    look = look_from_tags(local)
    amount = 0.35 + 0.65 * float(np.clip(section.energy, 0.0, 1.0))
    # the look's rhythm window: which of its beats share each place in the bar
    accents = np.asarray(look.rhythm.accents, dtype=bool)
    window = accents.size
    idx = np.arange(window)
    last = np.maximum.accumulate(np.where(accents, idx, -1))
    place = np.where(last >= 0, idx - last, idx - int(np.argmax(accents))) % beats_per_bar
    seed_here = (seed + SEED_STEP * label_index) & 0xFFFFFFFF
    rest, hit = [], []
    for i in range(beats_per_bar):
        flow = {"phase": i / beats_per_bar, "loop_bars": 1, "beats": float(i), "amount": amount}
        rest.append(
            render(local, style=style, width=width, height=height, seed=seed_here, motion=Motion(**flow))
        )  # type: ignore[arg-type]
        lit = tuple((DOWNBEAT_SHAPES if i == 0 else 1.0) if place[k] == i else 0.0 for k in range(window))
        hit.append(
            render(
                local,
                style=style,
                width=width,
                height=height,
                seed=seed_here,
                motion=Motion(
                    pulse=1.0,
                    downbeat=DOWNBEAT_ACCENT if i == 0 else 0.0,
                    beat_pulses=lit,
                    glow_gain=1.2 if i == 0 else 1.12,
                    **flow,
                ),
            )
        )  # type: ignore[arg-type]
    return Scene.from_rgb(section.label, rest, hit)


#: draws the scene of a section whose label is the ``index``-th the clip shows
SceneDrawer = Callable[[SongSection, int], Scene]


class SceneCache:
    """Scenes by label, drawn by ``draw`` when first shown; at most :data:`CACHE_SCENES` kept, so memory
    stays bounded however long the clip. The renderer's drawer is :meth:`renderer`; Stable Diffusion's
    is :func:`~m2i_engine.imaging.video.sd_scenes.sd_scene_drawer`."""

    def __init__(self, draw: SceneDrawer) -> None:
        self._draw = draw
        self._labels: dict[str, int] = {}
        self._scenes: OrderedDict[str, Scene] = OrderedDict()
        self.drawn = 0
        #: seconds spent drawing scenes
        self.draw_s = 0.0

    @classmethod
    def renderer(
        cls, tags: Tags, *, beats_per_bar: int, style: Style, width: int, height: int, seed: int
    ) -> SceneCache:
        """Scenes drawn by the built-in renderer (:func:`draw_scene`)."""
        return cls(
            lambda section, index: draw_scene(
                tags,
                section,
                index,
                beats_per_bar=beats_per_bar,
                style=style,
                width=width,
                height=height,
                seed=seed,
            )
        )

    def get(self, section: SongSection) -> Scene:
        label = section.label
        index = self._labels.setdefault(label, len(self._labels))
        if label in self._scenes:
            self._scenes.move_to_end(label)
            return self._scenes[label]
        t0 = time.perf_counter()
        scene = self._draw(section, index)
        self.draw_s += time.perf_counter() - t0
        self.drawn += 1
        self._scenes[label] = scene
        while len(self._scenes) > CACHE_SCENES:
            self._scenes.popitem(last=False)
        return scene

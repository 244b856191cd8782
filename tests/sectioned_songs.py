"""Synthetic songs whose sections change at known times, for section and video tests and benchmarks."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from m2i_engine.synth import SongSpec, render_song


@dataclass(frozen=True)
class Part:
    """One section: what plays (style, key, mode), for how many bars, and how loud."""

    name: str
    style: str = "house"
    tonic: str = "A"
    mode: str = "minor"
    bars: int = 8
    gain: float = 1.0


#: intro – verse – chorus – verse – chorus – outro at 120 BPM: 8 + 12 + 12 + 12 + 12 + 8 = 64 s
POP_FORM = (
    Part("intro", "ambient", "A", "minor", 4, 0.45),
    Part("verse", "hiphop", "A", "minor", 6, 0.6),
    Part("chorus", "rock", "C", "major", 6, 1.0),
    Part("verse", "hiphop", "A", "minor", 6, 0.6),
    Part("chorus", "rock", "C", "major", 6, 1.0),
    Part("outro", "ambient", "A", "minor", 4, 0.45),
)

#: a 30-s clip: quiet A, loud B, quiet A (10 s each at 120 BPM)
ABA = (
    Part("A", "ballad", "D", "minor", 5, 0.5),
    Part("B", "house", "F", "major", 5, 1.0),
    Part("A", "ballad", "D", "minor", 5, 0.5),
)


def sectioned_song(
    parts: tuple[Part, ...], *, bpm: float = 120.0, sr: int = 22_050, seed: int = 0
) -> tuple[np.ndarray, list[float]]:
    """The parts rendered one after another at ``bpm`` (mono float32) and the true boundary times
    between them (seconds; not the song's start or end). A repeated part sounds the same each time."""
    base = SongSpec(bpm=bpm, sr=sr, seed=seed)
    pieces, bounds, t = [], [], 0.0
    for i, part in enumerate(parts):
        bar_s = 60.0 / bpm * (3 if part.style == "waltz" else 4)
        spec = replace(
            base,
            style=part.style,
            tonic=part.tonic,
            mode=part.mode,  # type: ignore[arg-type]
            duration_s=part.bars * bar_s,
            seed=seed + zlib.crc32(part.name.encode()) % 997,
        )
        pieces.append(render_song(spec) * part.gain)
        if i:
            bounds.append(round(t, 3))
        t += part.bars * bar_s
    return np.concatenate(pieces).astype(np.float32), bounds

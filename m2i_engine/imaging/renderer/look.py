"""Why the picture looks the way it does: every musical tag turned into a drawing parameter, once.

The drawing code never reads :class:`~m2i_engine.tags.Tags` directly. :func:`look_from_tags` folds
them into a :class:`Look` — motif family, hue, warmth, saturation, contrast, density, a beat grid
and an energy flow — so each mapping from music to picture lives in exactly one place.

Offers
------
- :class:`Motif` — the ten motif families (one per genre, chosen from the signal when no genre model
  answered).
- :class:`Rhythm` — beat positions and downbeat accents over a fixed window of the song.
- :class:`Look` / :func:`look_from_tags` — all visual parameters, pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from m2i_engine.tags import Tags


class Motif(StrEnum):
    """What the picture is made of. Named for the shapes, not the genre that usually picks them."""

    ribbons = "ribbons"  # classical: flowing silk ribbons and arcs
    shards = "shards"  # metal: a fractured pane, sharp shards
    circles = "circles"  # jazz: loose overlapping circles and brush marks
    pulses = "pulses"  # electronic / disco: concentric pulses, rings, a beat grid
    blocks = "blocks"  # hiphop: bold blocks and halftone
    waves = "waves"  # reggae: warm wavy stripes
    landscape = "landscape"  # country: layered hills under a sun
    smoke = "smoke"  # blues: smoky gradients and rising wisps
    bubbles = "bubbles"  # pop: bright glossy bubbles
    bands = "bands"  # rock: jagged bands


MOTIF_BY_GENRE: dict[str, Motif] = {
    "classical": Motif.ribbons,
    "metal": Motif.shards,
    "jazz": Motif.circles,
    "electronic": Motif.pulses,
    "disco": Motif.pulses,
    "hiphop": Motif.blocks,
    "reggae": Motif.waves,
    "country": Motif.landscape,
    "folk": Motif.landscape,
    "blues": Motif.smoke,
    "pop": Motif.bubbles,
    "rock": Motif.bands,
}

# Where each motif's music usually sits, for picking one from the signal alone:
# (percussiveness, brightness, tempo 0..1 over 60..180 bpm, arousal, valence).
_PROTOTYPES: dict[Motif, tuple[float, float, float, float, float]] = {
    Motif.ribbons: (0.10, 0.45, 0.30, -0.40, 0.10),
    Motif.shards: (0.65, 0.75, 0.85, 0.85, -0.50),
    Motif.circles: (0.35, 0.45, 0.45, -0.05, 0.25),
    Motif.pulses: (0.75, 0.60, 0.55, 0.55, 0.20),
    Motif.blocks: (0.80, 0.35, 0.25, 0.25, -0.05),
    Motif.waves: (0.50, 0.40, 0.15, -0.05, 0.55),
    Motif.landscape: (0.30, 0.50, 0.40, -0.10, 0.40),
    Motif.smoke: (0.25, 0.30, 0.20, -0.40, -0.45),
    Motif.bubbles: (0.50, 0.70, 0.50, 0.45, 0.70),
    Motif.bands: (0.55, 0.65, 0.65, 0.65, 0.00),
}
_PROTOTYPE_WEIGHTS = np.array([1.6, 1.2, 1.0, 1.0, 0.8])

# GEMS emotions → (warmth, chroma, light, contrast, fade, glow, softness) nudges, each about -1..1.
_EMOTION_NUDGES: dict[str, tuple[float, float, float, float, float, float, float]] = {
    "amazement": (0.1, 0.3, 0.3, 0.2, 0.0, 1.0, 0.0),
    "solemnity": (-0.2, -0.3, -0.4, 0.3, 0.0, 0.0, 0.3),
    "tenderness": (0.4, -0.2, 0.3, -0.4, 0.2, 0.2, 1.0),
    "nostalgia": (0.5, -0.4, 0.0, -0.2, 1.0, 0.1, 0.5),
    "calmness": (0.0, -0.3, 0.1, -0.5, 0.2, 0.0, 0.8),
    "power": (0.2, 0.4, -0.1, 0.8, 0.0, 0.3, -0.6),
    "joyful_activation": (0.5, 0.5, 0.4, 0.2, 0.0, 0.4, -0.2),
    "tension": (-0.3, 0.1, -0.3, 1.0, 0.0, 0.1, -0.8),
    "sadness": (-0.5, -0.5, -0.3, -0.1, 0.3, 0.0, 0.4),
}

#: seconds of the song the beat grid spans; at 120 bpm that is 16 beats, 4 bars of 4/4
RHYTHM_WINDOW_S = 8.0
#: points the energy curve is resampled to
CURVE_POINTS = 96


@dataclass(frozen=True)
class Rhythm:
    """The beat grid the shapes repeat on: where beats fall across the picture, which are downbeats."""

    bpm: float
    beats_per_bar: int
    #: beat positions in [0, 1) across :data:`RHYTHM_WINDOW_S` seconds; real timing, swing included
    positions: np.ndarray
    #: True where the beat is a downbeat (first of its bar)
    accents: np.ndarray

    @property
    def count(self) -> int:
        return int(self.positions.size)

    @property
    def bars(self) -> int:
        return max(1, int(self.accents.sum()))

    @property
    def bar_length(self) -> float:
        """One bar as a fraction of the window."""
        return self.beats_per_bar * 60.0 / self.bpm / RHYTHM_WINDOW_S

    @property
    def beat_length(self) -> float:
        """One beat as a fraction of the window."""
        return 60.0 / self.bpm / RHYTHM_WINDOW_S

    def bar_phase(self, u: np.ndarray | float) -> np.ndarray:
        """Bars elapsed at window positions ``u`` (0 at the first downbeat; 1.0 one bar later)."""
        first = float(self.positions[self.accents][0]) if self.accents.any() else 0.0
        return (np.asarray(u, dtype=float) - first) / self.bar_length


@dataclass(frozen=True)
class Look:
    """Everything the drawing reads, each in a plain unit. Built only by :func:`look_from_tags`."""

    motif: Motif
    genre: str | None
    #: 0..360 degrees on the OKLCH wheel, from the key around the circle of fifths
    key_hue: float
    minor: bool
    valence: float  # -1 sad … 1 happy
    arousal: float  # -1 calm … 1 excited
    #: -1 cool … 1 warm colour temperature (valence, emotions, mode)
    warmth: float
    #: multiplier on colour chroma, ~0.35 … 1.4 (arousal, emotions)
    chroma: float
    #: -1 dark … 1 light shift of the whole palette (valence, mode, emotions)
    light: float
    #: 0 flat … 1 hard contrast (tension, power, arousal)
    contrast: float
    #: 0 … 1 lifted, faded blacks (nostalgia, tenderness)
    fade: float
    #: 0 … 1 bloom around highlights (amazement, joy)
    glow: float
    #: 0 hard … 1 soft edges (calm, tender vs percussive, tense)
    softness: float
    #: 0 … 1 loudness energy: how much ink and how many shapes
    energy: float
    #: 0 … 1 dynamic range: how much element sizes vary
    dynamics: float
    brightness: float  # timbre brightness 0..1: highlight lightness, line fineness
    percussiveness: float  # 0..1: angular, jagged shapes
    #: onsets per second, clipped to 0..12: count of small particles
    onset_rate_hz: float
    rhythm: Rhythm
    #: energy at :data:`CURVE_POINTS` even steps across the song, 0..1 absolute
    curve: np.ndarray
    #: the curve stretched to show its shape (0..1), still flat when the song's energy is flat
    flow: np.ndarray

    def flow_at(self, u: np.ndarray | float) -> np.ndarray:
        """The energy flow at positions ``u`` in [0, 1] (linear interpolation)."""
        grid = np.linspace(0.0, 1.0, self.flow.size)
        return np.interp(u, grid, self.flow)

    def energy_at(self, u: np.ndarray | float) -> np.ndarray:
        grid = np.linspace(0.0, 1.0, self.curve.size)
        return np.interp(u, grid, self.curve)


def look_from_tags(tags: Tags) -> Look:
    """Fold a song's tags into drawing parameters. Pure: the same tags always give the same look."""
    genre = tags.genre.confident_top.label if tags.genre.confident_top is not None else None
    motif = MOTIF_BY_GENRE.get(genre or "") or motif_from_signal(tags)
    nudges = _emotion_nudges(tags)
    warm_e, chroma_e, light_e, contrast_e, fade_e, glow_e, soft_e = nudges
    valence, arousal = tags.mood.valence, tags.mood.arousal
    minor = tags.key.mode == "minor"
    perc = tags.timbre.percussiveness

    warmth = _clip(0.75 * valence + 0.3 * warm_e - (0.15 if minor else 0.0), -1.0, 1.0)
    chroma = _clip(0.85 + 0.35 * arousal + 0.25 * chroma_e, 0.35, 1.4)
    light = _clip(0.45 * valence + 0.3 * light_e - (0.3 if minor else 0.0), -1.0, 1.0)
    contrast = _clip(0.45 + 0.3 * arousal + 0.35 * contrast_e, 0.0, 1.0)
    softness = _clip(0.45 - 0.35 * perc - 0.15 * arousal + 0.4 * soft_e, 0.0, 1.0)
    return Look(
        motif=motif,
        genre=genre,
        key_hue=key_hue(tags.key.tonic_index),
        minor=minor,
        valence=valence,
        arousal=arousal,
        warmth=warmth,
        chroma=chroma,
        light=light,
        contrast=contrast,
        fade=_clip(fade_e, 0.0, 1.0),
        glow=_clip(0.6 * glow_e + 0.15 * max(arousal, 0.0), 0.0, 1.0),
        softness=softness,
        energy=_clip(tags.loudness.energy, 0.0, 1.0),
        dynamics=_clip(tags.loudness.dynamic_range_db / 18.0, 0.0, 1.0),
        brightness=tags.timbre.brightness,
        percussiveness=perc,
        onset_rate_hz=_clip(tags.timbre.onset_rate_hz, 0.0, 12.0),
        rhythm=rhythm_from_tags(tags),
        curve=(curve := energy_curve(tags.energy_curve, tags.loudness.energy)),
        flow=_flow(curve),
    )


# Circle of fifths → colour wheel, after Scriabin: C red, G orange, D yellow, A green, E sky,
# B blue, F# indigo, C# violet … F crimson. Values are OKLCH hues (degrees), not HSV.
_FIFTHS_HUES = (29.0, 55.0, 95.0, 135.0, 175.0, 220.0, 262.0, 290.0, 318.0, 345.0, 5.0, 15.0)


def key_hue(tonic_index: int) -> float:
    """OKLCH hue for a key's tonic: one step around the circle of fifths moves one step on the wheel."""
    fifths = (tonic_index * 7) % 12
    return _FIFTHS_HUES[fifths]


def motif_from_signal(tags: Tags) -> Motif:
    """Nearest motif prototype in (percussiveness, brightness, tempo, arousal, valence) space."""
    tempo = _clip((tags.tempo.bpm - 60.0) / 120.0, 0.0, 1.0)
    point = np.array(
        [tags.timbre.percussiveness, tags.timbre.brightness, tempo, tags.mood.arousal, tags.mood.valence]
    )
    best, best_d = Motif.circles, np.inf
    for motif, proto in _PROTOTYPES.items():
        d = float(np.sum(_PROTOTYPE_WEIGHTS * (point - np.array(proto)) ** 2))
        if d < best_d:
            best, best_d = motif, d
    return best


def rhythm_from_tags(tags: Tags) -> Rhythm:
    """Beat positions across :data:`RHYTHM_WINDOW_S` seconds, from the tracked beats when there are
    enough of them, else a steady grid at the tempo."""
    bpm = float(np.clip(tags.tempo.bpm, 20.0, 320.0))
    per_bar = tags.tempo.beats_per_bar or 4
    per_bar = int(np.clip(per_bar, 2, 12))
    period = 60.0 / bpm
    expected = RHYTHM_WINDOW_S / period
    beats = np.sort(np.asarray(tags.tempo.beats_s, dtype=float))
    downs = np.sort(np.asarray(tags.tempo.downbeats_s, dtype=float))
    beats, downs = beats[np.isfinite(beats)], downs[np.isfinite(downs)]

    start = float(downs[0]) if downs.size else (float(beats[0]) if beats.size else 0.0)
    window = beats[(beats >= start - 1e-6) & (beats < start + RHYTHM_WINDOW_S - 1e-6)]
    if window.size < max(2, 0.6 * expected):
        window = start + period * np.arange(int(np.ceil(expected - 1e-9)))
        downs = np.array([], dtype=float)
    positions = (window - start) / RHYTHM_WINDOW_S
    if downs.size:
        gaps = np.abs(window[:, None] - downs[None, :]).min(axis=1)
        accents = gaps < 0.2 * period
    else:
        accents = (np.arange(window.size) % per_bar) == 0
    return Rhythm(bpm=bpm, beats_per_bar=per_bar, positions=np.clip(positions, 0.0, 0.999), accents=accents)


def energy_curve(values: list[float], energy: float) -> np.ndarray:
    """The song's energy curve resampled to :data:`CURVE_POINTS` and lightly smoothed; a flat line at
    the overall energy when the curve is missing."""
    if len(values) == 0:
        return np.full(CURVE_POINTS, _clip(energy, 0.0, 1.0))
    raw = np.clip(np.nan_to_num(np.asarray(values, dtype=float), nan=energy), 0.0, 1.0)
    if raw.size == 1:
        return np.full(CURVE_POINTS, float(raw[0]))
    resampled = np.interp(np.linspace(0, 1, CURVE_POINTS), np.linspace(0, 1, raw.size), raw)
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    padded = np.pad(resampled, 2, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _flow(curve: np.ndarray) -> np.ndarray:
    lo, hi = float(curve.min()), float(curve.max())
    span = max(hi - lo, 0.25)  # a nearly flat song stays nearly flat
    mid = 0.5 * (lo + hi)
    return np.clip(0.5 + (curve - mid) / span, 0.0, 1.0)


def _emotion_nudges(tags: Tags) -> tuple[float, float, float, float, float, float, float]:
    if tags.emotion.status != "ok" or not tags.emotion.labels:
        return (0.0,) * 7  # type: ignore[return-value]
    total = np.zeros(7)
    weight = 0.0
    for ls in tags.emotion.labels:
        nudge = _EMOTION_NUDGES.get(ls.label)
        if nudge is not None:
            total += ls.score * np.asarray(nudge)
            weight += ls.score
    if weight <= 0.0:
        return (0.0,) * 7  # type: ignore[return-value]
    total /= max(weight, 1.0)
    return tuple(float(x) for x in total)  # type: ignore[return-value]


def _clip(x: float, lo: float, hi: float) -> float:
    return float(min(max(x, lo), hi))

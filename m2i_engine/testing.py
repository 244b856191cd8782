"""Hand-built :class:`~m2i_engine.tags.Tags`: what analysis would report, without audio or models.

Tests of everything downstream of analysis (prompt, imaging, bots), the renderer preview sheet and
the benchmarks all need songs whose tags they choose. One builder keeps those songs comparable
(the same beat grid, curve shapes and classification shape everywhere); callers pass what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from m2i_engine.tags import (
    AudioInfo,
    Classification,
    Key,
    LabelScore,
    Loudness,
    Mood,
    StyleTag,
    Tags,
    Tempo,
    Timbre,
)

__all__ = ["CURVES", "PREVIEW_SONGS", "classification", "energy_shape", "make_tags"]

#: named energy-curve shapes over a song (0 … 1 along it): an arch, a build-up, a drop …
CURVES = ("arch", "build", "drop", "flat", "waves", "fade")

CurveName = Literal["arch", "build", "drop", "flat", "waves", "fade"]


def energy_shape(name: CurveName, *, energy: float = 0.5, points: int = 64) -> list[float]:
    """One of :data:`CURVES` sampled at ``points`` places; ``flat`` sits at ``energy``."""
    x = np.linspace(0, 1, points)
    shapes = {
        "arch": 0.3 + 0.6 * np.sin(np.pi * x),
        "build": 0.1 + 0.85 * x**2,
        "drop": np.where(x < 0.45, 0.25 + 0.3 * x, 0.95 - 0.2 * (x - 0.45)),
        "flat": np.full_like(x, energy),
        "waves": 0.5 + 0.35 * np.sin(6 * np.pi * x),
        "fade": 0.9 - 0.8 * x,
    }
    return [float(v) for v in np.clip(shapes[name], 0, 1)]


def classification(scores: Mapping[str, float] | None, *, model: str = "test@0") -> Classification:
    """A classifier's answer with these label scores (best first); not run when ``scores`` is empty."""
    if not scores:
        return Classification()
    labels = sorted((LabelScore(label=k, score=v) for k, v in scores.items()), key=lambda ls: -ls.score)
    return Classification(status="ok", labels=labels, model=model)


def make_tags(
    *,
    bpm: float = 120.0,
    mode: str = "minor",
    tonic: str = "A",
    energy: float = 0.5,
    valence: float = 0.0,
    arousal: float = 0.0,
    genre: Mapping[str, float] | str | None = None,
    genre_score: float = 0.9,
    genre_uncertain: bool = False,
    emotion: Mapping[str, float] | None = None,
    styles: Mapping[str, tuple[float, str]] | None = None,
    model: str = "test@0",
    beats: Sequence[float] | None = None,
    downbeats: Sequence[float] | None = None,
    beats_per_bar: int | None = 4,
    swing: float = 0.0,
    tempo_confidence: float = 0.9,
    curve: CurveName | Sequence[float] | None = None,
    brightness: float = 0.5,
    percussiveness: float = 0.5,
    onset_rate_hz: float = 3.0,
    integrated_lufs: float = -10.0,
    peak_dbfs: float = -0.5,
    dynamic_range_db: float = 6.0,
    mood_source: Literal["signal", "emotion_model"] = "signal",
    codec: str = "pcm_s16le",
    duration_s: float = 30.0,
    **overrides: Any,
) -> Tags:
    """A song's tags built by hand.

    ``genre`` is a label → score map, or one label (scored ``genre_score``); ``styles`` maps a style
    word to ``(score, group)``. Beats default to a steady grid over ``duration_s`` (every other beat
    late by ``swing`` of a beat), downbeats to the first beat of each complete bar; ``curve`` is a named
    shape (:data:`CURVES`) or the points themselves, flat at 0.5 when omitted. ``overrides`` replace
    whole fields of the result.
    """
    period = 60.0 / bpm
    if beats is None:
        beats = [i * period + (swing * period if i % 2 else 0.0) for i in range(int(duration_s / period))]
    if downbeats is None:  # the first beat of every complete bar
        per_bar = beats_per_bar or 4
        downbeats = list(beats[: len(beats) // per_bar * per_bar : per_bar])
    if curve is None:
        energy_curve = [0.5] * 64
    elif isinstance(curve, str):
        energy_curve = energy_shape(curve, energy=energy)  # type: ignore[arg-type]
    else:
        energy_curve = [float(v) for v in curve]
    genre_scores = {genre: genre_score} if isinstance(genre, str) else genre
    tags = Tags(
        audio=AudioInfo(
            container="wav",
            codec=codec,
            sample_rate_hz=44_100,
            channels=2,
            duration_s=duration_s,
            analysed_s=duration_s,
        ),
        tempo=Tempo(
            bpm=bpm,
            confidence=tempo_confidence,
            beats_s=list(beats),
            downbeats_s=list(downbeats),
            beats_per_bar=beats_per_bar,
        ),
        key=Key(tonic=tonic, mode=mode, confidence=0.8),  # type: ignore[arg-type]
        loudness=Loudness(
            integrated_lufs=integrated_lufs,
            peak_dbfs=peak_dbfs,
            dynamic_range_db=dynamic_range_db,
            energy=energy,
        ),
        timbre=Timbre(brightness=brightness, percussiveness=percussiveness, onset_rate_hz=onset_rate_hz),
        mood=Mood(valence=valence, arousal=arousal, source=mood_source),
        genre=classification(genre_scores, model=model).model_copy(update={"uncertain": genre_uncertain}),
        emotion=classification(emotion, model=model),
        styles=sorted(
            (
                StyleTag(label=k, score=score, group=group)  # type: ignore[arg-type]
                for k, (score, group) in (styles or {}).items()
            ),
            key=lambda s: -s.score,
        ),
        energy_curve=energy_curve,
    )
    return tags.model_copy(update=overrides)


def _preview(genre: str | None, **kw: Any) -> Tags:
    return make_tags(
        genre=genre, genre_score=0.8, model="preview", codec="pcm", peak_dbfs=-1.0, **{"curve": "arch", **kw}
    )


#: one song per look the renderer has (a genre each, two without a genre model), for preview sheets
#: and benchmarks: ``scripts/preview_renderer.py``, ``bench/render_speed.py``, ``bench/animate_speed.py``
PREVIEW_SONGS: dict[str, Tags] = {
    "classical": _preview(
        "classical",
        bpm=72,
        tonic="D",
        mode="major",
        energy=0.35,
        valence=0.3,
        arousal=-0.4,
        emotion={"tenderness": 0.6, "solemnity": 0.3},
        percussiveness=0.1,
        dynamic_range_db=14,
        curve="arch",
        beats_per_bar=3,
    ),
    "metal": _preview(
        "metal",
        bpm=176,
        tonic="E",
        mode="minor",
        energy=0.95,
        valence=-0.6,
        arousal=0.9,
        emotion={"power": 0.7, "tension": 0.6},
        brightness=0.8,
        percussiveness=0.75,
        onset_rate_hz=8,
        dynamic_range_db=3,
        curve="drop",
    ),
    "jazz": _preview(
        "jazz",
        bpm=132,
        tonic="A#",
        mode="major",
        energy=0.5,
        valence=0.3,
        arousal=0.1,
        emotion={"nostalgia": 0.4, "joyful_activation": 0.3},
        percussiveness=0.35,
        swing=0.18,
        dynamic_range_db=11,
        curve="waves",
    ),
    "electronic": _preview(
        "electronic",
        bpm=128,
        tonic="F",
        mode="minor",
        energy=0.85,
        valence=0.1,
        arousal=0.7,
        emotion={"joyful_activation": 0.5, "power": 0.4},
        brightness=0.7,
        percussiveness=0.8,
        onset_rate_hz=6,
        curve="build",
    ),
    "disco": _preview(
        "disco",
        bpm=118,
        tonic="D",
        mode="major",
        energy=0.75,
        valence=0.8,
        arousal=0.6,
        emotion={"joyful_activation": 0.8},
        brightness=0.65,
        percussiveness=0.7,
        onset_rate_hz=5,
        curve="waves",
    ),
    "hiphop": _preview(
        "hiphop",
        bpm=88,
        tonic="C#",
        mode="minor",
        energy=0.7,
        valence=-0.1,
        arousal=0.3,
        emotion={"power": 0.6},
        brightness=0.35,
        percussiveness=0.85,
        curve="drop",
    ),
    "reggae": _preview(
        "reggae",
        bpm=76,
        tonic="G",
        mode="major",
        energy=0.55,
        valence=0.6,
        arousal=-0.1,
        emotion={"calmness": 0.4, "joyful_activation": 0.4},
        curve="waves",
    ),
    "country": _preview(
        "country",
        bpm=104,
        tonic="D",
        mode="major",
        energy=0.45,
        valence=0.4,
        arousal=-0.1,
        emotion={"nostalgia": 0.6, "tenderness": 0.3},
        curve="arch",
    ),
    "blues": _preview(
        "blues",
        bpm=68,
        tonic="E",
        mode="minor",
        energy=0.4,
        valence=-0.5,
        arousal=-0.3,
        emotion={"sadness": 0.6, "nostalgia": 0.3},
        brightness=0.3,
        percussiveness=0.3,
        swing=0.15,
        curve="fade",
        beats_per_bar=4,
    ),
    "pop": _preview(
        "pop",
        bpm=116,
        tonic="C",
        mode="major",
        energy=0.7,
        valence=0.8,
        arousal=0.5,
        emotion={"joyful_activation": 0.7, "tenderness": 0.2},
        brightness=0.7,
        onset_rate_hz=4,
        curve="build",
    ),
    "rock": _preview(
        "rock",
        bpm=142,
        tonic="A",
        mode="minor",
        energy=0.85,
        valence=-0.1,
        arousal=0.7,
        emotion={"power": 0.7},
        brightness=0.6,
        percussiveness=0.6,
        dynamic_range_db=5,
        curve="drop",
    ),
    "no-model calm": _preview(
        None,
        bpm=64,
        tonic="F#",
        mode="minor",
        energy=0.2,
        valence=-0.3,
        arousal=-0.7,
        percussiveness=0.08,
        brightness=0.35,
        onset_rate_hz=1,
        curve="fade",
    ),
    "no-model club": _preview(
        None,
        bpm=126,
        tonic="B",
        mode="minor",
        energy=0.9,
        valence=0.2,
        arousal=0.6,
        percussiveness=0.8,
        brightness=0.6,
        onset_rate_hz=7,
        curve="build",
    ),
}

"""Hand-built :class:`Tags` for tests of the parts downstream of analysis (prompt, imaging, bots)."""

from __future__ import annotations

from typing import Any

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


def make_tags(*, bpm: float = 120.0, mode: str = "minor", tonic: str = "A", energy: float = 0.5,
              valence: float = 0.0, arousal: float = 0.0, genre: dict[str, float] | None = None,
              emotion: dict[str, float] | None = None,
              styles: dict[str, tuple[float, str]] | None = None, genre_uncertain: bool = False,
              **overrides: Any) -> Tags:
    """``styles`` maps a style word to ``(score, group)``; ``genre_uncertain`` marks the genre unsure."""
    beat = 60.0 / bpm
    tags = Tags(
        audio=AudioInfo(container="wav", codec="pcm_s16le", sample_rate_hz=44_100, channels=2,
                        duration_s=30.0, analysed_s=30.0),
        tempo=Tempo(bpm=bpm, confidence=0.9, beats_s=[i * beat for i in range(int(30 / beat))],
                    downbeats_s=[i * 4 * beat for i in range(int(30 / beat / 4))], beats_per_bar=4),
        key=Key(tonic=tonic, mode=mode, confidence=0.8),  # type: ignore[arg-type]
        loudness=Loudness(integrated_lufs=-10.0, peak_dbfs=-0.5, dynamic_range_db=6.0, energy=energy),
        timbre=Timbre(brightness=0.5, percussiveness=0.5, onset_rate_hz=3.0),
        mood=Mood(valence=valence, arousal=arousal, source="signal"),
        genre=_classification(genre).model_copy(update={"uncertain": genre_uncertain}),
        emotion=_classification(emotion),
        styles=sorted((StyleTag(label=k, score=score, group=group)  # type: ignore[arg-type]
                       for k, (score, group) in (styles or {}).items()), key=lambda s: -s.score),
        energy_curve=[0.5] * 64,
    )
    return tags.model_copy(update=overrides)


def _classification(scores: dict[str, float] | None) -> Classification:
    if scores is None:
        return Classification()
    labels = sorted((LabelScore(label=k, score=v) for k, v in scores.items()), key=lambda ls: -ls.score)
    return Classification(status="ok", labels=labels, model="test@0")

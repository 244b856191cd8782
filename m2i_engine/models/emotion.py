"""From the models' answers to the valence/arousal reading users see.

The mood model (trained on listeners' Russell quadrants, ``training/train_mood.py``) gives each
quadrant a probability; valence and arousal are their signed sums, so a song the model splits between
Q1 and Q2 reads as high arousal with a valence near 0. Without it, the nine GEMS emotions (Zentner
et al. 2008) are placed on the plane and a song's reading is the score-weighted mean of its emotions'
positions (a hand mapping, never fitted to valence/arousal labels: the fallback).
"""

from __future__ import annotations

from m2i_engine.tags import Classification, Mood

GEMS = (
    "amazement",
    "solemnity",
    "tenderness",
    "nostalgia",
    "calmness",
    "power",
    "joyful_activation",
    "tension",
    "sadness",
)

#: (valence, arousal) of each GEMS emotion, after the circumplex placement in Zentner et al.
GEMS_VALENCE_AROUSAL: dict[str, tuple[float, float]] = {
    "amazement": (0.6, 0.6),
    "solemnity": (-0.1, -0.2),
    "tenderness": (0.6, -0.4),
    "nostalgia": (-0.1, -0.4),
    "calmness": (0.4, -0.7),
    "power": (0.3, 0.8),
    "joyful_activation": (0.8, 0.7),
    "tension": (-0.6, 0.6),
    "sadness": (-0.8, -0.5),
}


#: valence and arousal sign of each Russell quadrant the mood model scores
QUADRANT_SIGNS: dict[str, tuple[int, int]] = {"Q1": (1, 1), "Q2": (-1, 1), "Q3": (-1, -1), "Q4": (1, -1)}


def mood_from_quadrants(quadrants: Classification) -> Mood | None:
    """Valence = P(Q1)+P(Q4)-P(Q2)-P(Q3), arousal = P(Q1)+P(Q2)-P(Q3)-P(Q4); ``None`` without an answer."""
    if quadrants.status != "ok":
        return None
    probs = {ls.label: ls.score for ls in quadrants.labels if ls.label in QUADRANT_SIGNS}
    total = sum(probs.values())
    if total <= 0:
        return None
    v = sum(QUADRANT_SIGNS[q][0] * p for q, p in probs.items()) / total
    a = sum(QUADRANT_SIGNS[q][1] * p for q, p in probs.items()) / total
    return Mood(valence=max(-1.0, min(1.0, v)), arousal=max(-1.0, min(1.0, a)), source="emotion_model")


def mood_from_emotions(emotion: Classification) -> Mood | None:
    """Score-weighted valence/arousal, or ``None`` when the emotion model gave no answer."""
    if emotion.status != "ok":
        return None
    pairs = [
        (GEMS_VALENCE_AROUSAL[ls.label], ls.score)
        for ls in emotion.labels
        if ls.label in GEMS_VALENCE_AROUSAL
    ]
    total = sum(w for _, w in pairs)
    if total <= 0:
        return None
    v = sum(va[0] * w for va, w in pairs) / total
    a = sum(va[1] * w for va, w in pairs) / total
    return Mood(valence=max(-1.0, min(1.0, v)), arousal=max(-1.0, min(1.0, a)), source="emotion_model")

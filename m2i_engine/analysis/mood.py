"""Estimate valence and arousal from the signal alone, for songs the emotion model has not seen.

This is a transparent heuristic, not a trained model: arousal follows the well-replicated cues of
intensity, tempo, percussiveness and brightness; valence follows mode (major brighter than minor),
tempo and brightness. Cues whose own estimate is unsure (low tempo or key confidence) count less.
The result is labelled ``source="signal"`` so nobody mistakes it for the emotion model.

Offers
------
- :func:`signal_mood` — :class:`~m2i_engine.tags.Mood` from tempo, key, loudness and timbre tags.
"""

from __future__ import annotations

import numpy as np

from m2i_engine.tags import Key, Loudness, Mood, Tempo, Timbre


def signal_mood(*, tempo: Tempo, key: Key, loudness: Loudness, timbre: Timbre) -> Mood:
    """Valence and arousal (each −1 … 1) from the signal tags.

    Examples
    --------
    >>> from m2i_engine.tags import Key, Loudness, Tempo, Timbre
    >>> calm = signal_mood(tempo=Tempo(bpm=60, confidence=0.9), key=Key(tonic="A", mode="minor",
    ...     confidence=0.9), loudness=Loudness(integrated_lufs=-20, peak_dbfs=-3,
    ...     dynamic_range_db=8, energy=0.2), timbre=Timbre(brightness=0.3, percussiveness=0.1,
    ...     onset_rate_hz=1.5))
    >>> calm.arousal < 0 and calm.valence < 0
    True
    """
    tempo_w = float(np.clip(tempo.confidence * 1.5, 0.0, 1.0))
    tempo_cue = float(np.tanh((tempo.bpm - 110.0) / 35.0)) * tempo_w
    energy_cue = 2.0 * loudness.energy - 1.0
    perc_cue = 2.0 * timbre.percussiveness - 1.0
    bright_cue = 2.0 * timbre.brightness - 1.0
    arousal = 0.55 * energy_cue + 0.2 * tempo_cue + 0.15 * perc_cue + 0.1 * bright_cue

    mode_cue = (1.0 if key.mode == "major" else -1.0) * float(np.sqrt(key.confidence))
    valence = 0.5 * mode_cue + 0.2 * tempo_cue + 0.2 * bright_cue + 0.1 * energy_cue
    return Mood(
        valence=round(float(np.clip(valence, -1.0, 1.0)), 3),
        arousal=round(float(np.clip(arousal, -1.0, 1.0)), 3),
        source="signal",
    )

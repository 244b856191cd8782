"""Signal analysis of a decoded song: tempo, beats, key, loudness, timbre, energy and a signal mood.

One call, :func:`analyze_signal`, computes the shared spectral features once and runs every
analyser on them; each analyser is also a pure function of its own (keyword-only arguments) so the
engine, tests and benchmarks can call them one by one.

Offers
------
- :func:`compute_features` / :class:`Features` — STFT, mel, onset envelopes, chroma (computed once).
- :func:`estimate_tempo` — BPM, confidence, beats.
- :func:`estimate_key` — tonic, mode, confidence.
- :func:`measure_loudness` — integrated LUFS, peak, loudness range, energy.
- :func:`describe_timbre` — brightness, percussiveness, onset rate.
- :func:`energy_curve` — intensity 0 … 1 over time, for artwork and animation.
- :func:`segment_sections` — intro/verse/chorus … (or A/B/C) with times and energy, for videos.
- :func:`signal_mood` — valence/arousal estimated from the signal tags.
- :func:`analyze_signal` / :class:`SignalAnalysis` — all of the above at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from m2i_engine.analysis.features import ANALYSIS_SR, Features, compute_features
from m2i_engine.analysis.key import estimate_key
from m2i_engine.analysis.loudness import energy_curve, measure_loudness
from m2i_engine.analysis.mood import signal_mood
from m2i_engine.analysis.sections import segment_sections
from m2i_engine.analysis.tempo import TempoEvidence, estimate_tempo, tempo_evidence, tempo_from_evidence
from m2i_engine.analysis.timbre import describe_timbre
from m2i_engine.tags import Key, Loudness, SongSection, Tempo, Timbre

__all__ = [
    "ANALYSIS_SR",
    "Features",
    "SignalAnalysis",
    "TempoEvidence",
    "analyze_signal",
    "compute_features",
    "describe_timbre",
    "energy_curve",
    "estimate_key",
    "estimate_tempo",
    "measure_loudness",
    "segment_sections",
    "signal_mood",
    "tempo_evidence",
]


@dataclass(frozen=True, eq=False)
class SignalAnalysis:
    """Everything :func:`analyze_signal` measured, plus the features it computed them from."""

    features: Features
    tempo: Tempo
    key: Key
    loudness: Loudness
    timbre: Timbre
    energy_curve: list[float]
    #: the tracker's periodicity evidence, for the octave decision once the models have answered
    tempo_evidence: TempoEvidence | None = None
    #: the song's sections (boundaries where the material changes), for scene changes in a video
    sections: list[SongSection] = field(default_factory=list)


def analyze_signal(*, y: np.ndarray, sr: int, energy_points: int = 64) -> SignalAnalysis:
    """Run every signal analyser once on ``y``.

    Parameters
    ----------
    y : np.ndarray
        Mono float signal (full scale ±1).
    sr : int
        Sample rate of ``y`` (features are computed at :data:`ANALYSIS_SR`; loudness at ``sr``).
    energy_points : int
        Length of :attr:`SignalAnalysis.energy_curve`.

    Examples
    --------
    >>> from m2i_engine.synth import demo_song
    >>> a = analyze_signal(y=demo_song(), sr=22_050)
    >>> round(a.tempo.bpm)
    124
    """
    features = compute_features(y=y, sr=sr)
    evidence = tempo_evidence(features=features)
    signal = SignalAnalysis(
        features=features,
        tempo=tempo_from_evidence(evidence),
        tempo_evidence=evidence,
        key=estimate_key(features=features),
        loudness=measure_loudness(y=y, sr=sr, features=features),
        timbre=describe_timbre(features=features),
        energy_curve=energy_curve(features=features, points=energy_points),
    )
    return replace(
        signal,
        sections=segment_sections(features=features, tempo=signal.tempo, energy_curve=signal.energy_curve),
    )

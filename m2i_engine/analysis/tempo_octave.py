"""Which level of the tracked tempo a listener taps: a small trained decision after the tracker.

The tracker's pulse is right up to a factor of two on nearly every song; what it gets wrong is the
level (a 70-BPM ballad read at 140, a 200-BPM punk song at 100) and, now and then, the grouping: a
pop song at 80 BPM whose sixteenths fall 3 + 3 + 2 is tracked at the dotted-eighth pulse, 107. Which
level people tap depends on more than periodicity: on how dense and how percussive the onsets are, on
how strong the beats between our beats are (halves, thirds, quarters), and on the song's energy and
genre. :class:`OctaveModel` is a multinomial logistic regression over the factors ½, ¾, 1, 4⁄3 and 2
of the tracker's tempo, on features of the song that m2i has already measured
(:func:`octave_features`), trained by ``python -m training.train_tempo`` on annotated GTZAN excerpts
and synthetic songs of known tempo, and shipped as JSON beside this module.

:func:`decide_tempo` applies it: the most probable factor wins, the beats are decoded again at the
chosen tempo, the runner-up is kept as ``Tempo.alternatives`` and the confidence is the tracker's
periodicity times the decision's probability. Without the weights file the tracker's answer stands.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from m2i_engine.analysis.tempo import PRIOR_CENTER_BPM, TempoEvidence
from m2i_engine.tags import Classification, Mood, Tempo, TempoAlternative, Timbre

log = logging.getLogger(__name__)

#: the levels the decision chooses between, relative to the tracker's tempo: the octaves, and the 4:3
#: pair for a pulse tracked at the dotted beat (¾) or at three of four beats' span (4⁄3)
FACTORS: tuple[float, ...] = (0.5, 0.75, 1.0, 4 / 3, 2.0)
#: the weights shipped with the package
DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "tempo_octave.json"
#: a runner-up at least this probable is worth telling the user about
ALTERNATIVE_MIN_SCORE = 0.2
#: the tempi a listener taps; candidates outside are not offered
TAP_MIN_BPM, TAP_MAX_BPM = 40.0, 250.0

#: what tells the 4:3 levels apart: the pulse's salience there, and triplet and sixteenth onsets
FOUR_THIRDS_FEATURES: tuple[str, ...] = (
    "salience_three_quarters",
    "salience_four_thirds",
    "triplets",
    "sixteenths",
)
SIGNAL_FEATURES: tuple[str, ...] = (
    "log2_bpm",
    "salience_half",
    "salience_double",
    "offbeat",
    "alternation",
    "onsets_per_beat",
    "percussiveness",
    "brightness",
    "periodicity",
    "raised",
    "low_half",
    "low_double",
    "high_half",
    "high_double",
    *FOUR_THIRDS_FEATURES,
)
MOOD_FEATURES: tuple[str, ...] = ("arousal", "valence")
#: the genre model's labels (GTZAN's ten), read as features when the genre model answers
GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
GENRE_FEATURES: tuple[str, ...] = tuple(f"genre_{g}" for g in GENRES)
ALL_FEATURES: tuple[str, ...] = SIGNAL_FEATURES + MOOD_FEATURES + GENRE_FEATURES


def octave_features(
    ev: TempoEvidence,
    tempo: Tempo,
    *,
    timbre: Timbre,
    mood: Mood | None = None,
    genre: Classification | None = None,
) -> dict[str, float]:
    """The song as the decision sees it, relative to the tracker's tempo ``tempo.bpm``.

    Model outputs that are missing (no mood or genre model installed) read as 0, the training mean of
    the centred inputs, so the decision degrades to its signal part instead of failing.
    """
    bpm = tempo.bpm
    eps = 1e-3
    here = ev.salience_at(bpm) + eps
    beats = np.asarray(tempo.beats_s, dtype=np.float64)
    even, odd = ev.onset_strength(beats[0::2]), ev.onset_strength(beats[1::2])
    alternation = abs(even - odd) / max(even, odd) if max(even, odd) > 0 else 0.0
    out = {
        "log2_bpm": float(np.log2(bpm / PRIOR_CENTER_BPM)),
        "salience_half": float(np.log((ev.salience_at(bpm / 2) + eps) / here)),
        "salience_double": float(np.log((ev.salience_at(bpm * 2) + eps) / here)),
        "offbeat": float(min(ev.subdivision_ratio(tempo.beats_s, (0.5,)), 2.0)),
        "alternation": float(alternation),
        "onsets_per_beat": float(np.log1p(timbre.onset_rate_hz * 60.0 / bpm)),
        "percussiveness": float(timbre.percussiveness),
        "brightness": float(timbre.brightness),
        "periodicity": float(np.clip(np.mean(_acf_at(ev, bpm)) / 0.4, 0.0, 1.5)),
        # how far the pulse-level rule moved the tracker above its comb peak (0, log2 1.5 or 1)
        "raised": float(np.log2(bpm / ev.peak_bpm)),
        # the 4:3 levels, and the onsets inside each beat that tell a dotted pulse from a straight one
        "salience_three_quarters": float(np.log((ev.salience_at(bpm * 0.75) + eps) / here)),
        "salience_four_thirds": float(np.log((ev.salience_at(bpm * 4 / 3) + eps) / here)),
        "triplets": float(min(ev.subdivision_ratio(tempo.beats_s, (1 / 3, 2 / 3)), 2.0)),
        "sixteenths": float(min(ev.subdivision_ratio(tempo.beats_s, (0.25, 0.75)), 2.0)),
        "arousal": float(mood.arousal) if mood is not None and mood.source == "emotion_model" else 0.0,
        "valence": float(mood.valence) if mood is not None and mood.source == "emotion_model" else 0.0,
    }
    if ev.bands is not None and len(ev.bands) >= 2:
        # kick/bass and hats often pulse at different levels: which one the lowest and highest band favour
        for name, band in (("low", 0), ("high", len(ev.bands) - 1)):
            at = ev.band_salience_at(band, bpm) + eps
            out[f"{name}_half"] = float(np.log((ev.band_salience_at(band, bpm / 2) + eps) / at))
            out[f"{name}_double"] = float(np.log((ev.band_salience_at(band, bpm * 2) + eps) / at))
    has_genre = genre is not None and genre.status == "ok"
    for g in GENRES:
        out[f"genre_{g}"] = float(genre.score_of(g)) - 0.1 if has_genre and genre is not None else 0.0
    return out


@dataclass(frozen=True)
class OctaveModel:
    """Multinomial logistic regression: standardised features → P(factor) for :data:`FACTORS`."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (len(FACTORS), len(features))
    intercept: np.ndarray  # (len(FACTORS),)
    name: str = "tempo-octave"

    def probabilities(
        self, feats: Mapping[str, float], *, allowed: Sequence[bool] | None = None
    ) -> np.ndarray:
        """P(each factor); factors not ``allowed`` get 0 and the rest are renormalised."""
        x = (np.array([feats.get(f, 0.0) for f in self.features]) - self.mean) / self.scale
        logits = self.coef @ x + self.intercept
        if allowed is not None:
            logits = np.where(np.asarray(allowed, dtype=bool), logits, -np.inf)
        logits = logits - logits.max()
        p = np.exp(logits)
        return p / p.sum()

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "factors": list(FACTORS),
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> OctaveModel:
        if [float(f) for f in d["factors"]] != list(FACTORS):  # type: ignore[attr-defined]
            raise ValueError(f"tempo octave model: factors {d['factors']} are not {list(FACTORS)}")
        feats = tuple(str(f) for f in d["features"])  # type: ignore[attr-defined]
        model = cls(
            features=feats,
            mean=np.asarray(d["mean"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            coef=np.asarray(d["coef"], dtype=np.float64),
            intercept=np.asarray(d["intercept"], dtype=np.float64),
            name=str(d.get("name", cls.name)),
        )
        if model.coef.shape != (len(FACTORS), len(feats)) or model.mean.shape != (len(feats),):
            raise ValueError("tempo octave model: weight shapes do not match its feature list")
        return model

    @classmethod
    def load(cls, path: Path = DEFAULT_WEIGHTS) -> OctaveModel:
        return cls.from_dict(json.loads(path.read_text()))


@lru_cache(maxsize=4)
def default_model(path: Path = DEFAULT_WEIGHTS) -> OctaveModel | None:
    """The shipped decision, or ``None`` (logged once) when its file is missing or broken."""
    try:
        return OctaveModel.load(path)
    except FileNotFoundError:
        log.info("no tempo octave model at %s: the tracker's tempo is used as it is", path)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        log.warning("could not load the tempo octave model %s: %s", path, exc)
    return None


def decide_tempo(
    ev: TempoEvidence,
    tempo: Tempo,
    *,
    timbre: Timbre,
    mood: Mood | None = None,
    genre: Classification | None = None,
    model: OctaveModel | None = None,
) -> Tempo:
    """The tempo a listener taps: the tracker's, or the level of it the decision says (½, ¾, 4⁄3, 2×).

    Beats are decoded again at the chosen tempo (so beats and BPM agree); the runner-up level is
    listed in ``alternatives`` when it is at least :data:`ALTERNATIVE_MIN_SCORE` probable.
    """
    model = model or default_model()
    if model is None or not ev.rhythmic or tempo.confidence <= 0 or len(tempo.beats_s) < 4:
        return tempo
    return apply_decision(ev, tempo, octave_features(ev, tempo, timbre=timbre, mood=mood, genre=genre), model)


def level_probabilities(model: OctaveModel, feats: Mapping[str, float], bpm: float) -> np.ndarray:
    """P(each of :data:`FACTORS`) for a song tracked at ``bpm``; levels a listener would not tap
    (outside :data:`TAP_MIN_BPM` … :data:`TAP_MAX_BPM`, inside the tracker's range) get 0."""
    return model.probabilities(feats, allowed=[TAP_MIN_BPM <= f * bpm <= TAP_MAX_BPM for f in FACTORS])


def apply_decision(ev: TempoEvidence, tempo: Tempo, feats: Mapping[str, float], model: OctaveModel) -> Tempo:
    """:func:`decide_tempo` on features already computed (the trainer replays cached songs through it)."""
    p = level_probabilities(model, feats, tempo.bpm)
    order = np.argsort(-p)
    best, second = int(order[0]), int(order[1])
    factor = FACTORS[best]
    bpm = round(tempo.bpm * factor, 2)
    beats = tempo.beats_s if factor == 1.0 else ev.beats_at(bpm)
    alternatives = []
    if p[second] >= ALTERNATIVE_MIN_SCORE:
        alternatives.append(
            TempoAlternative(bpm=round(tempo.bpm * FACTORS[second], 2), score=round(float(p[second]), 3))
        )
    periodic = min(float(feats["periodicity"]), 1.0)
    enough_beats = float(np.clip(ev.duration_s * bpm / 60.0 / 16.0, 0.0, 1.0))  # 16 beats to be sure
    return tempo.model_copy(
        update={
            "bpm": bpm,
            "beats_s": beats,
            "alternatives": alternatives,
            "confidence": round(float(periodic * enough_beats * p[best]), 3),
        }
    )


def _acf_at(ev: TempoEvidence, bpm: float) -> np.ndarray:
    lags = 60.0 * ev.frame_rate_hz / bpm * np.arange(1, 5)
    idx = np.floor(lags).astype(int)
    ok = idx < len(ev.acf) - 2
    out = np.zeros(len(lags))
    out[ok] = np.maximum(ev.acf[idx[ok]], ev.acf[idx[ok] + 1])
    return out

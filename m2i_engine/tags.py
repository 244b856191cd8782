"""What m2i hears in a song: the typed contract between analysis, prompt building and imaging.

Every field a user sees is here, with its unit in the name. Classifier outputs say plainly when a
model is missing instead of inventing a label.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


#: how a model's label identifiers read to people (others: underscores become spaces)
_DISPLAY = {"hiphop": "hip-hop", "joyful_activation": "joyful activation"}


class LabelScore(BaseModel):
    label: str
    score: float = Field(ge=0.0, le=1.0)

    @property
    def display(self) -> str:
        """The label as a person reads it; ``label`` stays the stable identifier for code and JSON."""
        return _DISPLAY.get(self.label, self.label.replace("_", " "))


class Classification(BaseModel):
    """A trained model's answer, or the honest statement that none is installed."""

    status: Literal["ok", "model_missing", "error"] = "model_missing"
    labels: list[LabelScore] = Field(default_factory=list, description="Best first.")
    model: str | None = Field(None, description="Name and version of the model that answered.")
    uncertain: bool = Field(
        False,
        description="True when the calibrated top score is below the model's confidence floor, or the "
        "song is unlike the music the models learned from (``familiarity``): no label fits well, and the "
        "first labels are only the closest ones.",
    )

    @property
    def top(self) -> LabelScore | None:
        return self.labels[0] if self.status == "ok" and self.labels else None

    @property
    def confident_top(self) -> LabelScore | None:
        """The best label when the model is sure of it, else ``None`` (uncertain or no answer)."""
        return None if self.uncertain else self.top

    def score_of(self, label: str) -> float:
        return next((ls.score for ls in self.labels if ls.label == label), 0.0)


StyleGroup = Literal["genre", "style", "voice", "era", "mood"]


class StyleTag(LabelScore):
    """A word the backbone's tagger is sure of for this song (above the tag's calibrated threshold)."""

    group: StyleGroup = Field(description="What kind of word it is: genre, style, voice, era or mood.")


#: a runner-up tempo at least this probable is shown in replies beside the chosen one
CLOSE_ALTERNATIVE = 0.3


class TempoAlternative(BaseModel):
    """Another level the song is felt at (half or double the tempo), with its share of the decision."""

    bpm: float = Field(gt=0)
    score: float = Field(ge=0.0, le=1.0)


class Tempo(BaseModel):
    bpm: float = Field(gt=0)
    confidence: float = Field(ge=0.0, le=1.0)
    beats_s: list[float] = Field(default_factory=list)
    downbeats_s: list[float] = Field(default_factory=list)
    beats_per_bar: int | None = None
    alternatives: list[TempoAlternative] = Field(
        default_factory=list,
        description="The runner-up tempo a listener could tap instead (e.g. double "
        "time), with its probability; empty when the decision is clear.",
    )

    @property
    def close_alternative(self) -> TempoAlternative | None:
        """The runner-up when the decision was close enough to tell the user ("also felt at 200 BPM")."""
        best = max(self.alternatives, key=lambda a: a.score, default=None)
        return best if best is not None and best.score >= CLOSE_ALTERNATIVE else None


class Key(BaseModel):
    tonic: str = Field(description="Pitch class, sharps only: C, C#, … B.")
    mode: Literal["major", "minor"]
    confidence: float = Field(ge=0.0, le=1.0)

    @property
    def name(self) -> str:
        return f"{self.tonic} {self.mode}"

    @property
    def tonic_index(self) -> int:
        return PITCH_CLASSES.index(self.tonic)


class Loudness(BaseModel):
    integrated_lufs: float = Field(description="ITU-R BS.1770 integrated loudness.")
    peak_dbfs: float
    dynamic_range_db: float = Field(ge=0.0, description="Spread of short-term loudness (LRA-like).")
    energy: float = Field(ge=0.0, le=1.0, description="Perceived intensity, 0 calm … 1 intense.")


class Timbre(BaseModel):
    brightness: float = Field(ge=0.0, le=1.0, description="Spectral centroid, normalised.")
    percussiveness: float = Field(ge=0.0, le=1.0, description="Share of percussive energy.")
    onset_rate_hz: float = Field(ge=0.0, description="Note/drum onsets per second.")


#: Russell's quadrants by (valence sign, arousal sign), as the 4Q dataset names them
QUADRANT_NAMES = {"Q1": "happy, excited", "Q2": "angry, tense", "Q3": "sad, low", "Q4": "calm, relaxed"}


class Mood(BaseModel):
    """Valence (sad … happy) and arousal (calm … excited), each in -1 … 1; their signs give the quadrant."""

    valence: float = Field(ge=-1.0, le=1.0)
    arousal: float = Field(ge=-1.0, le=1.0)
    source: Literal["emotion_model", "signal"] = Field(
        description="'emotion_model' when a trained model gave it (the valence/arousal model, else the "
        "GEMS emotion model), else 'signal': estimated from tempo, key, loudness and timbre."
    )

    @property
    def quadrant(self) -> str:
        """``Q1`` (positive valence, high arousal), ``Q2`` (−, high), ``Q3`` (−, low) or ``Q4`` (+, low)."""
        if self.arousal >= 0:
            return "Q1" if self.valence >= 0 else "Q2"
        return "Q4" if self.valence >= 0 else "Q3"

    @property
    def quadrant_name(self) -> str:
        return QUADRANT_NAMES[self.quadrant]


class Familiarity(BaseModel):
    """How much the song sounds like the recorded music the models learned from
    (:mod:`m2i_engine.models.familiarity`): beyond ``limit`` their answers are not to be trusted."""

    distance: float = Field(
        ge=0.0, description="Distance of the song's mean musicnn embedding from the training songs'."
    )
    limit: float = Field(
        gt=0.0, description="Beyond this distance the song is unfamiliar (set on songs the fit never saw)."
    )
    model: str | None = Field(None, description="Name and version of the familiarity model.")

    @computed_field(description="distance <= limit: the models' answers are meant for this song.")  # type: ignore[prop-decorator]
    @property
    def familiar(self) -> bool:
        return self.distance <= self.limit


class AudioInfo(BaseModel):
    container: str
    codec: str
    sample_rate_hz: int
    channels: int
    duration_s: float
    analysed_s: float = Field(description="Seconds actually analysed (windows of long songs).")


class SongSection(BaseModel):
    """One stretch of the song (intro, verse, chorus …), in seconds of the analysed audio like the beats."""

    start_s: float = Field(ge=0.0)
    end_s: float = Field(ge=0.0)
    label: str = Field(
        description="intro, verse, chorus, bridge or outro when the form is clear, else A, "
        "B, C … in order of first appearance; repeated material gets the same label."
    )
    energy: float = Field(ge=0.0, le=1.0, description="Mean of the energy curve over the section.")

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


class Tags(BaseModel):
    """Everything m2i reports about one song."""

    audio: AudioInfo
    tempo: Tempo
    key: Key
    loudness: Loudness
    timbre: Timbre
    mood: Mood
    genre: Classification = Field(default_factory=Classification)
    emotion: Classification = Field(default_factory=Classification)
    styles: list[StyleTag] = Field(
        default_factory=list,
        description="Style, voice, era and mood words the backbone's tagger is sure "
        "of, best first; empty when none passes its threshold (or no style model is installed).",
    )
    energy_curve: list[float] = Field(
        default_factory=list, description="Energy 0..1 at evenly spaced points over the analysed audio."
    )
    sections: list[SongSection] = Field(
        default_factory=list,
        description="The song's sections in order, covering the analysed audio; empty when not analysed.",
    )
    familiarity: Familiarity | None = Field(
        None,
        description="How much the song sounds like the music the models learned from; when unfamiliar, "
        "the mood comes from the signal, genre and emotion are uncertain. None without that model.",
    )

    @property
    def unfamiliar(self) -> bool:
        """True when the familiarity model says the song is unlike every song the models learned from."""
        return self.familiarity is not None and not self.familiarity.familiar

    def mood_origin(self) -> str:
        """Where the mood came from, as a person reads it (the same words in every front end)."""
        if self.mood.source == "emotion_model":
            return "from the mood model"
        if self.unfamiliar:
            return "estimated from the signal: it sounds unlike the music the models learned from"
        return "estimated from the signal"

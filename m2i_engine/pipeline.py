"""The blocking steps of one request, in order: decode → analyse → classify → prompt → draw.

These functions are plain and synchronous so they can be tested and benchmarked directly; the
async :class:`~m2i_engine.engine.Engine` runs them on its worker pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from m2i_engine.analysis import analyze_signal, signal_mood
from m2i_engine.analysis.tempo_octave import decide_tempo
from m2i_engine.audio import decode_audio
from m2i_engine.config import AudioLimits
from m2i_engine.imaging.base import ImageRequest
from m2i_engine.models import ModelRegistry, mood_from_emotions, mood_from_quadrants
from m2i_engine.options import VisualizeOptions
from m2i_engine.prompt import build_prompt
from m2i_engine.tags import Tags

#: analysis sample rate: every feature and model is defined at this rate
ANALYSIS_SR = 22_050

Timings = dict[str, float]


@contextmanager
def timed(timings: Timings, name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round((time.perf_counter() - t0) * 1000.0, 2)


def analyse_audio(
    data: bytes,
    *,
    limits: AudioLimits,
    models: ModelRegistry,
    on_stage: Callable[[str], None] = lambda _s: None,
) -> tuple[Tags, Timings]:
    """Decode ``data`` and describe it; raises :class:`~m2i_engine.errors.InputError` on bad audio."""
    timings: Timings = {}
    on_stage("decoding")
    with timed(timings, "decode_ms"):
        audio = decode_audio(data, limits=limits, target_sr=ANALYSIS_SR)
    on_stage("analysing")
    with timed(timings, "signal_ms"):
        sig = analyze_signal(y=audio.samples, sr=audio.sample_rate_hz)
    with timed(timings, "models_ms"):
        styles = models.styles(sig.features)
        genre = models.classify("genre", sig.features, styles=styles)  # electronic raises its floor
        emotion = models.classify("emotion", sig.features)
        quadrants = models.classify("mood", sig.features)
        familiarity = models.familiarity(sig.features)
    learned_mood = mood_from_quadrants(quadrants)
    with timed(timings, "tempo_decision_ms"):
        # which octave of the tracked pulse a listener taps, now that mood and genre are known
        tempo = (
            sig.tempo
            if sig.tempo_evidence is None
            else decide_tempo(
                sig.tempo_evidence, sig.tempo, timbre=sig.timbre, mood=learned_mood, genre=genre
            )
        )
    # the model trained on listeners' valence/arousal first, the GEMS hand mapping, then the signal rule;
    # a song unlike all the models learned from (a synthesised demo, speech, a tone) gets the signal rule
    # and the heads' genre and emotion are only "closest": their answers on it are confident and meaningless
    unfamiliar = familiarity is not None and not familiarity.familiar
    mood = (None if unfamiliar else learned_mood or mood_from_emotions(emotion)) or signal_mood(
        tempo=tempo, key=sig.key, loudness=sig.loudness, timbre=sig.timbre
    )
    if unfamiliar:
        genre, emotion = (c.model_copy(update={"uncertain": c.status == "ok"}) for c in (genre, emotion))
    tags = Tags(
        audio=audio.info,
        tempo=tempo,
        key=sig.key,
        loudness=sig.loudness,
        timbre=sig.timbre,
        mood=mood,
        genre=genre,
        emotion=emotion,
        styles=styles,
        energy_curve=sig.energy_curve,
        sections=sig.sections,
        familiarity=familiarity,
    )
    return tags, timings


def image_request(
    tags: Tags, options: VisualizeOptions, *, seed: int, width: int, height: int
) -> ImageRequest:
    """What a backend is asked to draw: the prompt built from ``tags`` under ``options``."""
    return ImageRequest(
        tags=tags,
        prompt=build_prompt(tags, options),
        width=width,
        height=height,
        seed=seed,
        num_images=options.num_images,
    )

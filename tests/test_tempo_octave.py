"""The tempo octave decision: its weights file, what it does to BPM, beats and alternatives, and replies."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bot.core.reply import tag_lines
from m2i_engine.analysis import compute_features, describe_timbre, tempo_evidence
from m2i_engine.analysis.tempo import tempo_from_evidence
from m2i_engine.analysis.tempo_octave import (
    DEFAULT_WEIGHTS,
    FACTORS,
    SIGNAL_FEATURES,
    OctaveModel,
    decide_tempo,
    default_model,
    octave_features,
)
from m2i_engine.config import AudioLimits
from m2i_engine.models import ModelRegistry
from m2i_engine.pipeline import analyse_audio
from m2i_engine.synth import SongSpec, render_song
from m2i_engine.tags import Tempo, TempoAlternative
from m2i_engine.testing import make_tags

SR = 22_050


def constant_model(logits: dict[float, float]) -> OctaveModel:
    """A decision that ignores the song: fixed preferences for some levels of the tracked tempo (the
    others far below them)."""
    n = len(SIGNAL_FEATURES)
    return OctaveModel(
        features=SIGNAL_FEATURES,
        mean=np.zeros(n),
        scale=np.ones(n),
        coef=np.zeros((len(FACTORS), n)),
        intercept=np.array([logits.get(f, -30.0) for f in FACTORS]),
    )


@pytest.fixture(scope="module")
def house_120() -> tuple[object, Tempo, object]:
    y = render_song(SongSpec(bpm=120.0, style="house", duration_s=20.0, seed=3))
    feats = compute_features(y=y, sr=SR)
    ev = tempo_evidence(features=feats)
    return ev, tempo_from_evidence(ev), describe_timbre(features=feats)


def test_weights_round_trip_and_bad_shapes_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = len(SIGNAL_FEATURES)
    model = OctaveModel(
        features=SIGNAL_FEATURES,
        mean=rng.normal(size=n),
        scale=rng.uniform(0.5, 2, n),
        coef=rng.normal(size=(len(FACTORS), n)),
        intercept=rng.normal(size=len(FACTORS)),
    )
    path = tmp_path / "octave.json"
    path.write_text(json.dumps(model.to_dict()))
    back = OctaveModel.load(path)
    feats = {f: float(v) for f, v in zip(SIGNAL_FEATURES, rng.normal(size=n), strict=True)}
    assert np.allclose(back.probabilities(feats), model.probabilities(feats))
    assert np.isclose(model.probabilities(feats).sum(), 1.0)
    broken = model.to_dict() | {"coef": [[0.0] * (n - 1)] * len(FACTORS)}
    with pytest.raises(ValueError, match="shapes"):
        OctaveModel.from_dict(broken)
    with pytest.raises(ValueError, match="factors"):
        OctaveModel.from_dict(model.to_dict() | {"factors": [1.0, 2.0, 3.0]})


def test_a_missing_or_broken_weights_file_leaves_the_tracker_in_charge(tmp_path: Path) -> None:
    assert default_model(tmp_path / "missing.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert default_model(bad) is None


def test_the_shipped_weights_load_and_read_features_the_engine_computes(house_120: tuple) -> None:
    model = default_model(DEFAULT_WEIGHTS)
    assert model is not None
    ev, tempo, timbre = house_120
    feats = octave_features(ev, tempo, timbre=timbre)
    assert set(model.features) <= set(feats)
    assert all(np.isfinite(v) for v in feats.values())


def test_halving_decodes_the_beats_again_at_the_new_tempo(house_120: tuple) -> None:
    ev, tempo, timbre = house_120
    assert tempo.bpm == pytest.approx(120.0, rel=0.04)
    halved = decide_tempo(ev, tempo, timbre=timbre, model=constant_model({0.5: 6.0, 1.0: 0.0, 2.0: -6.0}))
    assert halved.bpm == pytest.approx(tempo.bpm / 2, rel=1e-3)
    assert float(np.median(np.diff(halved.beats_s))) == pytest.approx(60.0 / halved.bpm, rel=0.04)
    assert halved.alternatives == []  # the runner-up (×1) had about 0.25 % of the vote
    assert 0.0 < halved.confidence <= 1.0


@pytest.mark.parametrize("factor", [0.75, 4 / 3])
def test_a_4_3_level_decodes_the_beats_again_at_the_new_tempo(house_120: tuple, factor: float) -> None:
    """A 120-BPM song as if the tracker had locked at 120 / factor (the dotted beat, or across it): the
    decision's level brings back 120, and beats decoded there, not the tracker's."""
    ev, tempo, timbre = house_120
    locked = tempo.model_copy(update={"bpm": round(tempo.bpm / factor, 2)})
    moved = decide_tempo(ev, locked, timbre=timbre, model=constant_model({factor: 6.0, 1.0: 0.0}))
    assert moved.bpm == pytest.approx(tempo.bpm, rel=1e-3)
    assert float(np.median(np.diff(moved.beats_s))) == pytest.approx(60.0 / tempo.bpm, rel=0.04)


def test_a_close_decision_names_the_other_feel(house_120: tuple) -> None:
    ev, tempo, timbre = house_120
    close = decide_tempo(ev, tempo, timbre=timbre, model=constant_model({0.5: -9.0, 1.0: 0.3, 2.0: 0.0}))
    assert close.bpm == pytest.approx(tempo.bpm)
    assert close.beats_s == tempo.beats_s
    (alt,) = close.alternatives
    assert alt.bpm == pytest.approx(2 * tempo.bpm, rel=1e-3)
    assert alt.score == pytest.approx(1 / (1 + np.exp(0.3)), abs=0.01)
    assert close.close_alternative == alt


def test_levels_outside_what_people_tap_are_never_chosen(house_120: tuple) -> None:
    ev, tempo, timbre = house_120
    fast = tempo.model_copy(update={"bpm": 180.0})
    out = decide_tempo(
        ev, fast, timbre=timbre, model=constant_model({0.5: -5.0, 1.0: 0.0, 2.0: 5.0})
    )  # 360 BPM: refused
    assert out.bpm == pytest.approx(180.0)


@pytest.mark.parametrize(
    ("style", "bpm"), [("ballad", 62.0), ("hiphop", 92.0), ("house", 124.0), ("rock", 150.0), ("dnb", 174.0)]
)
def test_the_engine_reports_the_tapped_tempo_with_beats_that_follow_it(style: str, bpm: float) -> None:
    buf = io.BytesIO()
    sf.write(buf, render_song(SongSpec(bpm=bpm, style=style, duration_s=24.0, seed=11)), SR, format="WAV")  # type: ignore[arg-type]
    tags, timings = analyse_audio(buf.getvalue(), limits=AudioLimits(), models=ModelRegistry.load())
    assert tags.tempo.bpm == pytest.approx(bpm, rel=0.04)
    assert float(np.median(np.diff(tags.tempo.beats_s))) == pytest.approx(60.0 / tags.tempo.bpm, rel=0.04)
    assert "tempo_decision_ms" in timings
    levels = {a / b for a in FACTORS for b in FACTORS}  # the runner-up is another level of the same pulse
    for alt in tags.tempo.alternatives:
        assert any(alt.bpm == pytest.approx(tags.tempo.bpm * f, rel=0.01) for f in levels)


def test_replies_mention_the_other_feel_only_when_the_decision_was_close() -> None:
    tags = make_tags(bpm=100.0)
    close = tags.model_copy(
        update={
            "tempo": tags.tempo.model_copy(update={"alternatives": [TempoAlternative(bpm=200.0, score=0.42)]})
        }
    )
    clear = tags.model_copy(
        update={
            "tempo": tags.tempo.model_copy(update={"alternatives": [TempoAlternative(bpm=200.0, score=0.21)]})
        }
    )
    line = {t.key: t.value for t in tag_lines(close)}["tempo"]
    assert "100 BPM" in line and "also felt at 200" in line
    assert "also felt" not in {t.key: t.value for t in tag_lines(clear)}["tempo"]
    assert "alternatives" in json.loads(close.model_dump_json())["tempo"]


def test_factors_are_the_octaves_and_the_4_3_pair() -> None:
    assert FACTORS == (0.5, 0.75, 1.0, 4 / 3, 2.0)

"""Sections (``tags.sections``): boundaries where synthetic songs change, repeated parts labelled alike."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import soundfile as sf

from m2i_engine.analysis import analyze_signal, segment_sections
from m2i_engine.config import AudioLimits
from m2i_engine.models import ModelRegistry
from m2i_engine.pipeline import analyse_audio
from m2i_engine.synth import SongSpec, render_song
from m2i_engine.tags import Tempo
from tests.sectioned_songs import ABA, POP_FORM, Part, sectioned_song

SR = 22_050
TOLERANCE_S = 3.0


def _sections(y: np.ndarray) -> list:
    a = analyze_signal(y=y, sr=SR)
    return a.sections


def _hits(truth: list[float], found: list[float]) -> int:
    return sum(any(abs(t - f) <= TOLERANCE_S for f in found) for t in truth)


def _check_cover(sections: list, duration: float) -> None:
    assert sections[0].start_s == 0.0 and abs(sections[-1].end_s - duration) < 0.01
    for a, b in itertools.pairwise(sections):
        assert a.end_s == b.start_s and b.start_s - a.start_s >= 6.0 - 1e-6


@pytest.mark.parametrize("bpm", [100, 128])
def test_pop_form_is_found_and_named(bpm: float) -> None:
    y, truth = sectioned_song(POP_FORM, bpm=bpm)
    secs = _sections(y)
    _check_cover(secs, len(y) / SR)
    starts = [s.start_s for s in secs[1:]]
    assert _hits(truth, starts) >= len(truth) - 1, (truth, starts)
    assert len(starts) <= len(truth) + 1
    labels = [s.label for s in secs]
    if len(secs) == len(POP_FORM):
        assert labels == ["intro", "verse", "chorus", "verse", "chorus", "outro"] or (
            labels[1] == labels[3] and labels[2] == labels[4]
        ), labels
    chorus = max(secs, key=lambda s: s.energy)
    assert chorus.start_s >= truth[1] - TOLERANCE_S  # the loud part is not the intro or the first verse


def test_a_b_a_repeats_its_label_and_the_loud_part_has_more_energy() -> None:
    y, truth = sectioned_song(ABA, bpm=120)
    secs = _sections(y)
    assert [round(s.start_s) for s in secs[1:]] == pytest.approx(truth, abs=TOLERANCE_S)
    assert [s.label for s in secs] == ["A", "B", "A"]
    assert secs[1].energy > secs[0].energy + 0.1 and secs[1].energy > secs[2].energy + 0.1


def test_a_change_of_key_alone_is_a_boundary() -> None:
    form = (Part("A", "house", "A", "minor", 6), Part("B", "house", "E", "major", 6))
    y, truth = sectioned_song(form, bpm=120)
    secs = _sections(y)
    assert _hits(truth, [s.start_s for s in secs[1:]]) == 1 and len(secs) == 2


@pytest.mark.parametrize(("style", "bpm"), [("house", 124), ("rock", 85), ("hiphop", 92), ("ambient", 70)])
def test_a_song_that_never_changes_is_one_section(style: str, bpm: float) -> None:
    y = render_song(SongSpec(bpm=bpm, style=style, duration_s=40, seed=3))  # type: ignore[arg-type]
    secs = _sections(y)
    assert len(secs) == 1 and secs[0].label == "A" and secs[0].end_s == pytest.approx(40.0, abs=0.01)


def test_boundary_hit_rate_on_random_forms() -> None:
    """Random 2–4-part songs (styles, keys, loudness, 4–8 bars each, 80–160 BPM): ≥ 80 % of the true
    boundaries have a found one within 3 s, and few found ones are false."""
    rng = np.random.default_rng(11)
    styles = ("house", "dnb", "ballad", "rock", "hiphop", "ambient", "funk")
    keys = ("C", "D", "E", "F", "G", "A", "B")
    hits = total = false = 0
    for k in range(8):
        parts: list[Part] = []
        while len(parts) < int(rng.integers(2, 5)):
            p = Part(
                f"p{len(parts)}",
                str(rng.choice(styles)),
                str(rng.choice(keys)),
                str(rng.choice(["major", "minor"])),
                int(rng.integers(4, 9)),
                float(rng.uniform(0.4, 1)),
            )
            if not parts or (p.style, p.tonic) != (parts[-1].style, parts[-1].tonic):
                parts.append(p)
        y, truth = sectioned_song(tuple(parts), bpm=float(rng.uniform(80, 160)), seed=k)
        found = [s.start_s for s in _sections(y)[1:]]
        hits += _hits(truth, found)
        total += len(truth)
        false += sum(not any(abs(t - f) <= TOLERANCE_S for t in truth) for f in found)
    assert hits / total >= 0.8, (hits, total)
    assert false <= 2, false


def test_short_or_beatless_audio_is_one_section() -> None:
    a = analyze_signal(y=render_song(SongSpec(duration_s=8)), sr=SR)
    assert [(s.start_s, s.label) for s in a.sections] == [(0.0, "A")]
    no_beats = segment_sections(
        features=a.features, tempo=Tempo(bpm=120, confidence=0.0), energy_curve=a.energy_curve
    )
    assert len(no_beats) == 1


def test_sections_are_in_the_tags_and_their_json() -> None:
    y, _ = sectioned_song(ABA, bpm=120, sr=44_100)
    buf = io.BytesIO()
    sf.write(buf, y, 44_100, format="WAV")
    tags, _ = analyse_audio(buf.getvalue(), limits=AudioLimits(), models=ModelRegistry.load(None))
    doc = tags.model_dump(mode="json")
    assert [set(s) for s in doc["sections"]] == [{"start_s", "end_s", "label", "energy"}] * len(tags.sections)
    assert len(tags.sections) == 3
    assert tags.sections[-1].end_s == pytest.approx(tags.audio.analysed_s, abs=0.05)

"""The prompt builder: deterministic, driven by the tags, honest about low confidence."""

from __future__ import annotations

import pytest

from m2i_engine.options import Style, VisualizeOptions
from m2i_engine.prompt import PRESETS, build_prompt, resolve_style
from m2i_engine.prompt.builder import EMOTION_WORDS, GENRE_IMAGERY, MAX_WORDS
from tests.factories import make_tags


def test_same_tags_and_options_give_the_same_prompt() -> None:
    tags = make_tags(genre={"jazz": 0.8}, emotion={"sadness": 0.6, "tenderness": 0.4})
    opts = VisualizeOptions(style=Style.cover, prompt="rainy window")
    assert build_prompt(tags, opts) == build_prompt(tags.model_copy(deep=True), opts)


def test_confident_genre_and_emotions_are_put_into_words() -> None:
    p = build_prompt(make_tags(genre={"metal": 0.9}, emotion={"power": 0.7, "tension": 0.5}))
    assert GENRE_IMAGERY["metal"] in p.text
    assert EMOTION_WORDS["power"] in p.text and EMOTION_WORDS["tension"] in p.text


def test_unsure_labels_are_left_out_rather_than_asserted() -> None:
    p = build_prompt(make_tags(genre={"country": 0.1, "pop": 0.09}, emotion={"nostalgia": 0.1}))
    assert GENRE_IMAGERY["country"] not in p.text
    assert EMOTION_WORDS["nostalgia"] not in p.text


def test_missing_models_fall_back_to_the_signal_mood() -> None:
    happy = build_prompt(make_tags(valence=0.7, arousal=0.7))
    sad = build_prompt(make_tags(valence=-0.7, arousal=-0.7))
    assert happy.text != sad.text
    assert "euphoric" in happy.text and "melancholic" in sad.text
    assert not any(g in happy.text for g in GENRE_IMAGERY.values())


@pytest.mark.parametrize(("bpm", "word"), [(60, "slow"), (95, "relaxed"), (125, "driving"), (175, "fast")])
def test_tempo_shapes_the_rhythm_words(bpm: float, word: str) -> None:
    assert word in build_prompt(make_tags(bpm=bpm)).text


def test_mode_shapes_the_light() -> None:
    assert "minor-key" in build_prompt(make_tags(mode="minor")).text
    assert "major-key" in build_prompt(make_tags(mode="major")).text


def test_user_text_and_negative_are_kept_and_cleaned() -> None:
    opts = VisualizeOptions(prompt="  a red\x00 fox \n at dawn ", negative="people")
    p = build_prompt(make_tags(), opts)
    assert "a red fox at dawn" in p.text
    assert p.negative.startswith("people, ")


def test_long_user_text_survives_while_optional_phrases_give_way() -> None:
    long_text = " ".join(["word"] * 70)
    p = build_prompt(make_tags(genre={"rock": 0.9}), VisualizeOptions(prompt=long_text))
    assert long_text in p.text
    assert len(p.text.split()) <= MAX_WORDS + 10 + len(PRESETS[p.style].lead.split())


@pytest.mark.parametrize("style", [s for s in Style if s is not Style.auto])
def test_each_style_leads_with_its_framing(style: Style) -> None:
    p = build_prompt(make_tags(), VisualizeOptions(style=style))
    assert p.style is style
    assert p.text.startswith(PRESETS[style].lead)


def test_auto_style_follows_genre_then_energy() -> None:
    assert resolve_style(Style.auto, make_tags(genre={"disco": 0.9})) is Style.neon
    assert resolve_style(Style.auto, make_tags(energy=0.1)) is Style.watercolor
    assert resolve_style(Style.auto, make_tags(energy=0.9)) is Style.neon


def test_phrase_weights_follow_confidence() -> None:
    sure = build_prompt(make_tags(genre={"jazz": 0.95}))
    unsure = build_prompt(make_tags(genre={"jazz": 0.3}))
    w = {t: dict(p.phrases)[GENRE_IMAGERY["jazz"]] for t, p in (("sure", sure), ("unsure", unsure))}
    assert w["sure"] > w["unsure"]

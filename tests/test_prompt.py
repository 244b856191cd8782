"""The prompt builder: deterministic, driven by the tags, honest about low confidence."""

from __future__ import annotations

import pytest

from m2i_engine.options import Style, VisualizeOptions
from m2i_engine.prompt import PRESETS, Prompt, build_prompt, resolve_style
from m2i_engine.prompt.builder import EMOTION_WORDS, GENRE_IMAGERY, MAX_WORDS, STYLE_IMAGERY
from m2i_engine.testing import make_tags


def test_same_tags_and_options_give_the_same_prompt() -> None:
    tags = make_tags(genre={"jazz": 0.8}, emotion={"sadness": 0.6, "tenderness": 0.4})
    opts = VisualizeOptions(style=Style.cover, prompt="rainy window")
    assert build_prompt(tags, opts) == build_prompt(tags.model_copy(deep=True), opts)


def test_confident_genre_and_emotions_are_put_into_words() -> None:
    p = build_prompt(make_tags(genre={"metal": 0.9}, emotion={"power": 0.7, "tension": 0.5}))
    assert GENRE_IMAGERY["metal"] in p.text
    assert EMOTION_WORDS["power"] in p.text and EMOTION_WORDS["tension"] in p.text


@pytest.mark.parametrize(
    ("emotion", "kept", "dropped"),
    [
        ({"joyful_activation": 0.35, "calmness": 0.26}, "joyful_activation", "calmness"),
        ({"sadness": 0.5, "power": 0.3}, "sadness", "power"),
    ],
)
def test_a_runner_up_emotion_of_the_opposite_arousal_is_left_out(
    emotion: dict[str, float], kept: str, dropped: str
) -> None:
    p = build_prompt(make_tags(genre={"pop": 0.9}, emotion=emotion))
    assert EMOTION_WORDS[kept] in p.text
    assert EMOTION_WORDS[dropped] not in p.text


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


def test_the_style_is_resolved_once_by_the_builder() -> None:
    for tags in (make_tags(genre={"disco": 0.9}), make_tags(energy=0.1), make_tags(energy=0.5)):
        built = build_prompt(tags)
        assert built.style is not Style.auto and built.style is resolve_style(Style.auto, tags)
        assert built.concrete_style(tags) is built.style
        # a prompt made by hand and left on auto gets the builder's choice; a concrete one is kept
        assert Prompt(text="", negative="", style=Style.auto).concrete_style(tags) is built.style
        assert Prompt(text="", negative="", style=Style.minimal).concrete_style(tags) is Style.minimal


def test_phrase_weights_follow_confidence() -> None:
    sure = build_prompt(make_tags(genre={"jazz": 0.95}))
    unsure = build_prompt(make_tags(genre={"jazz": 0.3}))
    w = {t: dict(p.phrases)[GENRE_IMAGERY["jazz"]] for t, p in (("sure", sure), ("unsure", unsure))}
    assert w["sure"] > w["unsure"]


_CLUB = {"electronic": (0.9, "genre"), "house": (0.7, "style"), "female vocalists": (0.5, "voice")}


def test_an_uncertain_genre_gives_way_to_the_style_words() -> None:
    tags = make_tags(genre={"hiphop": 0.53, "disco": 0.3}, genre_uncertain=True, styles=_CLUB)
    p = build_prompt(tags, VisualizeOptions(style=Style.neon))
    assert GENRE_IMAGERY["hiphop"] not in p.text and GENRE_IMAGERY["disco"] not in p.text
    assert STYLE_IMAGERY["electronic"] in p.text and STYLE_IMAGERY["house"] in p.text
    assert STYLE_IMAGERY["female vocalists"] in p.text
    assert p.text.index(STYLE_IMAGERY["electronic"]) < p.text.index(STYLE_IMAGERY["house"])
    assert len(p.text.split()) <= MAX_WORDS
    assert build_prompt(tags, VisualizeOptions(style=Style.neon)) == p  # deterministic


def test_an_uncertain_genre_without_styles_puts_no_genre_into_words() -> None:
    p = build_prompt(make_tags(genre={"hiphop": 0.53}, genre_uncertain=True))
    assert not any(g in p.text for g in GENRE_IMAGERY.values())


def test_a_confident_genre_keeps_its_imagery_and_adds_at_most_two_style_phrases() -> None:
    styles = {**_CLUB, "80s": (0.4, "era"), "rock": (0.35, "genre")}
    p = build_prompt(make_tags(genre={"pop": 0.8}, styles=styles), VisualizeOptions(style=Style.cover))
    assert GENRE_IMAGERY["pop"] in p.text
    added = [
        w for w in ("electronic", "house", "female vocalists", "80s", "rock") if STYLE_IMAGERY[w] in p.text
    ]
    assert added == ["electronic", "house"]
    assert p.text.index(GENRE_IMAGERY["pop"]) < p.text.index(STYLE_IMAGERY["electronic"])
    assert len(p.text.split()) <= MAX_WORDS


def test_a_style_word_that_repeats_the_genre_adds_nothing() -> None:
    p = build_prompt(make_tags(genre={"hiphop": 0.9}, styles={"hip-hop": (0.9, "genre")}))
    assert p.text.count(GENRE_IMAGERY["hiphop"]) == 1


def test_style_weights_follow_their_scores() -> None:
    def weight(score: float) -> float:
        tags = make_tags(genre={"pop": 0.3}, genre_uncertain=True, styles={"punk": (score, "genre")})
        return dict(build_prompt(tags).phrases)[STYLE_IMAGERY["punk"]]

    assert weight(0.95) > weight(0.3)


def test_style_phrases_never_push_out_the_rest_of_the_prompt() -> None:
    many = {w: (0.9 - i / 100, "style") for i, w in enumerate(STYLE_IMAGERY)}
    user = " ".join(["word"] * 30)
    for uncertain in (False, True):
        for style in (Style.cinematic, Style.watercolor):
            opts = VisualizeOptions(style=style, prompt=user)
            p = build_prompt(make_tags(genre={"jazz": 0.9}, genre_uncertain=uncertain, styles=many), opts)
            assert len(p.text.split()) <= MAX_WORDS
            assert p.text.endswith(f"steady driving pulse, deep minor-key shadows, {PRESETS[style].finish}")


@pytest.mark.parametrize("genre", [{"metal": 0.9}, {"jazz": 0.4, "blues": 0.3}, None])
@pytest.mark.parametrize("style", [Style.auto, Style.cover, Style.watercolor])
def test_without_styles_the_prompt_is_unchanged(genre: dict[str, float] | None, style: Style) -> None:
    opts = VisualizeOptions(style=style, prompt="a red fox")
    tags = make_tags(genre=genre, emotion={"power": 0.6})
    assert tags.styles == [] and not tags.genre.uncertain
    p = build_prompt(tags, opts)
    before = [PRESETS[p.style].lead, "a red fox", EMOTION_WORDS["power"]]
    if genre is not None:
        top = max(genre, key=genre.__getitem__)
        before.append(GENRE_IMAGERY[top])
    before += ["steady driving pulse", "deep minor-key shadows", PRESETS[p.style].finish]
    assert p.text == ", ".join(before)

"""The built-in renderer: deterministic, every style and aspect, and each musical trait visibly
moves the picture in the promised direction (measured on pixels)."""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import pytest
from PIL import Image

from m2i_engine.imaging.base import ImageRequest
from m2i_engine.imaging.renderer import Motif, Renderer, encode_png, look_from_tags, render
from m2i_engine.imaging.renderer.look import MOTIF_BY_GENRE, RHYTHM_WINDOW_S
from m2i_engine.options import Aspect, Style
from m2i_engine.prompt import Prompt
from m2i_engine.tags import Classification, Tags
from m2i_engine.testing import make_tags

SIDE = 224
CONCRETE = [s for s in Style if s is not Style.auto]
GENRES = [
    "classical",
    "metal",
    "jazz",
    "electronic",
    "disco",
    "hiphop",
    "reggae",
    "country",
    "blues",
    "pop",
    "rock",
]


def song(
    *,
    genre: str | None = "pop",
    bpm: float = 120.0,
    tonic: str = "A",
    mode: str = "minor",
    energy: float = 0.5,
    valence: float = 0.0,
    arousal: float = 0.0,
    emotion: dict[str, float] | None = None,
    beats: list[float] | None = None,
    downbeats: list[float] | None = None,
    beats_per_bar: int | None = 4,
    curve: list[float] | None = None,
    **timbre: float,
) -> Tags:
    """A song's tags built by hand (an arch of energy unless ``curve`` says otherwise)."""
    if beats is None:
        period = 60.0 / bpm
        beats = [i * period for i in range(int(30 / period))]
    if curve is None:
        curve = [float(0.3 + 0.5 * np.sin(np.pi * x)) for x in np.linspace(0, 1, 64)]
    return make_tags(
        genre=genre,
        bpm=bpm,
        tonic=tonic,
        mode=mode,
        energy=energy,
        valence=valence,
        arousal=arousal,
        emotion=emotion,
        beats=beats,
        downbeats=beats[:: beats_per_bar or 4] if downbeats is None else downbeats,
        beats_per_bar=beats_per_bar,
        curve=curve,
        **timbre,
    )


def pixels(
    tags: Tags, style: Style = Style.abstract, seed: int = 3, *, width: int = SIDE, height: int = SIDE
) -> np.ndarray:
    img = render(tags, style=style, width=width, height=height, seed=seed)
    return np.asarray(img, dtype=np.float32) / 255.0


def luma(a: np.ndarray) -> np.ndarray:
    return 0.2126 * a[..., 0] + 0.7152 * a[..., 1] + 0.0722 * a[..., 2]


def warmth(a: np.ndarray) -> float:
    """Colour temperature: red minus blue, on average."""
    return float((a[..., 0] - a[..., 2]).mean())


def saturation(a: np.ndarray) -> float:
    hi, lo = a.max(-1), a.min(-1)
    return float(((hi - lo) / (hi + 1e-6)).mean())


def edge_energy(a: np.ndarray) -> float:
    """Mean luminance gradient: more, finer, sharper shapes → more edge energy."""
    g = luma(a)
    return float(np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean())


def hue_deg(a: np.ndarray) -> float:
    """Circular mean hue (HSV degrees) of the clearly coloured pixels."""
    hsv = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).convert("HSV"), dtype=np.float32)
    keep = (hsv[..., 1] > 80) & (hsv[..., 2] > 60)
    ang = hsv[..., 0][keep] / 255.0 * 2 * np.pi
    return float(np.degrees(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean())) % 360)


def request(
    tags: Tags,
    style: Style = Style.cover,
    *,
    width: int = SIDE,
    height: int = SIDE,
    seed: int = 5,
    num_images: int = 1,
) -> ImageRequest:
    prompt = Prompt(text="", negative="", style=style)
    return ImageRequest(
        tags=tags, prompt=prompt, width=width, height=height, seed=seed, num_images=num_images
    )


# -- the contract ------------------------------------------------------------------------------


def test_same_tags_and_seed_give_identical_bytes() -> None:
    tags = song(genre="jazz")
    for style in (Style.watercolor, Style.neon, Style.cinematic):
        a = encode_png(render(tags, style=style, width=SIDE, height=SIDE, seed=42))
        b = encode_png(render(song(genre="jazz"), style=style, width=SIDE, height=SIDE, seed=42))
        assert a == b


def test_seed_changes_the_picture_but_not_the_palette() -> None:
    renderer = Renderer()
    one, two = renderer.generate(request(song(genre="rock"), Style.abstract, num_images=2))
    assert (one.seed, two.seed) == (5, 6)
    a = np.asarray(one.image, dtype=np.float32) / 255
    b = np.asarray(two.image, dtype=np.float32) / 255
    assert np.abs(a - b).mean() > 0.04  # a visibly different arrangement …
    assert one.meta["palette"] == two.meta["palette"]  # … of the same song's colours
    assert one.meta["motif"] == two.meta["motif"]


@pytest.mark.parametrize("genre", [*GENRES, None])
def test_every_motif_varies_with_the_seed(genre: str | None) -> None:
    tags = song(genre=genre)
    for style in (Style.abstract, Style.cover):
        a, b = pixels(tags, style, seed=1), pixels(tags, style, seed=2)
        assert np.abs(a - b).mean() > 0.01, style


def test_different_songs_look_clearly_different() -> None:
    metal = song(genre="metal", bpm=180, tonic="E", energy=0.95, valence=-0.6, arousal=0.9)
    pop = song(genre="pop", bpm=110, tonic="C", mode="major", energy=0.6, valence=0.8, arousal=0.4)
    for style in (Style.cover, Style.minimal):
        a, b = pixels(metal, style), pixels(pop, style)
        assert np.abs(a - b).mean() > 0.15


@pytest.mark.parametrize("aspect", list(Aspect))
def test_every_aspect_has_the_requested_size(aspect: Aspect) -> None:
    w, h = aspect.size(320)
    [out] = Renderer().generate(request(song(), Style.cover, width=w, height=h))
    assert out.image.size == (w, h)
    assert out.image.mode == "RGB"
    assert out.backend == "renderer"


@pytest.mark.parametrize("style", list(Style))
def test_every_style_renders_a_picture(style: Style) -> None:
    [out] = Renderer().generate(request(song(genre="country"), style))
    a = np.asarray(out.image, dtype=np.float32) / 255
    assert luma(a).std() > 0.03  # not a blank field
    assert out.meta["style"] != "auto"
    assert out.meta["motif"] == "landscape"


def test_odd_and_tiny_sizes_render() -> None:
    for w, h in ((16, 16), (333, 517), (1000, 41)):
        assert render(song(), style=Style.cover, width=w, height=h, seed=1).size == (w, h)
    with pytest.raises(ValueError):
        render(song(), width=4, height=4)


def test_encode_png_round_trips() -> None:
    img = render(song(genre="disco"), style=Style.neon, width=SIDE, height=SIDE, seed=9)
    data = encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(img))


# -- traits move the picture in the promised direction ----------------------------------------

DIRECTION_GENRES = ["classical", "metal", "electronic", "hiphop", "country", "pop"]


@pytest.mark.parametrize("style", CONCRETE)
def test_happier_songs_are_warmer_and_brighter(style: Style) -> None:
    for genre in DIRECTION_GENRES:
        sad, happy = (
            pixels(song(genre=genre, valence=-0.8), style),
            pixels(song(genre=genre, valence=0.8), style),
        )
        assert warmth(happy) > warmth(sad), genre
        assert luma(happy).mean() > luma(sad).mean(), genre


@pytest.mark.parametrize("style", CONCRETE)
def test_excited_songs_are_more_saturated_and_contrasted(style: Style) -> None:
    for genre in DIRECTION_GENRES:
        calm, excited = (
            pixels(song(genre=genre, arousal=-0.8), style),
            pixels(song(genre=genre, arousal=0.8), style),
        )
        assert saturation(excited) > saturation(calm), genre
        assert luma(excited).std() > luma(calm).std(), genre


def test_tension_and_power_raise_contrast() -> None:
    for genre in ("rock", "jazz"):
        tender = pixels(song(genre=genre, emotion={"tenderness": 0.8}))
        tense = pixels(song(genre=genre, emotion={"tension": 0.6, "power": 0.5}))
        assert luma(tense).std() > luma(tender).std(), genre


@pytest.mark.parametrize("style", CONCRETE)
def test_more_energy_means_more_ink_and_edges(style: Style) -> None:
    for genre in DIRECTION_GENRES:
        quiet, loud = (
            pixels(song(genre=genre, energy=0.1), style),
            pixels(song(genre=genre, energy=0.95), style),
        )
        assert edge_energy(loud) > edge_energy(quiet), genre


@pytest.mark.parametrize("style", CONCRETE)
def test_minor_is_darker_than_major(style: Style) -> None:
    for genre in DIRECTION_GENRES:
        minor, major = (
            pixels(song(genre=genre, mode="minor"), style),
            pixels(song(genre=genre, mode="major"), style),
        )
        assert luma(minor).mean() < luma(major).mean(), genre


def test_key_turns_the_hue_around_the_circle_of_fifths() -> None:
    # C and F# sit opposite on the circle of fifths, so their pictures sit far apart on the wheel
    c = hue_deg(pixels(song(genre="metal", tonic="C", mode="major"), Style.neon))
    fs = hue_deg(pixels(song(genre="metal", tonic="F#", mode="major"), Style.neon))
    gap = abs((c - fs + 180) % 360 - 180)
    assert gap > 70
    # and neighbouring keys (a fifth apart) have neighbouring hues
    looks = [look_from_tags(song(tonic=t, mode="major")).key_hue for t in ("C", "G", "D", "A")]
    steps = [abs((b - a + 180) % 360 - 180) for a, b in itertools.pairwise(looks)]
    assert all(10 < s < 60 for s in steps)


def test_faster_tempo_repeats_shapes_more_often() -> None:
    for genre in ("electronic", "rock", "hiphop"):
        slow = pixels(song(genre=genre, bpm=70), Style.abstract)
        fast = pixels(song(genre=genre, bpm=170), Style.abstract)
        assert edge_energy(fast) > edge_energy(slow), genre
    assert look_from_tags(song(bpm=170)).rhythm.count > look_from_tags(song(bpm=70)).rhythm.count


def test_beats_and_downbeats_form_the_rhythm_grid() -> None:
    swung = [i * 0.5 + (0.09 if i % 2 else 0.0) for i in range(60)]
    rhythm = look_from_tags(song(bpm=120, beats=swung, downbeats=swung[::3], beats_per_bar=3)).rhythm
    assert rhythm.count == int(RHYTHM_WINDOW_S / 0.5)
    assert rhythm.accents.sum() == int(np.ceil(rhythm.count / 3))
    gaps = np.diff(rhythm.positions)
    assert gaps.max() - gaps.min() > 0.02  # the swing survives into the drawing
    # downbeats are drawn: a tracker hearing 3/4 instead of 4/4 changes the picture
    beats = [i * 0.5 for i in range(60)]
    a = pixels(song(genre="electronic", beats=beats, downbeats=beats[::4]))
    b = pixels(song(genre="electronic", beats=beats, downbeats=beats[::3]))
    assert np.abs(a - b).mean() > 0.005


def test_energy_curve_shapes_the_composition() -> None:
    x = np.linspace(0, 1, 64)
    rise = [float(v) for v in 0.1 + 0.8 * x]
    fall = [float(v) for v in 0.9 - 0.8 * x]
    for genre in ("country", "classical", "electronic"):
        a, b = pixels(song(genre=genre, curve=rise)), pixels(song(genre=genre, curve=fall))
        assert np.abs(a - b).mean() > 0.02, genre


# -- genre → motif -----------------------------------------------------------------------------


def test_each_genre_has_its_motif() -> None:
    for genre in GENRES:
        [out] = Renderer().generate(request(song(genre=genre), Style.abstract))
        assert out.meta["motif"] == MOTIF_BY_GENRE[genre].value
    assert len({MOTIF_BY_GENRE[g] for g in GENRES}) == len(Motif)


def _orientation(a: np.ndarray) -> tuple[float, float]:
    """(vertical / horizontal gradient ratio, how radially the gradients point from the centre)."""
    g = luma(a)
    gy, gx = np.gradient(g)
    h, w = g.shape
    yy, xx = np.mgrid[0:h, 0:w]
    ry, rx = yy - 0.45 * h, xx - 0.5 * w
    mag = np.hypot(gx, gy) + 1e-9
    radial = (np.abs(gx * rx + gy * ry) / (np.hypot(rx, ry) + 1e-6)).sum() / mag.sum()
    return float(np.abs(gy).sum() / np.abs(gx).sum()), float(radial)


@pytest.mark.parametrize("style", CONCRETE)
def test_genres_differ_in_structure(style: Style) -> None:
    blocks, _ = _orientation(pixels(song(genre="hiphop"), style))
    smoke, _ = _orientation(pixels(song(genre="blues"), style))
    assert blocks > 1.2 > 0.9 > smoke  # stacked slabs are horizontal, rising smoke vertical
    if style is not Style.minimal:  # (minimal sets its motif off-centre)
        _, rings = _orientation(pixels(song(genre="disco"), style))
        _, shards = _orientation(pixels(song(genre="metal"), style))
        assert rings > shards + 0.08  # concentric pulses point outward; shards every which way


def test_missing_genre_picks_a_motif_from_the_signal() -> None:
    soft = song(genre=None, bpm=66, percussiveness=0.08, brightness=0.4, valence=0.1, arousal=-0.5)
    hard = song(genre=None, bpm=172, percussiveness=0.7, brightness=0.8, valence=-0.5, arousal=0.85)
    assert look_from_tags(soft).motif is Motif.ribbons
    assert look_from_tags(hard).motif is Motif.shards
    for style in Style:
        a = render(soft, style=style, width=96, height=96, seed=1)
        b = render(soft, style=style, width=96, height=96, seed=1)
        assert a.tobytes() == b.tobytes()


def test_missing_models_still_render() -> None:
    tags = song(genre=None, emotion=None).model_copy(
        update={"genre": Classification(status="model_missing"), "emotion": Classification(status="error")}
    )
    for style in Style:
        a = pixels(tags, style)
        assert luma(a).std() > 0.02


# -- robustness --------------------------------------------------------------------------------

EXTREMES: list[dict[str, Any]] = [
    {"bpm": 40.0},
    {"bpm": 250.0},
    {"bpm": 1.0},
    {"bpm": 900.0},
    {"energy": 0.0},
    {"energy": 1.0},
    {"beats": [], "downbeats": []},
    {"beats": [0.0], "downbeats": []},
    {"beats": [0.5 * i for i in range(60)], "downbeats": []},
    {"curve": []},
    {"curve": [0.7]},
    {"curve": [0.0] * 500},
    {"curve": [1.0, 0.0] * 100},
    {"beats_per_bar": None},
    {"beats_per_bar": 7},
    {"valence": -1.0, "arousal": -1.0},
    {"valence": 1.0, "arousal": 1.0},
    {"onset_rate_hz": 0.0},
    {"onset_rate_hz": 40.0},
    {"percussiveness": 1.0, "brightness": 0.0},
    {"emotion": {"tension": 1.0, "power": 1.0, "sadness": 1.0}},
    {"emotion": {"unknown_feeling": 0.9}},
]


@pytest.mark.parametrize("extreme", EXTREMES, ids=lambda d: ",".join(d))
def test_extreme_values_do_not_crash(extreme: dict[str, Any]) -> None:
    for genre in [*GENRES, None]:
        tags = song(genre=genre, **extreme)
        style = CONCRETE[hash(genre or "") % len(CONCRETE)]
        img = render(tags, style=style, width=64, height=48, seed=2**32 - 1)
        assert img.size == (64, 48)
        assert np.isfinite(np.asarray(img, dtype=np.float32)).all()

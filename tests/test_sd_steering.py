"""Music beyond words: phrase weights from tag confidences, the renderer's composition and palette.

Random tiny weights can't say whether steering makes better pictures (``bench/sd_steering.py`` measures
that with real weights); these tests pin down that each channel reaches the picture, exactly as
specified, and degrades gracefully.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

import numpy as np
import torch
from PIL import Image

from m2i_engine.imaging.base import GeneratedImage, ImageBackend, ImageRequest
from m2i_engine.imaging.sd import SDOptions, SteeringSettings, load_sd_backend
from m2i_engine.imaging.sd.backend import SDBackend
from m2i_engine.imaging.sd.prompt_embeds import PromptEncoder, _phrase_spans
from m2i_engine.imaging.sd.steering import MusicSteering, _init_from, _to_oklab, transfer_colours
from m2i_engine.options import Style
from m2i_engine.prompt import Prompt
from m2i_engine.testing import make_tags
from tests.test_sd_tiny import (  # noqa: F401
    make_request,
    pixels,
    tiny_sd_dir,
    tiny_sdxl_dir,
    tiny_settings,
    torch_threads,
)

REPO = Path(__file__).resolve().parents[1]
COMPOSITION = SteeringSettings(init="composition", init_strength=0.6, phrase_weighting=1.0)


@pytest.fixture(scope="module")
def backend(tiny_sd_dir: Path) -> SDBackend:  # noqa: F811
    b = load_sd_backend(tiny_settings(tiny_sd_dir, max_batch=4), batching=False)
    assert isinstance(b, SDBackend)
    return b


# --- phrase weights -------------------------------------------------------------------------------------


def test_phrase_spans_follow_the_text_and_skip_left_out_phrases() -> None:
    prompt = Prompt(
        text="album cover, calm, jazz club",
        negative="",
        style=Style.cover,
        phrases=(("album cover", 1.0), ("calm", 1.2), ("not in text", 0.6), ("jazz club", 0.8)),
    )
    assert _phrase_spans(prompt, 1.0) == [(13, 17, 1.2), (19, 28, 0.8)]
    spans = _phrase_spans(prompt, 2.0)
    assert [(a, b) for a, b, _ in spans] == [(13, 17), (19, 28)]
    assert [w for _, _, w in spans] == pytest.approx([1.4, 0.6])
    assert _phrase_spans(prompt, 0.0) == []


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_unweighted_encoding_is_the_pipelines_own(
    family: str,
    tiny_sd_dir: Path,  # noqa: F811
    tiny_sdxl_dir: Path,  # noqa: F811
) -> None:
    b = load_sd_backend(tiny_settings(tiny_sd_dir if family == "sd" else tiny_sdxl_dir))
    assert isinstance(b, SDBackend)
    prompts = [make_request(genre=g).prompt for g in ("jazz", "metal")]
    ours = b.encoder.encode(prompts, weighting=0.0, negative=True)
    kw = {
        "device": b.pipeline.device,
        "num_images_per_prompt": 1,
        "do_classifier_free_guidance": True,
        "prompt": [p.text for p in prompts],
        "negative_prompt": [p.negative for p in prompts],
    }
    with torch.inference_mode():
        theirs = b.pipeline.encode_prompt(**kw)
    assert torch.equal(ours.embeds, theirs[0]) and torch.equal(ours.negative, theirs[1])  # type: ignore[arg-type]
    if family == "sdxl":
        assert torch.equal(ours.pooled, theirs[2]) and torch.equal(ours.negative_pooled, theirs[3])  # type: ignore[arg-type]


def test_phrase_weights_scale_only_their_tokens(backend: SDBackend) -> None:
    enc: PromptEncoder = backend.encoder
    prompt = Prompt(
        text="red rock, blue jazz",
        negative="",
        style=Style.cover,
        phrases=(("red rock", 1.0), ("blue jazz", 1.2)),
    )
    ids, weights = enc._tokenize(enc.tokenizers[0], [prompt.text], [_phrase_spans(prompt, 1.0)])
    n = int((ids[0] != enc.tokenizers[0].pad_token_id).sum())  # BOS + tokens (EOS = pad id here)
    tokens = enc.tokenizers[0].convert_ids_to_tokens(ids[0, :n].tolist())
    weighted = [t for t, w in zip(tokens, weights[0, :n].tolist(), strict=True) if w != 1.0]
    assert "".join(weighted).replace("</w>", "") == "bluejazz"
    plain = enc.encode([prompt], weighting=0.0, negative=False).embeds
    emphasised = enc.encode([prompt], weighting=1.0, negative=False).embeds
    assert not torch.allclose(plain, emphasised)
    assert torch.allclose(plain.mean(), emphasised.mean(), atol=1e-5)  # the mean is restored


def test_phrase_weighting_changes_the_picture(backend: SDBackend) -> None:
    request = make_request(seed=2)

    def draw(weighting: float) -> np.ndarray:
        steering = SteeringSettings(init="none", phrase_weighting=weighting)
        return pixels(backend.generate(request, SDOptions(steering=steering))[0].image)

    assert np.abs(draw(0.0) - draw(2.0)).mean() > 0.05


# --- the renderer's composition and palette ---------------------------------------------------------


def test_composition_init_carries_the_music_when_words_are_equal(backend: SDBackend) -> None:
    """Same prompt text, different songs: only the renderer's picture differs, and so do the images."""
    calm = make_tags(genre={"classical": 0.9}, energy=0.1, bpm=60, mode="major", tonic="C")
    loud = make_tags(genre={"metal": 0.9}, energy=0.95, bpm=170, mode="minor", tonic="F#")
    prompt = make_request().prompt
    opts = SDOptions(steering=COMPOSITION)
    a = backend.generate(ImageRequest(tags=calm, prompt=prompt, width=64, height=64, seed=5), opts)[0]
    b = backend.generate(ImageRequest(tags=loud, prompt=prompt, width=64, height=64, seed=5), opts)[0]
    text_only = backend.generate(ImageRequest(tags=calm, prompt=prompt, width=64, height=64, seed=5))[0]
    assert np.abs(pixels(a.image) - pixels(b.image)).mean() > 1.0
    assert np.abs(pixels(a.image) - pixels(text_only.image)).mean() > 1.0
    assert a.meta["steering"] == {
        "init": "composition",
        "init_strength": 0.6,
        "palette_transfer": 0.0,
        "phrase_weighting": 1.0,
    }
    assert len(a.meta["palette"]) >= 3  # type: ignore[arg-type]
    again = backend.generate(ImageRequest(tags=calm, prompt=prompt, width=64, height=64, seed=5), opts)[0]
    assert np.array_equal(pixels(a.image), pixels(again.image))


def test_img2img_runs_the_requested_number_of_denoising_steps(backend: SDBackend) -> None:
    seen: list[int] = []
    hook = backend.pipeline.unet.register_forward_pre_hook(lambda m, a: seen.append(1))
    try:
        backend.generate(make_request(), SDOptions(steps=3, steering=COMPOSITION))
    finally:
        hook.remove()
    assert len(seen) == 3  # ceil(3 / 0.6) = 5 scheduled, the last 3 run


def test_palette_init_keeps_colours_and_drops_shapes() -> None:
    rng = np.random.default_rng(0)
    render = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    blurred = _init_from(render, "palette")
    assert blurred is not None
    a, b = pixels(render), pixels(blurred)
    assert np.abs(a.mean((0, 1)) - b.mean((0, 1))).max() < 3.0  # same colours on average
    assert np.abs(np.diff(b, axis=0)).mean() < 0.2 * np.abs(np.diff(a, axis=0)).mean()  # no edges
    assert _init_from(render, "composition") is render and _init_from(render, "none") is None


def test_palette_transfer_moves_colours_toward_the_render() -> None:
    grey = Image.new("RGB", (32, 32), (128, 128, 128))
    orange = Image.fromarray(np.tile(np.array([[230, 120, 30], [200, 90, 20]], np.uint8), (16, 32, 1)))
    half = transfer_colours(grey, orange, amount=0.5)
    full = transfer_colours(grey, orange, amount=1.0)
    lab = [_to_oklab(pixels(im) / 255.0).reshape(-1, 3).mean(0) for im in (grey, half, full, orange)]
    dist = [float(np.linalg.norm(x - lab[3])) for x in lab[:3]]
    assert dist[0] > dist[1] > dist[2] and dist[2] < 0.03
    assert transfer_colours(grey, orange, amount=0.0) is grey


class BrokenRenderer(ImageBackend):
    name = "broken"

    def generate(self, request: ImageRequest) -> list[GeneratedImage]:
        raise RuntimeError("skia fell over")


def test_a_failing_renderer_never_fails_the_picture(backend: SDBackend) -> None:
    steering = MusicSteering(BrokenRenderer())
    guides = steering.guides(make_request(num_images=2), width=64, height=64, settings=COMPOSITION)
    assert [g.init_image for g in guides] == [None, None]
    assert guides[0].note == "renderer failed: RuntimeError"
    real = backend.steering
    backend.steering = steering
    try:
        image = backend.generate(make_request(), SDOptions(steering=COMPOSITION))[0]
    finally:
        backend.steering = real
    assert image.meta["steering"]["init"] == "none" and "steering_note" in image.meta  # type: ignore[index]


def test_measurement_script_smoke_runs_on_tiny_models(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("sd_steering", REPO / "bench" / "sd_steering.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "steering.json"
    assert (
        module.main(["--tiny", "--images", "1", "--modes", "text,composition_transfer", "--out", str(out)])
        == 0
    )
    import json

    report = json.loads(out.read_text())
    assert report["tiny"] is True and set(report["results"]) == {"text", "composition_transfer"}
    assert 0.0 <= report["results"]["text"]["top1"] <= 1.0


def test_slow_tokenizers_weight_the_same_tokens(backend: SDBackend) -> None:
    """transformers 4.x loads CLIP's slow tokenizer (no offsets): tokenising by phrase gives the same
    ids and weights."""
    from m2i_engine.imaging.sd.prompt_embeds import _tokenize_by_segment

    enc: PromptEncoder = backend.encoder
    prompt = make_request().prompt
    spans = [_phrase_spans(prompt, 1.0)]
    assert spans[0]
    fast_ids, fast_w = enc._tokenize(enc.tokenizers[0], [prompt.text], spans)
    slow_ids, slow_w = _tokenize_by_segment(enc.tokenizers[0], [prompt.text], spans)
    assert torch.equal(fast_ids, slow_ids) and torch.equal(fast_w, slow_w)

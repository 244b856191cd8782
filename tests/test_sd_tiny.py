"""Tiny Stable Diffusion pipelines built from configs (no download) and the user's loading path.

The other ``test_sd_*`` modules import the fixtures from here: a session-wide tiny SD 1.5-class
pipeline (:mod:`m2i_engine.imaging.sd.tiny`) saved with ``save_pretrained`` (and an SDXL-class one),
each built once per test run, and ``torch_threads``, which each module must import. The tests
here load them exactly as a user does — ``load_sd_backend(SDSettings(model=<folder>))``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import numpy as np
import torch

from m2i_engine.errors import BackendUnavailableError, ModelLoadError
from m2i_engine.imaging.base import ImageRequest
from m2i_engine.imaging.sd import SDOptions, SDSettings, SteeringSettings, load_sd_backend, sd_available
from m2i_engine.imaging.sd.backend import SDBackend
from m2i_engine.imaging.sd.batcher import SDBatcher
from m2i_engine.imaging.sd.tiny import build_tiny_sd, build_tiny_sdxl
from m2i_engine.options import VisualizeOptions
from m2i_engine.prompt import build_prompt
from m2i_engine.testing import make_tags

#: text-only steering: the cheapest path, used unless a test is about steering
NO_STEERING = SteeringSettings(init="none", palette_transfer=0.0, phrase_weighting=1.0)
_BUILT: dict[str, Path] = {}


def _built(kind: str, factory: pytest.TempPathFactory) -> Path:
    """Build each tiny pipeline once per test session, whichever module asks first."""
    if kind not in _BUILT:
        root = factory.mktemp(f"tiny-{kind}")
        _BUILT[kind] = (build_tiny_sd if kind == "sd" else build_tiny_sdxl)(root / "pipeline")
    return _BUILT[kind]


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _built("sd", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _built("sdxl", tmp_path_factory)


@pytest.fixture(scope="module", autouse=True)
def torch_threads() -> object:
    """One intra-op thread while an SD module runs: the test machines have 2 cores shared with other
    jobs, and the batcher's extra threads would each start their own OpenMP team (5× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("M2I_TEST_TORCH_THREADS", "1")))
    yield
    torch.set_num_threads(before)


def tiny_settings(model: Path | str, **overrides: object) -> SDSettings:
    """Settings for the tiny pipelines: CPU, 2 steps, 64², no batching, text-only steering."""
    base: dict[str, object] = {
        "model": str(model),
        "allow_cpu": True,
        "steps": 2,
        "guidance": 5.0,
        "max_batch": 1,
        "steering": NO_STEERING,
        "warmup": False,
    }
    base.update(overrides)
    return SDSettings(**base)  # type: ignore[arg-type]


def make_request(
    seed: int = 7,
    *,
    num_images: int = 1,
    size: int = 64,
    genre: str = "jazz",
    width: int | None = None,
    height: int | None = None,
    style: str = "auto",
) -> ImageRequest:
    tags = make_tags(genre={genre: 0.8, "pop": 0.1}, emotion={"calmness": 0.7, "tension": 0.25})
    prompt = build_prompt(tags, VisualizeOptions(style=style))  # type: ignore[arg-type]
    return ImageRequest(
        tags=tags, prompt=prompt, width=width or size, height=height or size, seed=seed, num_images=num_images
    )


def pixels(image: object) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


# --- the user's loading path --------------------------------------------------------------------------


def test_user_path_loads_folder_and_draws_right_size(tiny_sd_dir: Path) -> None:
    backend = load_sd_backend(tiny_settings(tiny_sd_dir))
    assert isinstance(backend, SDBackend)
    assert backend.profile.family == "sd15" and backend.profile.native_pixels == 64 * 64
    images = backend.generate(make_request(num_images=2))
    assert [im.image.size for im in images] == [(64, 64), (64, 64)]
    assert [im.seed for im in images] == [7, 8]
    assert images[0].backend == "sd" and images[0].meta["generated_size"] == [64, 64]
    assert not np.array_equal(pixels(images[0].image), pixels(images[1].image))


def test_same_seed_same_image_and_other_seed_differs(tiny_sd_dir: Path) -> None:
    backend = load_sd_backend(tiny_settings(tiny_sd_dir))
    a = backend.generate(make_request(seed=11))[0].image
    b = backend.generate(make_request(seed=11))[0].image
    c = backend.generate(make_request(seed=12))[0].image
    assert np.array_equal(pixels(a), pixels(b))
    assert np.abs(pixels(a) - pixels(c)).mean() > 1.0


def test_size_follows_request_aspect_on_the_model_grid(tiny_sd_dir: Path) -> None:
    """A 16:9 request at 1024 px is generated on the model's grid within its native area, then
    returned at the requested size."""
    backend = load_sd_backend(tiny_settings(tiny_sd_dir))
    out = backend.generate(make_request(width=1024, height=576))[0]
    gw, gh = out.meta["generated_size"]  # type: ignore[misc]
    assert out.image.size == (1024, 576)
    assert gw % backend.profile.size_multiple == 0 and gh % backend.profile.size_multiple == 0
    assert gw * gh <= 64 * 64 and gw > gh


def test_scheduler_by_name_and_hub_style_options(tiny_sd_dir: Path) -> None:
    backend = load_sd_backend(tiny_settings(tiny_sd_dir, scheduler="euler_a", steps=3))
    out = backend.generate(make_request())[0]
    assert out.meta["scheduler"] == "euler_a" and out.meta["steps"] == 3
    assert type(backend.schedulers.get("euler_a")).__name__ == "EulerAncestralDiscreteScheduler"


def test_few_step_model_defaults(tiny_sd_dir: Path) -> None:
    backend = load_sd_backend(
        tiny_settings(tiny_sd_dir, few_step=True, scheduler="lcm", steps=None, guidance=None)
    )
    assert backend.profile.few_step == "lcm"
    out = backend.generate(make_request())[0]
    assert out.meta["steps"] == 4 and out.meta["guidance"] == 1.0 and out.meta["scheduler"] == "lcm"


def test_sdxl_class_pipeline_loads_and_draws(tiny_sdxl_dir: Path) -> None:
    backend = load_sd_backend(tiny_settings(tiny_sdxl_dir))
    assert isinstance(backend, SDBackend) and backend.profile.family == "sdxl"
    a, _ = backend.generate(make_request(num_images=2))
    assert a.image.size == (64, 64)
    again = backend.generate(make_request())[0]
    assert np.array_equal(pixels(a.image), pixels(again.image))
    steered = backend.generate(make_request(), SDOptions(steering=SteeringSettings(init="composition")))[0]
    assert steered.meta["steering"]["init"] == "composition"  # type: ignore[index]
    assert np.abs(pixels(steered.image) - pixels(a.image)).mean() > 1.0


def test_hub_id_loads_from_the_local_cache(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """A hub id goes through diffusers' hub loading; here served from a Hugging Face cache laid out
    by hand (no network), which is what a second start on a server sees."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-sd"
    shutil.copytree(tiny_sd_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    settings = tiny_settings("someone/tiny-sd", cache_dir=tmp_path / "hub", local_files_only=True)
    ok, why = sd_available(settings)
    assert ok and "in the local cache" in why
    backend = load_sd_backend(settings)
    assert backend.generate(make_request())[0].image.size == (64, 64)


def test_factory_returns_batcher_when_batching(tiny_sd_dir: Path) -> None:
    backend = load_sd_backend(tiny_settings(tiny_sd_dir, max_batch=4))
    try:
        assert isinstance(backend, SDBatcher)
        assert backend.generate(make_request())[0].image.size == (64, 64)
    finally:
        backend.close()  # type: ignore[attr-defined]


# --- availability and clear failures --------------------------------------------------------------


def test_availability_explains_what_is_missing(tiny_sd_dir: Path, tmp_path: Path) -> None:
    ok, why = sd_available(SDSettings())
    assert not ok and "M2I_SD__MODEL" in why
    if not torch.cuda.is_available():
        ok, why = sd_available(SDSettings(model=str(tiny_sd_dir)))
        assert not ok and "M2I_SD__ALLOW_CPU" in why
    ok, why = sd_available(SDSettings(model=str(tmp_path), allow_cpu=True))
    assert not ok and "model_index.json" in why
    ok, why = sd_available(SDSettings(model=str(tmp_path / "nope"), allow_cpu=True))
    assert not ok and "no such model folder" in why
    ok, why = sd_available(SDSettings(model="someone/some-model", allow_cpu=True, local_files_only=True))
    assert not ok and "cache" in why
    ok, why = sd_available(SDSettings(model="someone/some-model", allow_cpu=True))
    assert ok and "downloaded on first load" in why
    ok, why = sd_available(SDSettings(model=str(tiny_sd_dir), allow_cpu=True))
    assert ok and "cpu" in why


def test_factory_failures_are_typed(tiny_sd_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError):
        load_sd_backend(SDSettings())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    with pytest.raises(ModelLoadError) as err:
        load_sd_backend(tiny_settings(broken))
    assert err.value.code == "model_load_failed"
    with pytest.raises(ModelLoadError):
        load_sd_backend(tiny_settings(tiny_sd_dir, loras=({"source": str(tmp_path / "no-lora")},)))


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tiny_sd_dir: Path) -> None:
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class AppSettings(BaseSettings):  # how the engine's Settings mounts it
        model_config = SettingsConfigDict(env_prefix="M2I_", env_nested_delimiter="__", extra="ignore")
        sd: SDSettings = SDSettings()

    monkeypatch.setenv("M2I_SD__MODEL", str(tiny_sd_dir))
    monkeypatch.setenv("M2I_SD__ALLOW_CPU", "true")
    monkeypatch.setenv("M2I_SD__STEERING__INIT", "palette")
    monkeypatch.setenv("M2I_SD__LORAS", '[{"source": "/loras/ink", "weight": 0.5}]')
    sd = AppSettings().sd
    assert sd.model == str(tiny_sd_dir) and sd.allow_cpu and sd.steering.init == "palette"
    assert sd.loras[0].source == "/loras/ink" and sd.loras[0].weight == 0.5
    assert sd_available(AppSettings())[0]


async def test_engine_serves_sd_and_falls_back_only_where_allowed(tiny_sd_dir: Path) -> None:
    """Through the real engine: auto and sd use the loaded SD backend; renderer stays the renderer."""
    import io

    import soundfile as sf

    from m2i_engine.config import Settings
    from m2i_engine.engine import Engine
    from m2i_engine.models import ModelRegistry
    from m2i_engine.synth import SongSpec, render_song

    buf = io.BytesIO()
    sf.write(buf, render_song(SongSpec(bpm=120, duration_s=4)), 22_050, format="WAV")
    settings = Settings(sd=tiny_settings(tiny_sd_dir, max_batch=2))
    async with Engine(settings, models=ModelRegistry()) as eng:
        auto = await eng.visualize(buf.getvalue(), VisualizeOptions(size=256, num_images=2, seed=17))
        sd = await eng.visualize(buf.getvalue(), VisualizeOptions(size=256, seed=17, backend="sd"))
        ren = await eng.visualize(buf.getvalue(), VisualizeOptions(size=256, seed=17, backend="renderer"))
    assert auto.backend == sd.backend == "sd" and not auto.notes
    assert [(im.seed, im.backend) for im in auto.images] == [(17, "sd"), (18, "sd")]
    assert ren.backend == "renderer" and ren.images[0].image.size == (256, 256)

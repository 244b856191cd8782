"""LoRA end to end: ``training/train_lora.py`` trains a tiny adapter, the backend loads it back.

The adapter must change the picture when applied, and the picture must come back when it is removed;
several adapters combine with weights; a style preset can name one; the saved file carries its
rank/alpha so it loads at the strength it was trained at.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import numpy as np
from PIL import Image

from m2i_engine.imaging.sd import LoraSpec, SDOptions, load_sd_backend
from m2i_engine.imaging.sd.backend import SDBackend
from m2i_engine.options import Style
from tests.test_sd_tiny import make_request, pixels, tiny_sd_dir, tiny_settings, torch_threads  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def _train_lora_module() -> object:
    spec = importlib.util.spec_from_file_location("train_lora", REPO / "training" / "train_lora.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_lora"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained_lora(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A rank-4, alpha-8 adapter trained for 6 steps on four flat-colour 'covers'."""
    root = tmp_path_factory.mktemp("lora")
    data = root / "data"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.full((72, 64, 3), (220, 50 * i, 30), np.uint8)).save(data / f"cover{i}.png")
        (data / f"cover{i}.txt").write_text(f"red album cover number {i}")
    out = root / "adapter"
    rc = _train_lora_module().main(
        [  # type: ignore[attr-defined]
            "--model",
            str(tiny_sd_dir),
            "--data",
            str(data),
            "--output",
            str(out),
            "--rank",
            "4",
            "--alpha",
            "8",
            "--lr",
            "1e-2",
            "--steps",
            "6",
            "--batch-size",
            "2",
            "--resolution",
            "64",
            "--random-flip",
            "--gradient-checkpointing",
            "--checkpoint-every",
            "3",
            "--validation-prompt",
            "red album cover",
            "--validate-every",
            "3",
            "--validation-inference-steps",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def backend(tiny_sd_dir: Path) -> SDBackend:  # noqa: F811
    b = load_sd_backend(tiny_settings(tiny_sd_dir))
    assert isinstance(b, SDBackend)
    return b


def test_training_writes_adapter_checkpoints_and_validation_images(trained_lora: Path) -> None:
    assert (trained_lora / "pytorch_lora_weights.safetensors").is_file()
    assert (trained_lora / "checkpoint-3" / "pytorch_lora_weights.safetensors").is_file()
    assert sorted(p.name for p in (trained_lora / "validation").glob("*.png")) == [
        "step000003-0.png",
        "step000006-0.png",
    ]
    info = json.loads((trained_lora / "m2i_lora.json").read_text())
    assert info["rank"] == 4 and info["alpha"] == 8 and info["steps"] == 6 and info["examples"] == 4


def test_lora_changes_the_image_and_removing_it_restores_it(backend: SDBackend, trained_lora: Path) -> None:
    request = make_request(seed=3)
    plain = pixels(backend.generate(request)[0].image)
    spec = LoraSpec(source=str(trained_lora), weight=1.0)
    styled = backend.generate(request, SDOptions(loras=(spec,)))[0]
    assert np.abs(pixels(styled.image) - plain).mean() > 1.0
    assert styled.meta["loras"] == [[str(trained_lora), 1.0]]
    # disabled (not unloaded): back to the base model exactly
    assert np.abs(pixels(backend.generate(request)[0].image) - plain).max() <= 1.0
    # unloaded: the same
    backend.loras.unload(spec)
    assert backend.loras.loaded == []
    assert np.abs(pixels(backend.generate(request)[0].image) - plain).max() <= 1.0


def test_adapter_keeps_its_trained_alpha(backend: SDBackend, trained_lora: Path) -> None:
    spec = LoraSpec(source=str(trained_lora / "pytorch_lora_weights.safetensors"), name="covers")
    backend.loras.activate(((spec, 1.0),))
    try:
        config = backend.pipeline.unet.peft_config["covers"]
        assert (config.r, config.lora_alpha) == (4, 8)
    finally:
        backend.loras.unload(spec)


def test_several_adapters_with_weights(backend: SDBackend, trained_lora: Path) -> None:
    request = make_request(seed=5)
    final = LoraSpec(source=str(trained_lora), name="final")
    early = LoraSpec(source=str(trained_lora / "checkpoint-3"), name="early")
    only_final = pixels(backend.generate(request, SDOptions(loras=(final,)))[0].image)
    both = backend.generate(
        request,
        SDOptions(loras=(final.model_copy(update={"weight": 0.6}), early.model_copy(update={"weight": 0.6}))),
    )[0]
    assert backend.loras.active == (("final", 0.6), ("early", 0.6))
    assert np.abs(pixels(both.image) - only_final).mean() > 0.2
    zero = backend.generate(request, SDOptions(loras=(final.model_copy(update={"weight": 0.0}),)))[0]
    assert backend.loras.active == () and zero.meta["loras"] == []


def test_style_preset_names_a_lora(tiny_sd_dir: Path, trained_lora: Path) -> None:  # noqa: F811
    from m2i_engine.imaging.sd.factory import load_sd_backend as factory

    b = factory(
        tiny_settings(tiny_sd_dir, style_lora_weight=0.9), style_loras={Style.neon: str(trained_lora)}
    )
    neon = b.generate(make_request(style="neon"))[0]
    cover = b.generate(make_request(style="cover"))[0]
    assert neon.meta["loras"] == [[str(trained_lora), 0.9]]
    assert cover.meta["loras"] == []
    off = factory(tiny_settings(tiny_sd_dir, style_loras=False), style_loras={Style.neon: str(trained_lora)})
    assert off.generate(make_request(style="neon"))[0].meta["loras"] == []


def test_training_reads_metadata_jsonl_and_refuses_bad_input(tiny_sd_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    mod = _train_lora_module()
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (64, 64), (10, 20, 200)).save(data / "a.png")
    (data / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "blue cover"}) + "\n")
    examples = mod.read_examples(data)  # type: ignore[attr-defined]
    assert [(e.image.name, e.caption) for e in examples] == [("a.png", "blue cover")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        mod.main(
            [
                "--model",
                str(tiny_sd_dir),
                "--data",
                str(empty),
                "--output",  # type: ignore[attr-defined]
                str(tmp_path / "o"),
                "--steps",
                "1",
                "--quiet",
            ]
        )
        == 2
    )
    assert (
        mod.main(
            [
                "--model",
                str(tiny_sd_dir),
                "--data",
                str(data),
                "--output",  # type: ignore[attr-defined]
                str(tmp_path / "o"),
                "--steps",
                "1",
                "--mixed-precision",
                "fp16",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 2
    )


def test_cli_visualize_with_sd_model_and_lora(tiny_sd_dir: Path, trained_lora: Path, tmp_path: Path) -> None:  # noqa: F811
    """The user's command: `m2i visualize SONG --backend sd --model DIR --lora DIR` writes SD images."""
    import io
    import os
    import subprocess

    import soundfile as sf
    from PIL import Image

    from m2i_engine.synth import SongSpec, render_song

    buf = io.BytesIO()
    sf.write(buf, render_song(SongSpec(bpm=100, duration_s=4)), 22_050, format="WAV")
    (tmp_path / "song.wav").write_bytes(buf.getvalue())
    env = {**os.environ, "M2I_SD__STEPS": "2", "M2I_SD__MAX_BATCH": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "m2i_engine.cli",
            "visualize",
            "song.wav",
            "--json",
            "--backend",
            "sd",
            "--model",
            str(tiny_sd_dir),
            "--lora",
            f"{trained_lora}:0.8",
            "--size",
            "256",
            "-o",
            "sd.png",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["backend"] == "sd" and not doc["notes"]
    assert Image.open(tmp_path / "sd.png").size == (256, 256)

"""The ``m2i`` command as a user runs it: exit codes, JSON, images on disk, friendly errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from m2i_engine.config import SDSettings
from m2i_engine.imaging.sd.runtime import sd_off_summary
from m2i_engine.synth import SongSpec, render_song


def run(*args: str, cwd: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "m2i_engine.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_visualize_with_no_song_uses_the_demo_and_writes_a_png(tmp_path: Path) -> None:
    r = run("visualize", "--size", "512", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Tempo" in r.stdout and "Prompt" in r.stdout and "Key" in r.stdout
    genre = next(line for line in r.stdout.splitlines() if line.startswith("Genre"))
    emotion = next(line for line in r.stdout.splitlines() if line.startswith("Emotion"))
    # the shipped models answer: labels with scores, not a note that a model is missing
    assert "model" not in genre and any(ch.isdigit() for ch in genre), genre
    assert "model" not in emotion and any(ch.isdigit() for ch in emotion), emotion
    img = Image.open(tmp_path / "m2i-demo.png")
    assert img.format == "PNG" and img.size == (512, 512)


def test_without_models_the_output_says_so_instead_of_inventing_labels(tmp_path: Path) -> None:
    (tmp_path / "no-models").mkdir()
    r = run("analyze", cwd=tmp_path, M2I_MODEL_DIR=str(tmp_path / "no-models"))
    assert r.returncode == 0, r.stderr
    assert "no genre model installed" in r.stdout and "no emotion model installed" in r.stdout


def test_visualize_json_on_a_real_file(tmp_path: Path) -> None:
    song = tmp_path / "my song.flac"
    spec = SongSpec(bpm=92, style="hiphop", tonic="F", mode="minor", duration_s=10, sr=44_100)
    sf.write(song, render_song(spec), spec.sr, format="FLAC")
    out = tmp_path / "out" / "cover.png"
    r = run(
        "visualize",
        str(song),
        "--json",
        "-o",
        str(out),
        "--aspect",
        "9:16",
        "--seed",
        "42",
        "--num-images",
        "2",
        "--style",
        "neon",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["seed"] == 42 and doc["style"] == "neon" and doc["backend"] == "renderer"
    assert abs(doc["tags"]["tempo"]["bpm"] - 92) / 92 < 0.04
    assert [i["seed"] for i in doc["images"]] == [42, 43]
    for item in doc["images"]:
        im = Image.open(item["path"])
        assert im.size == (576, 1024) == (item["width"], item["height"])
    assert (tmp_path / "out" / "cover-2.png").exists()


def test_the_operator_is_told_which_setting_turns_stable_diffusion_on(tmp_path: Path) -> None:
    """The CLI's user runs the server: its notes keep the hint a chat never shows."""
    no_sd = {"M2I_SD__MODEL": "", "M2I_SD_MODEL": ""}
    said = f"Drawn by the built-in renderer ({sd_off_summary(SDSettings(model=None))})."
    assert "M2I_" not in said and "Stable Diffusion" in said  # the sentence for anyone names no setting
    r = run("visualize", "--size", "256", cwd=tmp_path, **no_sd)
    assert r.returncode == 0, r.stderr
    assert said in r.stdout
    assert "M2I_SD__MODEL" in r.stdout
    j = run("visualize", "--size", "256", "--json", cwd=tmp_path, **no_sd)
    doc = json.loads(j.stdout)
    [note] = doc["notes"]
    assert note == said and "M2I_" not in note and "M2I_SD__MODEL" in doc["note_details"][note]
    refused = run("visualize", "--size", "256", "--backend", "sd", cwd=tmp_path, **no_sd)
    assert refused.returncode != 0 and "(backend_unavailable)" in refused.stderr
    assert "M2I_SD__MODEL" in refused.stderr


def test_analyze_prints_tags_only(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, render_song(SongSpec(bpm=140, duration_s=8)), 22_050, format="WAV")
    (tmp_path / "a.wav").write_bytes(buf.getvalue())
    r = run("analyze", "a.wav", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tags = json.loads(r.stdout)["tags"]
    assert {"tempo", "key", "loudness", "genre", "emotion", "mood"} <= set(tags)
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b"%PDF-1.4\n" + b"x" * 5000, "not_audio"),
        (b"just some text, not a song\n" * 200, "not_audio"),
    ],
)
def test_bad_files_give_a_clear_message_and_nonzero_exit(tmp_path: Path, content: bytes, code: str) -> None:
    (tmp_path / "bad.mp3").write_bytes(content)
    r = run("visualize", "bad.mp3", cwd=tmp_path)
    assert r.returncode == 2
    assert f"({code})" in r.stderr and "Traceback" not in r.stderr + r.stdout
    j = run("visualize", "bad.mp3", "--json", cwd=tmp_path)
    assert j.returncode == 2 and json.loads(j.stdout)["error"]["code"] == code


def test_missing_file_and_bad_option_exit_2(tmp_path: Path) -> None:
    r = run("analyze", "nope.wav", cwd=tmp_path)
    assert r.returncode == 2 and "nope.wav" in r.stderr and "Traceback" not in r.stderr
    r = run("visualize", "--seed", "-3", cwd=tmp_path)
    assert r.returncode == 2 and "--seed" in r.stderr


def test_help_lists_every_option(tmp_path: Path) -> None:
    r = run("visualize", "--help", cwd=tmp_path)
    assert r.returncode == 0
    for flag in ("--style", "--prompt", "--negative", "--aspect", "--seed", "--backend", "--num-images"):
        assert flag in r.stdout

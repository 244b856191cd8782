"""``m2i … | head`` ends quietly: a reader that stops early is normal on a command line, not an error.

Each case runs the real CLI in a subprocess whose stdout is a pipe the test closes early, the way
``head -1`` does (after the first line) or ``true`` does (before reading anything). Like ``git log |
head`` the command must then exit with 0 or 141 (128 + SIGPIPE) and write nothing on stderr: no
``BrokenPipeError`` traceback, no "Exception ignored" at exit, no error message for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from m2i_engine.synth import SongSpec, render_song

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of short synthetic songs (tagging each prints one JSON line)."""
    folder = tmp_path_factory.mktemp("clips")
    for i, style in enumerate(["house", "ballad", "rock", "dnb"]):
        spec = SongSpec(bpm=90 + 13 * i, style=style, duration_s=4, seed=i)  # type: ignore[arg-type]
        sf.write(folder / f"song-{i}.wav", render_song(spec), spec.sr, subtype="PCM_16")
    return folder


def piped(args: list[str], *, read_lines: int, cwd: Path) -> tuple[int, str, list[bytes]]:
    """Run ``m2i *args`` into a pipe; read ``read_lines`` lines (0: none), then close our end."""
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "m2i_engine.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(read_lines)]
    proc.stdout.close()  # the reader is gone: every later write of the CLI hits a closed pipe
    stderr = proc.stderr.read().decode(errors="replace")
    return proc.wait(timeout=240), stderr, lines


def assert_quiet(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert stderr == "", stderr
    assert code in (0, 141), (code, stderr)


@pytest.mark.parametrize(
    "args", [["--help"], ["visualize", "--help"], ["analyze", "--help"]], ids=lambda a: " ".join(a)
)
def test_help_into_a_closed_pipe_is_quiet(args: list[str], tmp_path: Path) -> None:
    code, stderr, _ = piped(args, read_lines=0, cwd=tmp_path)
    assert_quiet(code, stderr)


def test_analyze_jsonl_on_a_folder_into_head_1_is_quiet(clips: Path, tmp_path: Path) -> None:
    code, stderr, lines = piped(["analyze", "--json", str(clips)], read_lines=1, cwd=tmp_path)
    assert lines[0].startswith(b'{"file": ') and b"song-0.wav" in lines[0]  # it really ran, then stopped
    assert_quiet(code, stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "--json"],
        ["analyze"],
        ["visualize", "--json", "--size", "256"],
        ["visualize", "--size", "256"],
    ],
    ids=" ".join,
)
def test_one_song_into_a_closed_pipe_is_quiet(args: list[str], clips: Path, tmp_path: Path) -> None:
    code, stderr, _ = piped([*args, str(clips / "song-1.wav")], read_lines=0, cwd=tmp_path)
    assert_quiet(code, stderr)

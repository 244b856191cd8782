"""``m2i analyze`` on many files and folders: one line per file in order, bad files counted, never fatal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from m2i_engine import batch
from m2i_engine.errors import TooShortError
from m2i_engine.synth import SongSpec, render_song
from m2i_engine.tags import Tags
from m2i_engine.testing import make_tags
from tests.audiofiles import encode
from tests.test_cli import run

SR = 22_050


def song(path: Path, *, bpm: float = 120.0, seconds: float = 6.0) -> Path:
    """A short synthetic song in the format its suffix names (wav, flac, ogg, mp3, …; none: WAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y = render_song(SongSpec(bpm=bpm, duration_s=seconds, sr=SR))
    path.write_bytes(encode(y, SR, path.suffix[1:].lower() or "wav"))
    return path


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_jsonl_gives_one_line_per_file_in_order_and_bad_files_do_not_stop_the_batch(tmp_path: Path) -> None:
    folder = tmp_path / "songs"
    song(folder / "a.wav", bpm=100)
    (folder / "b.mp3").write_text("not a song, just text\n" * 200)  # sorted between the good ones
    song(folder / "c.flac", bpm=140)
    song(folder / "d.ogg", seconds=1.0)  # real audio, too short to tag
    r = run("analyze", "songs", "--jsonl", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    docs = lines(r.stdout)
    names = ("a.wav", "b.mp3", "c.flac", "d.ogg")
    assert [d["file"] for d in docs] == [str(Path("songs") / n) for n in names]
    assert docs[1]["error"]["code"] == "not_audio" and docs[1]["error"]["message"]
    assert docs[3]["error"]["code"] == "too_short"
    for good, bpm in ((docs[0], 100), (docs[2], 140)):
        assert "error" not in good
        tags = Tags.model_validate(good["tags"])
        assert abs(tags.tempo.bpm - bpm) / bpm < 0.04
    assert re.search(r"2 songs tagged, 2 failed \(not_audio 1, too_short 1\) in [\d.]+ s", r.stderr), r.stderr
    assert "Traceback" not in r.stderr


def test_a_folder_is_walked_recursively_in_sorted_order_skipping_hidden_and_non_audio(tmp_path: Path) -> None:
    root = tmp_path / "music"
    for name in (
        "b.flac",
        "a/z.mp3",
        "a/deeper/y.WAV",
        "a b/x.opus",
        "c.m4a",
        ".hidden.wav",
        ".cache/skipped.wav",
        "a/.git/objects.mp3",
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "notes.txt").write_text("liner notes")
    (root / "cover.jpg").write_bytes(b"\xff\xd8")
    odd = tmp_path / "voice note.bin"  # named explicitly: tried whatever its suffix
    odd.write_bytes(b"x")
    found = batch.discover([odd, root])
    assert found == [odd, *(root / n for n in ("a/deeper/y.WAV", "a/z.mp3", "a b/x.opus", "b.flac", "c.m4a"))]


def test_an_all_good_batch_exits_0_and_prints_a_table_per_file(tmp_path: Path) -> None:
    song(tmp_path / "lib" / "one.wav", bpm=90)
    song(tmp_path / "lib" / "sub" / "two.mp3", bpm=128)
    song(tmp_path / "three", bpm=110)  # no suffix: named explicitly, so still tried (content is WAV)
    r = run("analyze", "lib", "three", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    files = [str(Path("lib/one.wav")), str(Path("lib/sub/two.mp3")), "three"]
    assert [line for line in out if line.strip() in files] == files  # a header per file, in order
    assert sum(line.startswith("Tempo") for line in out) == 3
    assert sum(line.startswith("Song") for line in out) == 3
    assert "3 songs tagged, 0 failed in" in r.stderr
    # --json with several songs means --jsonl
    j = run("analyze", "lib", "--json", cwd=tmp_path)
    assert j.returncode == 0, j.stderr
    assert [d["file"] for d in lines(j.stdout)] == files[:2]


class _FakeEngine:
    """Stands in for the engine: no models, a fixed answer, and a crash or bad input on cue."""

    started = 0

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def __aenter__(self) -> _FakeEngine:
        type(self).started += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def analyze(self, path: Path) -> Any:
        if path.name == "boom.wav":
            raise RuntimeError("a bug")
        if path.name == "short.wav":
            raise TooShortError()
        return type("Result", (), {"tags": make_tags(bpm=len(path.name) * 10.0)})()


@pytest.mark.parametrize("jobs", [1, 3])
def test_an_unexpected_error_is_internal_on_its_line_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], jobs: int
) -> None:
    monkeypatch.setattr(batch, "Engine", _FakeEngine)
    _FakeEngine.started = 0
    names = ["a.wav", "boom.wav", "ccc.wav", "short.wav", "eeeee.wav"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    code = batch.run_batch([tmp_path / n for n in names] + [tmp_path / "missing.wav"], jsonl=True, jobs=jobs)
    assert code == 1  # not the file's fault: outranks the bad input
    assert _FakeEngine.started == 1  # one engine (one set of models) for the whole batch
    captured = capsys.readouterr()
    docs = lines(captured.out)
    assert [Path(d["file"]).name for d in docs] == [*names, "missing.wav"]
    assert [d.get("error", {}).get("code") for d in docs] == [
        None,
        "internal_error",
        None,
        "too_short",
        None,
        "bad_input",
    ]
    assert [d["tags"]["tempo"]["bpm"] for d in docs if "tags" in d] == [50.0, 70.0, 90.0]
    assert "3 songs tagged, 3 failed (bad_input 1, internal_error 1, too_short 1)" in captured.err


def test_summary_and_exit_codes() -> None:
    s = batch.Summary(elapsed_s=2.0)
    assert s.exit_code == 0
    for _ in range(4):
        s.add(batch.Outcome(Path("x.wav"), tags=make_tags()))
    assert s.exit_code == 0 and s.text() == "4 songs tagged, 0 failed in 2.0 s (2.00 songs/s)"
    s.add(batch.Outcome(Path("y.wav"), error=TooShortError()))
    assert s.exit_code == 2 and "1 failed (too_short 1)" in s.text()

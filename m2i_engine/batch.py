"""``m2i analyze`` on many songs in one process: find the files, tag them one by one, sum up.

Starting ``m2i`` costs seconds (imports, loading the genre/emotion models) while tagging one song
costs well under a second, so a folder of songs is tagged by one :class:`~m2i_engine.engine.Engine`
(one :class:`~m2i_engine.models.ModelRegistry`) for the whole batch. A bad file never stops the
batch: it is reported on its own line with its error code, counted, and reflected in the exit code.

Offers
------
- :data:`AUDIO_EXTENSIONS` / :func:`discover` — which files of a folder are tried, in what order.
- :func:`run_batch` — tag the files and print JSON lines or tag tables, then the summary.
- :class:`Outcome` / :class:`Summary` — one file's result, and the counts the exit code comes from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from m2i_engine.config import Settings
from m2i_engine.engine import Engine
from m2i_engine.errors import InputError, M2IError, describe
from m2i_engine.tags import Tags

log = logging.getLogger(__name__)

#: Suffixes picked when walking a folder. Decoding sniffs the content, so this only decides which
#: files of a folder are worth trying; a file named on the command line is tried whatever its name.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".aiff", ".aif", ".mp4"}
)

PrintTags = Callable[[Tags, str], None]


@dataclass(frozen=True)
class Outcome:
    """One file's result: ``tags`` on success, else the ``error`` a user is shown."""

    file: Path
    tags: Tags | None = None
    error: M2IError | None = None

    def to_json(self) -> dict[str, object]:
        """The ``--jsonl`` line: ``{"file", "tags"}`` or ``{"file", "error": {"code", "message"}}``."""
        if self.tags is not None:
            return {"file": str(self.file), "tags": self.tags.model_dump(mode="json")}
        assert self.error is not None
        return {"file": str(self.file), "error": self.error.to_dict()}


@dataclass
class Summary:
    """Counts for the closing line and the exit code."""

    tagged: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    #: exit codes of failures that were not the user's file (internal, service): they outrank bad input
    worst_exit: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    def add(self, outcome: Outcome) -> None:
        if outcome.error is None:
            self.tagged += 1
            return
        self.failed[outcome.error.code] += 1
        if not isinstance(outcome.error, InputError):
            self.worst_exit = self.worst_exit or outcome.error.exit_code

    @property
    def exit_code(self) -> int:
        """0 when every file was tagged; 2 when some were bad input (the rest still tagged); an
        internal (1) or service (3) failure on any file wins over bad input, as it is not the file's fault."""
        if self.worst_exit:
            return self.worst_exit
        return 2 if self.failed else 0

    def text(self) -> str:
        """``N songs tagged, M failed (not_audio 1, too_short 1) in X s (Y songs/s)``; the time
        includes loading the models, so Y is what a user gets from the command, not a warm rate."""
        n_failed = sum(self.failed.values())
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.failed.items()))
        rate = self.tagged / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (
            f"{self.tagged} {'song' if self.tagged == 1 else 'songs'} tagged, {n_failed} failed"
            f"{f' ({codes})' if codes else ''} in {self.elapsed_s:.1f} s ({rate:.2f} songs/s)"
            f"{' — interrupted' if self.interrupted else ''}"
        )


def discover(paths: Sequence[Path]) -> list[Path]:
    """The files to tag, in input order: a file as given (tried whatever its name, or reported
    missing later), a folder walked recursively for :data:`AUDIO_EXTENSIONS`, sorted by path so a
    rerun gives the same order, hidden files and folders (``.name``) skipped."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(_walk(path))
        else:
            found.append(path)
    return found


def _walk(root: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prune: never descend into them
        base = Path(dirpath)
        files.extend(
            base / name
            for name in filenames
            if not name.startswith(".")
            and Path(name).suffix.lower() in AUDIO_EXTENSIONS
            and (base / name).is_file()
        )
    # sorting on the parts (not the string) keeps a folder's files together: "a/x" before "a b/x"
    return sorted(files, key=lambda p: p.relative_to(root).parts)


def run_batch(
    paths: Sequence[Path],
    *,
    settings: Settings | None = None,
    jsonl: bool = False,
    jobs: int = 1,
    print_tags: PrintTags | None = None,
    out: Console | None = None,
    err: Console | None = None,
) -> int:
    """Tag every file under ``paths`` with one engine and return the exit code (see :class:`Summary`).

    ``jsonl`` writes one flushed JSON object per file on stdout, in input order; otherwise each file
    gets its name as a header and ``print_tags(tags, name)`` (the CLI's table). Errors without
    ``jsonl`` go to stderr, like a single file's. ``jobs`` > 1 tags that many songs at once on the
    engine's worker threads; output stays in input order.
    """
    out = out or Console()
    err = err or Console(stderr=True)
    files = discover(paths)
    if not files:
        raise InputError(
            f"No audio files found in {', '.join(str(p) for p in paths)} "
            f"(looked for {', '.join(sorted(e[1:] for e in AUDIO_EXTENSIONS))})."
        )
    jobs = max(1, min(jobs, len(files)))
    settings = (settings or Settings()).model_copy(
        # analysis never draws: don't load Stable Diffusion; one worker thread per job
        update={"backend": "renderer", "workers": jobs}
    )
    summary = Summary()
    shown = 0

    def show(outcome: Outcome) -> None:
        nonlocal shown
        summary.add(outcome)
        if jsonl:
            sys.stdout.write(json.dumps(outcome.to_json()) + "\n")
            sys.stdout.flush()
        else:
            _show_human(outcome, first=shown == 0, print_tags=print_tags, out=out, err=err)
        shown += 1

    t0 = time.perf_counter()
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
        redirect_stdout=out.is_terminal,
    )
    reader_left = False
    try:
        with progress:
            task = progress.add_task("Loading models…", total=len(files))
            asyncio.run(_tag_all(files, settings, jobs, show, progress, task))
    except (KeyboardInterrupt, asyncio.CancelledError):
        summary.interrupted = True
        raise
    except BrokenPipeError:  # ``m2i analyze --jsonl dir | head``: the reader has all it wanted
        reader_left = True
        raise
    finally:
        summary.elapsed_s = time.perf_counter() - t0
        if shown and not reader_left:
            err.print(summary.text(), markup=False, highlight=False, soft_wrap=True)  # one greppable line
    return summary.exit_code


async def _tag_all(
    files: list[Path],
    settings: Settings,
    jobs: int,
    show: Callable[[Outcome], None],
    progress: Progress,
    task: int,
) -> None:
    """``jobs`` workers take the next file in turn; results wait in ``done`` until every earlier file
    has been shown, so output order is input order however long each song takes."""
    done: dict[int, Outcome] = {}
    next_to_show = 0
    todo = iter(range(len(files)))  # shared: each index is taken by exactly one worker

    async with Engine(settings) as engine:
        progress.update(task, description="Tagging")

        async def worker() -> None:
            nonlocal next_to_show
            for i in todo:
                progress.update(task, description=escape(files[i].name))
                done[i] = await _tag_one(engine, files[i])
                progress.advance(task)
                while next_to_show in done:
                    show(done.pop(next_to_show))
                    next_to_show += 1

        await asyncio.gather(*(worker() for _ in range(jobs)))


async def _tag_one(engine: Engine, path: Path) -> Outcome:
    """Never raises for one file's sake: bad input keeps its code, anything else is ``internal_error``."""
    try:
        if not path.is_file():  # the engine's own message is written for chat uploads
            raise InputError(f"{path}: no such file.")
        result = await engine.analyze(path)
    except M2IError as exc:
        return Outcome(path, error=exc)
    except Exception as exc:
        log.debug("tagging %s failed unexpectedly", path, exc_info=True)
        return Outcome(path, error=describe(exc))
    return Outcome(path, tags=result.tags)


def _show_human(
    outcome: Outcome, *, first: bool, print_tags: PrintTags | None, out: Console, err: Console
) -> None:
    if not first:
        out.print()
    out.print(f"[bold]{escape(str(outcome.file))}[/]")
    if outcome.tags is not None:
        if print_tags is not None:
            print_tags(outcome.tags, outcome.file.stem)
        else:
            out.print_json(json.dumps(outcome.tags.model_dump(mode="json")))
    else:
        assert outcome.error is not None
        err.print(
            f"[bold red]Error[/] {escape(str(outcome.file))} [dim]({outcome.error.code})[/]: "
            f"{escape(outcome.error.message)}",
            soft_wrap=True,
        )

"""The ``m2i`` command: analyse or visualise a song from the terminal with the same engine the bots use.

Options for ``visualize`` are generated from :class:`~m2i_engine.options.VisualizeOptions`, so the
CLI, bots and HTTP API always offer the same choices. Other packages (the bots, the HTTP server)
add sub-commands through the ``m2i.commands`` entry-point group; the engine never imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import io
import json
import logging
import sys
import time
import typing
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from m2i_engine.audio.decode import read_audio_bytes
from m2i_engine.audio.sniff import HEAD_BYTES, sniff_format
from m2i_engine.batch import run_batch
from m2i_engine.config import Settings
from m2i_engine.engine import AnimationResult, Engine, Progress, Stage, VideoResult, VisualizeResult
from m2i_engine.errors import (
    BackendUnavailableError,
    InputError,
    InvalidOptionError,
    M2IError,
    describe,
)
from m2i_engine.options import (
    AnimateOptions,
    Aspect,
    VideoOptions,
    VisualizeOptions,
    check_video_options,
    option_fields,
)
from m2i_engine.tags import Classification, Tags


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        """Rich would exit 1 here; hand the closed pipe to :func:`main`, which ends quietly with 141."""
        self.quiet = True
        raise BrokenPipeError


out = _Stdout()
err = Console(stderr=True)
_M = typing.TypeVar("_M", bound=BaseModel)

_STAGE_TEXT = {
    Stage.queued: "Waiting in the queue…",
    Stage.decoding: "Decoding audio…",
    Stage.analysing: "Listening (tempo, key, loudness, genre, emotion)…",
    Stage.drawing: "Drawing…",
    Stage.done: "Done.",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A reader that stops early (``m2i analyze --json … | head -1``) is normal on a
    command line, so a closed stdout ends the command quietly with 141 (128 + SIGPIPE), like git."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # meet a closed pipe here, not in the interpreter's exit (a second traceback)
    except BrokenPipeError:
        import contextlib
        import os

        with contextlib.suppress(OSError, ValueError):  # what is still buffered now flushes into nothing
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted.[/]")
        return 130
    except M2IError as exc:
        return _report_error(exc, args)
    except BrokenPipeError:
        raise  # not a failure to report: the reader left (see main)
    except Exception as exc:  # never a traceback for a user; -v shows it
        logging.getLogger("m2i").debug("unexpected error", exc_info=True)
        return _report_error(describe(exc), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2i", description="Music to image: hear a song, draw it.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log details (to stderr).")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    vis = sub.add_parser(
        "visualize",
        help="Tag a song and draw an image from it.",
        description="Tag a song and draw an image from it. Without SONG, a built-in demo clip is used.",
    )
    _add_song_args(vis)
    vis.add_argument("-o", "--out", type=Path, help="Image path (default: m2i-<song>.png here).")
    add_option_flags(vis)
    anim = vis.add_argument_group("Animation")
    anim.add_argument(
        "--animate",
        action="store_true",
        help="Also write a beat-synced loop beside the image: <out>.gif and <out>.mp4.",
    )
    add_option_flags(anim, AnimateOptions, prefix="anim_")
    _add_video_flags(vis)
    sd = vis.add_argument_group("Stable Diffusion (with --backend sd or auto)")
    sd.add_argument("--model", help="Diffusers folder or hub id (same as M2I_SD__MODEL).")
    sd.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="DIR[:WEIGHT]",
        help="LoRA adapter folder or hub id, optionally with a weight; repeatable.",
    )
    vis.set_defaults(func=_cmd_visualize)

    ana = sub.add_parser(
        "analyze",
        help="Tag songs (no image): files or whole folders.",
        description="Tag songs (no image). Folders are searched recursively for audio "
        "files; many songs are tagged in one process, models loaded once. "
        "Without FILE_OR_DIR, the built-in demo clip is used.",
    )
    ana.add_argument(
        "songs",
        nargs="*",
        type=Path,
        metavar="FILE_OR_DIR",
        help="Audio files (any common format) and/or folders of them.",
    )
    ana.add_argument(
        "--json",
        action="store_true",
        help="Print machine-readable JSON on stdout (with several songs: the same as --jsonl).",
    )
    ana.add_argument(
        "--jsonl", action="store_true", help="One JSON object per song per line on stdout, in input order."
    )
    ana.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="Songs tagged at once on worker threads (default: 1).",
    )
    ana.set_defaults(func=_cmd_analyze)

    demo = sub.add_parser("demo-audio", help="Write the built-in demo clip as a WAV file.")
    demo.add_argument("out", type=Path, nargs="?", default=Path("m2i-demo.wav"))
    demo.set_defaults(func=_cmd_demo_audio)

    for ep in entry_points(group="m2i.commands"):
        try:
            ep.load()(sub)
        except Exception as exc:  # an optional front end with missing extras must not break m2i
            logging.getLogger("m2i").debug("command %s unavailable: %s", ep.name, exc)
    return parser


def add_option_flags(parser: Any, model: type[BaseModel] = VisualizeOptions, *, prefix: str = "opt_") -> None:
    """One ``--flag`` per field of ``model`` (:class:`VisualizeOptions` by default), with its type,
    choices and help, stored as ``<prefix><field>``; ``parser`` may be an argument group."""
    for field in option_fields(model):
        flag = "--" + field.name.replace("_", "-")
        kwargs: dict[str, Any] = {
            "dest": f"{prefix}{field.name}",
            "default": None,
            "help": f"{field.help} (default: {_default_text(field.default)})",
        }
        if field.is_enum:
            kwargs["choices"] = [m.value for m in field.choices]
        elif field.kind in (int, float):
            kwargs["type"] = field.kind
            kwargs["metavar"] = "N"
        else:
            kwargs["metavar"] = "TEXT"
        parser.add_argument(flag, **kwargs)


def _add_video_flags(parser: argparse.ArgumentParser) -> None:
    """``--video`` and the clip's ``--start``/``--length``; its frame rate, aspect and size are the
    ``--fps``, ``--aspect`` and ``--size`` flags, with a video's own defaults when not given."""
    fields = VideoOptions.model_fields
    group = parser.add_argument_group("Video")
    group.add_argument(
        "--video",
        action="store_true",
        help="Also write a music video beside the image: <out>-video.mp4 (H.264 + AAC), the "
        "song's clip with its sound, pulsing on its beats and changing scene at its sections. "
        f"--fps, --aspect and --size apply (defaults {fields['fps'].default} fps, "
        f"{fields['aspect'].default.value}, {fields['size'].default} px).",
    )
    group.add_argument(
        "--start",
        type=float,
        metavar="S",
        dest="video_start",
        help=f"{fields['start'].description} (default: none)",
    )
    group.add_argument(
        "--length",
        type=float,
        metavar="S",
        dest="video_length",
        help=f"{fields['length'].description} (default: none)",
    )
    group.add_argument(
        "--max-mb",
        type=float,
        metavar="MB",
        dest="video_max_mb",
        help="Largest video file in megabytes: a bigger one is encoded again at a lower bit "
        "rate, or refused when it can't fit (default: no limit).",
    )


def video_options_from_args(args: argparse.Namespace) -> VideoOptions:
    """The video's options: ``--start``/``--length``, and ``--fps``/``--aspect``/``--size`` when given."""
    given: dict[str, Any] = {
        "start": args.video_start,
        "length": args.video_length,
        "fps": args.anim_fps,
        "size": args.opt_size,
        "aspect": Aspect(args.opt_aspect) if args.opt_aspect else None,
    }
    try:
        return VideoOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidOptionError(f"Invalid --{field.replace('_', '-')} for a video: {first['msg']}.") from exc


def options_from_args(args: argparse.Namespace) -> VisualizeOptions:
    return _model_from_args(args, VisualizeOptions, "opt_")


def animate_options_from_args(args: argparse.Namespace) -> AnimateOptions:
    return _model_from_args(args, AnimateOptions, "anim_")


def _model_from_args(args: argparse.Namespace, model: type[_M], prefix: str) -> _M:
    given = {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}
    try:
        return model(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidOptionError(f"Invalid --{field.replace('_', '-')}: {first['msg']}.") from exc


# --- commands ------------------------------------------------------------------------------------


def _cmd_visualize(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    animation = animate_options_from_args(args) if args.animate else None
    video = video_options_from_args(args) if args.video else None
    if video is not None:
        check_video_options(options)  # refused before the models load
    max_bytes = round(args.video_max_mb * 1e6) if args.video_max_mb else None
    settings = _settings_with_sd(Settings(), args, explicit_sd=options.backend.value == "sd")
    source, name = _song(args, settings)
    first = args.out or Path(f"m2i-{name}.png")
    video_path = first.with_name(f"{first.stem}-video.mp4")
    t0 = time.perf_counter()

    async def draw(
        eng: Engine, cb: Any
    ) -> tuple[VisualizeResult, AnimationResult | None, VideoResult | None]:
        still = await eng.visualize(source, options, progress=cb)
        loop = await eng.animate(source, options, animation, progress=cb) if animation else None
        clip = None
        if video is not None:
            video_path.parent.mkdir(parents=True, exist_ok=True)
            clip = await eng.video(source, options, video, out=video_path, max_bytes=max_bytes, progress=cb)
        return still, loop, clip

    result, loop, clip = asyncio.run(_run(draw, args, settings=settings))
    total_s = time.perf_counter() - t0
    paths = _save_images(result, first)
    loop_paths = _save_animation(loop, first) if loop is not None else None
    if args.json:
        doc = _result_json(result, paths)
        if loop is not None and loop_paths is not None:
            doc["animation"] = {
                "gif": str(loop_paths[0]),
                "mp4": str(loop_paths[1]),
                **loop.animation.to_dict(),
            }
            doc["notes"] = [*doc["notes"], *(n for n in loop.notes if n not in doc["notes"])]
            doc["note_details"] |= loop.note_details
        if clip is not None:
            doc["video"] = {"path": str(clip.video.path), **clip.video.to_dict()}
            doc["notes"] = [*doc["notes"], *(n for n in clip.notes if n not in doc["notes"])]
            doc["note_details"] |= clip.note_details
        print(json.dumps(doc, indent=2))
        return 0
    _print_tags(result.tags, name)
    out.print(f"[bold]Prompt[/]    {result.prompt.text}")
    out.print(f"[bold]Negative[/]  [dim]{result.prompt.negative}[/]")
    for note in result.notes:
        _print_note(note, result.note_details)
    for p, img in zip(paths, result.images, strict=True):
        out.print(
            f"[bold green]Image[/]     {p}  ({img.width}×{img.height}, "
            f"{result.backend}, style {result.prompt.style.value}, seed {img.seed})"
        )
    if loop is not None and loop_paths is not None:
        a = loop.animation
        sec = a.section
        took = ", ".join(f"{k[:-3]} {v:.0f} ms" for k, v in a.timings_ms.items())
        out.print(
            f"[bold green]Animation[/] {loop_paths[0]}  {loop_paths[1]}  ({len(a.frames)} frames at "
            f"{a.fps:.2f} fps, {a.length_s:.2f} s = {sec.bars} bar{'s' if sec.bars > 1 else ''} "
            f"from {sec.start_in_song_s:.1f}–{sec.end_in_song_s:.1f} s, {sec.mode.value} section, "
            f"{a.backend}, {a.mp4_codec}; {took})"
        )
    if clip is not None:
        _print_video(clip, shown=result.notes)
    out.print(
        f"[dim]Took {total_s:.2f} s "
        f"({', '.join(f'{k[:-3]} {v:.0f} ms' for k, v in result.timings_ms.items())}).[/]"
    )
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    settings = Settings()
    songs: list[Path] = args.songs
    if args.jsonl or len(songs) > 1 or (songs and songs[0].is_dir()):
        # a batch; --json there means --jsonl, and a batch-level error is then a JSON line too
        args.json = jsonl = args.jsonl or args.json
        return run_batch(
            songs, settings=settings, jsonl=jsonl, jobs=args.jobs, print_tags=_print_tags, out=out, err=err
        )
    args.song = songs[0] if songs else None  # one file or the demo: exactly as before
    source, name = _song(args, settings)
    result = asyncio.run(_run(lambda eng, cb: eng.analyze(source, progress=cb), args, settings=settings))
    if args.json:
        print(
            json.dumps(
                {"song": name, "tags": result.tags.model_dump(mode="json"), "timings_ms": result.timings_ms},
                indent=2,
            )
        )
    else:
        _print_tags(result.tags, name)
    return 0


def _cmd_demo_audio(args: argparse.Namespace) -> int:
    args.out.write_bytes(_demo_wav())
    out.print(f"Wrote the demo clip to {args.out}")
    return 0


# --- helpers -------------------------------------------------------------------------------------


def _add_song_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "song",
        nargs="?",
        type=Path,
        help="Audio file (any common format). Omit to use the built-in demo clip.",
    )
    p.add_argument("--json", action="store_true", help="Print machine-readable JSON on stdout.")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _song(args: argparse.Namespace, settings: Settings) -> tuple[bytes, str]:
    if args.song is None:
        return _demo_wav(), "demo"
    if not args.song.is_file():
        raise InputError(f"{args.song}: no such file.")
    # The common mistakes (empty, too big, not audio at all) are told at once, before the engine
    # spends seconds loading its models; the engine re-checks everything, decoding included.
    data = read_audio_bytes(args.song, limits=settings.limits)
    sniff_format(data[:HEAD_BYTES])
    return data, args.song.stem


def _demo_wav() -> bytes:
    import soundfile as sf

    from m2i_engine.synth import demo_song

    buf = io.BytesIO()
    sf.write(buf, demo_song(sr=44_100), 44_100, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _settings_with_sd(settings: Settings, args: argparse.Namespace, *, explicit_sd: bool) -> Settings:
    """Apply ``--model``/``--lora``; an explicit ``--backend sd`` may run on the CPU (slowly)."""
    from m2i_engine.imaging.sd import LoraSpec

    update: dict[str, Any] = {}
    if args.model:
        update["model"] = args.model
    if args.lora:
        update["loras"] = tuple(_lora_spec(LoraSpec, text) for text in args.lora)
    if explicit_sd:
        update["allow_cpu"] = True
    if not update:
        return settings
    return settings.model_copy(update={"sd": settings.sd.model_copy(update=update)})


def _lora_spec(spec: Any, text: str) -> Any:
    source, sep, weight = text.rpartition(":")
    if sep and source and not source.endswith(":"):
        try:
            return spec(source=source, weight=float(weight))
        except ValueError:
            pass
    return spec(source=text)


async def _run(call: Any, args: argparse.Namespace, *, settings: Settings | None = None) -> Any:
    """Run ``call(engine, progress)`` with a spinner on an interactive terminal."""
    quiet = args.json or not err.is_terminal
    async with Engine(settings or Settings()) as engine:
        if quiet:
            return await call(engine, None)
        with err.status(_STAGE_TEXT[Stage.decoding]) as status:

            def on_progress(p: Progress) -> None:
                text = _STAGE_TEXT[p.stage]
                if p.queue_position:
                    text = f"Waiting in the queue (position {p.queue_position})…"
                status.update(text)

            return await call(engine, on_progress)


def _save_images(result: VisualizeResult, first: Path) -> list[Path]:
    paths = []
    for i, img in enumerate(result.images):
        path = first if i == 0 else first.with_name(f"{first.stem}-{i + 1}{first.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(img.png)  # the bytes the image holds: encoded once, or as the worker sent them
        paths.append(path)
    return paths


def _save_animation(result: AnimationResult, first: Path) -> tuple[Path, Path]:
    """The loop as ``<first>.gif`` and ``<first>.mp4`` (the image path with its suffix changed)."""
    gif, mp4 = first.with_suffix(".gif"), first.with_suffix(".mp4")
    gif.parent.mkdir(parents=True, exist_ok=True)
    gif.write_bytes(result.animation.gif)
    mp4.write_bytes(result.animation.mp4)
    return gif, mp4


def _print_note(note: str, details: Mapping[str, str]) -> None:
    """A note, and what lies behind it for the operator (who runs the CLI): which setting to change."""
    out.print(f"[yellow]Note[/]      {note}")
    if note in details:
        out.print(f"          [dim]{escape(details[note])}[/]")


def _print_video(clip: VideoResult, *, shown: list[str]) -> None:
    v = clip.video
    took = ", ".join(f"{k[:-3]} {ms:.0f} ms" for k, ms in v.timings_ms.items())
    rate = f", {v.bit_rate / 1000:.0f} kbit/s" if v.bit_rate else ""
    for note in (n for n in clip.notes if n not in shown):
        _print_note(note, clip.note_details)
    out.print(
        f"[bold green]Video[/]     {v.path}  ({v.width}×{v.height}, {v.fps:g} fps, {v.length_s:.1f} s "
        f"from {v.start_s:.1f} s of the song, {v.codec} + {v.audio_codec}, {v.size_bytes / 1e6:.1f} MB"
        f"{rate}, "
        f"{len(v.sections)} section{'s' if len(v.sections) != 1 else ''} in {v.scenes} scene"
        f"{'s' if v.scenes != 1 else ''}, {v.backend}; {took})"
    )


def _print_tags(tags: Tags, name: str) -> None:
    a = tags.audio
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    window = f", analysed {a.analysed_s:.0f} s" if a.analysed_s + 0.5 < a.duration_s else ""
    table.add_row(
        "Song", f"{name} ({a.duration_s:.1f} s{window}; {a.codec} {a.sample_rate_hz} Hz, {a.channels} ch)"
    )
    t = tags.tempo
    metre = f" · {t.beats_per_bar} beats/bar" if t.beats_per_bar else ""
    also = f" · also felt at {alt.bpm:.0f} BPM ({alt.score:.0%})" if (alt := t.close_alternative) else ""
    table.add_row("Tempo", f"{t.bpm:.1f} BPM (confidence {t.confidence:.2f}){metre}{also}")
    table.add_row("Key", f"{tags.key.name} (confidence {tags.key.confidence:.2f})")
    lo = tags.loudness
    table.add_row(
        "Loudness",
        f"{lo.integrated_lufs:.1f} LUFS · peak {lo.peak_dbfs:.1f} dBFS · "
        f"dynamics {lo.dynamic_range_db:.1f} dB · energy {lo.energy:.2f}",
    )
    table.add_row(
        "Timbre",
        f"brightness {tags.timbre.brightness:.2f} · percussive "
        f"{tags.timbre.percussiveness:.2f} · {tags.timbre.onset_rate_hz:.1f} onsets/s",
    )
    genre_row = ("Genre", _classification_text(tags.genre, "genre"))
    if tags.styles:  # genre and style words plain, the other groups named: "…, house · voice: …"
        order = ("", "voice", "era", "mood")
        by_group: dict[str, list[str]] = {}
        for st in tags.styles:
            by_group.setdefault("" if st.group in ("genre", "style") else st.group, []).append(st.display)
        styles = " · ".join(
            f"{g}: {', '.join(w)}" if g else ", ".join(w)
            for g, w in sorted(by_group.items(), key=lambda gw: order.index(gw[0]))
        )
        rows = [("Styles", styles), genre_row] if tags.genre.uncertain else [genre_row, ("Styles", styles)]
    else:
        rows = [genre_row]
    for row in rows:
        table.add_row(*row)
    table.add_row("Emotion", _classification_text(tags.emotion, "emotion"))
    m = tags.mood
    src = tags.mood_origin()
    lean = "leaning " if min(abs(m.valence), abs(m.arousal)) <= 0.2 else ""  # near an axis
    table.add_row(
        "Mood",
        f"{lean}{m.quadrant_name} ({m.quadrant}) · valence {m.valence:+.2f} · "
        f"arousal {m.arousal:+.2f} ({src})",
    )
    if tags.sections:
        table.add_row(
            "Sections", " · ".join(f"{s.label} {s.start_s:.0f}–{s.end_s:.0f} s" for s in tags.sections)
        )
    out.print(table)


def _classification_text(c: Classification, what: str) -> str:
    if c.status == "model_missing":
        return f"[dim]no {what} model installed[/]"
    if c.status == "error":
        return f"[yellow]{what} model failed to load or run[/]"
    if c.uncertain and c.labels:
        closest = c.labels[:2]
        return (
            f"[yellow]uncertain[/] — closest {' / '.join(ls.display for ls in closest)} "
            f"[dim]({', '.join(f'{ls.score:.2f}' for ls in closest)})[/]"
        )
    return ", ".join(f"{ls.display} {ls.score:.2f}" for ls in c.labels[:3])


def _result_json(result: VisualizeResult, paths: list[Path]) -> dict[str, Any]:
    return {
        "tags": result.tags.model_dump(mode="json"),
        "prompt": result.prompt.text,
        "negative_prompt": result.prompt.negative,
        "style": result.prompt.style.value,
        "backend": result.backend,
        "seed": result.seed,
        "images": [
            {"path": str(p), "seed": img.seed, "width": img.width, "height": img.height}
            for p, img in zip(paths, result.images, strict=True)
        ],
        "notes": result.notes,
        "note_details": dict(result.note_details),
        "timings_ms": result.timings_ms,
    }


def _report_error(exc: M2IError, args: argparse.Namespace) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": exc.to_dict()}))
    else:
        err.print(f"[bold red]Error[/] [dim]({exc.code})[/]: {exc.message}")
        if isinstance(exc, BackendUnavailableError) and exc.detail:  # what the operator can change
            err.print(f"       [dim]{escape(exc.detail)}[/]")
    return exc.exit_code


def _default_text(default: Any) -> str:
    if isinstance(default, enum.Enum):
        return str(default.value)
    return "none" if default is None else str(default)


if __name__ == "__main__":
    sys.exit(main())

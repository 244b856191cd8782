"""How fast a beat-synced loop is drawn and encoded (GIF + MP4) by the renderer, on one core.

The budget is about 10–20 s for a 512² loop of about 60 frames on one CPU core. Machines differ and are
shared, so next to absolute seconds every loop is also given as a ratio to the still: the same song's
still render at the same size, measured in the same run (a loop of N frames can't cost less than about
N stills; the ratio says how far above that the encoding takes it).

Usage (from the repository root)::

    python bench/animate_speed.py                    # every hand-made song, 512², 15 fps, auto bars
    python bench/animate_speed.py --songs electronic pop --size 384 --fps 12 --json out.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from m2i_engine.imaging.animate import animate  # noqa: E402
from m2i_engine.imaging.base import ImageRequest  # noqa: E402
from m2i_engine.imaging.renderer import render  # noqa: E402
from m2i_engine.options import AnimateOptions, VisualizeOptions  # noqa: E402
from m2i_engine.prompt import build_prompt  # noqa: E402
from m2i_engine.testing import PREVIEW_SONGS as SONGS  # noqa: E402

BUDGET_S = 20.0
TARGET_S = 10.0


def still_ms(tags: object, size: int, repeat: int) -> float:
    """The fastest of ``repeat`` still renders (the least disturbed by other processes)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        render(tags, width=size, height=size, seed=1)  # type: ignore[arg-type]
        times.append((time.perf_counter() - t0) * 1000.0)
    return min(times)


def measure(song: str, size: int, fps: int, bars: int | None, repeat: int) -> dict[str, object]:
    tags = SONGS[song]
    render(tags, width=size, height=size, seed=1)  # warm imports and caches
    still = still_ms(tags, size, repeat)
    request = ImageRequest(
        tags=tags, prompt=build_prompt(tags, VisualizeOptions()), width=size, height=size, seed=1
    )
    t0 = time.perf_counter()
    loop = animate(request, AnimateOptions(fps=fps, loop_bars=bars))
    total_ms = (time.perf_counter() - t0) * 1000.0
    n = len(loop.frames)
    return {
        "song": song,
        "motif": loop.meta["motif"],
        "style": loop.meta["style"],
        "frames": n,
        "fps": round(loop.fps, 3),
        "length_s": round(loop.length_s, 3),
        "still_ms": round(still, 1),
        **{k: round(v, 1) for k, v in loop.timings_ms.items()},
        "total_ms": round(total_ms, 1),
        "x_still": round(total_ms / still, 1),
        "per_frame_x_still": round(total_ms / n / still, 2),
        "gif_kb": round(len(loop.gif) / 1024),
        "gif_size": list(loop.gif_size),
        "mp4_kb": round(len(loop.mp4) / 1024),
        "mp4_codec": loop.mp4_codec,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="side in pixels (square)")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--bars", type=int, default=None, help="bars per loop (default: auto, ~5 s)")
    ap.add_argument("--repeat", type=int, default=3, help="still renders per song (the fastest counts)")
    ap.add_argument("--songs", nargs="*", default=None, help="songs from m2i_engine.testing.PREVIEW_SONGS")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    songs = args.songs or list(SONGS)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    rows = []
    with threadpool_limits(limits=1):
        print(f"{args.size}² at {args.fps} fps, one core; budget {TARGET_S:.0f}–{BUDGET_S:.0f} s per loop")
        print(
            f"{'song':<15}{'motif':<10}{'style':<11}{'frames':>6}{'still':>8}{'frames':>9}{'gif':>8}"
            f"{'mp4':>8}{'total':>8}{'× still':>9}{'/frame':>8}{'gif KB':>8}{'mp4 KB':>8}"
        )
        for song in songs:
            r = measure(song, args.size, args.fps, args.bars, args.repeat)
            rows.append(r)
            print(
                f"{song:<15}{r['motif']!s:<10}{r['style']!s:<11}{r['frames']:>6}{r['still_ms']:>6.0f}ms"
                f"{r['frames_ms'] / 1000:>8.2f}s{r['gif_ms'] / 1000:>7.2f}s{r['mp4_ms'] / 1000:>7.2f}s"  # type: ignore[operator]
                f"{r['total_ms'] / 1000:>7.2f}s{r['x_still']:>8.1f}×{r['per_frame_x_still']:>7.2f}×"  # type: ignore[operator]
                f"{r['gif_kb']:>8}{r['mp4_kb']:>8}"
            )
    totals = [float(r["total_ms"]) / 1000 for r in rows]  # type: ignore[arg-type]
    per_frame = [float(r["per_frame_x_still"]) for r in rows]  # type: ignore[arg-type]
    worst = max(totals)
    verdict = "within" if worst <= BUDGET_S else "OVER"
    print(
        f"worst loop {worst:.1f} s, mean {statistics.fmean(totals):.1f} s ({verdict} the {BUDGET_S:.0f} s "
        f"budget); per frame {statistics.fmean(per_frame):.2f}× a still on average"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

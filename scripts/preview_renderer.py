"""Render contact sheets of the built-in renderer for eyeballing: contrasting hand-made songs
across styles, seeds and aspects, written to /tmp as PNGs.

Usage::

    python scripts/preview_renderer.py                      # songs × styles, 384 px cells
    python scripts/preview_renderer.py --sheet seeds        # one song, several seeds
    python scripts/preview_renderer.py --sheet aspects      # every aspect ratio
    python scripts/preview_renderer.py --single pop --style cover --size 1024
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from m2i_engine.imaging.renderer import encode_png, render
from m2i_engine.options import Aspect, Style
from m2i_engine.testing import PREVIEW_SONGS

OUT = Path("/tmp/m2i_renderer")


SONGS = PREVIEW_SONGS

CONCRETE = [s for s in Style if s is not Style.auto]


def sheet(cells: list[tuple[str, Image.Image]], cols: int, cell: int) -> Image.Image:
    rows = math.ceil(len(cells) / cols)
    label_h = 18
    widest = max(img.width for _, img in cells)
    tallest = max(img.height for _, img in cells)
    scale = cell / max(widest, tallest)
    cw, ch = int(widest * scale), int(tallest * scale)
    out = Image.new("RGB", (cols * (cw + 6) + 6, rows * (ch + label_h + 6) + 6), (24, 24, 24))
    draw = ImageDraw.Draw(out)
    for i, (label, img) in enumerate(cells):
        r, c = divmod(i, cols)
        x, y = 6 + c * (cw + 6), 6 + r * (ch + label_h + 6)
        thumb = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS)
        out.paste(thumb, (x, y))
        draw.text((x + 2, y + thumb.height + 3), label, fill=(220, 220, 220))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sheet", choices=["styles", "seeds", "aspects", "auto"], default="styles")
    ap.add_argument("--songs", nargs="*", default=None, help="song names (default: all)")
    ap.add_argument("--styles", nargs="*", default=None, help="styles (default: all concrete)")
    ap.add_argument("--size", type=int, default=512, help="long side each image is rendered at")
    ap.add_argument("--cell", type=int, default=300, help="thumbnail size on the sheet")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--single", default=None, help="render one song at full size")
    ap.add_argument("--style", default="auto")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.songs or list(SONGS)
    styles = [Style(s) for s in args.styles] if args.styles else CONCRETE

    t0 = time.perf_counter()
    if args.single:
        img = render(
            SONGS[args.single], style=Style(args.style), width=args.size, height=args.size, seed=args.seed
        )
        path = args.out / f"{args.single.replace(' ', '_')}-{args.style}-{args.seed}.png"
        path.write_bytes(encode_png(img))
        print(path)
        return
    cells: list[tuple[str, Image.Image]] = []
    if args.sheet == "styles":
        for name in names:
            for st in styles:
                cells.append(
                    (
                        f"{name} / {st.value}",
                        render(SONGS[name], style=st, width=args.size, height=args.size, seed=args.seed),
                    )
                )
        cols = len(styles)
    elif args.sheet == "auto":
        for name in names:
            cells.append(
                (
                    f"{name} / auto",
                    render(SONGS[name], style=Style.auto, width=args.size, height=args.size, seed=args.seed),
                )
            )
        cols = min(5, len(cells))
    elif args.sheet == "seeds":
        for name in names:
            for seed in range(5):
                cells.append(
                    (
                        f"{name} seed {seed}",
                        render(SONGS[name], style=styles[0], width=args.size, height=args.size, seed=seed),
                    )
                )
        cols = 5
    else:
        for name in names:
            for aspect in Aspect:
                w, h = aspect.size(args.size)
                cells.append(
                    (
                        f"{name} {aspect.value}",
                        render(SONGS[name], style=styles[0], width=w, height=h, seed=args.seed),
                    )
                )
        cols = len(Aspect)
    out = sheet(cells, cols, args.cell)
    path = args.out / f"sheet-{args.sheet}.png"
    out.save(path)
    print(f"{path}  ({len(cells)} images in {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()

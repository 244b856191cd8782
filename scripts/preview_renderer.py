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

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from m2i_engine.imaging.renderer import encode_png, render
from m2i_engine.options import Aspect, Style
from m2i_engine.tags import (
    AudioInfo,
    Classification,
    Key,
    LabelScore,
    Loudness,
    Mood,
    Tags,
    Tempo,
    Timbre,
)

OUT = Path("/tmp/m2i_renderer")


def song(*, genre: str | None, bpm: float, tonic: str, mode: str, energy: float, valence: float,
         arousal: float, emotion: dict[str, float] | None = None, brightness: float = 0.5,
         percussiveness: float = 0.5, onset_rate_hz: float = 3.0, dynamic_range_db: float = 6.0,
         curve: str = "arch", swing: float = 0.0, per_bar: int = 4) -> Tags:
    """A hand-made song's tags (what analysis would report)."""
    period = 60.0 / bpm
    n = int(30 / period)
    beats = [i * period + (swing * period if i % 2 else 0.0) for i in range(n)]
    downs = beats[::per_bar]
    x = np.linspace(0, 1, 64)
    shapes = {
        "arch": 0.3 + 0.6 * np.sin(np.pi * x),
        "build": 0.1 + 0.85 * x**2,
        "drop": np.where(x < 0.45, 0.25 + 0.3 * x, 0.95 - 0.2 * (x - 0.45)),
        "flat": np.full_like(x, energy),
        "waves": 0.5 + 0.35 * np.sin(6 * np.pi * x),
        "fade": 0.9 - 0.8 * x,
    }
    genre_c = (Classification(status="ok", model="preview",
                              labels=[LabelScore(label=genre, score=0.8)])
               if genre else Classification())
    emo_c = (Classification(status="ok", model="preview",
                            labels=sorted((LabelScore(label=k, score=v) for k, v in emotion.items()),
                                          key=lambda ls: -ls.score))
             if emotion else Classification())
    return Tags(
        audio=AudioInfo(container="wav", codec="pcm", sample_rate_hz=44100, channels=2,
                        duration_s=30, analysed_s=30),
        tempo=Tempo(bpm=bpm, confidence=0.9, beats_s=beats, downbeats_s=downs, beats_per_bar=per_bar),
        key=Key(tonic=tonic, mode=mode, confidence=0.8),  # type: ignore[arg-type]
        loudness=Loudness(integrated_lufs=-10, peak_dbfs=-1, dynamic_range_db=dynamic_range_db,
                          energy=energy),
        timbre=Timbre(brightness=brightness, percussiveness=percussiveness,
                      onset_rate_hz=onset_rate_hz),
        mood=Mood(valence=valence, arousal=arousal, source="signal"),
        genre=genre_c, emotion=emo_c,
        energy_curve=[float(v) for v in np.clip(shapes[curve], 0, 1)],
    )


SONGS: dict[str, Tags] = {
    "classical": song(genre="classical", bpm=72, tonic="D", mode="major", energy=0.35, valence=0.3,
                      arousal=-0.4, emotion={"tenderness": 0.6, "solemnity": 0.3},
                      percussiveness=0.1, dynamic_range_db=14, curve="arch", per_bar=3),
    "metal": song(genre="metal", bpm=176, tonic="E", mode="minor", energy=0.95, valence=-0.6,
                  arousal=0.9, emotion={"power": 0.7, "tension": 0.6}, brightness=0.8,
                  percussiveness=0.75, onset_rate_hz=8, dynamic_range_db=3, curve="drop"),
    "jazz": song(genre="jazz", bpm=132, tonic="A#", mode="major", energy=0.5, valence=0.3,
                 arousal=0.1, emotion={"nostalgia": 0.4, "joyful_activation": 0.3},
                 percussiveness=0.35, swing=0.18, dynamic_range_db=11, curve="waves"),
    "electronic": song(genre="electronic", bpm=128, tonic="F", mode="minor", energy=0.85,
                       valence=0.1, arousal=0.7, emotion={"joyful_activation": 0.5, "power": 0.4},
                       brightness=0.7, percussiveness=0.8, onset_rate_hz=6, curve="build"),
    "disco": song(genre="disco", bpm=118, tonic="D", mode="major", energy=0.75, valence=0.8,
                  arousal=0.6, emotion={"joyful_activation": 0.8}, brightness=0.65,
                  percussiveness=0.7, onset_rate_hz=5, curve="waves"),
    "hiphop": song(genre="hiphop", bpm=88, tonic="C#", mode="minor", energy=0.7, valence=-0.1,
                   arousal=0.3, emotion={"power": 0.6}, brightness=0.35, percussiveness=0.85,
                   curve="drop"),
    "reggae": song(genre="reggae", bpm=76, tonic="G", mode="major", energy=0.55, valence=0.6,
                   arousal=-0.1, emotion={"calmness": 0.4, "joyful_activation": 0.4}, curve="waves"),
    "country": song(genre="country", bpm=104, tonic="D", mode="major", energy=0.45, valence=0.4,
                    arousal=-0.1, emotion={"nostalgia": 0.6, "tenderness": 0.3}, curve="arch"),
    "blues": song(genre="blues", bpm=68, tonic="E", mode="minor", energy=0.4, valence=-0.5,
                  arousal=-0.3, emotion={"sadness": 0.6, "nostalgia": 0.3}, brightness=0.3,
                  percussiveness=0.3, swing=0.15, curve="fade", per_bar=4),
    "pop": song(genre="pop", bpm=116, tonic="C", mode="major", energy=0.7, valence=0.8,
                arousal=0.5, emotion={"joyful_activation": 0.7, "tenderness": 0.2},
                brightness=0.7, onset_rate_hz=4, curve="build"),
    "rock": song(genre="rock", bpm=142, tonic="A", mode="minor", energy=0.85, valence=-0.1,
                 arousal=0.7, emotion={"power": 0.7}, brightness=0.6, percussiveness=0.6,
                 dynamic_range_db=5, curve="drop"),
    "no-model calm": song(genre=None, bpm=64, tonic="F#", mode="minor", energy=0.2, valence=-0.3,
                          arousal=-0.7, percussiveness=0.08, brightness=0.35, onset_rate_hz=1,
                          curve="fade"),
    "no-model club": song(genre=None, bpm=126, tonic="B", mode="minor", energy=0.9, valence=0.2,
                          arousal=0.6, percussiveness=0.8, brightness=0.6, onset_rate_hz=7,
                          curve="build"),
}

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
        img = render(SONGS[args.single], style=Style(args.style), width=args.size,
                     height=args.size, seed=args.seed)
        path = args.out / f"{args.single.replace(' ', '_')}-{args.style}-{args.seed}.png"
        path.write_bytes(encode_png(img))
        print(path)
        return
    cells: list[tuple[str, Image.Image]] = []
    if args.sheet == "styles":
        for name in names:
            for st in styles:
                cells.append((f"{name} / {st.value}", render(
                    SONGS[name], style=st, width=args.size, height=args.size, seed=args.seed)))
        cols = len(styles)
    elif args.sheet == "auto":
        for name in names:
            cells.append((f"{name} / auto", render(SONGS[name], style=Style.auto, width=args.size,
                                                   height=args.size, seed=args.seed)))
        cols = min(5, len(cells))
    elif args.sheet == "seeds":
        for name in names:
            for seed in range(5):
                cells.append((f"{name} seed {seed}", render(
                    SONGS[name], style=styles[0], width=args.size, height=args.size, seed=seed)))
        cols = 5
    else:
        for name in names:
            for aspect in Aspect:
                w, h = aspect.size(args.size)
                cells.append((f"{name} {aspect.value}", render(
                    SONGS[name], style=styles[0], width=w, height=h, seed=args.seed)))
        cols = len(Aspect)
    out = sheet(cells, cols, args.cell)
    path = args.out / f"sheet-{args.sheet}.png"
    out.save(path)
    print(f"{path}  ({len(cells)} images in {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()

"""How fast a music video is drawn and encoded by the renderer: render time ÷ clip length.

The goal is ≤ 1.0 (a 30-s clip takes at most 30 s) at 720×1280, 30 fps, on the 2 cores a worker has.
Machines differ and are shared, so next to that ratio the run also measures a baseline on the same
machine in the same run — encoding pre-made frames (in the encoder's planes, as the video composes
them) of the same size, rate and sound only (what any video costs before a single frame is composed) —
and prints the video's time as a multiple of it.
Finally it shows what a byte limit does: the bit rate a smaller limit gets, and the error when the
limit can't be met.

Usage (from the repository root)::

    python bench/video_speed.py                       # 30-s song, 720×1280, 30 fps
    python bench/video_speed.py --size 1280 --fps 30 --seconds 30 --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from m2i_engine.config import AudioLimits
from m2i_engine.imaging.base import ImageRequest
from m2i_engine.imaging.video import Mp4Writer, VideoTooLargeError, render_video
from m2i_engine.imaging.video.clip import Clip, load_clip
from m2i_engine.imaging.video.scenes import draw_scene
from m2i_engine.imaging.video.video import clip_limits
from m2i_engine.models import ModelRegistry
from m2i_engine.options import Aspect, VisualizeOptions
from m2i_engine.pipeline import analyse_audio, image_request
from m2i_engine.tags import Tags
from tests.sectioned_songs import Part, sectioned_song

GOAL = 1.0
#: a 30-s song at 120 BPM: quiet A, loud B, quiet A, 5 bars each
FORM = (
    Part("A", "ballad", "D", "minor", 5, 0.5),
    Part("B", "house", "F", "major", 5, 1.0),
    Part("A", "ballad", "D", "minor", 5, 0.5),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1280, help="long side (default 1280: 720×1280)")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=30.0, help="song length (bars of 2 s at 120 BPM)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()

    bars = max(1, round(args.seconds / 2 / 3))
    form = tuple(Part(p.name, p.style, p.tonic, p.mode, bars, p.gain) for p in FORM)
    y, _ = sectioned_song(form, sr=44_100)
    buf = io.BytesIO()
    sf.write(buf, y, 44_100, format="WAV", subtype="PCM_16")
    limits = AudioLimits()
    t0 = time.perf_counter()
    clip = load_clip(buf.getvalue(), limits=limits)
    tags, _ = analyse_audio(clip.wav_bytes(), limits=clip_limits(limits), models=ModelRegistry.load(None))
    tags = tags.model_copy(update={"audio": clip.info})
    analysis_s = time.perf_counter() - t0
    width, height = Aspect.story.size(args.size, multiple=2)
    request = image_request(tags, VisualizeOptions(seed=1), seed=1, width=width, height=height)
    tmp = Path(tempfile.mkdtemp(prefix="m2i-video-bench-"))
    try:
        return _run(args, tags, clip, request, analysis_s=analysis_s, tmp=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(
    args: argparse.Namespace, tags: Tags, clip: Clip, request: ImageRequest, *, analysis_s: float, tmp: Path
) -> int:
    """The measurements, writing their files under ``tmp`` (removed afterwards by the caller)."""
    length, width, height = clip.length_s, request.width, request.height

    # baseline: encoding pre-made frames (two keyframes of the same picture, alternating per beat) with
    # the sound, nothing composed; in the encoder's planes (Yuv420), as the video's frames are, so the
    # baseline pays no colour conversion per frame that the video doesn't
    style = request.prompt.concrete_style(tags)
    premade = draw_scene(
        tags, tags.sections[0], 0, beats_per_bar=4, style=style, width=width, height=height, seed=1
    ).rest[:2]
    frames = round(length * args.fps)
    t0 = time.perf_counter()
    with Mp4Writer(
        tmp / "baseline.mp4",
        width=width,
        height=height,
        fps=args.fps,
        audio=clip.samples,
        sample_rate=clip.sample_rate,
    ) as w:
        for k in range(frames):
            w.write(premade[(k * 2 // args.fps) % 2])
    baseline_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    video = render_video(
        request, audio=clip.samples, sample_rate=clip.sample_rate, out=tmp / "video.mp4", fps=args.fps
    )
    render_s = time.perf_counter() - t0
    ratio = render_s / length
    print(
        f"clip {length:.1f} s at {width}×{height}, {args.fps} fps ({video.frames} frames, "
        f"{len(video.sections)} sections, {video.scenes} scenes, {video.codec} + {video.audio_codec}, "
        f"{video.size_bytes / 1e6:.2f} MB); analysis {analysis_s:.1f} s (not counted)"
    )
    print(
        f"render {render_s:.1f} s (scenes {video.timings_ms['scenes_ms'] / 1000:.1f} s, frames "
        f"{video.timings_ms['frames_ms'] / 1000:.1f} s) → render time ÷ clip length = {ratio:.2f} "
        f"(goal ≤ {GOAL:.1f}: {'met' if ratio <= GOAL else 'missed'})"
    )
    print(
        f"baseline: encoding {frames} pre-made frames + sound {baseline_s:.1f} s = "
        f"{baseline_s / length:.2f} × clip length → video ÷ baseline = {render_s / baseline_s:.2f}"
    )

    limit = int(video.size_bytes * 0.5)
    t0 = time.perf_counter()
    fitted = render_video(
        request,
        audio=clip.samples,
        sample_rate=clip.sample_rate,
        out=tmp / "fit.mp4",
        fps=args.fps,
        max_bytes=limit,
    )
    print(
        f"byte limit {limit / 1e6:.2f} MB: {fitted.size_bytes / 1e6:.2f} MB at "
        f"{(fitted.bit_rate or 0) / 1000:.0f} kbit/s in {time.perf_counter() - t0:.1f} s (two passes)"
    )
    try:
        render_video(
            request,
            audio=clip.samples,
            sample_rate=clip.sample_rate,
            out=tmp / "no.mp4",
            fps=args.fps,
            max_bytes=200_000,
        )
        refused = "not refused"
    except VideoTooLargeError as exc:
        refused = f"{exc.code}: {exc.message}"
    print(f"byte limit 0.20 MB: {refused}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "width": width,
                    "height": height,
                    "fps": args.fps,
                    "clip_s": round(length, 3),
                    "render_s": round(render_s, 3),
                    "ratio": round(ratio, 3),
                    "baseline_s": round(baseline_s, 3),
                    "vs_baseline": round(render_s / baseline_s, 3),
                    "bytes": video.size_bytes,
                    "fitted_bytes": fitted.size_bytes,
                    "fitted_bit_rate": fitted.bit_rate,
                    "timings_ms": video.timings_ms,
                },
                indent=2,
            )
        )
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())

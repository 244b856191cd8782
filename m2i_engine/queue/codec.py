"""The wire format between workers and front ends: results and errors as JSON, images as PNG by id.

A worker turns a :class:`~m2i_engine.engine.VisualizeResult` into a JSON document plus PNG bytes
(stored under content-derived ids), and a :class:`~m2i_engine.engine.VideoResult` into a document plus
the MP4's bytes (:meth:`Keys.video`); a front end turns them back into the same result type the local
engine returns, so the HTTP API and the bots can't tell which mode they run in. Errors travel as their
stable ``code`` and user ``message`` and are raised again as the matching :class:`M2IError` subclass.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PIL import Image

from m2i_engine.engine import AnalysisResult, VideoResult, VisualizeResult
from m2i_engine.errors import M2IError, ServiceError
from m2i_engine.imaging.base import GeneratedImage
from m2i_engine.options import Style
from m2i_engine.prompt import Prompt
from m2i_engine.tags import SongSection, Tags

if TYPE_CHECKING:
    from pathlib import Path


class Keys:
    """Every Redis key m2i uses, under one namespace."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def audio(self, sha: str) -> str:
        return f"{self.ns}:audio:{sha}"

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def result(self, job_id: str) -> str:
        return f"{self.ns}:res:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.ns}:ev:{job_id}"

    def events_pattern(self) -> str:
        return f"{self.ns}:ev:*"

    def image(self, image_id: str) -> str:
        return f"{self.ns}:img:{image_id}"

    def video(self, video_id: str) -> str:
        return f"{self.ns}:vid:{video_id}"

    def result_cache(self, key: str) -> str:
        return f"{self.ns}:rc:{key}"

    def tags(self, key: str) -> str:
        return f"{self.ns}:tags:{key}"

    def workers(self) -> str:
        return f"{self.ns}:workers"


class ImageExpiredError(ServiceError):
    code = "image_expired"
    default_message = "That picture has expired — please make it again."
    http_status = 410


def _refetch(fetch: Callable[[], bytes | None], iid: str) -> Callable[[], bytes]:
    """``fetch`` (blocking, from where the worker stored the PNG) as a GeneratedImage ``refetch``:
    bytes, or :class:`ImageExpiredError` once they are gone."""

    def again() -> bytes:
        data = fetch()
        if not isinstance(data, bytes):
            raise ImageExpiredError(detail=f"image {iid} is no longer stored")
        return data

    return again


def _json_safe(meta: dict[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if k == "image_id":
            continue
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def analysis_doc(a: AnalysisResult) -> dict[str, Any]:
    return {
        "tags": a.tags.model_dump(mode="json"),
        "audio_sha256": a.audio_sha256,
        "cached": a.cached,
        "timings_ms": a.timings_ms,
    }


def encode_visualize(result: VisualizeResult) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(document, {image id: PNG}) for a finished visualisation (blocking: encodes PNGs)."""
    pngs: dict[str, bytes] = {}
    images = []
    for img in result.images:
        png = img.png  # encoded once, where it was made or here; a result-cache hit's are kept
        iid = img.image_id
        pngs[iid] = png
        width, height = img.size
        images.append(
            {
                "id": iid,
                "seed": img.seed,
                "backend": img.backend,
                "width": width,
                "height": height,
                "meta": _json_safe(img.meta),
            }
        )
    doc = {
        "kind": "visualize",
        "analysis": analysis_doc(result.analysis),
        "prompt": _prompt_doc(result.prompt),
        "images": images,
        "backend": result.backend,
        "seed": result.seed,
        "notes": list(result.notes),
        "note_details": dict(result.note_details),
        "timings_ms": result.timings_ms,
    }
    return doc, pngs


def encode_analysis(result: AnalysisResult) -> dict[str, Any]:
    return {"kind": "analyze", "analysis": analysis_doc(result)}


def decode_analysis(doc: dict[str, Any]) -> AnalysisResult:
    a = doc["analysis"]
    return AnalysisResult(
        tags=Tags.model_validate(a["tags"]),
        audio_sha256=a["audio_sha256"],
        cached=bool(a["cached"]),
        timings_ms=dict(a["timings_ms"]),
    )


def decode_visualize(
    doc: dict[str, Any],
    pngs: dict[str, bytes],
    fetch: Callable[[str], Callable[[], bytes | None]] | None = None,
) -> VisualizeResult:
    """The result type the local engine returns. Each image holds the worker's PNG bytes as they came
    (handed on unchanged, never encoded again) and opens them as pixels only if someone asks.
    ``fetch(image_id)``: how to get a PNG again later, so a kept result can give its bytes back."""
    prompt = _prompt_of(doc["prompt"])
    images = []
    for im in doc["images"]:
        iid = im["id"]
        meta = {**im.get("meta", {}), "image_id": iid}
        again = _refetch(fetch(iid), iid) if fetch is not None else None
        images.append(
            GeneratedImage(None, int(im["seed"]), im["backend"], meta, png=pngs[iid], refetch=again)
        )
    return VisualizeResult(
        analysis=decode_analysis(doc),
        prompt=prompt,
        images=images,
        backend=doc["backend"],
        seed=int(doc["seed"]),
        notes=list(doc["notes"]),
        note_details=dict(doc.get("note_details", {})),  # absent from an older worker's document
        timings_ms=dict(doc["timings_ms"]),
    )


def _prompt_doc(p: Prompt) -> dict[str, Any]:
    return {
        "text": p.text,
        "negative": p.negative,
        "style": p.style.value,
        "phrases": [list(x) for x in p.phrases],
    }


def _prompt_of(p: dict[str, Any]) -> Prompt:
    return Prompt(
        text=p["text"],
        negative=p["negative"],
        style=Style(p["style"]),
        phrases=tuple((str(a), float(b)) for a, b in p["phrases"]),
    )


#: the most a queued video may weigh: a worker fits the MP4 under it (or fails with ``video_too_large``),
#: so one Redis value stays far below Redis's 512 MB string limit and a front end's memory
MAX_VIDEO_BYTES = 100 * 2**20
#: an MP4 travels through Redis in pieces this big (each one Redis call inside the socket timeout)
VIDEO_CHUNK = 8 * 2**20
#: once a front end has read an MP4 whole, Redis keeps it this much longer, not the result's hour: a
#: retry of the same job id (another API replica, a client's idempotent retry) still finds it, and an
#: MP4 of up to 100 MB no longer sits in Redis's memory for an hour after it was delivered
VIDEO_READ_GRACE_S = 600

#: the Video fields a video document carries (all but its path and tags, which the front end has)
_VIDEO_FIELDS = (
    "width",
    "height",
    "fps",
    "frames",
    "length_s",
    "start_s",
    "codec",
    "audio_codec",
    "backend",
    "style",
    "motif",
    "seed",
    "scenes",
    "size_bytes",
    "bit_rate",
)


def encode_video(result: VideoResult, video_id: str) -> dict[str, Any]:
    """The document of a finished music video whose MP4 is stored under :meth:`Keys.video` ``video_id``."""
    v = result.video
    meta: dict[str, Any] = {name: getattr(v, name) for name in _VIDEO_FIELDS}
    meta.update(
        id=video_id,
        sections=[s.model_dump(mode="json") for s in v.sections],
        timings_ms=dict(v.timings_ms),
        notes=list(v.notes),
    )
    return {
        "kind": "video",
        "analysis": analysis_doc(result.analysis),
        "prompt": _prompt_doc(result.prompt),
        "video": meta,
        "seed": result.seed,
        "notes": list(result.notes),
        "note_details": dict(result.note_details),
        "timings_ms": dict(result.timings_ms),
    }


def decode_video(doc: dict[str, Any], path: Path) -> VideoResult:
    """The result type the local engine returns, for the video's MP4 already written to ``path``."""
    from m2i_engine.imaging.video import Video

    analysis = decode_analysis(doc)
    m = doc["video"]
    video = Video(
        path=path,
        tags=analysis.tags,
        sections=[SongSection.model_validate(s) for s in m["sections"]],
        timings_ms=dict(m["timings_ms"]),
        notes=list(m["notes"]),
        **{name: m[name] for name in _VIDEO_FIELDS},
    )
    return VideoResult(
        analysis=analysis,
        prompt=_prompt_of(doc["prompt"]),
        video=video,
        seed=int(doc["seed"]),
        notes=list(doc["notes"]),
        note_details=dict(doc.get("note_details", {})),  # absent from an older worker's document
        timings_ms=dict(doc["timings_ms"]),
    )


def slim_visualize(result: VisualizeResult) -> VisualizeResult | None:
    """``result`` without its pictures' bytes, or None when some image could not be fetched again.

    Why: the HTTP API keeps finished jobs for an hour (``GET /v1/jobs``, idempotent retries); holding
    every PNG (2–6 MB at 2048 px) made a queue-mode front end grow by hundreds of MB under load, though
    the workers had stored those PNGs in Redis already. The slim copy keeps everything else, and each
    image as its PNG header alone (size and mode, no pixels); its ``png`` fetches the bytes again."""
    if not result.images or not all(img.refetch is not None for img in result.images):
        return None
    images = []
    for img in result.images:
        png = img.held_png
        head = _header_only(png) if png is not None else img.image
        images.append(GeneratedImage(head, img.seed, img.backend, dict(img.meta), refetch=img.refetch))
    return replace(result, images=images)


def _header_only(png: bytes) -> Image.Image:
    """A lazily opened image of ``png``'s chunks up to its first IDAT header: width, height and mode
    answer, pixels don't (loading raises). Some 50 bytes instead of the whole picture."""
    pos = 8
    while pos + 8 <= len(png):
        if png[pos + 4 : pos + 8] == b"IDAT":
            return Image.open(io.BytesIO(png[: pos + 8]))
        pos += 12 + int.from_bytes(png[pos : pos + 4], "big")
    return Image.open(io.BytesIO(png))


# --- errors -------------------------------------------------------------------------------------


def error_doc(exc: M2IError) -> dict[str, Any]:
    return {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "http_status": exc.http_status,
            "exit_code": exc.exit_code,
        }
    }


def _error_classes() -> dict[str, type[M2IError]]:
    found: dict[str, type[M2IError]] = {}
    stack: list[type[M2IError]] = [M2IError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


def raise_error(doc: dict[str, Any]) -> None:
    """Raise the error a worker reported, as the same ``M2IError`` subclass where one exists."""
    e = doc["error"]
    cls = _error_classes().get(e["code"])
    if cls is not None:
        raise cls(e["message"])
    exc = M2IError(e["message"])
    exc.code = e["code"]  # type: ignore[misc]
    exc.http_status = int(e.get("http_status", 500))  # type: ignore[misc]
    exc.exit_code = int(e.get("exit_code", 1))  # type: ignore[misc]
    raise exc

"""The aiohttp application: routes, auth, request ids, error rendering, metrics — over any engine.

``create_app(settings, engine)`` works with the in-process engine and with the queue-backed one
alike (:class:`~m2i_engine.frontend.EngineLike`); nothing below knows which it got. Every request
gets a request id (the client's ``X-Request-ID`` if it is safe, else a new one) that is echoed in
the answer, written on every log line, and carried into queued jobs. Every failure is JSON
``{"error": {"code", "message"}, "request_id"}`` with a 4xx/5xx status — never a traceback —
including requests aiohttp itself refuses as unparseable, when served by :class:`ApiRunner`
(as ``m2i serve`` does), which also closes connections whose headers never finish.

``POST /v1/visualize?video=true`` also makes a music video of the song (:meth:`Engine.video
<m2i_engine.engine.Engine.video>`; ``video_start``, ``video_length``, ``video_fps``, ``video_size``,
``video_aspect`` and ``video_max_bytes`` as query or form fields): the answer's ``video`` links to
``GET /v1/videos/{id}.mp4`` (a file, served with ``Range`` support) and says its size, length and codecs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import http_exceptions as hx
from aiohttp import web
from pydantic import ValidationError

from m2i_engine.config import Settings
from m2i_engine.engine import AnalysisResult, VisualizeResult
from m2i_engine.errors import (
    InvalidOptionError,
    M2IError,
    TooLargeError,
    VideoTooLargeError,
    VideoUnavailableError,
    describe,
)
from m2i_engine.frontend import EngineLike
from m2i_engine.imaging.base import GeneratedImage
from m2i_engine.logs import clean_request_id, new_request_id, request_context, request_id_var
from m2i_engine.options import VideoOptions, VisualizeOptions, check_video_options
from m2i_engine.server.errors import (
    BadRequestError,
    MethodNotAllowedError,
    NotFoundError,
    ShuttingDownError,
    UnauthorizedError,
)
from m2i_engine.server.images import (
    IMAGE_ID,
    DirImages,
    FileVideos,
    ImageStore,
    MemoryImages,
    QueueImages,
    VideoStore,
)
from m2i_engine.server.jobs import Job, JobRegistry
from m2i_engine.server.metrics import Metrics
from m2i_engine.server.openapi import build_openapi
from m2i_engine.server.upload import parse_options, read_upload

log = logging.getLogger("m2i_engine.server")

#: form fields beyond the audio file and the options
FORM_OVERHEAD = 64 * 1024
#: the query/form fields of a video: ``video=true``, one ``video_<name>`` per :class:`VideoOptions` field,
#: and the byte limit its bit rate is fitted to
VIDEO_FLAG = "video"
VIDEO_FIELDS = frozenset({f"video_{name}" for name in VideoOptions.model_fields})
VIDEO_MAX_BYTES = "video_max_bytes"


@dataclass
class ApiState:
    settings: Settings
    engine: EngineLike
    images: ImageStore
    jobs: JobRegistry
    #: where videos go (made at startup unless given: a folder only a started server needs)
    videos: VideoStore | None = None
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    started: bool = False
    own_engine: bool = True
    openapi: dict[str, Any] = field(default_factory=build_openapi)

    @property
    def max_body(self) -> int:
        s = self.settings
        return s.serve.max_upload_bytes or s.limits.max_bytes + FORM_OVERHEAD


STATE: web.AppKey[ApiState] = web.AppKey("m2i_state", ApiState)


def create_app(
    settings: Settings,
    engine: EngineLike,
    *,
    own_engine: bool = True,
    images: ImageStore | None = None,
    videos: VideoStore | None = None,
) -> web.Application:
    serve = settings.serve
    if images is None:
        if serve.media_dir is not None:
            images = DirImages(serve.media_dir)
        elif hasattr(engine, "image"):
            images = QueueImages(engine)
        else:
            images = MemoryImages(serve.image_entries)
    state = ApiState(
        settings=settings,
        engine=engine,
        images=images,
        own_engine=own_engine,
        jobs=JobRegistry(ttl_s=serve.job_ttl_s, max_jobs=serve.max_jobs),
        videos=videos,
    )
    app = web.Application(
        middlewares=[_context_middleware, _auth_middleware],
        client_max_size=state.max_body,
        handler_args={"max_field_size": 8190, "keepalive_timeout": serve.keepalive_timeout_s},
    )
    app[STATE] = state
    app.router.add_post("/v1/visualize", _visualize)
    app.router.add_post("/v1/analyze", _analyze)
    app.router.add_get("/v1/jobs/{job_id}", _job)
    app.router.add_get("/v1/images/{name}", _image)
    app.router.add_get("/v1/videos/{name}", _video)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/openapi.json", _openapi)
    app.on_response_prepare.append(_nosniff)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    return app


async def _startup(app: web.Application) -> None:
    state = app[STATE]
    if state.videos is None:
        media = state.settings.serve.media_dir
        state.videos = (
            FileVideos(media) if media is not None else FileVideos.private(state.settings.serve.image_entries)
        )
    await state.engine.start()
    state.started = True
    log.info("API ready (%s mode)", "queue" if state.settings.queue.enabled else "single-process")


async def _cleanup(app: web.Application) -> None:
    state = app[STATE]
    state.draining = True
    await state.jobs.drain(state.settings.serve.shutdown_grace_s)
    if state.own_engine:
        await state.engine.close()
    if state.videos is not None:
        await state.videos.close()


async def _nosniff(request: web.Request, response: web.StreamResponse) -> None:
    """Browsers must take our content types as given (an uploaded name or a prompt is never HTML)."""
    response.headers["X-Content-Type-Options"] = "nosniff"


# --- connections --------------------------------------------------------------------------------

#: what a client is told about a request aiohttp could not parse — never the offending bytes
_PARSE_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (hx.LineTooLong, "The request line or a header is too long."),
    (hx.BadHttpMethod, "The request method isn't valid HTTP."),
    (hx.BadStatusLine, "The request line isn't valid HTTP (expected: METHOD /path HTTP/1.1)."),
    (hx.InvalidURLError, "The request path isn't a valid URL."),
    (hx.InvalidHeader, "A request header isn't valid HTTP (a control character, or a line without a colon)."),
    (hx.PayloadEncodingError, "The request body's framing (Content-Length or Transfer-Encoding) is invalid."),
)


class ApiProtocol(web.RequestHandler):
    """aiohttp's connection handler plus a header timeout and the API's error contract for parse errors.

    aiohttp waits for a request's headers as long as the client likes, so connections that never
    finish them would pile up; here they are closed after ``header_timeout_s`` (counted from the
    connection, or from the first byte of a later request on a kept-alive one; bodies are timed by
    :func:`read_upload`). Requests aiohttp can't parse are refused before any route or middleware
    runs, as text/plain that echoes the bad bytes and with a traceback in the log; here they get the
    JSON error body and one short WARNING line instead.
    """

    def __init__(self, manager: web.Server, state: ApiState, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._m2i_state = state
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count  # counts the request heads parsed so far
        idle = self._waiter is not None and not self._waiter.done()  # between requests: a new one begins
        if data and idle and self._head_timer is None:
            self._arm_head_timer()
        super().data_received(data)
        if self._request_count != heads:
            self._disarm_head_timer()

    def _arm_head_timer(self) -> None:
        timeout = self._m2i_state.settings.serve.header_timeout_s
        self._head_timer = self._loop.call_later(timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        log.debug("closed a connection whose request headers didn't arrive in time")
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: a response has begun, the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response")
        rid = new_request_id()
        with request_context(rid):
            if status < 500:
                text = next(
                    (t for cls, t in _PARSE_ERRORS if isinstance(exc, cls)),
                    "The request isn't valid HTTP/1.1: its request line or a header is malformed.",
                )
                err: M2IError = BadRequestError(text)
                log.warning(
                    "refused a request that isn't valid HTTP (%s) from %s", type(exc).__name__, request.remote
                )
            else:
                log.error("error outside the request handler", exc_info=exc)
                err = M2IError()
        self._m2i_state.metrics.errors.labels(err.code).inc()
        resp = error_response(err, rid)
        resp.headers.update({"X-Request-ID": rid, "X-Content-Type-Options": "nosniff"})
        resp.force_close()
        return resp


class _ApiServer(web.Server):
    """aiohttp's low-level server, making :class:`ApiProtocol` connections."""

    def __init__(self, server: web.Server, state: ApiState) -> None:
        # aiohttp has no public hook for the protocol class: rebuild its server with the same arguments
        super().__init__(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        self.state = state

    def __call__(self) -> web.RequestHandler:
        return ApiProtocol(self, self.state, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """The runner for an app of :func:`create_app`: its connections are :class:`ApiProtocol`."""

    async def _make_server(self) -> web.Server:
        return _ApiServer(await super()._make_server(), self.app[STATE])


# --- middleware ---------------------------------------------------------------------------------

_HTTP_CODES: dict[int, type[M2IError]] = {404: NotFoundError, 405: MethodNotAllowedError, 413: TooLargeError}


def error_response(exc: M2IError, rid: str) -> web.Response:
    return web.json_response({"error": exc.to_dict(), "request_id": rid}, status=exc.http_status)


@web.middleware
async def _context_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    rid = clean_request_id(request.headers.get("X-Request-ID")) or new_request_id()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    t0 = time.perf_counter()
    with request_context(rid):
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            cls = _HTTP_CODES.get(exc.status, BadRequestError if exc.status < 500 else M2IError)
            err = cls()
            if exc.status not in _HTTP_CODES:
                err.http_status = exc.status  # type: ignore[misc]
            resp = error_response(err, rid)
        except M2IError as exc:
            resp = error_response(exc, rid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("unhandled error in %s", route)
            resp = error_response(describe(exc), rid)
        resp.headers["X-Request-ID"] = rid
        ms = (time.perf_counter() - t0) * 1000
        if resp.status >= 400 and resp.content_type == "application/json":
            code = getattr(resp, "_m2i_code", None) or _code_of(resp)
            state.metrics.errors.labels(code).inc()
        state.metrics.requests.labels(route, request.method, str(resp.status)).inc()
        state.metrics.latency.labels(route).observe(ms / 1000)
        if route not in ("/healthz", "/readyz", "/metrics"):
            log.info(
                "%s %s -> %d in %.1f ms",
                request.method,
                route,
                resp.status,
                ms,
                extra={"status": resp.status, "duration_ms": round(ms, 2), "route": route},
            )
    return resp


def _code_of(resp: web.StreamResponse) -> str:
    import json

    body = getattr(resp, "body", None)
    try:
        return str(json.loads(body)["error"]["code"]) if isinstance(body, bytes) else "unknown"
    except Exception:
        return "unknown"


@web.middleware
async def _auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    serve = request.app[STATE].settings.serve
    protected = request.path.startswith("/v1/") or (serve.metrics_auth and request.path == "/metrics")
    if serve.tokens and protected:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and any(
            hmac.compare_digest(token.strip().encode(), t.get_secret_value().encode()) for t in serve.tokens
        )
        if not ok:
            rid = request_id_var.get() or new_request_id()
            resp = error_response(UnauthorizedError(), rid)
            resp.headers["WWW-Authenticate"] = 'Bearer realm="m2i"'
            return resp
    return await handler(request)


# --- routes -------------------------------------------------------------------------------------


async def _visualize(request: web.Request) -> web.StreamResponse:
    return await _submit(request, "visualize")


async def _analyze(request: web.Request) -> web.StreamResponse:
    return await _submit(request, "analyze")


async def _submit(request: web.Request, kind: str) -> web.StreamResponse:
    state = request.app[STATE]
    if state.draining:
        raise ShuttingDownError()
    t0 = time.perf_counter()
    image_mode = request.query.get("image", "url")
    if image_mode not in ("url", "base64"):
        raise InvalidOptionError("Invalid image: use 'url' or 'base64'.")
    wait = _wants_wait(request)
    idem = request.headers.get("Idempotency-Key")
    if idem is not None and not (0 < len(idem) <= 128 and idem.isascii() and idem.isprintable()):
        raise BadRequestError("The Idempotency-Key must be 1–128 printable ASCII characters.")
    s = state.settings
    upload = await read_upload(
        request,
        max_bytes=state.max_body,
        audio_max_bytes=s.limits.max_bytes,
        timeout_s=s.serve.upload_timeout_s,
        min_rate_bps=s.serve.min_upload_rate_bps,
    )
    state.metrics.stage.labels("upload").observe(upload.read_ms / 1000)
    fields, query = dict(upload.fields), dict(request.query)
    video, video_max = _video_request(fields, query) if kind == "visualize" else (None, None)
    options = parse_options(fields, query, allowed=kind == "visualize")
    engine = state.engine
    if video is not None:
        check_video_options(options)  # before any work, like every other bad option
        if getattr(engine, "video", None) is None:
            raise VideoUnavailableError()
    rid = request_id_var.get() or new_request_id()
    if idem is not None:
        sha = hashlib.sha256(upload.audio).hexdigest()
        asked = options.model_dump_json() + (f"|{video.model_dump_json()}|{video_max}" if video else "")
        job_id = hashlib.sha256(f"{kind}|{idem}|{sha}|{asked}".encode()).hexdigest()[:24]
    else:
        job_id = secrets.token_hex(12)
    audio = upload.audio

    async def run(job: Job) -> Any:
        if kind == "analyze":
            return await engine.analyze(audio, progress=job.progress)
        result = await engine.visualize(audio, options, progress=job.progress)
        if any(img.held_png is None for img in result.images):
            t = time.perf_counter()  # single-process mode: encode here (once), as a worker would
            await asyncio.to_thread(lambda: [img.image_id for img in result.images])  # encodes, hashes
            result.timings_ms["png_ms"] = round((time.perf_counter() - t) * 1000, 2)
        if video is not None:
            job.extra["video"] = await _make_video(state, job, audio, options, video, video_max)
        return result

    job, created = state.jobs.submit(job_id, kind, rid, run)
    job.extra.setdefault("file_name", upload.filename)
    if not created:
        log.info("request joins job %s (same Idempotency-Key)", job_id)
    if not wait:
        await state.jobs.admitted(job)  # refused outright (no worker, queue full): that error, not a 202
        return web.json_response(
            _status_doc(job, request), status=202, headers={"Location": f"/v1/jobs/{job.id}"}
        )
    state.metrics.inflight.inc()
    t_engine = time.perf_counter()
    try:
        await state.jobs.wait(job)
    finally:
        state.metrics.inflight.dec()
    engine_ms = round((time.perf_counter() - t_engine) * 1000, 2)
    if job.error is not None:
        raise job.error
    doc = await _result_doc(state, job, image_mode=image_mode)
    http_ms = round((time.perf_counter() - t0) * 1000, 2)
    doc["timings_ms"].update(engine_ms=engine_ms, upload_ms=round(upload.read_ms, 2), http_ms=http_ms)
    state.metrics.observe_timings({k: v for k, v in doc["timings_ms"].items() if k != "upload_ms"})
    timing = f"upload;dur={upload.read_ms:.2f}, engine;dur={engine_ms:.2f}, total;dur={http_ms:.2f}"
    if "image/png" in request.headers.get("Accept", "") and kind == "visualize" and job.result.images:
        img = job.result.images[0]
        body = img.held_png
        if body is None:  # a kept job that gave its bytes back: fetched again, off the loop
            body = await asyncio.to_thread(_png_of, img)
        return web.Response(
            body=body,
            content_type="image/png",
            headers={"X-M2I-Job-ID": job.id, "X-M2I-Seed": str(img.seed), "Server-Timing": timing},
        )
    return web.json_response(doc, headers={"Server-Timing": timing})


def _png_of(img: GeneratedImage) -> bytes:
    return img.png  # blocking: encodes (once) or fetches again


def _wants_wait(request: web.Request) -> bool:
    if "respond-async" in request.headers.get("Prefer", ""):
        return False
    raw = request.query.get("wait", "true").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise InvalidOptionError("Invalid wait: use true or false.")
    return raw in ("true", "1", "yes")


async def _result_doc(state: ApiState, job: Job, *, image_mode: str) -> dict[str, Any]:
    res = job.result
    base = (state.settings.serve.public_url or "").rstrip("/")
    if isinstance(res, AnalysisResult):
        return {
            "request_id": job.request_id,
            "job_id": job.id,
            "file_name": job.extra.get("file_name"),
            "tags": res.tags.model_dump(mode="json"),
            "audio_sha256": res.audio_sha256,
            "cached": res.cached,
            "timings_ms": dict(res.timings_ms),
        }
    assert isinstance(res, VisualizeResult)
    images = []
    for img in res.images:
        png = img.held_png  # the bytes made once (in run(), or by the worker) and handed on as they are
        if png is None:  # a kept job that gave its bytes back: fetched again, off the loop
            png = await asyncio.to_thread(_png_of, img)
        iid = img.image_id
        await state.images.put(iid, png)
        width, height = img.size
        entry: dict[str, Any] = {
            "id": iid,
            "url": f"{base}/v1/images/{iid}.png",
            "seed": img.seed,
            "width": width,
            "height": height,
        }
        if image_mode == "base64":
            entry["png_base64"] = base64.b64encode(png).decode()
        images.append(entry)
    result_cached = res.analysis.cached and not res.timings_ms
    state.metrics.cache.labels("result" if result_cached else "analysis").inc(res.analysis.cached)
    doc: dict[str, Any] = {
        "request_id": job.request_id,
        "job_id": job.id,
        "file_name": job.extra.get("file_name"),
        "tags": res.tags.model_dump(mode="json"),
        "prompt": res.prompt.text,
        "negative_prompt": res.prompt.negative,
        "style": res.prompt.style.value,
        "backend": res.backend,
        "seed": res.seed,
        "images": images,
        "notes": list(res.notes),
        "note_details": dict(res.note_details),
        "cached": res.analysis.cached,
        "timings_ms": {k: v for k, v in res.timings_ms.items()},
    }
    made = job.extra.get("video")
    if made is not None:
        doc["video"] = {**made, "url": f"{base}/v1/videos/{made['id']}.mp4"}
        doc["notes"] += [n for n in made["notes"] if n not in doc["notes"]]
        doc["note_details"] |= made["note_details"]
        doc["timings_ms"]["video_ms"] = made["timings_ms"]["total_ms"]
    return doc


def _video_request(fields: dict[str, str], query: dict[str, str]) -> tuple[VideoOptions | None, int | None]:
    """Take the video's fields out of ``fields`` and ``query`` (the rest are the picture's options):
    the :class:`VideoOptions` when ``video=true``, and the byte limit to fit, if any."""
    given: dict[str, str] = {}
    for src in (query, fields):  # a form field wins over the query, as for the picture's options
        for key in [k for k in src if k in (VIDEO_FLAG, VIDEO_MAX_BYTES) or k in VIDEO_FIELDS]:
            value = src.pop(key)
            if value != "":
                given[key] = value
    flag = given.pop(VIDEO_FLAG, "false").lower()
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise InvalidOptionError("Invalid video: use true or false.")
    if flag not in ("true", "1", "yes"):
        if given:
            raise InvalidOptionError(f"{sorted(given)[0]} is a video option: add video=true.")
        return None, None
    max_bytes: int | None = None
    if VIDEO_MAX_BYTES in given:
        raw = given.pop(VIDEO_MAX_BYTES)
        if not raw.isdigit() or int(raw) <= 0:
            raise InvalidOptionError("Invalid video_max_bytes: use a whole number of bytes above 0.")
        max_bytes = int(raw)
    try:
        return VideoOptions.model_validate({k.removeprefix("video_"): v for k, v in given.items()}), max_bytes
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "options"
        raise InvalidOptionError(f"Invalid video_{loc}: {first['msg']}.") from exc


async def _make_video(
    state: ApiState,
    job: Job,
    audio: bytes,
    options: VisualizeOptions,
    video: VideoOptions,
    max_bytes: int | None,
) -> dict[str, Any]:
    """The music video, moved into the video store; returns what the answer says of it (without its
    link, which depends on the request's base URL)."""
    make = state.engine.video  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    try:
        made = await make(audio, options, video, max_bytes=max_bytes, progress=job.progress)
    except VideoTooLargeError as exc:  # its message names the CLI's flags: say the API's fields
        words = exc.message.replace("--length", "video_length").replace("--size", "video_size")
        raise VideoTooLargeError(
            f"{words.rstrip('.')} (or raise video_max_bytes).", detail=exc.detail
        ) from exc
    try:
        assert state.videos is not None, "the app has not started"
        video_id = await state.videos.put(made.path)
    finally:
        made.path.unlink(missing_ok=True)  # moved in, or not to be kept
    return {
        "id": video_id,
        "content_type": "video/mp4",
        **made.video.to_dict(),
        # the result's own notes and timings (the video's are a part of them)
        "seed": made.seed,
        "notes": list(made.notes),
        "note_details": dict(made.note_details),
        "timings_ms": {**made.timings_ms, "total_ms": round((time.perf_counter() - t0) * 1000, 2)},
    }


def _status_doc(job: Job, request: web.Request) -> dict[str, Any]:
    status = "failed" if job.error is not None else ("done" if job.done else job.stage)
    doc: dict[str, Any] = {
        "job_id": job.id,
        "kind": job.kind,
        "status": status,
        "queue_position": job.queue_position,
        "status_url": f"/v1/jobs/{job.id}",
        "request_id": job.request_id,
    }
    if job.error is not None:
        doc["error"] = job.error.to_dict()
    return doc


async def _job(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    job_id = request.match_info["job_id"]
    if not (0 < len(job_id) <= 64 and job_id.isalnum()):
        raise NotFoundError("No such job.")
    job = state.jobs.get(job_id)
    if job is not None:
        doc = _status_doc(job, request)
        if job.done and job.error is None:
            doc["result"] = await _result_doc(state, job, image_mode=request.query.get("image", "url"))
        return web.json_response(doc)
    lookup = getattr(state.engine, "job_status", None)  # queue mode: a job another API process took
    if lookup is not None:
        remote = await lookup(job_id)
        if remote is not None:
            return web.json_response(_remote_status(job_id, remote, state))
    raise NotFoundError("No such job (unknown, or finished more than an hour ago).")


def _remote_status(job_id: str, remote: dict[str, Any], state: ApiState) -> dict[str, Any]:
    doc: dict[str, Any] = {"job_id": job_id, "status": remote["state"], "status_url": f"/v1/jobs/{job_id}"}
    res = remote.get("result")
    if res is None:
        return doc
    if "error" in res:
        doc["status"] = "failed"
        doc["error"] = {"code": res["error"]["code"], "message": res["error"]["message"]}
        return doc
    base = (state.settings.serve.public_url or "").rstrip("/")
    out: dict[str, Any] = {
        "job_id": job_id,
        "tags": res["analysis"]["tags"],
        "cached": res["analysis"]["cached"],
        "timings_ms": res.get("timings_ms", {}),
    }
    if res.get("kind") == "visualize":
        out.update(
            prompt=res["prompt"]["text"],
            negative_prompt=res["prompt"]["negative"],
            style=res["prompt"]["style"],
            backend=res["backend"],
            seed=res["seed"],
            notes=res["notes"],
            note_details=res.get("note_details", {}),
            images=[
                {
                    "id": im["id"],
                    "url": f"{base}/v1/images/{im['id']}.png",
                    "seed": im["seed"],
                    "width": im["width"],
                    "height": im["height"],
                }
                for im in res["images"]
            ],
        )
    else:
        out["audio_sha256"] = res["analysis"]["audio_sha256"]
    doc["status"] = "done"
    doc["result"] = out
    return doc


async def _image(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    image_id = name[:-4] if name.endswith(".png") else ""
    if not IMAGE_ID.fullmatch(image_id):
        raise NotFoundError("No such image.")
    png = await request.app[STATE].images.get(image_id)
    if png is None:
        raise NotFoundError("No such image (unknown, or expired).")
    return web.Response(
        body=png,
        content_type="image/png",
        headers={"Cache-Control": "private, max-age=86400, immutable", "ETag": f'"{image_id}"'},
    )


async def _video(request: web.Request) -> web.StreamResponse:
    """A video file, like an image but from disk: ``Range`` requests (players seeking) come for free."""
    name = request.match_info["name"]
    video_id = name[:-4] if name.endswith(".mp4") else ""
    if not IMAGE_ID.fullmatch(video_id):
        raise NotFoundError("No such video.")
    store = request.app[STATE].videos
    path = await store.path(video_id) if store is not None else None
    if path is None:
        raise NotFoundError("No such video (unknown, or expired).")
    return web.FileResponse(
        path, headers={"Content-Type": "video/mp4", "Cache-Control": "private, max-age=86400, immutable"}
    )


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    reasons = []
    if state.draining:
        reasons.append("draining")
    if not state.started:
        reasons.append("starting")
    ping = getattr(state.engine, "ping", None)
    if ping is not None and not state.draining:
        if not await ping():
            reasons.append("queue unreachable")
        else:
            workers = await state.engine.workers()  # type: ignore[attr-defined]
            if not workers:
                reasons.append("no worker")
    if reasons:
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    await state.metrics.refresh(
        state.engine, ready=state.started and not state.draining, inflight=state.jobs.running
    )
    return web.Response(body=state.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATE].openapi)

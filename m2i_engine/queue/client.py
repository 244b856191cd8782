"""The engine interface backed by the job queue: front ends call it exactly like the local engine.

:class:`QueueEngine` has ``start/close/analyze/visualize/video`` with the same arguments, results and
errors as :class:`~m2i_engine.engine.Engine`; behind them it stores the upload in Redis (once per content
hash), enqueues a Dramatiq message, relays the worker's progress events and returns the worker's
result (a video's MP4 comes back through Redis and is written to a file, as the local engine does).
Guarantees it adds on top of Dramatiq's delivery:

- **idempotent jobs**: the job id comes from the caller's idempotency key when there is one
  (:data:`m2i_engine.logs.job_id_var`); a retried request joins the job already queued or finished
  instead of making a second one, and a job that ran twice (a worker died after finishing) still has
  exactly one result, because the first stored result wins;
- **result cache**: the same audio + options answer from Redis without a job;
- **Redis restarts**: every Redis call is retried until the request's deadline, and a job whose
  record vanished with a Redis that lost its data is submitted again from the bytes still in hand;
- **no worker, no wait**: with no live worker the HTTP API's jobs are refused at once with
  ``no_worker`` (:data:`require_worker`), and every waiting caller (the bots too) gets ``no_worker``
  soon after the last worker is gone, instead of holding the request until the deadline; and a
  deadline names its cause (no worker, a long queue, a long job).

What a request costs the front end is kept small, since one API process serves many workers: a few
pipelined Redis round trips to submit, one wake-up by the worker's ``done`` event (no polling but a
slow safety check), and results whose PNGs can be dropped and fetched again later
(:func:`~m2i_engine.queue.codec.slim_visualize`), so the pictures live in Redis, not in the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from m2i_engine.config import Settings
from m2i_engine.engine import (
    AnalysisResult,
    AudioSource,
    Progress,
    ProgressCallback,
    Stage,
    VideoResult,
    VisualizeResult,
    notify,
)
from m2i_engine.errors import (
    BusyError,
    EmptyAudioError,
    M2IError,
    RequestTimeoutError,
    ServiceError,
    TooLargeError,
    VideoExpiredError,
)
from m2i_engine.files import owned_file
from m2i_engine.logs import job_id_var, request_id_var
from m2i_engine.options import VideoOptions, VisualizeOptions, check_video_options
from m2i_engine.queue.broker import build_broker, job_message, queue_depth_key
from m2i_engine.queue.codec import (
    VIDEO_CHUNK,
    VIDEO_READ_GRACE_S,
    Keys,
    decode_analysis,
    decode_video,
    decode_visualize,
    raise_error,
)
from m2i_engine.queue.connection import Backoff, retry_connection
from m2i_engine.serving import result_cache_key

log = logging.getLogger(__name__)
T = TypeVar("T")


#: True where a new job must find a live worker or be refused at once with ``no_worker`` (as
#: ``/readyz`` says): the HTTP API sets it per job. False (the default, e.g. the chat bots) queues the
#: job anyway, up to ``M2I_MAX_QUEUE`` waiting jobs, for a worker that may be starting. Either way a
#: caller stops waiting with ``no_worker`` once no worker has been seen for ``heartbeat_timeout_s``
#: (a crashed worker still counts as alive that long; one restarting cleanly gets that long to return).
require_worker: ContextVar[bool] = ContextVar("m2i_require_worker", default=False)


class QueueUnavailableError(ServiceError):
    code = "queue_unavailable"
    default_message = "m2i can't reach its job queue right now — please try again in a minute."


class NoWorkerError(ServiceError):
    code = "no_worker"
    default_message = "No image worker is running right now — please try again in a minute."
    http_status = 503


WORKER_STOPPED = "m2i's image worker stopped before your song was done — please try again in a minute."
QUEUE_TOO_LONG = "The queue was too long to reach your song in time — please try again in a few minutes."


@dataclass
class _Waiter:
    progress: ProgressCallback | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Call:
    """One engine call, so its deadline can be explained by its job's state."""

    job_id: str | None = None


class QueueEngine:
    """Create once per process; ``async with QueueEngine(settings) as engine: ...``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.q = self.settings.queue
        if not self.q.enabled:
            raise ValueError("QueueEngine needs M2I_QUEUE__REDIS_URL")
        self.keys = Keys(self.q.namespace)
        self._redis: Any = None
        #: a blocking client for :meth:`_png_fetcher` (PNGs fetched again off the event loop)
        self._sync_redis: Any = None
        self._broker: Any = None
        self._waiters: dict[str, list[_Waiter]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._started = False
        #: set by close(): the listener stops at its next turn even if redis-py swallowed the cancel
        self._closing = False
        #: when workers were last seen alive (monotonic): a live answer is trusted for a second
        self._workers_seen_at = -1e9

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> QueueEngine:
        if self._started:
            return self
        import redis.asyncio as aredis

        self._redis = aredis.Redis.from_url(
            self.q.url(), socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=5
        )
        self._broker = build_broker(self.q)
        self._closing = False
        self._listener = asyncio.create_task(self._listen(), name="m2i-queue-events")
        self._started = True
        return self

    async def close(self) -> None:
        if self._listener is not None:
            await self._stop_listener(self._listener)
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._sync_redis is not None:
            with contextlib.suppress(Exception):
                self._sync_redis.close()
            self._sync_redis = None
        if self._broker is not None:
            with contextlib.suppress(Exception):
                self._broker.close()
            self._broker = None
        self._started = False

    async def _stop_listener(self, task: asyncio.Task[None]) -> None:
        """Cancel the listener and wait for it. redis-py's ``get_message(timeout=…)`` can swallow a
        cancellation (the task then loops on, and ``close()`` used to hang forever), so the cancel is
        repeated and ``_closing`` ends the loop at its next turn."""
        self._closing = True
        for _ in range(100):
            task.cancel()
            done, _pending = await asyncio.wait([task], timeout=0.05)
            if done:
                break
        if task.done() and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()

    async def __aenter__(self) -> QueueEngine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the engine interface -------------------------------------------------------------------

    async def analyze(
        self, audio: AudioSource, *, progress: ProgressCallback | None = None
    ) -> AnalysisResult:
        await self.start()
        data = await self._bytes(audio)
        call = _Call()
        doc = await self._deadline(self._job("analyze", data, None, progress, call), call)
        return decode_analysis(doc)

    async def visualize(
        self,
        audio: AudioSource,
        options: VisualizeOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> VisualizeResult:
        await self.start()
        options = options or VisualizeOptions()
        data = await self._bytes(audio)
        call = _Call()

        async def run() -> VisualizeResult:
            ckey = result_cache_key(hashlib.sha256(data).hexdigest(), options, self.settings)
            hit = await self._cached(ckey)
            if hit is not None:
                return hit
            doc = await self._job("visualize", data, options, progress, call)
            pngs = await retry_connection(
                lambda: self._images([im["id"] for im in doc["images"]]), what="reading a result"
            )
            if None in pngs.values():
                raise QueueUnavailableError(detail="result images expired before they were read")
            return decode_visualize(doc, pngs, self._png_fetcher)  # type: ignore[arg-type]

        result = await self._deadline(run(), call)
        await notify(progress, Progress(Stage.done))
        return result

    async def video(
        self,
        audio: AudioSource,
        options: VisualizeOptions | None = None,
        video: VideoOptions | None = None,
        *,
        out: Path | None = None,
        max_bytes: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> VideoResult:
        """:meth:`Engine.video <m2i_engine.engine.Engine.video>` run by a worker: the MP4 comes back through
        Redis and is written to ``out`` (default: a new temporary file the caller owns). A worker keeps
        every video under :data:`~m2i_engine.queue.codec.MAX_VIDEO_BYTES` (``max_bytes`` lower still)."""
        options = options or VisualizeOptions()
        video = video or VideoOptions()
        check_video_options(options)  # before any work, as the local engine does
        await self.start()
        data = await self._bytes(audio)
        call = _Call()
        extra = {"video": video.model_dump(mode="json"), "max_bytes": max_bytes}

        async def run() -> VideoResult:
            doc = await self._job("video", data, options, progress, call, extra=extra)
            return await self._video_file(doc, out)

        result = await self._deadline(run(), call)
        await notify(progress, Progress(Stage.done))
        return result

    # --- extras for the HTTP API and metrics -----------------------------------------------------

    async def queue_depth_now(self) -> int:
        """Messages waiting for a worker (Redis round trip)."""
        await self.start()
        return int(await self._redis.llen(queue_depth_key(self.q)))

    async def workers(self) -> dict[str, dict[str, Any]]:
        """Workers that reported within three heartbeats: id → their last report."""
        await self.start()
        raw = await self._redis.hgetall(self.keys.workers())
        now = time.time()
        alive = {}
        for wid, doc in raw.items():
            info = json.loads(doc)
            if now - float(info.get("seen", 0)) <= max(3 * self.q.heartbeat_s, self.q.heartbeat_timeout_s):
                alive[wid.decode()] = info
        return alive

    async def image(self, image_id: str) -> bytes | None:
        await self.start()
        data = await self._redis.get(self.keys.image(image_id))
        return bytes(data) if data is not None else None

    async def job_status(self, job_id: str) -> dict[str, Any] | None:
        """``{"state": ..., "result": doc | None}`` for a job any front end submitted, or None."""
        await self.start()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        pipe.get(self.keys.result(job_id))
        info, res = await pipe.execute()
        if not info and res is None:
            return None
        state = {k.decode(): v.decode() for k, v in info.items()}
        return {
            "state": "done" if res is not None else state.get("state", "queued"),
            "result": json.loads(res) if res is not None else None,
        }

    async def ping(self) -> bool:
        await self.start()
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    # --- internals ------------------------------------------------------------------------------

    async def _bytes(self, audio: AudioSource) -> bytes:
        if isinstance(audio, bytes | bytearray | memoryview):
            data = bytes(audio)
        else:
            from m2i_engine.audio import read_audio_bytes

            data = await asyncio.to_thread(read_audio_bytes, audio, limits=self.settings.limits)
        # the cheap checks happen here, so an oversize file never travels to Redis
        if not data:
            raise EmptyAudioError()
        if len(data) > self.settings.limits.max_bytes:
            raise TooLargeError(f"The file is too big (limit {self.settings.limits.max_bytes // 2**20} MB).")
        return data

    async def _deadline(self, coro: Awaitable[T], call: _Call) -> T:
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await coro
        except TimeoutError as exc:
            raise await self._timeout_error(call) from exc

    async def _timeout_error(self, call: _Call) -> M2IError:
        """The deadline's error, worded by its cause: the user's clip is blamed only when a live worker
        was still running it — not when no worker is left, nor when the queue never reached it."""
        after = f"after {self.settings.request_timeout_s:g} s"
        try:
            async with asyncio.timeout(2.0):
                info = await self._redis.hgetall(self.keys.job(call.job_id)) if call.job_id else {}
                alive = await self.workers() if info else {}
                depth = await self.queue_depth_now() if info else 0
        except Exception as exc:
            return QueueUnavailableError(detail=f"deadline {after}; the queue did not answer ({exc})")
        if not info:  # never got into the queue: Redis was unreachable the whole time
            return QueueUnavailableError(detail=f"deadline {after} while submitting")
        state = info.get(b"state", b"").decode()
        worker = info.get(b"worker", b"").decode()
        if state == "running" and worker not in alive:
            return NoWorkerError(WORKER_STOPPED, detail=f"deadline {after}: {worker} died running it")
        if not alive:
            return NoWorkerError(detail=f"deadline {after}: job {state}, no live worker")
        if state == "running":
            return RequestTimeoutError(detail=f"deadline {after}: still running on {worker}")
        return RequestTimeoutError(QUEUE_TOO_LONG, detail=f"deadline {after}: still queued, {depth} waiting")

    async def _has_worker(self) -> bool:
        """Whether a worker is alive; a yes is trusted for a second (one Redis call a second, however
        many requests wait), a no is checked again every time (a worker may have just started)."""
        if time.monotonic() - self._workers_seen_at < 1.0:
            return True
        if await self.workers():
            self._workers_seen_at = time.monotonic()
            return True
        return False

    async def _workers_gone(self, since: float) -> bool:
        """For a job waiting since ``since`` (monotonic): no worker seen for ``heartbeat_timeout_s``."""
        if await self._has_worker():
            return False
        return time.monotonic() - max(self._workers_seen_at, since) > self.q.heartbeat_timeout_s

    def _png_fetcher(self, image_id: str) -> Callable[[], bytes | None]:
        """A blocking fetch of one stored PNG, so a kept result can drop its bytes and get them back
        (:func:`~m2i_engine.queue.codec.slim_visualize`); it runs in a thread, never on the loop."""

        def fetch() -> bytes | None:
            if self._sync_redis is None:
                import redis

                self._sync_redis = redis.Redis.from_url(
                    self.q.url(), socket_connect_timeout=2.0, socket_timeout=10.0
                )
            data = self._sync_redis.get(self.keys.image(image_id))
            return bytes(data) if data is not None else None

        return fetch

    async def _cached(self, ckey: str) -> VisualizeResult | None:
        try:
            raw = await self._redis.get(self.keys.result_cache(ckey))
            if raw is None:
                return None
            doc = json.loads(raw)
            pngs = await self._images([im["id"] for im in doc["images"]])
        except Exception as exc:  # the cache is an optimisation: never fail a request for it
            log.debug("result cache unavailable: %s", exc)
            return None
        if None in pngs.values():
            return None
        result = decode_visualize(doc, pngs, self._png_fetcher)  # type: ignore[arg-type]
        return replace(result, analysis=replace(result.analysis, cached=True), timings_ms={})

    async def _images(self, ids: list[str]) -> dict[str, bytes | None]:
        if not ids:
            return {}
        values = await self._redis.mget([self.keys.image(i) for i in ids])
        return {i: (bytes(v) if v is not None else None) for i, v in zip(ids, values, strict=True)}

    async def _job(
        self,
        kind: str,
        data: bytes,
        options: VisualizeOptions | None,
        progress: ProgressCallback | None,
        call: _Call,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        sha = hashlib.sha256(data).hexdigest()
        given = job_id_var.get()
        if given and kind == "video":  # the HTTP API asks for the picture and the video under one id
            given = f"{given}-video"
        job_id = call.job_id = given or secrets.token_hex(12)
        payload = {
            "job": job_id,
            "kind": kind,
            "sha": sha,
            "rid": request_id_var.get() or job_id,
            "options": options.model_dump(mode="json") if options is not None else None,
            "oom_step": 0,
            "enqueued": time.time(),
            **(extra or {}),
        }
        waiter = _Waiter(progress)
        self._waiters.setdefault(job_id, []).append(waiter)
        try:
            position = await retry_connection(lambda: self._submit(payload, data), what="submitting a job")
            if position is not None:
                await notify(progress, Progress(Stage.queued, position))
            return await self._wait(payload, data, waiter, fresh=position is not None)
        finally:
            waiters = self._waiters.get(job_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def _video_file(self, doc: dict[str, Any], out: Path | None) -> VideoResult:
        """Write the MP4 a worker stored for ``doc`` to ``out`` (or a new temporary file), piece by piece.
        An MP4 that is gone or cut short (expired, or lost with a Redis restart) is a
        :class:`~m2i_engine.errors.VideoExpiredError`: asking again would join the same dead result."""
        meta = doc["video"]
        key, size = self.keys.video(meta["id"]), int(meta["size_bytes"])
        with owned_file(out) as target:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            f = await asyncio.to_thread(target.open, "wb")
            try:
                while written < size:
                    end = min(written + VIDEO_CHUNK, size) - 1
                    chunk = await retry_connection(
                        partial(self._redis.getrange, key, written, end), what="reading a video"
                    )
                    if not chunk:
                        break
                    await asyncio.to_thread(f.write, chunk)
                    written += len(chunk)
            finally:
                await asyncio.to_thread(f.close)
            if written != size:
                raise VideoExpiredError(
                    detail=f"video {meta['id']} expired before it was read ({written} of {size} bytes)"
                )
        # delivered: keep it only for a retry's sake (LT: never lengthen an expiry that is shorter)
        await retry_connection(
            partial(self._redis.expire, key, VIDEO_READ_GRACE_S, lt=True), what="releasing a video"
        )
        return decode_video(doc, target)

    async def _submit(self, payload: dict[str, Any], data: bytes) -> int | None:
        """Store the audio, claim the job id and enqueue; None when the job already existed.

        Three Redis round trips (and Dramatiq's enqueue) where there were eight: under load the API
        process spends its time on them, not on HTTP."""
        r, k, q = self._redis, self.keys, self.q
        audio_key = k.audio(payload["sha"])
        job_key = k.job(payload["job"])
        pipe = r.pipeline(transaction=False)
        pipe.expire(audio_key, q.audio_ttl_s)  # 1 when the same song is already there
        pipe.hsetnx(job_key, "created", f"{time.time():.3f}")
        pipe.llen(queue_depth_key(q))
        had_audio, claimed, depth = await pipe.execute()
        if not had_audio:  # before any enqueue below: a worker never finds a job without its audio
            await r.set(audio_key, data, ex=q.audio_ttl_s)
        if not claimed:
            log.info("job %s exists already: joining it", payload["job"])
            return None
        if require_worker.get() and not await self._has_worker():
            # nobody would take it: say so now (as /readyz does) rather than at the deadline
            await r.delete(job_key)
            raise NoWorkerError(detail=f"{q.namespace}: no worker alive")
        if int(depth) >= self.settings.max_queue:
            # the same promise as one process's engine: past M2I_MAX_QUEUE waiting jobs (all front ends
            # together), refuse at once rather than let every client wait for minutes
            await r.delete(job_key)
            raise BusyError(detail=f"{q.namespace}: {self.settings.max_queue} jobs already waiting")
        try:
            pipe = r.pipeline(transaction=False)
            pipe.hset(job_key, mapping={"state": "queued", "kind": payload["kind"], "rid": payload["rid"]})
            pipe.expire(job_key, q.result_ttl_s)
            await pipe.execute()
            await asyncio.to_thread(self._broker.enqueue, job_message(payload))
        except BaseException:
            with contextlib.suppress(Exception):
                await r.delete(job_key)  # let a retry claim it again
            raise
        log.info("job %s queued (%s, audio %s…)", payload["job"], payload["kind"], payload["sha"][:12])
        return int(depth) + 1

    async def _wait(
        self, payload: dict[str, Any], data: bytes, waiter: _Waiter, *, fresh: bool
    ) -> dict[str, Any]:
        """The job's result document (or its error raised), however Redis behaves meanwhile.

        Woken by the worker's ``done`` event (one subscription per process), with a check every
        ``poll_s`` in case an event was lost; a job just queued is not checked before its first wake."""
        r, k = self._redis, self.keys
        job_id = payload["job"]
        since = time.monotonic()

        def look() -> Awaitable[list[Any]]:  # the result, whether the job exists, and its state
            pipe = r.pipeline(transaction=False)
            pipe.get(k.result(job_id))
            pipe.exists(k.job(job_id))
            pipe.hget(k.job(job_id), "state")
            return pipe.execute()

        if fresh:
            await self._sleep(waiter)
        while True:
            raw, exists, state = await retry_connection(look, what=f"waiting for job {job_id}")
            if raw is not None:
                doc = json.loads(raw)
                if "error" in doc:
                    raise_error(doc)
                return doc  # type: ignore[no-any-return]
            if not exists:  # Redis lost the job (restarted without its data): submit it again
                log.warning("job %s vanished from the queue; submitting it again", job_id)
                await retry_connection(lambda: self._submit(payload, data), what="submitting a job")
            elif await retry_connection(lambda: self._workers_gone(since), what="looking for workers"):
                log.warning("job %s: no worker alive any more; giving up waiting", job_id)
                if state == b"running":
                    raise NoWorkerError(WORKER_STOPPED, detail=f"job {job_id}: its worker stopped")
                raise NoWorkerError(
                    detail=f"job {job_id}: queued, and no worker for {self.q.heartbeat_timeout_s:g} s"
                )
            await self._sleep(waiter)

    async def _sleep(self, waiter: _Waiter) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.q.poll_s):
                await waiter.wake.wait()
        waiter.wake.clear()

    async def _listen(self) -> None:
        """One subscription per process relays every job's events to the local waiters."""
        backoff = Backoff()
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self.keys.events_pattern())
                backoff.reset()
                for ws in list(self._waiters.values()):  # missed events while away: re-check results
                    for w in ws:
                        w.wake.set()
                while not self._closing:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    job_id = msg["channel"].decode().rsplit(":", 1)[-1]
                    waiters = self._waiters.get(job_id)
                    if not waiters:
                        continue
                    event = json.loads(msg["data"])
                    for w in list(waiters):
                        if event.get("stage"):
                            with contextlib.suppress(ValueError):
                                await notify(w.progress, Progress(Stage(event["stage"])))
                        if event.get("done"):
                            w.wake.set()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                log.warning("event subscription lost (%s); reconnecting", type(exc).__name__)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await backoff.wait()

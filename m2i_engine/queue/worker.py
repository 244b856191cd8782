"""``m2i worker``: one process per GPU that holds the models and runs queued jobs, several at a time.

A Dramatiq :class:`~dramatiq.Worker` consumes the queue with ``M2I_QUEUE__CONCURRENCY`` threads; each
job runs as a coroutine on one event loop beside one engine (models loaded once), so concurrent jobs
meet in the engine and the Stable Diffusion micro-batcher can group them into one GPU call.

Per job: skip it if a result exists (a redelivery after a crash), count the delivery (a job that
killed its worker ``max_deliveries`` times is failed as poison), run the engine, store images (or a
video's MP4, checked whole, with its expiry on every piece) and the result (first result wins; a later
run's MP4 is dropped), publish ``done``. Out of GPU memory re-queues the job smaller, for any worker;
input errors and bugs become a clear error for the client; Redis trouble is retried.
On SIGTERM the worker stops fetching, finishes running jobs for up to ``shutdown_timeout_s`` and
hands back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from m2i_engine.config import Settings
from m2i_engine.engine import Progress, Stage
from m2i_engine.errors import M2IError, ServiceError, VideoTooLargeError, describe
from m2i_engine.files import owned_file
from m2i_engine.logs import request_context
from m2i_engine.options import VideoOptions, VisualizeOptions
from m2i_engine.queue.broker import ACTOR_NAME, QUEUE, build_broker, job_message
from m2i_engine.queue.codec import (
    MAX_VIDEO_BYTES,
    VIDEO_CHUNK,
    Keys,
    encode_analysis,
    encode_video,
    encode_visualize,
    error_doc,
)
from m2i_engine.queue.connection import is_connection_error, retry_connection
from m2i_engine.serving import (
    DecodeGuard,
    ServingEngine,
    is_oom,
    oom_error,
    oom_note,
    result_cache_key,
    smaller_options,
)
from m2i_engine.tags import Tags

log = logging.getLogger(__name__)

EngineFactory = Callable[..., ServingEngine]


class JobCrashedError(ServiceError):
    code = "job_crashed"
    default_message = (
        "This file stopped our image workers several times, so it was set aside — try exporting it again."
    )
    http_status = 500


class AudioExpiredError(ServiceError):
    code = "audio_expired"
    default_message = "The upload expired before a worker could take it — please send it again."


class VideoLostError(ServiceError):
    """Redis lost part of an MP4 while a worker stored it (it restarted without its data): transient,
    so the job runs again rather than hand out a file with a hole in it."""

    code = "video_lost"
    default_message = "m2i's job queue lost your video while saving it — please try again in a minute."


class RedisTags:
    """The analysis cache the workers share (``TagsStore``)."""

    def __init__(self, redis: Any, keys: Keys, ttl_s: int) -> None:
        self.redis, self.keys, self.ttl_s = redis, keys, ttl_s

    async def get(self, key: str) -> Tags | None:
        raw = await self.redis.get(self.keys.tags(key))
        return Tags.model_validate_json(raw) if raw is not None else None

    async def put(self, key: str, tags: Tags) -> None:
        await self.redis.set(self.keys.tags(key), tags.model_dump_json(), ex=self.ttl_s)


def default_engine(settings: Settings, *, shared_tags: RedisTags) -> ServingEngine:
    guard = DecodeGuard(settings.limits) if settings.queue.decode_guard else None
    return ServingEngine(settings, guard=guard, shared_tags=shared_tags, oom_fallback=False)


class WorkerRuntime:
    """The engine and Redis client of one worker process; its coroutines run on Dramatiq's loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine_factory: EngineFactory = default_engine,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.q = settings.queue
        self.keys = Keys(self.q.namespace)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.engine_factory = engine_factory
        self.engine: ServingEngine | None = None
        self.redis: Any = None
        self.broker: Any = None
        self.jobs_done = 0
        self.jobs_running = 0
        #: set on SIGTERM: jobs that still reach this worker go back to the queue untouched
        self.stopping = False
        self._ready: asyncio.Event | None = None

    async def start(self) -> None:
        import redis.asyncio as aredis

        self._ready = asyncio.Event()
        self.redis = aredis.Redis.from_url(
            self.q.url(), socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=5
        )
        engine = self.engine_factory(
            self.settings, shared_tags=RedisTags(self.redis, self.keys, self.q.tags_ttl_s)
        )
        await engine.start()
        self.engine = engine
        self._ready.set()
        log.info("worker %s ready (concurrency %d)", self.worker_id, self.q.concurrency)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.hdel(self.keys.workers(), self.worker_id)
            await self.redis.aclose()

    # --- one job --------------------------------------------------------------------------------

    async def run(self, payload: dict[str, Any], retries: int) -> None:
        job_id = payload["job"]
        with request_context(payload.get("rid"), job_id):
            assert self._ready is not None
            await self._ready.wait()
            if self.stopping:  # fetched while we were stopping: hand it to another worker
                await self._persist(lambda: asyncio.to_thread(self.broker.enqueue, job_message(payload)))
                log.info("job %s handed back (this worker is stopping)", job_id)
                return
            self.jobs_running += 1
            try:
                await self._run(payload, retries)
            finally:
                self.jobs_running -= 1
                self.jobs_done += 1

    async def _run(self, payload: dict[str, Any], retries: int) -> None:
        r, k, q = self.redis, self.keys, self.q
        job_id = payload["job"]
        if await self._persist(lambda: r.exists(k.result(job_id))):
            log.info("job %s already has its result: duplicate delivery skipped", job_id)
            return
        deliveries = int(await self._persist(lambda: r.hincrby(k.job(job_id), "deliveries", 1)))
        if deliveries > q.max_deliveries:
            log.error("job %s was delivered %d times (its workers died): failing it", job_id, deliveries)
            await self._store(job_id, error_doc(JobCrashedError()))
            return
        running = {"state": "running", "worker": self.worker_id}
        await self._persist(lambda: r.hset(k.job(job_id), mapping=running))
        await self._persist(lambda: r.expire(k.job(job_id), q.result_ttl_s))
        wait_ms = (time.time() - float(payload.get("enqueued", time.time()))) * 1000
        log.info(
            "job %s started (%s, delivery %d, waited %.0f ms)", job_id, payload["kind"], deliveries, wait_ms
        )
        data = await self._persist(lambda: r.get(k.audio(payload["sha"])))
        if data is None:
            await self._store(job_id, error_doc(AudioExpiredError()))
            return

        async def on_progress(p: Progress) -> None:
            if p.stage not in (Stage.queued, Stage.done):
                with contextlib.suppress(Exception):
                    await r.publish(k.events(job_id), json.dumps({"stage": p.stage.value}))

        assert self.engine is not None
        t0 = time.perf_counter()
        options = VisualizeOptions.model_validate(payload["options"]) if payload["options"] else None
        pngs: dict[str, bytes] = {}
        mp4: bytes | None = None
        try:
            if payload["kind"] == "analyze":
                doc = encode_analysis(await self.engine.analyze(bytes(data), progress=on_progress))
            elif payload["kind"] == "video":
                doc, mp4 = await self._video(bytes(data), options, payload, on_progress)
            else:
                assert options is not None
                result = await self.engine.visualize(bytes(data), options, progress=on_progress)
                if payload.get("asked") and payload["oom_step"]:
                    asked = VisualizeOptions.model_validate(payload["asked"])
                    result.notes.append(oom_note(asked, options))
                doc, pngs = await asyncio.to_thread(encode_visualize, result)
        except Exception as exc:  # a video's size is its own option: no re-queue smaller for it
            await self._failed(payload, options if payload["kind"] == "visualize" else None, exc, retries)
            return
        doc["worker"] = self.worker_id
        doc["timings_ms"] = {
            **doc.get("timings_ms", {}),
            "queue_wait_ms": round(wait_ms, 2),
            "worker_ms": round((time.perf_counter() - t0) * 1000, 2),
        }

        async def save() -> Any:
            pipe = r.pipeline(transaction=False)
            for iid, png in pngs.items():
                pipe.set(k.image(iid), png, ex=q.image_ttl_s)
            if payload["kind"] == "visualize":
                asked = VisualizeOptions.model_validate(payload.get("asked") or payload["options"])
                ckey = result_cache_key(payload["sha"], asked, self.settings)
                pipe.set(k.result_cache(ckey), json.dumps(doc), ex=min(q.image_ttl_s, q.result_ttl_s))
            return await pipe.execute()

        await self._persist(save)
        video_key: str | None = None
        if mp4 is not None:
            video_key = k.video(doc["video"]["id"])
            if await self._persist(lambda: r.exists(k.result(job_id))):
                # another delivery finished this job while this one ran: its result (and MP4) stand
                log.info("job %s already has its result: this run's video is dropped", job_id)
                return
            try:
                await self._store_video(video_key, mp4)
            except VideoLostError as exc:
                await self._failed(payload, None, exc, retries)
                return
        if not await self._store(job_id, doc) and video_key is not None:
            # the first result names another run's MP4: this one would only wait out its TTL
            await self._persist(lambda: r.delete(video_key))

    async def _video(
        self,
        data: bytes,
        options: VisualizeOptions | None,
        payload: dict[str, Any],
        progress: Callable[[Progress], Any],
    ) -> tuple[dict[str, Any], bytes]:
        """The engine's video of ``data`` (its document and MP4 bytes), held under ``MAX_VIDEO_BYTES``."""
        import secrets

        assert self.engine is not None
        video = VideoOptions.model_validate(payload["video"]) if payload.get("video") else None
        asked = payload.get("max_bytes")
        limit = min(int(asked), MAX_VIDEO_BYTES) if asked else MAX_VIDEO_BYTES
        with owned_file(keep=False) as path:  # a scratch file: the bytes go to Redis
            result = await self.engine.video(
                data, options, video, out=path, max_bytes=limit, progress=progress
            )
            mp4 = await asyncio.to_thread(path.read_bytes)
        if len(mp4) > limit:  # the encoder fits a file under the limit or refuses; this is a safety net
            raise VideoTooLargeError(detail=f"{len(mp4)} bytes over the limit of {limit}")
        # an id of its own per run: two runs of one job never write into each other's value
        return encode_video(result, secrets.token_hex(16)), mp4

    async def _store_video(self, key: str, mp4: bytes) -> None:
        """Store an MP4 under ``key`` in pieces (each call well inside the socket timeout, each one safe
        to retry), for as long as the result that names it.

        Every piece renews the expiry, and each checks (in the same transaction) that the pieces before
        it are still there: a Redis that restarted without its data in between would otherwise get a key
        without a TTL, zero-filled below the offset — an MP4 with a hole that a front end serves as it
        is. A lost piece deletes the key and raises :class:`VideoLostError` (transient: the job runs
        again); so does a length short of the MP4's at the end."""
        r, q = self.redis, self.q
        ttl = min(q.image_ttl_s, q.result_ttl_s)
        view = memoryview(mp4)
        await self._persist(lambda: r.set(key, bytes(view[:VIDEO_CHUNK]), ex=ttl))

        async def piece(at: int) -> int:
            pipe = r.pipeline(transaction=True)
            pipe.strlen(key)
            pipe.setrange(key, at, bytes(view[at : at + VIDEO_CHUNK]))
            pipe.expire(key, ttl)
            before, _, _ = await pipe.execute()
            return int(before)

        for at in range(VIDEO_CHUNK, len(mp4), VIDEO_CHUNK):
            # at least ``at`` bytes before: this piece (or a retry of it whose answer was lost) comes next
            before = await self._persist(partial(piece, at))
            if before < at:
                await self._persist(lambda: r.delete(key))
                raise VideoLostError(detail=f"{key}: {before} of the first {at} bytes left before a piece")
        stored = int(await self._persist(lambda: r.strlen(key)))
        if stored != len(mp4):
            await self._persist(lambda: r.delete(key))
            raise VideoLostError(detail=f"{key}: {stored} of {len(mp4)} bytes stored")

    async def _persist(self, op: Callable[[], Any]) -> Any:
        """Run a Redis operation until it succeeds: finished work is not thrown away because Redis
        restarted meanwhile (the job's time limit bounds the wait)."""
        return await retry_connection(op, what="running a job")

    async def _store(self, job_id: str, doc: dict[str, Any]) -> bool:
        """Store the job's one result (the first one wins) and tell the waiting front ends; whether this
        result was the first."""
        r, k, q = self.redis, self.keys, self.q
        first = await self._persist(
            lambda: r.set(k.result(job_id), json.dumps(doc), ex=q.result_ttl_s, nx=True)
        )
        state = "failed" if "error" in doc else "done"
        await self._persist(lambda: r.hset(k.job(job_id), mapping={"state": state}))
        if first:
            await self._persist(lambda: r.publish(k.events(job_id), json.dumps({"done": True})))
            log.info("job %s %s%s", job_id, state, f" ({doc['error']['code']})" if "error" in doc else "")
        else:
            log.info("job %s finished again after a redelivery; the first result stands", job_id)
        return bool(first)

    async def _failed(
        self, payload: dict[str, Any], options: VisualizeOptions | None, exc: Exception, retries: int
    ) -> None:
        job_id = payload["job"]
        if is_oom(exc):
            smaller = smaller_options(options) if options is not None else None
            if smaller is not None and payload["oom_step"] < self.q.oom_retries:
                again = {
                    **payload,
                    "options": smaller.model_dump(mode="json"),
                    "oom_step": payload["oom_step"] + 1,
                    "asked": payload.get("asked") or payload["options"],
                }
                await self._persist(
                    lambda: self.redis.hset(
                        self.keys.job(job_id), mapping={"deliveries": 0, "state": "queued"}
                    )
                )
                await self._persist(lambda: asyncio.to_thread(self.broker.enqueue, job_message(again)))
                log.warning(
                    "job %s out of memory at %d px: re-queued at %d px",
                    job_id,
                    payload["options"]["size"],
                    smaller.size,
                )
                return
            await self._store(job_id, error_doc(oom_error(exc)))
            return
        if _is_transient(exc) and retries < self.q.max_retries:
            log.warning("job %s: transient %s; Dramatiq will retry it", job_id, type(exc).__name__)
            raise exc
        if isinstance(exc, M2IError):
            log.info("job %s refused: %s%s", job_id, exc.code, f" ({exc.detail})" if exc.detail else "")
        else:
            log.exception("job %s failed: %s", job_id, type(exc).__name__)
        await self._store(job_id, error_doc(describe(exc)))

    # --- status ---------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return {
            "seen": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "concurrency": self.q.concurrency,
            "running": self.jobs_running,
            "done": self.jobs_done,
            "gpu_memory_bytes": _gpu_memory(),
        }


def _is_transient(exc: BaseException) -> bool:
    return is_connection_error(exc) or isinstance(exc, VideoLostError) or getattr(exc, "code", None) == "busy"


def _gpu_memory() -> int | None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return int(torch.cuda.memory_allocated())
    except Exception:
        return None
    return None


# --- the process --------------------------------------------------------------------------------


def run_worker(
    settings: Settings,
    *,
    engine_factory: EngineFactory = default_engine,
    stop: threading.Event | None = None,
    heartbeat_file: Path | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); returns the exit status."""
    import dramatiq
    from dramatiq.asyncio import get_event_loop_thread
    from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, Retries, TimeLimit

    q = settings.queue
    runtime = WorkerRuntime(settings, engine_factory=engine_factory)

    class Lifecycle(Middleware):
        """Loads the engine once the event loop runs; closes it before the loop stops."""

        def after_worker_boot(self, broker: Any, worker: Any) -> None:
            loop_thread = get_event_loop_thread()
            assert loop_thread is not None
            loop_thread.run_coroutine(runtime.start())

        def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
            loop_thread = get_event_loop_thread()
            if loop_thread is not None:
                loop_thread.run_coroutine(runtime.close())

    def retry_when(retries: int, exc: BaseException) -> bool:
        return _is_transient(exc) and retries < q.max_retries

    # emit_after runs in reverse: Lifecycle's after_* hooks run while AsyncIO's loop is still up
    broker = build_broker(
        q,
        middleware=[
            AsyncIO(),
            Lifecycle(),
            CurrentMessage(),
            TimeLimit(time_limit=int(q.job_timeout_s * 1000)),
            Retries(
                max_retries=q.max_retries,
                min_backoff=q.retry_min_backoff_ms,
                max_backoff=q.retry_max_backoff_ms,
                retry_when=retry_when,
            ),
        ],
    )
    runtime.broker = broker

    def m2i_job(payload: dict[str, Any]) -> None:
        message = CurrentMessage.get_current_message()
        retries = int(message.options.get("retries", 0)) if message is not None else 0
        loop_thread = get_event_loop_thread()
        assert loop_thread is not None
        loop_thread.run_coroutine(runtime.run(payload, retries))

    dramatiq.actor(actor_name=ACTOR_NAME, queue_name=QUEUE, broker=broker)(m2i_job)
    worker = dramatiq.Worker(broker, worker_threads=q.concurrency, worker_timeout=q.poll_ms)
    worker.queue_prefetch = q.concurrency + q.prefetch  # counts running jobs too: no hoarding
    worker.delay_prefetch = max(q.concurrency, 8)

    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread (tests)
            signal.signal(sig, lambda *_: stop.set())
    worker.start()

    hb_stop = threading.Event()  # beats on while running jobs finish, so no one takes them over

    def heartbeat() -> None:
        while not hb_stop.is_set():
            try:
                broker.do_qsize(QUEUE)  # a Dramatiq dispatch: refreshes this worker's heartbeat
                broker.client.hset(runtime.keys.workers(), runtime.worker_id, json.dumps(runtime.report()))
                if heartbeat_file is not None:
                    heartbeat_file.touch()
            except Exception as exc:
                log.warning("heartbeat failed: %s", type(exc).__name__)
            hb_stop.wait(q.heartbeat_s)

    hb = threading.Thread(target=heartbeat, name="m2i-heartbeat", daemon=True)
    hb.start()
    log.info("worker %s consuming %s:%s", runtime.worker_id, q.namespace, QUEUE)
    stop.wait()
    # 1. stop taking work: no more fetching, and whatever still arrives goes straight back
    runtime.stopping = True
    for consumer in list(worker.consumers.values()):
        consumer.pause()
    log.info(
        "worker %s stopping: finishing %d running job(s), handing back the rest",
        runtime.worker_id,
        runtime.jobs_running,
    )
    # 2. finish what runs (the heartbeat goes on, so no one else takes these jobs meanwhile)
    deadline = time.monotonic() + q.shutdown_timeout_s
    while runtime.jobs_running and time.monotonic() < deadline:
        time.sleep(0.05)
    if runtime.jobs_running:
        log.warning(
            "worker %s: %d job(s) still running after %.0f s; they go to other workers",
            runtime.worker_id,
            runtime.jobs_running,
            q.shutdown_timeout_s,
        )
    # 3. Dramatiq's own shutdown: requeues anything left in memory, acks what finished
    worker.stop(timeout=5000)
    hb_stop.set()
    hb.join(timeout=5)
    log.info("worker %s stopped after %d job(s)", runtime.worker_id, runtime.jobs_done)
    return 0

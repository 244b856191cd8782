"""The engine as a service runs it, in one process or as a queue worker: hooks and retries around it.

- **Decoder isolation** (:class:`DecodeGuard`, an :class:`~m2i_engine.engine.AnalysisHook`): a song
  not seen before is first decoded in a sacrificial child process, so a file that crashes the decoder
  (a native ffmpeg fault, not a Python exception) kills that child, and the request gets a clear
  ``corrupt_audio`` answer while the server or worker carries on.
- **Shared analysis** (:class:`SharedTags`, a hook): queue workers keep tags in Redis too, so a
  re-roll of a song another worker analysed skips straight to drawing.
- **Out of GPU memory**: :func:`smaller_options` sizes the retry with the one OOM step of
  :mod:`m2i_engine.imaging.sd.failures`; in one process :class:`ServingEngine` retries here, in queue
  mode the worker re-queues the job so that any GPU may take it.
- **Result cache** (one process): the same audio + options return the finished result again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import multiprocessing
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from m2i_engine import __version__
from m2i_engine.audio import decode_audio, read_audio_bytes
from m2i_engine.config import AudioLimits, Settings
from m2i_engine.engine import AnalysisHook, AudioSource, Engine, ProgressCallback, VisualizeResult
from m2i_engine.errors import CorruptAudioError, M2IError
from m2i_engine.imaging.base import ImageBackend
from m2i_engine.imaging.sd.failures import is_oom, smaller_side
from m2i_engine.models import ModelRegistry
from m2i_engine.options import VisualizeOptions
from m2i_engine.tags import Tags

log = logging.getLogger(__name__)


# --- out of memory ------------------------------------------------------------------------------


def smaller_options(options: VisualizeOptions) -> VisualizeOptions | None:
    """The same request one out-of-memory step smaller, or None when it is already as small as allowed."""
    size = smaller_side(options.size)
    return None if size is None else options.model_copy(update={"size": size})


def oom_note(asked: VisualizeOptions, used: VisualizeOptions) -> str:
    return (
        f"Drawn at {used.size} px instead of {asked.size} px: the image generator ran out of "
        "memory at the full size."
    )


def oom_error(exc: BaseException) -> M2IError:
    if isinstance(exc, M2IError):
        return exc
    from m2i_engine.imaging.sd.failures import SDOutOfMemoryError

    return SDOutOfMemoryError(detail=f"{type(exc).__name__}: {exc}")


# --- decoder isolation --------------------------------------------------------------------------


def probe_audio(data: bytes, limits_json: str) -> None:
    """Run in the child: decode ``data`` fully; an ``InputError`` travels back, a crash kills the child."""
    decode_audio(data, limits=AudioLimits.model_validate_json(limits_json))


class DecodeGuard(AnalysisHook):
    """Decodes untrusted audio once in a child process before the engine touches it."""

    def __init__(
        self,
        limits: AudioLimits,
        *,
        processes: int = 1,
        probe: Callable[[bytes, str], None] = probe_audio,
        remember: int = 4096,
    ) -> None:
        self.limits_json = limits.model_dump_json()
        self.processes = processes
        self.probe = probe
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._passed: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._pending: dict[str, asyncio.Future[None]] = {}
        self.crashes = 0

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn: a fresh interpreter, never a fork of a process holding threads, CUDA or locks
        return concurrent.futures.ProcessPoolExecutor(
            self.processes, mp_context=multiprocessing.get_context("spawn")
        )

    async def start(self) -> None:
        if self._pool is None:
            self._pool = self._new_pool()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, _warm)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def admit(self, data: bytes, sha256: str) -> None:
        """Return when ``data`` decodes safely; raise the decoder's ``InputError`` or ``corrupt_audio``."""
        sha = sha256
        if sha in self._passed:
            return
        pending = self._pending.get(sha)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[sha] = fut
        try:
            await self._probe(data, sha)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        else:
            fut.set_result(None)
            self._passed[sha] = None
            while len(self._passed) > self._remember:
                self._passed.popitem(last=False)
        finally:
            self._pending.pop(sha, None)

    async def _probe(self, data: bytes, sha: str) -> None:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):  # a crash breaks the whole pool: innocent neighbours get one more try
            if self._pool is None:
                self._pool = self._new_pool()
            pool = self._pool
            try:
                await loop.run_in_executor(pool, self.probe, data, self.limits_json)
                return
            except concurrent.futures.process.BrokenProcessPool:
                self.crashes += 1
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                log.warning("audio %s… crashed the decoder (attempt %d)", sha[:12], attempt)
        raise CorruptAudioError(
            "This file crashes the audio decoder, so it can't be used — try exporting it again.",
            detail=f"decoder child process died twice on {sha}",
        )


def _warm() -> None:
    import m2i_engine.audio  # noqa: F401  (load PyAV/numpy before the first real file)


# --- shared analysis ----------------------------------------------------------------------------


class TagsStore(Protocol):
    """A cache of analyses shared by processes (Redis in queue mode)."""

    async def get(self, key: str) -> Tags | None: ...

    async def put(self, key: str, tags: Tags) -> None: ...


class SharedTags(AnalysisHook):
    """The engine's analysis cache extended to a :class:`TagsStore` other processes share."""

    def __init__(self, tags_store: TagsStore) -> None:
        self.tags_store = tags_store

    @staticmethod
    def _key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    async def lookup(self, key: str) -> Tags | None:
        return await self.tags_store.get(self._key(key))

    async def store(self, key: str, tags: Tags) -> None:
        await self.tags_store.put(self._key(key), tags)


# --- the serving engine -------------------------------------------------------------------------


def result_cache_key(sha256: str, options: VisualizeOptions, settings: Settings) -> str:
    """Audio content + every option + what else decides the picture (limits, backend, version)."""
    text = "|".join(
        [
            sha256,
            options.model_dump_json(),
            settings.limits.model_dump_json(),
            settings.backend,
            settings.sd.model_dump_json(),
            __version__,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


class ServingEngine(Engine):
    """:class:`Engine` with decoder isolation and shared tags as hooks, OOM retry and a result cache."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        models: ModelRegistry | None = None,
        backends: dict[str, ImageBackend] | None = None,
        guard: DecodeGuard | None = None,
        shared_tags: TagsStore | None = None,
        oom_fallback: bool = True,
        result_cache: int = 0,
    ) -> None:
        hooks: list[AnalysisHook] = []
        if shared_tags is not None:  # another worker's analysis first: no decode needed then
            hooks.append(SharedTags(shared_tags))
        if guard is not None:
            hooks.append(guard)
        super().__init__(settings, models=models, backends=backends, hooks=hooks)
        self.guard = guard
        self.oom_fallback = oom_fallback
        self._results: OrderedDict[str, VisualizeResult] = OrderedDict()
        self._result_entries = result_cache

    async def visualize(
        self,
        audio: AudioSource,
        options: VisualizeOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> VisualizeResult:
        options = options or VisualizeOptions()
        data = await self._bytes(audio)
        key = result_cache_key(hashlib.sha256(data).hexdigest(), options, self.settings)
        if key in self._results:
            self._results.move_to_end(key)
            hit = self._results[key]
            return replace(hit, analysis=replace(hit.analysis, cached=True), timings_ms={})
        used = options
        for step in range(self.settings.queue.oom_retries + 1):
            try:
                result = await super().visualize(data, used, progress=progress)
                break
            except Exception as exc:
                if not (self.oom_fallback and is_oom(exc)):
                    raise
                smaller = smaller_options(used)
                if smaller is None or step == self.settings.queue.oom_retries:
                    raise oom_error(exc) from exc
                log.warning("out of memory at %d px; retrying at %d px", used.size, smaller.size)
                used = smaller
        if used is not options:
            result = replace(result, notes=[*result.notes, oom_note(options, used)])
        if self._result_entries:
            self._results[key] = result
            while len(self._results) > self._result_entries:
                self._results.popitem(last=False)
        return result

    async def _bytes(self, audio: AudioSource) -> bytes:
        if isinstance(audio, bytes | bytearray | memoryview):
            return bytes(audio)
        return await asyncio.to_thread(read_audio_bytes, audio, limits=self.settings.limits)


def local_engine(settings: Settings, **kw: Any) -> ServingEngine:
    """The single-process engine every front end uses when no queue is configured."""
    guard = DecodeGuard(settings.limits) if settings.queue.decode_guard else None
    return ServingEngine(settings, guard=guard, result_cache=settings.serve.result_cache_entries, **kw)


__all__ = [
    "DecodeGuard",
    "ServingEngine",
    "SharedTags",
    "TagsStore",
    "is_oom",
    "local_engine",
    "oom_error",
    "oom_note",
    "probe_audio",
    "result_cache_key",
    "smaller_options",
]

"""The one async API every front end uses: audio + options in, tags + prompt + images out.

The engine owns the things that must exist once per process: loaded models, image backends, a
bounded worker pool for CPU-heavy steps, an admission queue with positions, and a cache of
analyses so re-rolls of the same song skip straight to drawing. CLI, bots and HTTP all call
:meth:`Engine.analyze` / :meth:`Engine.visualize` and render :class:`~m2i_engine.errors.M2IError`
the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from m2i_engine.audio import read_audio_bytes
from m2i_engine.config import Settings
from m2i_engine.errors import (
    BackendUnavailableError,
    BusyError,
    RequestTimeoutError,
    ServiceError,
)
from m2i_engine.files import owned_file
from m2i_engine.imaging.base import GeneratedImage, ImageBackend, ImageRequest
from m2i_engine.models import ModelRegistry
from m2i_engine.options import (
    MAX_SEED,
    AnimateOptions,
    Backend,
    VideoOptions,
    VisualizeOptions,
    check_video_options,
)
from m2i_engine.pipeline import Timings, analyse_audio, image_request
from m2i_engine.prompt import Prompt
from m2i_engine.tags import Tags

if TYPE_CHECKING:
    from pathlib import Path

    from m2i_engine.imaging.animate import Animation
    from m2i_engine.imaging.video import Video

log = logging.getLogger(__name__)
T = TypeVar("T")

AudioSource = bytes | str | os.PathLike[str]


class Stage(StrEnum):
    queued = "queued"
    decoding = "decoding"
    analysing = "analysing"
    drawing = "drawing"
    done = "done"


@dataclass(frozen=True)
class Progress:
    stage: Stage
    #: 1-based place in the queue while ``stage`` is ``queued``
    queue_position: int | None = None


ProgressCallback = Callable[[Progress], Awaitable[None] | None]

#: A result's ``notes`` are sentences for anyone who sees the result, a chat user too: no setting names,
#: paths or commands. ``note_details`` maps a note to what its operator needs besides (why Stable
#: Diffusion is off, which setting turns it on); the CLI, the HTTP API and the logs show it, bots don't.
NoteDetails = dict[str, str]


@dataclass(frozen=True)
class AnalysisResult:
    tags: Tags
    audio_sha256: str
    cached: bool
    timings_ms: Timings


@dataclass(frozen=True)
class VisualizeResult:
    analysis: AnalysisResult
    prompt: Prompt
    images: list[GeneratedImage]
    backend: str
    seed: int
    notes: list[str] = field(default_factory=list)
    note_details: NoteDetails = field(default_factory=dict)
    timings_ms: Timings = field(default_factory=dict)

    @property
    def tags(self) -> Tags:
        return self.analysis.tags


@dataclass(frozen=True)
class AnimationResult:
    """A beat-synced loop of a song: :attr:`animation` holds its frames, GIF and MP4 bytes, section."""

    analysis: AnalysisResult
    prompt: Prompt
    animation: Animation
    notes: list[str] = field(default_factory=list)
    note_details: NoteDetails = field(default_factory=dict)
    timings_ms: Timings = field(default_factory=dict)

    @property
    def tags(self) -> Tags:
        return self.analysis.tags


@dataclass(frozen=True)
class VideoResult:
    """A music video of a song: :attr:`video` is the MP4 on disk (``video.path``, ``video.read_bytes()``)
    with its size, length, codecs, bit rate and sections; :attr:`analysis` is the clip's own analysis
    (its times are the clip's, from 0)."""

    analysis: AnalysisResult
    prompt: Prompt
    video: Video
    seed: int
    notes: list[str] = field(default_factory=list)
    note_details: NoteDetails = field(default_factory=dict)
    timings_ms: Timings = field(default_factory=dict)

    @property
    def tags(self) -> Tags:
        return self.analysis.tags

    @property
    def path(self) -> Path:
        return self.video.path

    @property
    def backend(self) -> str:
        return self.video.backend


class AnalysisHook:
    """A step a serving engine adds around an analysis its own cache can't answer.

    Decoder isolation (:class:`~m2i_engine.serving.DecodeGuard`) and the analysis cache queue workers
    share (:class:`~m2i_engine.serving.SharedTags`) are hooks; the engine calls them in order, inside
    the same in-flight slot that makes concurrent requests for one song share its analysis. Every
    method is optional (the defaults do nothing).
    """

    async def start(self) -> None:
        """Called once by :meth:`Engine.start`."""

    async def close(self) -> None:
        """Called once by :meth:`Engine.close`."""

    async def lookup(self, key: str) -> Tags | None:
        """Tags analysed elsewhere for this cache ``key`` (audio hash + analysis settings), or None."""
        return None

    async def admit(self, data: bytes, sha256: str) -> None:
        """Raise an :class:`~m2i_engine.errors.InputError` to refuse ``data`` before the engine decodes
        it (to analyse it, or to cut a video's clip from it)."""

    async def store(self, key: str, tags: Tags) -> None:
        """Tags just analysed here, for others (errors are logged, never fail the request)."""


class Engine:
    """Create once per process; use as ``async with Engine() as engine: ...``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        models: ModelRegistry | None = None,
        backends: dict[str, ImageBackend] | None = None,
        hooks: Sequence[AnalysisHook] = (),
    ) -> None:
        self.settings = settings or Settings()
        self.hooks: tuple[AnalysisHook, ...] = tuple(hooks)
        self._models = models
        self._backends: dict[str, ImageBackend] = dict(backends or {})
        self._pool: ThreadPoolExecutor | None = None
        self._slots = asyncio.Semaphore(self.settings.workers)
        self._waiting: list[object] = []
        self._running = 0
        self._cache: OrderedDict[str, Tags] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Tags]] = {}
        self._start_lock = asyncio.Lock()
        self._sd_off_reason = "no Stable Diffusion model is configured"  # for the operator
        self._sd_off_summary = "this server has no Stable Diffusion model"  # for anyone
        self._sd_checked = "sd" in self._backends
        self._hooks_started = False

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Engine:
        """Create the worker pool and load models (once; later calls return at once)."""
        async with self._start_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="m2i")
            if self._models is None:
                self._models = await self._run_blocking(
                    ModelRegistry.load, self.settings.model_dir, runtime=self.settings.model_runtime
                )
            if not self._sd_checked and self.settings.backend != "renderer":
                self._sd_checked = True
                await self._load_sd()
            if not self._hooks_started:
                self._hooks_started = True
                for hook in self.hooks:
                    await hook.start()
        return self

    async def close(self) -> None:
        if self._hooks_started:
            self._hooks_started = False
            for hook in self.hooks:
                await hook.close()
        for backend in self._backends.values():
            try:
                backend.close()
            except Exception:
                log.exception("closing the %s backend failed", backend.name)
        self._backends.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def _load_sd(self) -> None:
        """Load Stable Diffusion when a model and a device are there; otherwise say why, once."""
        from m2i_engine.imaging.sd import load_sd_backend, sd_available, sd_off_summary

        ok, why = sd_available(self.settings.sd)
        if not ok:
            self._sd_off_reason = why
            self._sd_off_summary = sd_off_summary(self.settings.sd)
            log.info("Stable Diffusion off: %s", why)
            return
        self._backends["sd"] = await self._run_blocking(load_sd_backend, self.settings.sd)

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def models(self) -> ModelRegistry:
        if self._models is None:
            raise RuntimeError("Engine.start() has not been awaited")
        return self._models

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    # --- public API -----------------------------------------------------------------------------

    async def analyze(
        self, audio: AudioSource, *, progress: ProgressCallback | None = None
    ) -> AnalysisResult:
        """Tags for ``audio`` (bytes or a path). Raises an ``M2IError`` on bad input or overload."""
        await self.start()
        async with self._deadline():
            data = await self._read(audio)
            return await self._analysis(data, progress)

    async def visualize(
        self,
        audio: AudioSource,
        options: VisualizeOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> VisualizeResult:
        """Tags, prompt and images for ``audio``; the same audio + options + seed repeat exactly."""
        await self.start()
        options = options or VisualizeOptions()
        wanted, backend, notes, details = self._backend_for(options)
        async with self._deadline():
            analysis, seed, request = await self._request(audio, options, options.size, progress)
            t0 = time.perf_counter()
            images, backend = await self._with_fallback(
                wanted, backend, notes, "drew", lambda b: self._draw(b, request, progress)
            )
            draw_ms = round((time.perf_counter() - t0) * 1000.0, 2)
            await notify(progress, Progress(Stage.done))
        return VisualizeResult(
            analysis=analysis,
            prompt=request.prompt,
            images=images,
            backend=backend.name,
            seed=seed,
            notes=notes,
            note_details=details,
            timings_ms={**analysis.timings_ms, "draw_ms": draw_ms},
        )

    async def animate(
        self,
        audio: AudioSource,
        options: VisualizeOptions | None = None,
        animation: AnimateOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> AnimationResult:
        """A short loop (GIF and MP4) of the picture ``visualize`` draws, moving with the song's beats
        and energy; the same audio + options + seed repeat exactly."""
        from m2i_engine.imaging.animate import animate as make_loop

        await self.start()
        options = options or VisualizeOptions()
        animation = animation or AnimateOptions()
        wanted, backend, notes, details = self._backend_for(options)
        async with self._deadline():
            analysis, _seed, request = await self._request(audio, options, animation.anim_size, progress)
            async with self._slot(progress):
                await notify(progress, Progress(Stage.drawing))
                loop, _ = await self._with_fallback(
                    wanted,
                    backend,
                    notes,
                    "animated",
                    lambda b: self._run_blocking(make_loop, request, animation, backend=b),
                )
            await notify(progress, Progress(Stage.done))
        return AnimationResult(
            analysis=analysis,
            prompt=request.prompt,
            animation=loop,
            notes=notes,
            note_details=details,
            timings_ms={**analysis.timings_ms, **loop.timings_ms},
        )

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
        """An MP4 music video of ``audio``: the clip ``video`` picks (the most representative part by
        default, at most ``MAX_VIDEO_S``) with its own sound, the picture pulsing on its beats, moving
        with its energy and changing scene at its sections; style, backend and seed come from
        ``options`` (``num_images`` must be 1). Written to ``out`` (default: a new temporary file the
        caller owns). ``max_bytes``: a file over it is encoded again at a lower bit rate, and a clip that
        can't fit raises ``VideoTooLargeError`` (code ``video_too_large``). Bad audio raises the same
        ``InputError``\\ s as :meth:`visualize`. The same audio + options + seed repeat exactly."""
        from m2i_engine.imaging.video import load_clip, render_video

        options = options or VisualizeOptions()
        video = video or VideoOptions()
        check_video_options(options)  # before any work
        await self.start()
        wanted, backend, notes, details = self._backend_for(options)
        async with self._deadline():
            data = await self._read(audio)
            await notify(progress, Progress(Stage.decoding))
            t0 = time.perf_counter()
            sha = hashlib.sha256(data).hexdigest()  # hashed once, for the hooks and the seed
            # the decode guard first: a file that crashes decoders dies in a child
            await self._admit(data, sha)
            clip = await self._run_blocking(
                load_clip, data, limits=self.settings.limits, start=video.start, length=video.length
            )
            clip_ms = round((time.perf_counter() - t0) * 1000.0, 2)
            analysis = await self._clip_analysis(clip.wav_bytes(), clip.length_s, progress)
            tags = analysis.tags.model_copy(update={"audio": clip.info})
            analysis = AnalysisResult(tags, analysis.audio_sha256, analysis.cached, analysis.timings_ms)
            seed = options.seed if options.seed is not None else _seed_from(sha)
            width, height = video.aspect.size(video.size, multiple=2)
            request = image_request(tags, options, seed=seed, width=width, height=height)
            with owned_file(out) as target:  # a file made here is removed if drawing fails
                async with self._slot(progress):
                    await notify(progress, Progress(Stage.drawing))
                    made, _ = await self._with_fallback(
                        wanted,
                        backend,
                        notes,
                        "drew the video",
                        lambda b: self._run_blocking(
                            render_video,
                            request,
                            audio=clip.samples,
                            sample_rate=clip.sample_rate,
                            out=target,
                            fps=video.fps,
                            backend=b,
                            max_bytes=max_bytes,
                        ),
                    )
            made.start_s = clip.start_s
            await notify(progress, Progress(Stage.done))
        return VideoResult(
            analysis=analysis,
            prompt=request.prompt,
            video=made,
            seed=seed,
            notes=[*notes, *made.notes],
            note_details=details,
            timings_ms={"clip_ms": clip_ms, **analysis.timings_ms, **made.timings_ms},
        )

    # --- internals ------------------------------------------------------------------------------

    async def _clip_analysis(
        self, wav: bytes, length_s: float, progress: ProgressCallback | None
    ) -> AnalysisResult:
        """A video clip's tags, all of it analysed: through the cache as usual, or (where the settings
        analyse less than a clip's length) directly under limits that take it whole."""
        from m2i_engine.imaging.video import clip_limits

        if self.settings.limits.analysis_s >= length_s:
            return await self._analysis(wav, progress, admitted=True)
        async with self._slot(progress):
            tags, timings = await self._run_blocking(
                analyse_audio,
                wav,
                limits=clip_limits(self.settings.limits),
                models=self.models,
                on_stage=self._stage_reporter(progress),
            )
        return AnalysisResult(tags, hashlib.sha256(wav).hexdigest(), cached=False, timings_ms=timings)

    def _backend_for(self, options: VisualizeOptions) -> tuple[Backend, ImageBackend, list[str], NoteDetails]:
        """The backend asked for (``auto`` resolved by the settings), the one that will draw, its notes
        and their details for the operator."""
        wanted = options.backend if options.backend is not Backend.auto else Backend(self.settings.backend)
        backend, notes, details = self._pick_backend(wanted)
        return wanted, backend, notes, details

    async def _request(
        self, audio: AudioSource, options: VisualizeOptions, size: int, progress: ProgressCallback | None
    ) -> tuple[AnalysisResult, int, ImageRequest]:
        """Read and analyse ``audio``, then the image request at ``size``: what a still and a loop share."""
        data = await self._read(audio)
        analysis = await self._analysis(data, progress)
        seed = options.seed if options.seed is not None else _seed_from(analysis.audio_sha256)
        width, height = options.aspect.size(size)
        return analysis, seed, image_request(analysis.tags, options, seed=seed, width=width, height=height)

    async def _with_fallback(
        self,
        wanted: Backend,
        backend: ImageBackend,
        notes: list[str],
        verb: str,
        work: Callable[[ImageBackend], Awaitable[T]],
    ) -> tuple[T, ImageBackend]:
        """``work(backend)``; when Stable Diffusion fails at serve time and was not asked for by name,
        ``work`` on the renderer instead, with a note saying so. Returns the result and who made it."""
        try:
            return await work(backend), backend
        except ServiceError as exc:
            if backend.name == "renderer" or wanted is Backend.sd:
                raise
            log.warning(
                "%s failed (%s%s); falling back to the renderer",
                backend.name,
                exc.code,
                f": {exc.detail}" if exc.detail else "",
            )
            # exc.detail (an exception's text) stays in the log: M2IError details are never shown
            notes.append(f"Stable Diffusion failed ({exc.message}); the built-in renderer {verb} this.")
            renderer = self._renderer()
            return await work(renderer), renderer

    def _deadline(self) -> _Deadline:
        return _Deadline(self.settings.request_timeout_s)

    async def _read(self, audio: AudioSource) -> bytes:
        if isinstance(audio, bytes | bytearray | memoryview):
            return bytes(audio)
        return await self._run_blocking(read_audio_bytes, audio, limits=self.settings.limits)

    async def _analysis(
        self, data: bytes, progress: ProgressCallback | None, *, admitted: bool = False
    ) -> AnalysisResult:
        """Tags for ``data``: from the cache, from an identical request in flight, or computed.
        ``admitted``: the hooks have passed ``data`` already (a clip the engine decoded itself)."""
        key = self._cache_key(data)
        sha = key.split(":", 1)[0]
        while True:
            if key in self._cache:
                self._cache.move_to_end(key)
                return AnalysisResult(self._cache[key], sha, cached=True, timings_ms={})
            pending = self._inflight.get(key)
            if pending is None:
                break
            try:  # the same song is being analysed for someone else: share that work
                return AnalysisResult(await asyncio.shield(pending), sha, cached=True, timings_ms={})
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # we were cancelled ourselves
                # the other request was cancelled: loop and compute it ourselves
        fut: asyncio.Future[Tags] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        elsewhere = False
        try:
            tags = await self._hooked_lookup(key)
            elsewhere = tags is not None
            timings: Timings = {}
            if tags is None:
                if not admitted:
                    await self._admit(data, sha)
                async with self._slot(progress):
                    tags, timings = await self._run_blocking(
                        analyse_audio,
                        data,
                        limits=self.settings.limits,
                        models=self.models,
                        on_stage=self._stage_reporter(progress),
                    )
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark as retrieved: only the waiters re-raise it
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(tags)
        if self.settings.cache_entries:
            self._cache[key] = tags
            while len(self._cache) > self.settings.cache_entries:
                self._cache.popitem(last=False)
        if not elsewhere:
            await self._hooked_store(key, tags)
        return AnalysisResult(tags, sha, cached=elsewhere, timings_ms=timings)

    async def _admit(self, data: bytes, sha256: str | None = None) -> None:
        """Let every hook refuse ``data`` before it is decoded here (the decode guard probes it in a
        child process and raises the decoder's ``InputError`` or ``corrupt_audio``)."""
        if not self.hooks:
            return
        sha = sha256 or hashlib.sha256(data).hexdigest()
        for hook in self.hooks:
            await hook.admit(data, sha)

    async def _hooked_lookup(self, key: str) -> Tags | None:
        for hook in self.hooks:
            try:
                tags = await hook.lookup(key)
            except Exception as exc:  # a shared cache that is down must not fail the request
                log.warning("%s lookup failed: %s", type(hook).__name__, exc)
                continue
            if tags is not None:
                return tags
        return None

    async def _hooked_store(self, key: str, tags: Tags) -> None:
        for hook in self.hooks:
            try:
                await hook.store(key, tags)
            except Exception as exc:
                log.warning("%s store failed: %s", type(hook).__name__, exc)

    def _cache_key(self, data: bytes) -> str:
        ids = ",".join(f"{t}={c.name}" for t, c in sorted(self.models.classifiers.items()))
        return f"{hashlib.sha256(data).hexdigest()}:{self.settings.limits.model_dump_json()}:{ids}"

    def _stage_reporter(self, progress: ProgressCallback | None) -> Callable[[str], None]:
        """A thread-safe callback the blocking pipeline calls when it enters a stage."""
        if progress is None:
            return lambda _s: None
        loop = asyncio.get_running_loop()

        def report(stage: str) -> None:
            asyncio.run_coroutine_threadsafe(notify(progress, Progress(Stage(stage))), loop)

        return report

    def _slot(self, progress: ProgressCallback | None) -> _Slot:
        return _Slot(self, progress)

    async def _run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            raise RuntimeError("engine is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def _draw(
        self, backend: ImageBackend, request: ImageRequest, progress: ProgressCallback | None
    ) -> list[GeneratedImage]:
        """Draw on the CPU pool under a worker slot, or await a backend that schedules itself."""
        if backend.schedules_itself:
            await notify(progress, Progress(Stage.drawing))
            return await backend.agenerate(request)
        async with self._slot(progress):
            await notify(progress, Progress(Stage.drawing))
            return await self._run_blocking(backend.generate, request)

    def _pick_backend(self, wanted: Backend) -> tuple[ImageBackend, list[str], NoteDetails]:
        if wanted is not Backend.renderer and "sd" in self._backends:
            return self._backends["sd"], [], {}
        if wanted is Backend.sd:
            raise BackendUnavailableError(
                f"Stable Diffusion isn't available on this server ({self._sd_off_summary}); "
                "use the built-in renderer instead.",
                detail=self._sd_off_reason,
            )
        if wanted is Backend.renderer:
            return self._renderer(), [], {}
        note = f"Drawn by the built-in renderer ({self._sd_off_summary})."
        return self._renderer(), [note], {note: self._sd_off_reason}

    def _renderer(self) -> ImageBackend:
        if "renderer" not in self._backends:
            from m2i_engine.imaging.renderer import Renderer

            self._backends["renderer"] = Renderer()
        return self._backends["renderer"]


class _Slot:
    """Admission control: a bounded queue with positions in front of ``workers`` running slots."""

    def __init__(self, engine: Engine, progress: ProgressCallback | None) -> None:
        self.engine = engine
        self.progress = progress
        self.ticket = object()

    async def __aenter__(self) -> None:
        eng = self.engine
        if len(eng._waiting) >= eng.settings.max_queue:
            raise BusyError()
        eng._waiting.append(self.ticket)
        try:
            if eng._slots.locked():
                await notify(self.progress, Progress(Stage.queued, eng._waiting.index(self.ticket) + 1))
            await eng._slots.acquire()
        finally:
            eng._waiting.remove(self.ticket)
        eng._running += 1

    async def __aexit__(self, *exc: object) -> None:
        self.engine._running -= 1
        self.engine._slots.release()


class _Deadline:
    """``asyncio.timeout`` that surfaces as the user-facing :class:`RequestTimeoutError`."""

    def __init__(self, seconds: float) -> None:
        self._cm = asyncio.timeout(seconds)

    async def __aenter__(self) -> None:
        await self._cm.__aenter__()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: object) -> bool:
        try:
            await self._cm.__aexit__(et, e, tb)  # type: ignore[arg-type]
        except TimeoutError as exc:
            raise RequestTimeoutError() from exc
        return False


async def notify(progress: ProgressCallback | None, event: Progress) -> None:
    """Call a progress callback (sync or async); its failure never fails the request."""
    if progress is None:
        return
    try:
        res = progress(event)
        if inspect.isawaitable(res):
            await res
    except Exception:
        log.exception("progress callback failed")


def _seed_from(sha256_hex: str) -> int:
    return int(sha256_hex[:8], 16) % (MAX_SEED + 1)

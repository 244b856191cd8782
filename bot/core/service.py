"""The one request path every chat platform shares: limits → rate limit → queue → engine → reply.

:class:`BotService` takes a platform-neutral :class:`AudioRequest` (who asked, where, how to fetch
the bytes, what the platform said about the file, the options) and returns a :class:`Reply` (or, for
:meth:`BotService.video`, a :class:`~bot.core.reply.VideoReply`) or a :class:`Failure` whose text is
ready to show. It never raises for a bad request — a failed request
is logged with its request id and answered politely, and the bot carries on. Tokens never pass
through here, so they can't be logged here.

One service may serve several platforms at once (see :mod:`bot.runner`): users and chats are keyed
by platform, and the fair queue and rate limits are shared, so a Telegram flood can't starve
Discord users either.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from bot.core import messages
from bot.core.fairness import FairScheduler, Rate, RateLimitedError, RateLimiter
from bot.core.limits import AudioMeta, Platform, check_before_download, check_downloaded, download_limit
from bot.core.messages import BotStage
from bot.core.options import parse_options
from bot.core.reply import Reply, VideoReply, build_details_reply, build_reply, build_video_reply
from bot.core.settings import BotSettings
from m2i_engine.engine import Engine, Progress, Stage, VideoResult
from m2i_engine.errors import (
    M2IError,
    ServiceError,
    VideoExpiredError,
    VideoTooLargeError,
    VideoUnavailableError,
)
from m2i_engine.options import VisualizeOptions

__all__ = ["AudioRequest", "BotService", "DownloadFailedError", "Failure", "Status", "new_request_id"]

log = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[bytes]]


def new_request_id() -> str:
    """A short id that ties one request's log lines together."""
    return secrets.token_hex(4)


class DownloadFailedError(ServiceError):
    code = "download_failed"
    default_message = messages.DOWNLOAD_FAILED


#: what a request makes: an image (and its buttons), the prompt & tags only, or a music video
Mode = Literal["image", "describe", "video"]


@dataclass(frozen=True)
class AudioRequest:
    """One "draw this song" request, as any platform describes it.

    ``options`` is either the user's raw option text (parsed here, on top of the bot's defaults,
    so option errors are answered like every other error) or ready ``VisualizeOptions`` (buttons).
    """

    platform: Platform
    user_id: int | str
    chat_id: int | str
    fetch: Fetch
    meta: AudioMeta = field(default_factory=AudioMeta)
    options: VisualizeOptions | str | None = None
    title: str | None = None
    request_id: str = field(default_factory=new_request_id)
    #: the most bytes a file sent here may have, where it depends on the chat (a Discord server's
    #: boosts); ``None``: the platform's :attr:`~bot.core.limits.Platform.max_upload_bytes`
    upload_limit: int | None = None

    @property
    def max_upload_bytes(self) -> int | None:
        return self.upload_limit if self.upload_limit is not None else self.platform.max_upload_bytes

    @property
    def user_key(self) -> str:
        return f"{self.platform.name}:{self.user_id}"

    @property
    def chat_key(self) -> str:
        return f"{self.platform.name}:{self.chat_id}"


@dataclass(frozen=True)
class Status:
    """A progress update for the user: the stage, the queue position while queued, and the text."""

    stage: BotStage
    text: str
    queue_position: int | None = None


@dataclass(frozen=True)
class Failure:
    """A request that ended without an image; ``text`` is ready to show."""

    request_id: str
    code: str
    text: str
    #: the user was already told (a flood): platforms should not answer again
    silent: bool = False


StatusCallback = Callable[[Status], Awaitable[None] | None]


class BotService:
    """Shared by every platform adapter; create once per process around one started :class:`Engine`."""

    def __init__(
        self,
        engine: Engine,
        settings: BotSettings | None = None,
        *,
        rate_limiter: RateLimiter | None = None,
        scheduler: FairScheduler | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or BotSettings()
        s = self.settings
        self.defaults = s.default_options()
        self.rate_limiter = rate_limiter or RateLimiter(
            per_user=Rate(s.user_burst, s.user_per_minute), per_chat=Rate(s.chat_burst, s.chat_per_minute)
        )
        self.scheduler = scheduler or FairScheduler(
            concurrency=s.concurrency or engine.settings.workers,
            max_waiting=s.max_waiting,
            max_waiting_per_user=s.max_waiting_per_user,
        )

    def parse_options(self, text: str | None) -> VisualizeOptions:
        """The user's option text on top of this bot's defaults (raises ``InvalidOptionError``)."""
        return parse_options(text, base=self.defaults)

    async def visualize(
        self, request: AudioRequest, *, progress: StatusCallback | None = None
    ) -> Reply | Failure:
        """Tags, prompt and image(s) for the request's audio, or a :class:`Failure` to show."""
        outcome = await self._handle(request, progress, mode="image")
        assert not isinstance(outcome, VideoReply)
        return outcome

    async def describe(
        self, request: AudioRequest, *, progress: StatusCallback | None = None
    ) -> Reply | Failure:
        """Full prompt and tags, without drawing (the "show prompt & tags" button)."""
        outcome = await self._handle(request, progress, mode="describe")
        assert not isinstance(outcome, VideoReply)
        return outcome

    async def video(
        self, request: AudioRequest, *, progress: StatusCallback | None = None
    ) -> VideoReply | Failure:
        """A music video of the request's audio (the 🎬 button): the options' style, words and seed make
        its picture, :meth:`BotSettings.video_options` its size, and the bit rate is picked to fit
        ``request.max_upload_bytes``; a clip that can't fit is a ``video_too_large`` :class:`Failure`."""
        outcome = await self._handle(request, progress, mode="video")
        assert not isinstance(outcome, Reply)
        return outcome

    # --- internals ------------------------------------------------------------------------------

    async def _handle(
        self, request: AudioRequest, progress: StatusCallback | None, *, mode: Mode
    ) -> Reply | VideoReply | Failure:
        rid = request.request_id
        report = _Reporter(progress, rid, video=mode == "video")
        t0 = time.perf_counter()
        log.info(
            "[%s] %s %s from user %s in chat %s: %s, %s bytes, options %r",
            rid,
            request.platform.name,
            {"image": "visualize"}.get(mode, mode),
            request.user_id,
            request.chat_id,
            request.meta.kind,
            request.meta.file_size,
            _options_for_log(request.options),
        )
        try:
            options = (
                request.options
                if isinstance(request.options, VisualizeOptions)
                else self.parse_options(request.options)
            )
            limits = self.engine.settings.limits
            max_bytes = download_limit(request.platform, limits)
            check_before_download(request.meta, max_bytes=max_bytes, max_duration_s=limits.max_duration_s)
            self.rate_limiter.check(request.user_key, request.chat_key)
            ticket = self.scheduler.admit(request.user_key)
            t_queue = time.perf_counter()
            await ticket.wait(lambda pos: report(BotStage.queued, pos))
            queue_ms = (time.perf_counter() - t_queue) * 1000
            try:
                reply, timings = await self._run(request, options, max_bytes, report, mode=mode)
            finally:
                ticket.release()
            timings = {"queue": queue_ms, **timings}
            total_ms = (time.perf_counter() - t0) * 1000
            log.info(
                "[%s] done in %.0f ms (%s; bot %.0f ms)",
                rid,
                total_ms,
                ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()),
                total_ms - sum(timings.values()),
            )
            return replace(
                reply, timings_ms={**reply.timings_ms, **{f"{k}_ms": round(v, 2) for k, v in timings.items()}}
            )
        except RateLimitedError as exc:
            log.info(
                "[%s] refused: rate_limited (retry in %.0f s%s)",
                rid,
                exc.retry_after_s,
                ", silent" if exc.silent else "",
            )
            return Failure(rid, exc.code, messages.error_text(exc), silent=exc.silent)
        except M2IError as exc:
            log.info("[%s] refused: %s%s", rid, exc.code, f" ({exc.detail})" if exc.detail else "")
            hint = request.platform.too_large_hint if exc.code == "too_large" else None
            return Failure(rid, exc.code, messages.error_text(exc, hint=hint))
        except Exception as exc:  # one broken request must never take the bot down
            log.exception("[%s] failed: %s", rid, type(exc).__name__)
            return Failure(rid, "internal_error", messages.error_text(M2IError(messages.INTERNAL)))

    async def _run(
        self,
        request: AudioRequest,
        options: VisualizeOptions,
        max_bytes: int,
        report: _Reporter,
        *,
        mode: Mode,
    ) -> tuple[Reply | VideoReply, dict[str, float]]:
        """Download, run the engine and build the reply; returns it with the time each step took."""
        timings: dict[str, float] = {}
        clock = time.perf_counter
        await report(BotStage.downloading)
        t = clock()
        data = await self._download(request)
        check_downloaded(data, max_bytes=max_bytes)
        timings["download"] = (clock() - t) * 1000

        async def on_engine(p: Progress) -> None:
            if p.stage is not Stage.done:
                await report(BotStage(p.stage.value), p.queue_position)

        title = request.title or messages.title_for(request.meta.file_name, request.meta.kind)
        t = clock()
        if mode == "describe":
            reply = await self._describe(
                data, options, title=title, rid=request.request_id, progress=on_engine
            )
            timings["engine"] = (clock() - t) * 1000
            return reply, timings
        if mode == "video":
            video = await self._video(data, options, request.max_upload_bytes, progress=on_engine)
            try:
                timings["engine"] = (clock() - t) * 1000
                await report(BotStage.sending)
                t = clock()
                clip = await asyncio.to_thread(
                    build_video_reply, video, title=title, request_id=request.request_id
                )
            except BaseException:  # cancelled (or failed) before the reply took the file: drop it here
                video.path.unlink(missing_ok=True)
                raise
            timings["read"] = (clock() - t) * 1000
            return clip, timings
        result = await self.engine.visualize(data, options, progress=on_engine)
        timings["engine"] = (clock() - t) * 1000
        await report(BotStage.sending)
        t = clock()
        reply = await asyncio.to_thread(
            build_reply, result, options=options, title=title, request_id=request.request_id
        )
        timings["png"] = (clock() - t) * 1000
        return reply, timings

    async def _video(
        self,
        data: bytes,
        options: VisualizeOptions,
        limit: int | None,
        *,
        progress: Callable[[Progress], Awaitable[None]],
    ) -> VideoResult:
        """The engine's video within ``limit`` bytes, its "too large" said in chat words."""
        make = getattr(self.engine, "video", None)
        if make is None:  # an engine without videos (a stand-in, an older one)
            raise VideoUnavailableError(
                messages.VIDEO_UNAVAILABLE, detail=f"{type(self.engine).__name__} has no video()"
            )
        try:
            result: VideoResult = await make(
                data, options, self.settings.video_options(), max_bytes=limit, progress=progress
            )
        except M2IError as exc:
            if exc.code == "video_expired":  # the queue lost the finished file before it was read
                raise VideoExpiredError(messages.VIDEO_EXPIRED, detail=exc.detail or exc.message) from exc
            if exc.code != "video_too_large" or limit is None:
                raise
            # said in chat words, not the CLI's flags
            raise VideoTooLargeError(messages.video_too_large(limit), detail=exc.message) from exc
        return result

    async def _download(self, request: AudioRequest) -> bytes:
        try:
            return bytes(await request.fetch())
        except M2IError:
            raise
        except Exception as exc:
            raise DownloadFailedError(detail=f"{type(exc).__name__}: {exc}") from exc

    async def _describe(
        self,
        data: bytes,
        options: VisualizeOptions,
        *,
        title: str,
        rid: str,
        progress: Callable[[Progress], Awaitable[None]],
    ) -> Reply:
        from m2i_engine.prompt import build_prompt

        analysis = await self.engine.analyze(data, progress=progress)
        prompt = build_prompt(analysis.tags, options)
        return build_details_reply(
            analysis.tags, prompt, options=options, title=title, request_id=rid, seed=options.seed or 0
        )


def _options_for_log(options: VisualizeOptions | str | None) -> object:
    """Raw option text as typed, or the options a button/slash command chose (non-defaults only)."""
    if isinstance(options, VisualizeOptions):
        return options.model_dump(mode="json", exclude_defaults=True)
    return options


class _Reporter:
    """Calls the platform's status callback once per distinct status; its failures are only logged."""

    def __init__(self, callback: StatusCallback | None, rid: str, *, video: bool = False) -> None:
        self.callback = callback
        self.rid = rid
        self.video = video
        self.last: Status | None = None

    async def __call__(self, stage: BotStage, position: int | None = None) -> None:
        status = Status(stage, messages.progress_text(stage, position, video=self.video), position)
        if self.callback is None or status == self.last:
            return
        self.last = status
        try:
            res = self.callback(status)
            if inspect.isawaitable(res):
                await res
        except Exception:
            log.warning("[%s] status update failed", self.rid, exc_info=True)

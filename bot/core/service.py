"""The one request path every chat platform shares: limits → rate limit → queue → engine → reply.

:class:`BotService` takes a platform-neutral :class:`AudioRequest` (who asked, where, how to fetch
the bytes, what the platform said about the file, the options) and returns a :class:`Reply` or a
:class:`Failure` whose text is ready to show. It never raises for a bad request — a failed request
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

from bot.core import messages
from bot.core.fairness import FairScheduler, Rate, RateLimitedError, RateLimiter
from bot.core.limits import AudioMeta, Platform, check_before_download, check_downloaded, download_limit
from bot.core.messages import BotStage
from bot.core.options import parse_options
from bot.core.reply import Reply, build_details_reply, build_reply
from bot.core.settings import BotSettings
from m2i_engine.engine import Engine, Progress, Stage
from m2i_engine.errors import M2IError, ServiceError
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

    def __init__(self, engine: Engine, settings: BotSettings | None = None, *,
                 rate_limiter: RateLimiter | None = None, scheduler: FairScheduler | None = None) -> None:
        self.engine = engine
        self.settings = settings or BotSettings()
        s = self.settings
        self.defaults = s.default_options()
        self.rate_limiter = rate_limiter or RateLimiter(per_user=Rate(s.user_burst, s.user_per_minute),
                                                        per_chat=Rate(s.chat_burst, s.chat_per_minute))
        self.scheduler = scheduler or FairScheduler(
            concurrency=s.concurrency or engine.settings.workers, max_waiting=s.max_waiting,
            max_waiting_per_user=s.max_waiting_per_user)

    def parse_options(self, text: str | None) -> VisualizeOptions:
        """The user's option text on top of this bot's defaults (raises ``InvalidOptionError``)."""
        return parse_options(text, base=self.defaults)

    async def visualize(self, request: AudioRequest, *,
                        progress: StatusCallback | None = None) -> Reply | Failure:
        """Tags, prompt and image(s) for the request's audio, or a :class:`Failure` to show."""
        return await self._handle(request, progress, draw=True)

    async def describe(self, request: AudioRequest, *,
                       progress: StatusCallback | None = None) -> Reply | Failure:
        """Full prompt and tags, without drawing (the "show prompt & tags" button)."""
        return await self._handle(request, progress, draw=False)

    # --- internals ------------------------------------------------------------------------------

    async def _handle(self, request: AudioRequest, progress: StatusCallback | None, *,
                      draw: bool) -> Reply | Failure:
        rid = request.request_id
        report = _Reporter(progress, rid)
        t0 = time.perf_counter()
        log.info("[%s] %s %s from user %s in chat %s: %s, %s bytes, options %r", rid, request.platform.name,
                 "visualize" if draw else "describe", request.user_id, request.chat_id, request.meta.kind,
                 request.meta.file_size, _options_for_log(request.options))
        try:
            options = (request.options if isinstance(request.options, VisualizeOptions)
                       else self.parse_options(request.options))
            limits = self.engine.settings.limits
            max_bytes = download_limit(request.platform, limits)
            check_before_download(request.meta, max_bytes=max_bytes, max_duration_s=limits.max_duration_s)
            self.rate_limiter.check(request.user_key, request.chat_key)
            ticket = self.scheduler.admit(request.user_key)
            t_queue = time.perf_counter()
            await ticket.wait(lambda pos: report(BotStage.queued, pos))
            queue_ms = (time.perf_counter() - t_queue) * 1000
            try:
                reply, timings = await self._run(request, options, max_bytes, report, draw=draw)
            finally:
                ticket.release()
            timings = {"queue": queue_ms, **timings}
            total_ms = (time.perf_counter() - t0) * 1000
            log.info("[%s] done in %.0f ms (%s; bot %.0f ms)", rid, total_ms,
                     ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()),
                     total_ms - sum(timings.values()))
            return replace(reply, timings_ms={**reply.timings_ms,
                                              **{f"{k}_ms": round(v, 2) for k, v in timings.items()}})
        except RateLimitedError as exc:
            log.info("[%s] refused: rate_limited (retry in %.0f s%s)", rid, exc.retry_after_s,
                     ", silent" if exc.silent else "")
            return Failure(rid, exc.code, messages.error_text(exc), silent=exc.silent)
        except M2IError as exc:
            log.info("[%s] refused: %s%s", rid, exc.code, f" ({exc.detail})" if exc.detail else "")
            hint = request.platform.too_large_hint if exc.code == "too_large" else None
            return Failure(rid, exc.code, messages.error_text(exc, hint=hint))
        except Exception as exc:  # one broken request must never take the bot down
            log.exception("[%s] failed: %s", rid, type(exc).__name__)
            return Failure(rid, "internal_error", messages.error_text(M2IError(messages.INTERNAL)))

    async def _run(self, request: AudioRequest, options: VisualizeOptions, max_bytes: int,
                   report: _Reporter, *, draw: bool) -> tuple[Reply, dict[str, float]]:
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
        if not draw:
            reply = await self._describe(data, options, title=title, rid=request.request_id,
                                         progress=on_engine)
            timings["engine"] = (clock() - t) * 1000
            return reply, timings
        result = await self.engine.visualize(data, options, progress=on_engine)
        timings["engine"] = (clock() - t) * 1000
        await report(BotStage.sending)
        t = clock()
        reply = await asyncio.to_thread(build_reply, result, options=options, title=title,
                                        request_id=request.request_id)
        timings["png"] = (clock() - t) * 1000
        return reply, timings

    async def _download(self, request: AudioRequest) -> bytes:
        try:
            return bytes(await request.fetch())
        except M2IError:
            raise
        except Exception as exc:
            raise DownloadFailedError(detail=f"{type(exc).__name__}: {exc}") from exc

    async def _describe(self, data: bytes, options: VisualizeOptions, *, title: str, rid: str,
                        progress: Callable[[Progress], Awaitable[None]]) -> Reply:
        from m2i_engine.prompt import build_prompt

        analysis = await self.engine.analyze(data, progress=progress)
        prompt = build_prompt(analysis.tags, options)
        return build_details_reply(analysis.tags, prompt, options=options, title=title, request_id=rid,
                                   seed=options.seed or 0)


def _options_for_log(options: VisualizeOptions | str | None) -> object:
    """Raw option text as typed, or the options a button/slash command chose (non-defaults only)."""
    if isinstance(options, VisualizeOptions):
        return options.model_dump(mode="json", exclude_defaults=True)
    return options


class _Reporter:
    """Calls the platform's status callback once per distinct status; its failures are only logged."""

    def __init__(self, callback: StatusCallback | None, rid: str) -> None:
        self.callback = callback
        self.rid = rid
        self.last: Status | None = None

    async def __call__(self, stage: BotStage, position: int | None = None) -> None:
        status = Status(stage, messages.progress_text(stage, position), position)
        if self.callback is None or status == self.last:
            return
        self.last = status
        try:
            res = self.callback(status)
            if inspect.isawaitable(res):
                await res
        except Exception:
            log.warning("[%s] status update failed", self.rid, exc_info=True)

"""Keeps the bot inside Telegram's flood limits, answers first: a PTB rate limiter with priorities.

Telegram's limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about 30 messages a second overall, about one a second per chat (short bursts allowed), at most
20 a minute in a group; above them it answers 429 with ``retry_after``. PTB's ``AIORateLimiter``
puts every call with a ``chat_id`` into one 30/s queue, first come first served, so under load a
finished image waits behind other users' "Drawing…" edits and chat actions. This limiter knows
what a call is for — the ``rate_limit_args`` of the call, a :class:`Priority`:

- ``ANSWER`` (the default: images, errors, texts the user asked for) waits for the overall budget
  (and a group's), ahead of everything else. In a private chat it doesn't wait for the chat's
  1/s budget — Telegram allows bursts there, and the bot's per-user request limit bounds them —
  but it spends it, so progress in that chat backs off.
- ``PROGRESS`` (status messages, their edits, chat actions) never waits: it goes only while the
  budgets have room to spare beyond a reserve kept for answers (a chat action isn't a message: only
  the overall budget counts it), and is dropped otherwise
  (:class:`ProgressDropped`); progress gets whatever answers leave over. A status message asks
  :meth:`FloodLimiter.reserve_progress` before it picks the text to show: it either takes
  the budget for its next call there and then, or learns how long to hold the edit — so with many
  status messages waking at once, none is dropped and none shows a text that waited in a queue.
- ``CLEANUP`` (deleting a status message once the image is out) waits behind answers but ahead of
  progress (a stale "Drawing…" above the image confuses more than a missing one), and like answers
  doesn't wait for a private chat's budget.

A 429 pauses the chat it came from (the whole bot for calls without a chat) for ``retry_after``,
then the call is retried (up to ``max_retries``), and progress everywhere holds off meanwhile.
Calls without a ``chat_id`` (``getFile``, ``answerCallbackQuery``, ``getMe``…) aren't limited;
``getUpdates`` never reaches a rate limiter. (How often a user may ask, and whose song is drawn
next, is :mod:`bot.core.fairness`.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import time
import warnings
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter, TelegramError
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

__all__ = ["FloodBucket", "FloodLimiter", "Priority", "ProgressDropped"]

log = logging.getLogger(__name__)

JSONResult = bool | dict[str, Any] | list[dict[str, Any]]


class Priority(enum.Enum):
    """What a Bot API call is for; pass as ``rate_limit_args=`` (``None`` means ``ANSWER``)."""

    ANSWER = "answer"
    CLEANUP = "cleanup"
    PROGRESS = "progress"


class ProgressDropped(TelegramError):
    """A progress call (status edit, chat action) skipped because the rate budget has no room for it."""

    def __init__(self, chat_id: object) -> None:
        super().__init__(f"progress in chat {chat_id} dropped: no rate budget to spare")


class FloodBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; waiters are served by priority, then in order.

    :meth:`take` waits for a token; :meth:`take_now` spends one at once (the balance may go down to
    ``-burst``); :meth:`seconds_until` says when ``keep`` tokens would be left after taking one.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()
        self._waiters: dict[int, collections.deque[asyncio.Future[None]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def tokens(self) -> float:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens

    @property
    def waiting(self) -> int:
        return sum(1 for q in self._waiters.values() for f in q if not f.done())

    @property
    def idle(self) -> bool:
        """Full and nobody waiting: the bucket can be forgotten."""
        return self.tokens >= self.burst and not self.waiting

    def seconds_until(self, *, keep: float = 0.0) -> float:
        """Seconds until one token could be taken leaving ``keep`` (waiters ahead count as taken)."""
        missing = keep + 1 + self.waiting - self.tokens
        return max(0.0, missing / self.rate)

    def take_now(self) -> None:
        self._tokens = max(-self.burst, self.tokens - 1)

    async def take(self, rank: int = 0) -> None:
        """Spend a token, waiting for it if need be; lower ``rank`` goes first."""
        if not self._waiters_up_to(rank) and self.tokens >= 1:
            self._tokens -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(rank, collections.deque()).append(fut)
        self._schedule()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._tokens += 1  # granted just as the caller gave up: give it back
            self._schedule()
            raise

    def _waiters_up_to(self, rank: int) -> bool:
        return any(not f.done() for r, q in self._waiters.items() if r <= rank for f in q)

    def _schedule(self) -> None:
        if self._timer is not None or not self.waiting:
            return
        delay = max(0.0, (1 - self.tokens) / self.rate)
        self._timer = asyncio.get_running_loop().call_later(delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        for rank in sorted(self._waiters):
            queue = self._waiters[rank]
            while queue:
                if queue[0].done():  # cancelled while waiting
                    queue.popleft()
                    continue
                if self.tokens < 1:
                    self._schedule()
                    return
                self._tokens -= 1
                queue.popleft().set_result(None)
            del self._waiters[rank]
        self._schedule()


class FloodLimiter(BaseRateLimiter[Priority]):
    """Telegram's flood limits with answers first (see the module docstring)."""

    #: calls that don't count against any budget even though they name a chat
    UNLIMITED = frozenset({"getChat", "getChatMember", "getChatAdministrators", "leaveChat"})

    def __init__(
        self,
        *,
        overall_per_second: float = 30.0,
        chat_per_second: float = 1.0,
        chat_burst: float = 3.0,
        group_per_minute: float = 20.0,
        max_retries: int = 3,
        reserve_share: float = 1 / 3,
    ) -> None:
        self.overall = FloodBucket(overall_per_second, overall_per_second)
        self.chat_per_second = chat_per_second
        self.chat_burst = chat_burst
        self.group_per_minute = group_per_minute
        self.max_retries = max_retries
        self.reserve_share = reserve_share
        self._chats: dict[str | int, FloodBucket] = {}
        self._paused: dict[str | int | None, float] = {}  # chat (None: everything) → paused until
        #: (chat, is a chat action) → progress calls whose budget reserve_progress() took
        self._reserved: dict[tuple[str | int, bool], int] = {}
        self._progress_paused_until = 0.0

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""

    # --- what the adapter asks ------------------------------------------------------------------

    def reserve_progress(self, chat_id: int | str, *, chat_action: bool = False) -> float:
        """Take the budget for one progress call in ``chat_id`` now and return 0, or return the
        seconds until it could be taken (nothing taken). The next progress call there uses it.

        A chat action isn't a message: it needs room in the overall budget, not in the chat's."""
        hold = self.progress_hold_s(chat_id, chat_action=chat_action)
        if hold > 0:
            return hold
        if not chat_action:
            self._chat(chat_id).take_now()
        self.overall.take_now()
        key = (chat_id, chat_action)
        self._reserved[key] = min(self._reserved.get(key, 0) + 1, 4)
        return 0.0

    def progress_hold_s(self, chat_id: int | str, *, chat_action: bool = False) -> float:
        """Seconds until a progress call in ``chat_id`` would go through (0: now)."""
        now = time.monotonic()
        paused = (
            max(self._progress_paused_until, self._paused.get(chat_id, 0.0), self._paused.get(None, 0.0))
            - now
        )
        hold = max(paused, self.overall.seconds_until(keep=self._reserve(self.overall)))
        if chat_action:
            return hold
        chat = self._chat(chat_id)
        return max(hold, chat.seconds_until(keep=self._reserve(chat)))

    # --- BaseRateLimiter ------------------------------------------------------------------------

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, JSONResult]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Priority | None,
    ) -> JSONResult:
        priority = rate_limit_args or Priority.ANSWER
        chat_id = _chat_key(data.get("chat_id"))
        for attempt in range(self.max_retries + 1):
            await self._admit(chat_id, endpoint, priority)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                wait_s = _seconds(exc) + 0.1
                now = time.monotonic()
                until = now + wait_s
                self._paused = {k: t for k, t in self._paused.items() if t > now}  # forget old pauses
                self._paused[chat_id] = max(self._paused.get(chat_id, 0.0), until)
                self._progress_paused_until = max(self._progress_paused_until, until)
                if attempt == self.max_retries or priority is Priority.PROGRESS:
                    log.warning("%s in chat %s hit Telegram's rate limit; giving up", endpoint, chat_id)
                    raise
                log.info(
                    "%s in chat %s hit Telegram's rate limit; retrying in %.1f s", endpoint, chat_id, wait_s
                )
        raise AssertionError("unreachable")

    # --- internals ------------------------------------------------------------------------------

    async def _admit(self, chat_id: int | str | None, endpoint: str, priority: Priority) -> None:
        """Wait (or refuse, for progress) until the call fits Telegram's limits."""
        if priority is Priority.PROGRESS:
            if chat_id is None or endpoint in self.UNLIMITED:
                return
            slot = (chat_id, endpoint == "sendChatAction")
            if not self._reserved.get(slot) and self.reserve_progress(chat_id, chat_action=slot[1]) > 0:
                raise ProgressDropped(chat_id)
            self._reserved[slot] -= 1  # taken by reserve_progress(), a moment ago or just now
            return
        for key in (None, chat_id):
            while (until := self._paused.get(key, 0.0)) > time.monotonic():
                await asyncio.sleep(until - time.monotonic())
        if chat_id is None or endpoint in self.UNLIMITED:
            return
        rank = 0 if priority is Priority.ANSWER else 1
        chat = self._chat(chat_id)
        if _is_group(chat_id):
            await chat.take(rank)
        else:
            chat.take_now()  # private chats allow bursts; the bot's per-user limit bounds answers
        await self.overall.take(rank)

    def _reserve(self, bucket: FloodBucket) -> float:
        return bucket.burst * self.reserve_share

    def _chat(self, chat_id: int | str) -> FloodBucket:
        bucket = self._chats.get(chat_id)
        if bucket is None:
            if len(self._chats) > 1024:
                for key in [k for k, b in self._chats.items() if b.idle]:
                    del self._chats[key]
                    self._reserved.pop((key, False), None)
                    self._reserved.pop((key, True), None)
            if _is_group(chat_id):
                bucket = FloodBucket(self.group_per_minute / 60, self.group_per_minute)
            else:
                bucket = FloodBucket(self.chat_per_second, self.chat_burst)
            self._chats[chat_id] = bucket
        return bucket


def _chat_key(chat_id: object) -> int | str | None:
    if chat_id is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return int(chat_id)  # type: ignore[call-overload]
    return str(chat_id)


def _is_group(chat_id: int | str) -> bool:
    """Groups, supergroups and channels have negative ids (or an ``@username``)."""
    return isinstance(chat_id, str) or chat_id < 0


def _seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)

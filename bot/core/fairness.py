"""Keeps one user's flood from starving everyone else: rate limits and a fair, bounded queue.

Two independent guards, both platform-neutral and keyed by any hashable (the service uses
``"telegram:1234"``-style keys so platforms never collide):

- :class:`RateLimiter` — token buckets per user and per chat ("3 songs at once, then one every
  10 s"). A refused user is told once per cool-down; later refusals in the same cool-down are
  marked ``silent`` so the bot does not answer a flood with a flood.
- :class:`FairScheduler` — at most ``concurrency`` requests run at once; each user may have
  ``max_running_per_user`` running and ``max_waiting_per_user`` waiting; the queue holds at most
  ``max_waiting`` requests. Free slots go to the user served least recently (round-robin between
  users), so a user with five songs queued never delays another user's first song by more than
  one turn. Every waiting request learns its 1-based position whenever it changes.

Both take a ``clock`` so tests control time instead of sleeping. (What the bot itself may send
within a platform's flood limits is the adapter's concern: :mod:`bot.telegram.flood`.)
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import ClassVar

from bot.core import messages
from m2i_engine.errors import BusyError, ServiceError

__all__ = [
    "FairScheduler",
    "Rate",
    "RateLimitedError",
    "RateLimiter",
    "Ticket",
    "UserBucket",
    "UserQueueFullError",
]

Clock = Callable[[], float]
PositionCallback = Callable[[int], Awaitable[None] | None]


class RateLimitedError(ServiceError):
    """The user (or chat) sent more requests than its rate allows."""

    code: ClassVar[str] = "rate_limited"
    default_message: ClassVar[str] = "You're sending songs too fast — please slow down."
    http_status: ClassVar[int] = 429

    def __init__(self, retry_after_s: float, *, silent: bool = False) -> None:
        super().__init__(messages.rate_limited(retry_after_s))
        self.retry_after_s = retry_after_s
        #: the user was already told during this cool-down: better not to answer again
        self.silent = silent


class UserQueueFullError(ServiceError):
    """The user already has as many requests running and waiting as one user may have."""

    code: ClassVar[str] = "user_queue_full"
    default_message: ClassVar[str] = "You already have songs in progress."
    http_status: ClassVar[int] = 429

    def __init__(self, in_progress: int) -> None:
        super().__init__(messages.user_queue_full(in_progress))
        self.in_progress = in_progress


# --- rate limits ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """``burst`` requests at once, refilled at ``per_minute`` requests per minute."""

    burst: int
    per_minute: float

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


class UserBucket:
    """One user's (or chat's) allowance of requests: a token bucket of ``rate.burst``, always refilling."""

    __slots__ = ("_clock", "_stamp", "_tokens", "rate")

    def __init__(self, rate: Rate, clock: Clock) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.rate.burst, self._tokens + (now - self._stamp) * self.rate.per_second)
        self._stamp = now

    def wait_s(self) -> float:
        """Seconds until one token is available (0 when one is available now)."""
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        if self.rate.per_second <= 0:
            return float("inf")
        return (1.0 - self._tokens) / self.rate.per_second

    def take(self) -> None:
        self._refill()
        self._tokens -= 1.0

    @property
    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.rate.burst


class RateLimiter:
    """Per-user and per-chat token buckets; :meth:`check` consumes one token from each or raises."""

    #: buckets are forgotten once full again and there are more than this many of them
    PRUNE_ABOVE = 10_000

    def __init__(
        self,
        *,
        per_user: Rate | None = Rate(3, 6),
        per_chat: Rate | None = Rate(10, 30),
        clock: Clock = time.monotonic,
    ) -> None:
        self.per_user = per_user
        self.per_chat = per_chat
        self._clock = clock
        self._buckets: dict[tuple[str, Hashable], UserBucket] = {}
        self._told_until: dict[Hashable, float] = {}

    def check(self, user: Hashable, chat: Hashable | None = None) -> None:
        """Admit one request from ``user`` in ``chat`` or raise :class:`RateLimitedError`."""
        buckets = []
        if self.per_user is not None:
            buckets.append(self._bucket("user", user, self.per_user))
        if self.per_chat is not None and chat is not None:
            buckets.append(self._bucket("chat", chat, self.per_chat))
        wait_s = max((b.wait_s() for b in buckets), default=0.0)
        now = self._clock()
        if wait_s > 0:
            silent = self._told_until.get(user, float("-inf")) > now
            self._told_until[user] = now + wait_s
            raise RateLimitedError(wait_s, silent=silent)
        for b in buckets:
            b.take()
        self._told_until.pop(user, None)
        if len(self._buckets) > self.PRUNE_ABOVE:
            self._prune()

    def _bucket(self, scope: str, key: Hashable, rate: Rate) -> UserBucket:
        bucket = self._buckets.get((scope, key))
        if bucket is None:
            bucket = self._buckets[(scope, key)] = UserBucket(rate, self._clock)
        return bucket

    def _prune(self) -> None:
        for key in [k for k, b in self._buckets.items() if b.full]:
            del self._buckets[key]
        now = self._clock()
        for user in [u for u, t in self._told_until.items() if t <= now]:
            del self._told_until[user]


# --- fair scheduling -----------------------------------------------------------------------------


class Ticket:
    """One admitted request. ``async with ticket:`` waits for its turn and frees the slot after."""

    def __init__(self, scheduler: FairScheduler, user: Hashable, serial: int) -> None:
        self.scheduler = scheduler
        self.user = user
        self.serial = serial
        self._granted = False
        self._done = False
        self._changed = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._granted and not self._done

    @property
    def position(self) -> int | None:
        """1-based place in the queue while waiting; ``None`` when running or finished."""
        if self._granted or self._done:
            return None
        return self.scheduler.position(self)

    async def wait(self, on_position: PositionCallback | None = None) -> None:
        """Return when this request may run; ``on_position(n)`` whenever its place changes."""
        last: int | None = None
        try:
            while True:
                self._changed.clear()
                if self._granted:
                    return
                pos = self.scheduler.position(self)
                if pos != last and on_position is not None:
                    last = pos
                    res = on_position(pos)
                    if inspect.isawaitable(res):
                        await res
                    continue  # the queue may have moved while we were reporting
                last = pos
                await self._changed.wait()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give the slot (or the place in the queue) back; safe to call twice."""
        if not self._done:
            self._done = True
            self.scheduler._release(self)

    async def __aenter__(self) -> Ticket:
        await self.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class FairScheduler:
    """Bounded queue in front of ``concurrency`` slots, round-robin between users."""

    def __init__(
        self,
        *,
        concurrency: int = 2,
        max_waiting: int = 32,
        max_waiting_per_user: int = 2,
        max_running_per_user: int = 1,
    ) -> None:
        if concurrency < 1 or max_running_per_user < 1:
            raise ValueError("concurrency and max_running_per_user must be at least 1")
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.max_waiting_per_user = max_waiting_per_user
        self.max_running_per_user = max_running_per_user
        self._waiting: list[Ticket] = []
        self._running: dict[Hashable, int] = {}
        self._n_running = 0
        self._last_served: dict[Hashable, int] = {}
        self._serial = itertools.count()
        self._grants = itertools.count()

    @property
    def running(self) -> int:
        return self._n_running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def in_progress(self, user: Hashable) -> int:
        """Requests of ``user`` running or waiting."""
        return self._running.get(user, 0) + sum(1 for t in self._waiting if t.user == user)

    def admit(self, user: Hashable) -> Ticket:
        """Take a place for ``user`` (running at once if a slot is free), or raise.

        Raises
        ------
        UserQueueFullError
            ``user`` already has ``max_running_per_user + max_waiting_per_user`` requests.
        BusyError
            The request would have to wait and ``max_waiting`` requests already do.
        """
        in_progress = self.in_progress(user)
        if in_progress >= self.max_running_per_user + self.max_waiting_per_user:
            raise UserQueueFullError(in_progress)
        ticket = Ticket(self, user, next(self._serial))
        would_wait = (
            self._n_running >= self.concurrency or self._running.get(user, 0) >= self.max_running_per_user
        )
        if would_wait and len(self._waiting) >= self.max_waiting:
            raise BusyError()
        self._waiting.append(ticket)
        self._dispatch()
        return ticket

    def position(self, ticket: Ticket) -> int:
        """1-based place of a waiting ``ticket`` in the order slots will be handed out."""
        for i, t in enumerate(self._order(), start=1):
            if t is ticket:
                return i
        return 0

    # --- internals ------------------------------------------------------------------------------

    def _order(self) -> list[Ticket]:
        """Waiting tickets in serving order: repeatedly the head of the least recently served user."""
        queues: dict[Hashable, list[Ticket]] = {}
        for t in self._waiting:
            queues.setdefault(t.user, []).append(t)
        served = {u: self._last_served.get(u, -1) for u in queues}
        order: list[Ticket] = []
        turn = max(self._last_served.values(), default=0) + 1
        while queues:
            user = min(queues, key=lambda u: (served[u], queues[u][0].serial))
            order.append(queues[user].pop(0))
            if not queues[user]:
                del queues[user]
            served[user] = turn
            turn += 1
        return order

    def _dispatch(self) -> None:
        granted = False
        while self._n_running < self.concurrency:
            ticket = next(
                (t for t in self._order() if self._running.get(t.user, 0) < self.max_running_per_user), None
            )
            if ticket is None:
                break
            self._waiting.remove(ticket)
            ticket._granted = True
            ticket._changed.set()
            self._running[ticket.user] = self._running.get(ticket.user, 0) + 1
            self._n_running += 1
            self._last_served[ticket.user] = next(self._grants)
            granted = True
        if granted:
            self._notify()

    def _release(self, ticket: Ticket) -> None:
        if ticket._granted:
            self._n_running -= 1
            left = self._running[ticket.user] - 1
            if left:
                self._running[ticket.user] = left
            else:
                del self._running[ticket.user]
        elif ticket in self._waiting:
            self._waiting.remove(ticket)
        self._dispatch()
        self._notify()
        if not self._running and not self._waiting:
            self._last_served.clear()  # idle: forget history so the dict can't grow forever

    def _notify(self) -> None:
        for t in self._waiting:
            t._changed.set()

"""Progress shown in one chat message without flooding the platform: the newest status, at most once a second.

Every platform edits a status message while a request moves (queued → downloading → … → sending),
and every platform rate-limits edits. :class:`ThrottledStatus` takes each :class:`~bot.core.Status`
at once (its :meth:`~ThrottledStatus.update` never waits, so the request never waits on a chat API),
keeps only the newest text and hands it to the platform's ``_show`` at most once per ``interval_s``
— texts overtaken meanwhile are never sent. ``delay_s`` holds the first show back: a request that is
answered sooner shows no progress at all (the answer is the progress). A platform may also hold
shows back while its rate budget is spent (``_hold_s``). :meth:`~ThrottledStatus.stop` ends it before
the answer goes out; :meth:`~ThrottledStatus.close` also waits for a show in flight, so a late
progress edit never lands after the final answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from typing import ClassVar

from bot.core.service import Status

__all__ = ["ThrottledStatus"]

log = logging.getLogger(__name__)


class ThrottledStatus(ABC):
    """The newest status text, shown at most once per ``interval_s`` and not before ``delay_s``.

    Subclasses say how to show a text (``_show``: send the message the first time, edit it after);
    a show that raises one of :attr:`errors` is logged and counts as shown (no retry storm).
    """

    #: the platform's API errors: a failed show is logged, never raised into the request
    errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, *, interval_s: float = 1.0, delay_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self._not_before = time.monotonic() + delay_s
        self._wanted: str | None = None
        self._shown: str | None = None
        self._last_show = float("-inf")
        self._pump: asyncio.Task[None] | None = None
        self._edit: asyncio.Future[None] | None = None
        self._stopped = False

    @property
    def shown(self) -> str | None:
        """The text shown last (``None``: nothing was shown, e.g. the answer came before ``delay_s``)."""
        return self._shown

    @property
    def stopped(self) -> bool:
        return self._stopped

    def update(self, status: Status) -> None:
        """Show ``status`` soon (callback for :meth:`bot.core.BotService.visualize`); never waits."""
        if self._stopped:
            return
        self._wanted = status.text
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name="m2i-status")

    def stop(self) -> None:
        """Show nothing more (a show already in flight still lands: :meth:`close` waits for it)."""
        self._stopped = True
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()

    async def close(self) -> None:
        """:meth:`stop`, then wait until no show is in flight."""
        self.stop()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._edit is not None:
            await self._edit

    # --- subclass API ---------------------------------------------------------------------------

    @abstractmethod
    async def _show(self, text: str) -> None:
        """Put ``text`` in front of the user (send the status message, or edit it)."""

    def _hold_s(self) -> float:
        """Seconds to hold the next show back beyond the interval (a platform's rate budget); 0: go.

        Asked right before a show (a text is picked and handed to ``_show`` at once when it says 0),
        so a platform may take the budget for that show here.
        """
        return 0.0

    # --- internals ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopped and self._wanted is not None and self._wanted != self._shown:
            wait = max(self._not_before, self._last_show + self.interval_s) - time.monotonic()
            if wait <= 0:
                wait = self._hold_s()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            text = self._wanted
            self._edit = asyncio.ensure_future(self._show_quietly(text))
            await asyncio.shield(self._edit)  # stop() may cancel the pump, never a show half-sent

    async def _show_quietly(self, text: str) -> None:
        try:
            await self._show(text)
        except self.errors as exc:
            log.debug("status update failed: %s", exc)
        self._shown, self._last_show = text, time.monotonic()

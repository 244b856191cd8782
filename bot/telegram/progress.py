"""Shows a request's progress in a Telegram chat, only when it takes a while and only with budget to spare.

Progress costs Bot API calls, and every call counts against Telegram's flood limits, so a quick
answer gets none: the photo is the reply. Only when the answer isn't out after ``action_after_s``
(0.5 s) does the chat show "typing…"/"sending a photo…" (``sendChatAction``, renewed every few
seconds), and only after ``delay_s`` (1 s) a status message, edited at most once per
``interval_s`` with the newest stage (:class:`bot.core.progress.ThrottledStatus`, shared with
Discord) and deleted once the photo is out. Nothing on the reply path waits for a status update;
every progress call is low priority for the :class:`~bot.telegram.flood.FloodLimiter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from telegram import Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError
from telegram.ext import ExtBot

from bot.core.messages import BotStage
from bot.core.progress import ThrottledStatus
from bot.core.service import Status
from bot.telegram.flood import FloodLimiter, Priority
from bot.telegram.layout import retrying

__all__ = ["CHAT_ACTION_EVERY_S", "TelegramStatus"]

log = logging.getLogger(__name__)

#: a chat action shows for about 5 s; renew it a little before it fades
CHAT_ACTION_EVERY_S = 4.5


class TelegramStatus(ThrottledStatus):
    """A request's progress in one chat: a chat action, then a status message — only if it takes a while.

    :meth:`update` never waits for Telegram. The chat action ("typing…", then "sending a photo…"
    while drawing) starts ``action_after_s`` after the work (not the queue) started and is renewed
    before it fades; the status message (a reply to ``reply_to``) appears only once ``delay_s`` has
    passed without an answer, then shows the newest stage at most once per ``interval_s`` — and
    only while the rate limiter has budget to spare for progress. Both are low-priority calls: under
    load they give way to answers, or are dropped. :meth:`remove` deletes the status message once
    the answer is out (if there is one); :meth:`fail` shows an error in it (or as a reply).
    """

    errors = (TelegramError,)

    def __init__(
        self,
        bot: ExtBot[Any],
        reply_to: Message,
        *,
        limiter: FloodLimiter | None = None,
        show_progress: bool = True,
        delay_s: float = 1.0,
        interval_s: float = 1.0,
        action_after_s: float = 0.5,
        video: bool = False,
    ) -> None:
        super().__init__(interval_s=interval_s, delay_s=delay_s)
        #: "sending a video…" rather than "sending a photo…" while a video is made
        self._upload = ChatAction.UPLOAD_VIDEO if video else ChatAction.UPLOAD_PHOTO
        self.bot = bot
        self.reply_to = reply_to
        self.limiter = limiter
        self.show_progress = show_progress
        self.action_after_s = action_after_s
        self.message: Message | None = None
        self.action: str | None = None
        self._action_changed = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._thread = reply_to.message_thread_id if reply_to.is_topic_message else None

    @property
    def chat_id(self) -> int:
        return self.reply_to.chat_id

    def update(self, status: Status) -> None:
        if self.stopped:
            return
        if status.stage is not BotStage.queued:
            action = (
                self._upload if status.stage in (BotStage.drawing, BotStage.sending) else (ChatAction.TYPING)
            )
            if action != self.action:
                self.action = action
                self._action_changed.set()
            if self._ticker is None:
                self._ticker = asyncio.create_task(
                    self._tick(time.monotonic() + self.action_after_s), name="m2i-chat-action"
                )
        if self.show_progress:
            super().update(status)

    def stop(self) -> None:
        super().stop()
        if self._ticker is not None:
            self._ticker.cancel()

    async def remove(self) -> None:
        """The answer is out: delete the status message, if one was shown (after any edit in flight)."""
        await self.close()
        if self.message is not None:
            try:
                await self.bot.delete_message(
                    self.chat_id, self.message.message_id, rate_limit_args=Priority.CLEANUP
                )
            except TelegramError as exc:
                log.debug("could not delete the status message: %s", exc)

    async def fail(self, text: str) -> None:
        """Show ``text`` (an error the user must see) in the status message if there is one, else reply."""
        await self.close()
        if self.message is not None:
            try:
                await self.bot.edit_message_text(
                    text, chat_id=self.chat_id, message_id=self.message.message_id
                )
                return
            except TelegramError as exc:
                if isinstance(exc, BadRequest) and "not modified" in exc.message:
                    return
                log.info("could not show the error in the status message (%s): replying instead", exc)
        await retrying(lambda: self.reply_to.reply_text(text, do_quote=True), 2)

    # --- ThrottledStatus ------------------------------------------------------------------------

    async def _show(self, text: str) -> None:
        if self.message is None:
            self.message = await self.bot.send_message(
                self.chat_id,
                text,
                message_thread_id=self._thread,
                reply_parameters=ReplyParameters(self.reply_to.message_id, allow_sending_without_reply=True),
                rate_limit_args=Priority.PROGRESS,
            )
        else:
            await self.bot.edit_message_text(
                text,
                chat_id=self.chat_id,
                message_id=self.message.message_id,
                rate_limit_args=Priority.PROGRESS,
            )

    def _hold_s(self) -> float:
        """0 (and the budget for the show that follows is taken), or how long to wait for it."""
        return self.limiter.reserve_progress(self.chat_id) if self.limiter is not None else 0.0

    # --- the chat action ------------------------------------------------------------------------

    async def _tick(self, start_at: float) -> None:
        """Show the chat action from ``start_at`` on, renewed before it fades and when it changes."""
        await asyncio.sleep(start_at - time.monotonic())  # a quick answer needs no "typing…"
        while True:
            hold = self.limiter.reserve_progress(self.chat_id, chat_action=True) if self.limiter else 0.0
            if hold > 0:
                await asyncio.sleep(hold)
                continue
            self._action_changed.clear()
            try:
                await self.bot.send_chat_action(
                    self.chat_id,
                    self.action or ChatAction.TYPING,
                    message_thread_id=self._thread,
                    rate_limit_args=Priority.PROGRESS,
                )
            except TelegramError as exc:
                log.debug("chat action failed: %s", exc)
            await asyncio.sleep(self.interval_s)  # at most one a second, even when it changes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._action_changed.wait(), CHAT_ACTION_EVERY_S - self.interval_s)

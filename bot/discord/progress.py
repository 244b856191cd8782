"""Shows a request's progress in one Discord message, edited as it moves, without flooding the API.

Two places can carry progress: an interaction's original response (``/visualize``, the Visualize
menu, buttons — acknowledged with "thinking…" while the work already starts) and an ordinary reply
to the user's message (mention and DM uploads; created with the first status). Either way
:class:`StatusMessage` takes every :class:`~bot.core.Status` at once, keeps only the newest, edits
at most once per ``interval_s`` (Discord rate-limits edits; discord.py waits out any 429 itself),
and never lets a late progress edit land after the final answer: :meth:`StatusMessage.close` waits
for the edit in flight and drops the rest (that throttling is :class:`bot.core.progress.ThrottledStatus`,
shared with the Telegram adapter).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import Awaitable
from typing import Any

import discord

from bot.core.progress import ThrottledStatus

__all__ = ["InteractionStatus", "ReplyStatus", "StatusMessage"]


class StatusMessage(ThrottledStatus):
    """A message that shows the latest status; subclasses say how to show, answer and remove it.

    The throttling (newest text only, one edit per ``interval_s``, nothing after :meth:`close`) is
    :class:`bot.core.progress.ThrottledStatus`, shared with the Telegram adapter.
    """

    errors = (discord.HTTPException,)

    def __init__(self, *, interval_s: float = 1.0) -> None:
        super().__init__(interval_s=interval_s)

    async def answer(self, **message: Any) -> None:
        """Replace the progress with the final message (``content``, ``embed``, ``attachments``, ``view``)."""
        await self.close()
        await self._answer(**message)

    async def fail(self, text: str) -> None:
        """Replace the progress with ``text`` (an error the user must see)."""
        await self.answer(content=text, embed=None, attachments=[], view=None)

    async def remove(self) -> None:
        """Take the progress away (nothing more to say, e.g. a flood that was already told)."""
        await self.close()
        with contextlib.suppress(discord.HTTPException):
            await self._remove()

    # --- subclass API ---------------------------------------------------------------------------

    @abstractmethod
    async def _answer(self, **message: Any) -> None: ...

    @abstractmethod
    async def _remove(self) -> None: ...


class InteractionStatus(StatusMessage):
    """Progress in an interaction's original response ("m2i is thinking…").

    ``acknowledged`` is the acknowledgement (``interaction.response.defer(…)``) when it is still on
    its way: the work starts at once, and the first edit waits for it (Discord refuses edits before).
    """

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        acknowledged: Awaitable[Any] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(interval_s=interval_s)
        self.interaction = interaction
        self._acknowledged = asyncio.ensure_future(acknowledged) if acknowledged is not None else None

    async def _show(self, text: str) -> None:
        await self._ack()
        await self.interaction.edit_original_response(content=text)

    async def _answer(self, **message: Any) -> None:
        await self._ack()
        message.setdefault("content", None)
        await self.interaction.edit_original_response(**message)

    async def _remove(self) -> None:
        await self._ack()
        await self.interaction.delete_original_response()

    async def _ack(self) -> None:
        if self._acknowledged is not None:
            await asyncio.shield(self._acknowledged)  # raises the acknowledgement's error, every time


class ReplyStatus(StatusMessage):
    """Progress in a reply to ``source``, created with the first status and edited into the answer."""

    def __init__(self, source: discord.Message, *, interval_s: float = 1.0) -> None:
        super().__init__(interval_s=interval_s)
        self.source = source
        self.message: discord.Message | None = None

    async def _show(self, text: str) -> None:
        if self.message is None:
            self.message = await self.source.reply(text, mention_author=False)
        else:
            self.message = await self.message.edit(content=text)

    async def _answer(self, **message: Any) -> None:
        message.setdefault("content", None)
        if self.message is not None:
            self.message = await self.message.edit(**message)
            return
        files = message.pop("attachments", None)
        for key in [k for k, v in message.items() if v is None]:
            del message[key]  # a new message: "no embed/view" is simply leaving them out
        if files:
            message["files"] = files
        self.message = await self.source.reply(mention_author=False, **message)

    async def _remove(self) -> None:
        if self.message is not None:
            await self.message.delete()

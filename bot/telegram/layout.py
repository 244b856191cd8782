"""Lays an m2i :class:`~bot.core.Reply` out as Telegram messages and sends them, riding out network errors.

One image is a photo (a document above Telegram's 10 MB photo limit) with a caption within
:attr:`TELEGRAM.caption_limit <bot.core.limits.Platform.caption_limit>` and the inline buttons; several
images (variations) are an album, the first captioned with the tags. A music video (the 🎬 button) is
``sendVideo`` with streaming on, its size and length given so clients lay it out before it loads.
Every answer replies to the audio, so a button under it can find the audio again.

Offers
------
- :func:`send_reply` — send a reply as the answer to the audio's message.
- :func:`send_video` — send a video reply the same way.
- :func:`keyboard` — the inline buttons of a reply (their data is the action, :mod:`bot.core.actions`).
- :func:`retrying` — a send, again after a network error (never after Telegram refused it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, NetworkError

from bot.core import messages
from bot.core.actions import encode_action
from bot.core.limits import TELEGRAM
from bot.core.reply import Reply, VideoReply

__all__ = ["PHOTO_LIMIT_BYTES", "keyboard", "retrying", "send_reply", "send_video"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Telegram refuses photos above this size; larger images go out as documents
PHOTO_LIMIT_BYTES = 10_000_000


async def send_reply(source: Message, reply: Reply, *, retries: int) -> None:
    """Send ``reply`` as an answer to ``source`` (the audio), retrying after network errors."""
    if len(reply.images) > 1:
        captions = [reply.text(TELEGRAM.caption_limit, with_prompt=False)] + [
            messages.variation_caption(i + 1, img.seed) for i, img in enumerate(reply.images) if i
        ]
        media = [
            InputMediaPhoto(img.png, caption=caption)
            for img, caption in zip(reply.images, captions, strict=True)
        ]
        await retrying(lambda: source.reply_media_group(media, do_quote=True), retries)
        return
    image = reply.images[0]
    caption = reply.text(TELEGRAM.caption_limit)
    markup = keyboard(reply)
    if len(image.png) > PHOTO_LIMIT_BYTES:
        await retrying(
            lambda: source.reply_document(
                image.png,
                filename=f"m2i-{image.seed}.png",
                caption=caption,
                reply_markup=markup,
                do_quote=True,
            ),
            retries,
        )
    else:
        await retrying(
            lambda: source.reply_photo(image.png, caption=caption, reply_markup=markup, do_quote=True),
            retries,
        )


async def send_video(
    source: Message, video: VideoReply, *, caption_limit: int = TELEGRAM.caption_limit, retries: int
) -> None:
    """Send ``video`` (already within the upload limit) as an answer to ``source``, as a streamable video."""
    caption = video.text(caption_limit)
    await retrying(
        lambda: source.reply_video(
            video.mp4,
            filename=video.file_name,
            caption=caption,
            width=video.width,
            height=video.height,
            duration=round(video.length_s),
            supports_streaming=True,
            do_quote=True,
            write_timeout=120,
        ),
        retries,
    )


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """The reply's buttons, two to a row; ``None`` when it has none."""
    if not reply.buttons:
        return None
    room = TELEGRAM.button_data_bytes
    buttons = [
        InlineKeyboardButton(b.label, callback_data=encode_action(b.action, max_bytes=room))
        for b in reply.buttons
    ]
    return InlineKeyboardMarkup([buttons[:2], buttons[2:]] if len(buttons) > 2 else [buttons])


async def retrying(send: Callable[[], Awaitable[T]], retries: int) -> T:
    """``send()``, again after a network error (not after Telegram refused it: BadRequest)."""
    for attempt in range(retries + 1):
        try:
            return await send()
        except BadRequest:
            raise
        except NetworkError as exc:
            if attempt == retries:
                raise
            log.warning("sending failed (%s), retrying", exc)
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")

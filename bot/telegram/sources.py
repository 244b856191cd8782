"""Finds the audio a Telegram message carries, and downloads it within the Bot API's limits.

Buttons must work after a restart, so nothing remembers which song an image was drawn from: each
answer replies to the message with the audio, and a pressed button finds it again as
``callback_query.message.reply_to_message``. Whatever carries it — an audio file, a voice note, a
video note, a video or a document — its metadata is read before anything is downloaded
(:func:`bot.core.limits.check_before_download`).

Offers
------
- :func:`audio_file` — the file id and :class:`~bot.core.AudioMeta` of a message's audio, if any.
- :func:`download` — the file's bytes; the Bot API's "file is too big" becomes ``too_large``.
"""

from __future__ import annotations

from typing import Any

from telegram import Message
from telegram.error import BadRequest
from telegram.ext import ExtBot

from bot.core import messages
from bot.core.limits import TELEGRAM, AudioMeta
from m2i_engine.errors import TooLargeError

__all__ = ["audio_file", "download"]


def audio_file(msg: Message) -> tuple[str, AudioMeta] | None:
    """The file id and metadata of the audio-bearing attachment of ``msg``, if it has one."""
    for kind in ("audio", "voice", "video_note", "video", "document"):
        obj = getattr(msg, kind, None)
        if obj is None:
            continue
        d = obj.to_dict()  # plain JSON values (PTB's duration accessors warn during their migration)
        duration = d.get("duration")
        return obj.file_id, AudioMeta(
            kind=kind,
            file_name=d.get("file_name"),  # type: ignore[arg-type]
            mime_type=d.get("mime_type"),
            file_size=d.get("file_size"),
            duration_s=float(duration) if duration is not None else None,
        )
    return None


async def download(bot: ExtBot[Any], file_id: str) -> bytes:
    """The bytes of ``file_id`` (``getFile``, then the download)."""
    try:
        tg_file = await bot.get_file(file_id)
    except BadRequest as exc:
        if "too big" in exc.message.lower():
            assert TELEGRAM.max_download_bytes is not None
            raise TooLargeError(messages.too_large(TELEGRAM.max_download_bytes)) from exc
        raise
    return bytes(await tg_file.download_as_bytearray(read_timeout=120))

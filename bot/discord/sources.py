"""Finds the song behind a Discord message — on it, or on the message it replies to or was made for.

Buttons must work after a restart, so nothing remembers which song an image was drawn from: the
messages themselves do. An image m2i posts is either

- a reply to the message carrying the audio (mention or DM uploads, re-rolls), or
- the response to a Visualize menu (``interaction_metadata.target_message_id`` names the message), or
- the response to ``/visualize``, which carries the audio itself (a slash command's upload is
  ephemeral, so m2i attaches it to its answer), or
- the response to a button pressed under an earlier image (``interacted_message_id``).

:func:`find_source` follows those links, fetching each message fresh (attachment URLs are signed
and expire, so stored payloads can't be trusted), until it finds an attachment that may be audio.

Offers
------
- :func:`audio_attachment` — the first attachment of a message that may be audio.
- :func:`audio_meta` — an attachment's metadata as :class:`~bot.core.AudioMeta` (before download).
- :func:`find_source` — the message (and attachment) holding the song behind a message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import discord

from bot.core import AudioMeta
from bot.core.limits import looks_like_audio

__all__ = ["MAX_HOPS", "Source", "audio_attachment", "audio_meta", "find_source"]

log = logging.getLogger(__name__)

#: links followed from a message to its song; each is one REST call
MAX_HOPS = 6

FetchMessage = Callable[[int], Awaitable[discord.Message]]


@dataclass(frozen=True)
class Source:
    """A message with a song attached."""

    message: discord.Message
    attachment: discord.Attachment


def audio_meta(attachment: discord.Attachment) -> AudioMeta:
    """What Discord says about ``attachment``; voice messages are typed as ``voice``."""
    return AudioMeta(
        kind="voice" if attachment.is_voice_message() else "attachment",
        file_name=attachment.filename,
        mime_type=attachment.content_type,
        file_size=attachment.size,
        duration_s=attachment.duration,
    )


def audio_attachment(
    attachments: Sequence[discord.Attachment], *, fallback: bool = False
) -> discord.Attachment | None:
    """The first attachment that may be audio; with ``fallback``, else the first one (so the user is
    told why it isn't), else ``None``."""
    for att in attachments:
        if looks_like_audio(audio_meta(att)):
            return att
    return attachments[0] if fallback and attachments else None


async def find_source(
    message: discord.Message, fetch: FetchMessage, *, max_hops: int = MAX_HOPS
) -> Source | None:
    """The message carrying the song behind ``message`` (itself, or up to ``max_hops`` links away)."""
    current = message
    seen = {message.id}
    for _ in range(max_hops + 1):
        att = audio_attachment(current.attachments)
        if att is not None:
            return Source(current, att)
        next_id = _link(current)
        if next_id is None or next_id in seen:
            return None
        seen.add(next_id)
        try:
            current = await fetch(next_id)
        except (discord.HTTPException, LookupError) as exc:  # deleted, or no Read Message History
            log.info("message %s linked from %s can't be fetched: %s", next_id, current.id, exc)
            return None
    return None


def _link(message: discord.Message) -> int | None:
    """The message ``message`` replies to or answers, if any."""
    if message.reference is not None and message.reference.message_id is not None:
        return message.reference.message_id
    meta = message.interaction_metadata
    if meta is not None:
        return meta.target_message_id or meta.interacted_message_id
    return None

"""Lays an m2i :class:`~bot.core.Reply` out as a Discord message: image files, one embed, the song.

The embed comes from :meth:`Reply.embed` (already within Discord's limits): the title, the prompt as
description, one field per tag, seed/style/backend and notes as footer, and the image shown inside
it (``attachment://``). Variations are several images under one embed. When a song must travel
with its answer (``/visualize``: its upload is ephemeral), it is attached too if the upload limit
leaves room — the buttons find it there later. A music video (the 🎬 button) is one MP4 attachment
under its caption, encoded to fit the server's upload limit (:func:`upload_limit`).

Offers
------
- :func:`reply_embed` — a ``discord.Embed`` for a reply.
- :func:`reply_files` — the image file(s), plus the song when it fits; says whether it did.
- :func:`image_name` — the file name of an image (``m2i-<seed>.png``).
- :func:`upload_limit` — what a bot may upload in a server (its boosts decide), or in a DM.
- :func:`video_message` — the content and file of a video reply.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import discord
from PIL import Image

from bot.core import DISCORD, Reply, ReplyImage, VideoReply

__all__ = [
    "DEFAULT_UPLOAD_LIMIT_BYTES",
    "ReplyFiles",
    "image_name",
    "reply_embed",
    "reply_files",
    "upload_limit",
    "video_message",
]

log = logging.getLogger(__name__)

#: what a bot may upload where Discord doesn't say (servers without boosts, DMs)
DEFAULT_UPLOAD_LIMIT_BYTES = DISCORD.max_upload_bytes or 10 * 1024 * 1024
#: tag fields at most this long sit side by side
_INLINE_FIELD_CHARS = 40
_EMBED_COLOUR = discord.Colour(0x7C5CFF)


@dataclass(frozen=True)
class ReplyFiles:
    files: list[discord.File]
    #: the name the embed shows as its image
    shown: str | None
    #: the song could be attached
    audio_attached: bool


def image_name(image: ReplyImage, *, ext: str = "png") -> str:
    return f"m2i-{image.seed}.{ext}"


def reply_embed(reply: Reply, *, image: str | None = None) -> discord.Embed:
    """The embed for ``reply``; ``image`` names the attached file it shows."""
    parts = reply.embed(DISCORD.embed_limits)
    embed = discord.Embed(title=parts.title, description=parts.description, colour=_EMBED_COLOUR)
    for name, value in parts.fields:
        embed.add_field(name=name, value=value, inline=len(value) <= _INLINE_FIELD_CHARS)
    embed.set_footer(text=parts.footer)
    if image is not None:
        embed.set_image(url=f"attachment://{image}")
    return embed


def reply_files(
    reply: Reply, *, limit_bytes: int = DEFAULT_UPLOAD_LIMIT_BYTES, audio: tuple[bytes, str] | None = None
) -> ReplyFiles:
    """The reply's image(s) as files within ``limit_bytes`` in all, then ``audio`` if it still fits.

    An image too large as PNG is sent as JPEG instead (quality 90).
    """
    files: list[discord.File] = []
    shown: str | None = None
    used = 0
    for img in reply.images:
        data, name = img.png, image_name(img)
        if used + len(data) > limit_bytes:
            data, name = _as_jpeg(img.png), image_name(img, ext="jpg")
        if used + len(data) > limit_bytes:
            log.warning(
                "[%s] image %s (%d bytes) does not fit the %d-byte upload limit",
                reply.request_id,
                name,
                len(data),
                limit_bytes,
            )
            continue
        files.append(discord.File(io.BytesIO(data), filename=name))
        shown = shown or name
        used += len(data)
    audio_attached = False
    if audio is not None:
        data, name = audio
        if used + len(data) <= limit_bytes:
            files.append(discord.File(io.BytesIO(data), filename=name))
            audio_attached = True
        else:
            log.info(
                "[%s] the song (%d bytes) can't travel with its image: upload limit %d",
                reply.request_id,
                len(data),
                limit_bytes,
            )
    return ReplyFiles(files=files, shown=shown, audio_attached=audio_attached)


def upload_limit(guild: discord.Guild | None) -> int:
    """The server's upload limit (``Guild.filesize_limit``: more with boosts); the default in DMs."""
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT_BYTES


def video_message(video: VideoReply) -> dict[str, Any]:
    """``content`` and ``files`` of a video reply (fresh file objects: a retry needs new ones)."""
    return {
        "content": video.text(DISCORD.message_limit),
        "files": [discord.File(io.BytesIO(video.mp4), filename=video.file_name)],
    }


def _as_jpeg(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, format="JPEG", quality=90)
        return out.getvalue()

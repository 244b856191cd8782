"""Refuses files a bot should not download, from the metadata a chat platform sends before the bytes.

A chat message says how big a file is, what it is called and often its MIME type before anything is
downloaded. Checking these first means a 200 MB video or a PDF costs nothing, and the user learns
why at once. The engine's content sniffing stays the final word: a file that passes here can still be
refused after download as ``not_audio`` or ``corrupt_audio``.

Offers
------
- :class:`AudioMeta` — what a platform tells about an attachment (kind, name, MIME type, size, duration).
- :class:`Platform` — what the core needs to know of a chat platform: its name, download and upload
  limits, text and button limits and the few sentences only it needs; :data:`TELEGRAM` and
  :data:`DISCORD` are the two the adapters pick (and adjust, e.g. a self-hosted Bot API server lifts
  Telegram's 20 MB).
- :func:`download_limit` — the effective byte limit: the platform's or the engine's, whichever is lower.
- :func:`check_before_download` / :func:`check_downloaded` — raise the user-facing ``M2IError``.
- :func:`looks_like_audio` — ``False`` only for obvious non-audio (images, documents, archives…).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot.core import messages
from bot.core.actions import BUTTON_DATA_BYTES
from bot.core.reply import CAPTION_BUDGET, EMBED_LIMITS, MESSAGE_BUDGET
from m2i_engine.config import AudioLimits
from m2i_engine.errors import EmptyAudioError, NotAudioError, TooLargeError, TooLongError

__all__ = [
    "DISCORD",
    "TELEGRAM",
    "AudioKind",
    "AudioMeta",
    "Platform",
    "check_before_download",
    "check_downloaded",
    "download_limit",
    "looks_like_audio",
]

#: how the platform delivered the audio; ``audio``/``voice``/``video_note``/``video`` are typed by the
#: platform itself, ``document``/``attachment`` are arbitrary files that still need checking
AudioKind = Literal["audio", "voice", "video_note", "video", "document", "attachment"]
_TYPED_MEDIA = frozenset({"audio", "voice", "video_note", "video"})

# MIME families that are never audio; "application/*" is refused except the containers below
_NEVER_AUDIO_FAMILIES = frozenset({"image", "text", "font", "model", "message", "multipart", "chemical"})
_AUDIO_APPLICATION_TYPES = frozenset(
    {
        "application/ogg",
        "application/x-ogg",
        "application/octet-stream",
        "application/mp4",
        "application/x-matroska",
        "application/vnd.apple.mpegurl",
    }
)


@dataclass(frozen=True)
class AudioMeta:
    """What the platform says about an attachment before it is downloaded (any field may be unknown)."""

    kind: AudioKind = "attachment"
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class Platform:
    """A chat platform as the bot layer sees it: a name for logs and keys, its limits, its own sentences.

    The core reads these instead of naming any platform; an adapter hands its :class:`Platform` (one
    of :data:`TELEGRAM`, :data:`DISCORD`, or a copy adjusted by its settings) to every request.
    """

    name: str
    #: the platform refuses to hand bots larger files; ``None`` when it has no limit
    max_download_bytes: int | None = None
    #: the largest file the bot may send (a video answer is encoded to fit); ``None``: no limit. Where the
    #: limit depends on the chat (a Discord server's boosts), the request's ``upload_limit`` says it
    max_upload_bytes: int | None = None
    #: shown under a "too large" error (e.g. the Bot API's 20 MB limit and how to lift it)
    too_large_hint: str | None = None
    #: the longest caption under an image, in UTF-16 code units
    caption_limit: int = CAPTION_BUDGET
    #: the longest text message, in UTF-16 code units
    message_limit: int = MESSAGE_BUDGET
    #: how many UTF-8 bytes a button's data (Telegram ``callback_data``, Discord ``custom_id``) may hold
    button_data_bytes: int = BUTTON_DATA_BYTES
    #: limits of an embed's parts (title, description, fields…); empty where the platform has none
    embed_limits: Mapping[str, int] = field(default_factory=dict)
    #: how to ask the bot for an image, for a user who addressed it without audio
    how_to: str = ""
    #: how the bot behaves in group chats, added to ``/help``
    groups_help: str = ""


#: the public Bot API: ``getFile`` refuses files over 20 MB (``telegram.constants.FileSizeLimit``)
TELEGRAM = Platform(
    "telegram",
    max_download_bytes=20_000_000,
    max_upload_bytes=50_000_000,  # sendVideo/sendDocument on the public Bot API
    # said to the chat user, who can't change the server: for the operator, a self-hosted Bot API
    # server with --local (and M2I_TELEGRAM_LOCAL_MODE=true) lifts the limit; see TelegramSettings
    too_large_hint=(
        "Telegram lets bots download files up to 20 MB: send a shorter clip, a compressed mp3 or a "
        "voice note."
    ),
    caption_limit=1024,
    message_limit=4096,
    button_data_bytes=64,
    groups_help=(
        "In groups, mention me in the caption, use /visualize, or reply to one of my "
        "messages — otherwise I stay quiet."
    ),
)

#: Discord doesn't limit what a bot may download: the engine's limit (25 MiB) applies; uploads are
#: limited per server (``Guild.filesize_limit``, by its boosts): 10 MiB without boosts and in DMs
DISCORD = Platform(
    "discord",
    max_download_bytes=None,
    max_upload_bytes=10 * 1024 * 1024,
    message_limit=2000,
    button_data_bytes=100,
    embed_limits=EMBED_LIMITS,
    how_to=(
        "Attach a song or voice note and mention me (options go in the message: "
        '`style=neon seed=42 "a red fox"`), use /visualize, or pick Apps → Visualize on any '
        "message with audio. In DMs, just send the audio."
    ),
)


def download_limit(platform: Platform, engine_limits: AudioLimits) -> int:
    """Largest file worth downloading: the platform's limit or the engine's, whichever is lower."""
    if platform.max_download_bytes is None:
        return engine_limits.max_bytes
    return min(platform.max_download_bytes, engine_limits.max_bytes)


def check_before_download(meta: AudioMeta, *, max_bytes: int, max_duration_s: float | None = None) -> None:
    """Raise if ``meta`` alone shows the file can't be used.

    Raises
    ------
    TooLargeError
        ``meta.file_size`` is above ``max_bytes``.
    TooLongError
        ``meta.duration_s`` is above ``max_duration_s``.
    NotAudioError
        The MIME type or file name says it is obviously not audio.
    """
    if meta.file_size is not None and meta.file_size > max_bytes:
        raise TooLargeError(messages.too_large(max_bytes, meta.file_size))
    if meta.file_size == 0:
        raise EmptyAudioError(messages.empty_file())
    if max_duration_s is not None and meta.duration_s is not None and meta.duration_s > max_duration_s:
        raise TooLongError(messages.too_long(meta.duration_s, max_duration_s))
    if not looks_like_audio(meta):
        raise NotAudioError(
            messages.not_audio(meta.file_name), detail=f"mime={meta.mime_type!r} name={meta.file_name!r}"
        )


def check_downloaded(data: bytes, *, max_bytes: int) -> None:
    """Raise if the downloaded bytes break the size limit (metadata can lie or be missing)."""
    if not data:
        raise EmptyAudioError(messages.empty_file())
    if len(data) > max_bytes:
        raise TooLargeError(messages.too_large(max_bytes, len(data)))


def looks_like_audio(meta: AudioMeta) -> bool:
    """``False`` only when the MIME type or file name clearly says "not audio".

    Audio, voice and video notes typed by the platform pass; so does anything unknown, because
    the engine sniffs the bytes anyway. ``video/*`` passes: its sound track is what we analyse.
    """
    if meta.kind in _TYPED_MEDIA:
        return True
    mime = (meta.mime_type or "").split(";")[0].strip().lower()
    if mime and not _mime_may_be_audio(mime):
        return False
    if meta.file_name and mime in ("", "application/octet-stream"):
        guessed, _ = mimetypes.guess_type(meta.file_name, strict=False)
        if guessed and not _mime_may_be_audio(guessed):
            return False
    return True


def _mime_may_be_audio(mime: str) -> bool:
    family = mime.split("/", 1)[0]
    if family in ("audio", "video"):
        return True
    if family == "application":
        return mime in _AUDIO_APPLICATION_TYPES
    return family not in _NEVER_AUDIO_FAMILIES

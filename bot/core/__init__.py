"""The platform-neutral half of every m2i chat bot, written once; adapters only translate.

A platform adapter (``bot/telegram``, ``bot/discord``) turns a platform event into an
:class:`AudioRequest`, calls :class:`BotService`, and lays out what comes back. Everything else —
option parsing, size/type checks, rate limits, the fair queue, every user-facing text, the reply
model and the button encoding — lives here.

API
---
Requests (``service``)::

    service = BotService(engine, BotSettings())          # once per process, shared by platforms
    req = AudioRequest(platform=DISCORD,                  # or TELEGRAM: the adapter's Platform
                       user_id=..., chat_id=..., fetch=attachment.read,      # async () -> bytes
                       meta=AudioMeta(kind="attachment", file_name=..., mime_type=..., file_size=...),
                       options="style=neon seed=42")      # raw text, or VisualizeOptions (buttons)
    outcome = await service.visualize(req, progress=on_status)  # Reply | Failure, never raises
    outcome = await service.describe(req)                 # prompt & tags only, no image
    outcome = await service.video(req)                    # VideoReply | Failure: the 🎬 button; fits
                                                          # req.max_upload_bytes (AudioRequest(upload_limit=…)
                                                          # where the chat decides, else the Platform's)

  ``on_status(Status)`` (sync or async) gets ``Status(stage: BotStage, text, queue_position)`` once
  per change: queued (position N) → downloading → decoding → analysing → drawing → sending.
  ``Failure(request_id, code, text, silent)``: show ``text`` unless ``silent`` (a flood already told).

Progress messages (``progress``)::

    class StatusMessage(ThrottledStatus):                  # one per request; the platform says how
        errors = (PlatformHTTPError,)                      # to show a text (send the message, then
        async def _show(self, text): ...                   # edit it) and which API errors to swallow
    status = StatusMessage(interval_s=1.0, delay_s=0.0)    # ≤ 1 show a second; none before delay_s
    outcome = await service.visualize(req, progress=status.update)   # update() never waits
    status.stop()                                          # before the answer goes out
    await status.close()                                   # …and wait for a show still in flight

  Only the newest text is shown (texts overtaken meanwhile are never sent); ``status.shown`` is
  ``None`` when the answer came before ``delay_s`` (nothing to remove). ``_hold_s()`` may hold shows
  back while the platform's rate budget is spent.

Replies (``reply``)::

    reply.images[0].png, reply.title, reply.tag_lines, reply.prompt, reply.seed, reply.notes
    reply.text(platform.caption_limit)     # caption within a budget (UTF-16 units, as Telegram counts)
    reply.details(platform.message_limit)  # full prompt + every tag, for the "prompt & tags" button
    reply.embed(platform.embed_limits)     # EmbedParts(title, description, fields, footer): Discord
    reply.buttons                          # (ReplyButton(label, action), …) — re-roll, variations,
                                           # prompt, video
    video.mp4, video.file_name, video.width, video.height, video.length_s, video.text(budget)
    upscale_button(reply)                  # one more for a Stable Diffusion image (None otherwise)

Buttons (``actions``)::

    data = encode_action(button.action, max_bytes=platform.button_data_bytes)  # custom_id / callback_data
    action = decode_action(data)                          # ActionExpiredError if from an older build
    label_for(action.kind)                                # the pressed button's label, to echo it
    options = options_for(action, variations=3)          # new seed / nearby seeds / same image
    # find the audio again from the message the button's message replies to, then
    # service.visualize(AudioRequest(..., options=options)) or service.describe(...) for prompt.

Options, limits, texts: :func:`parse_options` (chat text), :func:`options_from_values` (typed
slash-command values), :func:`options_help`; :class:`AudioMeta`,
:class:`Platform` (:data:`TELEGRAM`, :data:`DISCORD`: each platform's limits and its own few
sentences); :mod:`bot.core.messages` (``start_text()``, ``help_text(options_help())``,
``error_text(err)``, ``progress_text(stage, position)``, button labels).
"""

from __future__ import annotations

from bot.core import messages
from bot.core.actions import (
    Action,
    ActionExpiredError,
    ActionKind,
    decode_action,
    encode_action,
    is_action,
    label_for,
    options_for,
)
from bot.core.fairness import FairScheduler, Rate, RateLimitedError, RateLimiter, UserQueueFullError
from bot.core.limits import DISCORD, TELEGRAM, AudioMeta, Platform
from bot.core.messages import BotStage
from bot.core.options import options_from_values, options_help, parse_options
from bot.core.progress import ThrottledStatus
from bot.core.reply import (
    EmbedParts,
    Reply,
    ReplyButton,
    ReplyImage,
    TagLine,
    VideoReply,
    upscale_button,
)
from bot.core.service import AudioRequest, BotService, DownloadFailedError, Failure, Status
from bot.core.settings import BotSettings

__all__ = [
    "DISCORD",
    "TELEGRAM",
    "Action",
    "ActionExpiredError",
    "ActionKind",
    "AudioMeta",
    "AudioRequest",
    "BotService",
    "BotSettings",
    "BotStage",
    "DownloadFailedError",
    "EmbedParts",
    "Failure",
    "FairScheduler",
    "Platform",
    "Rate",
    "RateLimitedError",
    "RateLimiter",
    "Reply",
    "ReplyButton",
    "ReplyImage",
    "Status",
    "TagLine",
    "ThrottledStatus",
    "UserQueueFullError",
    "VideoReply",
    "decode_action",
    "encode_action",
    "is_action",
    "label_for",
    "messages",
    "options_for",
    "options_from_values",
    "options_help",
    "parse_options",
    "upscale_button",
]

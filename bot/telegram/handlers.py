"""Telegram ↔ m2i, the handlers: each turns one kind of Telegram update into a :mod:`bot.core` request.

Audio, voice notes, video notes, videos and audio sent as documents (options in the caption),
``/start``, ``/help``, ``/visualize`` (as a reply to audio, options in the command), text replying to
audio, and the inline buttons (🎬 answers with a music video, ``sendVideo`` within the Bot API's
50 MB). Everything that isn't Telegram-specific — option parsing, limits,
rate limits, texts, the reply model, button encoding — comes from :mod:`bot.core`.

Telegram specifics handled here:

- groups: answer only when addressed (a command for this bot, an @mention, a reply to the bot);
- progress costs Bot API calls, so a quick answer gets none (:mod:`bot.telegram.progress`);
- the answer replies to the audio, so a button can find the audio again
  (:mod:`bot.telegram.layout`, :mod:`bot.telegram.sources`);
- ``file_size`` is checked before ``getFile`` (the public Bot API refuses files over 20 MB:
  :func:`telegram_platform`), and a video is encoded to fit what bots may upload (50 MB; 2000 MB
  through a local-mode server).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import replace
from typing import Any

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType, FileSizeLimit
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.core import messages
from bot.core.actions import ActionExpiredError, ActionKind, decode_action, label_for, options_for
from bot.core.limits import TELEGRAM, Platform
from bot.core.options import options_help
from bot.core.reply import Reply
from bot.core.service import AudioRequest, BotService, Failure
from bot.telegram.flood import FloodLimiter
from bot.telegram.layout import retrying, send_reply, send_video
from bot.telegram.progress import TelegramStatus
from bot.telegram.settings import TelegramSettings
from bot.telegram.sources import audio_file, download
from m2i_engine.options import VisualizeOptions

__all__ = ["VISUALIZE_COMMANDS", "TelegramHandlers", "telegram_platform"]

log = logging.getLogger(__name__)

VISUALIZE_COMMANDS = ("visualize", "m2i")

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def telegram_platform(settings: TelegramSettings) -> Platform:
    """The public Bot API hands bots files up to 20 MB and takes up to 50 MB from them; a local-mode
    server has no download limit and takes up to 2000 MB."""
    if settings.local_mode:
        return replace(
            TELEGRAM,
            max_download_bytes=None,
            too_large_hint=None,
            max_upload_bytes=int(FileSizeLimit.FILESIZE_UPLOAD_LOCAL_MODE),
        )
    assert TELEGRAM.max_download_bytes is not None and TELEGRAM.max_upload_bytes is not None
    return replace(
        TELEGRAM,
        max_download_bytes=min(TELEGRAM.max_download_bytes, int(FileSizeLimit.FILESIZE_DOWNLOAD)),
        max_upload_bytes=min(TELEGRAM.max_upload_bytes, int(FileSizeLimit.FILESIZE_UPLOAD)),
    )


class TelegramHandlers:
    """The PTB callbacks; each translates one kind of update and hands it to :class:`BotService`."""

    def __init__(
        self, service: BotService, settings: TelegramSettings, limiter: FloodLimiter | None = None
    ) -> None:
        self.service = service
        self.settings = settings
        self.limiter = limiter
        self.platform = telegram_platform(settings)

    def register(self, app: AnyApplication) -> None:
        media = filters.AUDIO | filters.VOICE | filters.VIDEO_NOTE | filters.VIDEO | filters.Document.ALL
        app.add_handler(CommandHandler("start", self.on_start))
        app.add_handler(CommandHandler("help", self.on_help))
        app.add_handler(CommandHandler(list(VISUALIZE_COMMANDS), self.on_visualize_command))
        app.add_handler(MessageHandler(media, self.on_media))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self.on_text))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_error_handler(self.on_error)

    # --- commands -------------------------------------------------------------------------------

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message:
            await update.effective_message.reply_text(messages.start_text(), do_quote=False)

    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message:
            text = messages.help_text(options_help(), in_groups=TELEGRAM.groups_help)
            await update.effective_message.reply_text(text, do_quote=False)

    async def on_visualize_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/visualize [options]`` as a reply to a message with audio."""
        msg = update.effective_message
        if msg is None or msg.from_user is None:
            return
        _, options_text = _addressing(msg, context.bot.username, context.bot.id)
        source = msg.reply_to_message
        if source is None or audio_file(source) is None:
            await msg.reply_text(messages.NEEDS_AUDIO_REPLY)
            return
        await self._visualize(
            context, source=source, status_to=msg, user_id=msg.from_user.id, options=options_text
        )

    # --- messages -------------------------------------------------------------------------------

    async def on_media(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Audio sent to the bot; options in the caption. In groups only when addressed."""
        msg = update.effective_message
        if msg is None or msg.from_user is None or audio_file(msg) is None:
            return
        addressed, options_text = _addressing(msg, context.bot.username, context.bot.id)
        if not addressed:
            log.debug("ignoring audio in chat %s: not addressed to the bot", msg.chat_id)
            return
        await self._visualize(
            context, source=msg, status_to=msg, user_id=msg.from_user.id, options=options_text
        )

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain text: options for the audio it replies to, or a hint. In groups only when addressed."""
        msg = update.effective_message
        if msg is None or msg.from_user is None:
            return
        addressed, options_text = _addressing(msg, context.bot.username, context.bot.id)
        if not addressed:
            return
        source = msg.reply_to_message
        if source is not None and audio_file(source) is not None:
            await self._visualize(
                context, source=source, status_to=msg, user_id=msg.from_user.id, options=options_text
            )
        else:
            await msg.reply_text(messages.NEEDS_AUDIO_REPLY)

    # --- buttons --------------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Re-roll, variations, prompt & tags or video; the audio is the message the image replies to."""
        query = update.callback_query
        if query is None:
            return
        try:
            action = decode_action(query.data or "")
        except ActionExpiredError as exc:
            await query.answer(exc.message, show_alert=True)
            return
        shown = query.message if isinstance(query.message, Message) else None
        source = shown.reply_to_message if shown is not None else None
        if shown is None or source is None or audio_file(source) is None:
            await query.answer(messages.SOURCE_GONE, show_alert=True)
            return
        await query.answer(label_for(action.kind) + "…")
        options = options_for(action, variations=self.service.settings.variations)
        if action.kind is ActionKind.prompt:
            await self._describe(
                context, source=source, shown=shown, user_id=query.from_user.id, options=options
            )
        else:
            await self._visualize(
                context,
                source=source,
                status_to=shown,
                user_id=query.from_user.id,
                options=options,
                video=action.kind is ActionKind.video,
            )

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        err = context.error
        log.error(
            "error while handling an update: %s: %s",
            type(err).__name__,
            err,
            exc_info=(type(err), err, err.__traceback__) if err is not None else None,
        )
        if isinstance(update, Update) and update.effective_chat is not None:
            with contextlib.suppress(TelegramError):
                await context.bot.send_message(update.effective_chat.id, messages.internal_error_text())

    # --- the request path -----------------------------------------------------------------------

    async def _visualize(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        *,
        source: Message,
        status_to: Message,
        user_id: int,
        options: VisualizeOptions | str | None,
        video: bool = False,
    ) -> None:
        """An image (or with ``video`` a music video) replying to ``source``, progress under ``status_to``."""
        request = self._request(context, source, user_id, options)
        status = self._status(context, status_to, video=video)
        try:
            outcome = await (self.service.video if video else self.service.visualize)(
                request, progress=status.update
            )
            status.stop()  # no progress edit may start while the answer is on its way
            if isinstance(outcome, Failure):
                await (status.remove() if outcome.silent else status.fail(outcome.text))
                return
            retries = self.settings.send_retries
            try:
                if isinstance(outcome, Reply):
                    await send_reply(source, outcome, retries=retries)
                else:
                    await send_video(
                        source, outcome, caption_limit=self.platform.caption_limit, retries=retries
                    )
            except TelegramError as exc:
                log.error("[%s] could not send the answer: %s", request.request_id, exc)
                await status.fail(messages.internal_error_text())
                return
            await status.remove()
        finally:
            status.stop()

    async def _describe(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        *,
        source: Message,
        shown: Message,
        user_id: int,
        options: VisualizeOptions,
    ) -> None:
        request = self._request(context, source, user_id, options)
        status = self._status(context, shown, show_progress=False)
        try:
            outcome = await self.service.describe(request, progress=status.update)
            status.stop()
            if isinstance(outcome, Failure) and outcome.silent:
                return
            limit = self.platform.message_limit
            text = outcome.text if isinstance(outcome, Failure) else outcome.details(limit)
            await retrying(lambda: shown.reply_text(text, do_quote=True), self.settings.send_retries)
        finally:
            status.stop()

    def _status(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        reply_to: Message,
        *,
        show_progress: bool = True,
        video: bool = False,
    ) -> TelegramStatus:
        s = self.settings
        return TelegramStatus(
            context.bot,
            reply_to,
            limiter=self.limiter,
            show_progress=show_progress,
            delay_s=s.progress_after_s,
            interval_s=s.progress_interval_s,
            action_after_s=s.chat_action_after_s,
            video=video,
        )

    def _request(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        source: Message,
        user_id: int,
        options: VisualizeOptions | str | None,
    ) -> AudioRequest:
        found = audio_file(source)
        assert found is not None
        file_id, meta = found
        return AudioRequest(
            platform=self.platform,
            user_id=user_id,
            chat_id=source.chat_id,
            fetch=functools.partial(download, context.bot, file_id),
            meta=meta,
            options=options,
        )


# --- helpers -------------------------------------------------------------------------------------


def _addressing(msg: Message, bot_username: str, bot_id: int) -> tuple[bool, str]:
    """Whether ``msg`` is meant for this bot, and its text with the command/mention removed.

    Private chats are always addressed. In groups: a command (``/visualize`` or
    ``/visualize@this_bot``; not ``@other_bot``), an @mention of this bot, or a reply to this bot.
    """
    text = msg.text if msg.text is not None else (msg.caption or "")
    entities = msg.parse_entities() if msg.text is not None else msg.parse_caption_entities()
    me = f"@{bot_username}".lower()
    addressed = msg.chat.type == ChatType.PRIVATE
    rest = text
    for entity, value in entities.items():
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            target = value.partition("@")[2]
            if target and target.lower() != bot_username.lower():
                return False, ""
            addressed = True
            rest = rest.replace(value, " ", 1)
        elif entity.type == MessageEntity.MENTION and value.lower() == me:
            addressed = True
            rest = rest.replace(value, " ", 1)
        elif entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
            addressed = True
    replied = msg.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        addressed = True
    return addressed, " ".join(rest.split())

"""Telegram ↔ m2i: turns Telegram updates into :mod:`bot.core` requests and lays out the replies.

Built on python-telegram-bot's ``Application``: handlers for audio, voice notes, video notes, videos
and audio sent as documents, ``/start``, ``/help``, ``/visualize`` (as a reply to audio, options in
the command) and the inline buttons. Everything that isn't Telegram-specific — option parsing,
limits, rate limits, texts, the reply model, button encoding — comes from :mod:`bot.core`.

Telegram specifics handled here:

- groups: answer only when addressed (a command for this bot, an @mention, a reply to the bot);
- progress costs Bot API calls, and every call counts against Telegram's flood limits, so a quick
  answer gets none: the photo is the reply. Only when the answer isn't out after
  ``chat_action_after_s`` (0.5 s) does the chat show "typing…"/"sending a photo…"
  (``sendChatAction``, renewed every few seconds), and only after ``progress_after_s`` (1 s) a
  status message, edited at most once per ``progress_interval_s`` with the newest stage
  (:class:`bot.core.progress.ThrottledStatus`, shared with Discord) and deleted once the photo is
  out. Nothing on the reply path waits for a status update;
- the answer: a photo (a document above Telegram's 10 MB photo limit) with a ≤ 1024-character
  caption and inline buttons, replying to the audio so a button can find the audio again;
- ``file_size`` is checked before ``getFile`` (the public Bot API refuses files over 20 MB);
- :class:`~bot.telegram.ratelimit.TelegramRateLimiter` keeps the bot inside Telegram's limits with
  answers first (progress only gets the budget answers leave) and retries requests answered with
  429 after ``retry_after``; one pooled, kept-alive HTTP client carries every call; the polling
  loop survives network errors and timeouts (PTB's retry loop, logged as one line);
- the token only ever reaches PTB; logs are scrubbed by :mod:`bot.core.redact`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, FileSizeLimit
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.core import messages, redact
from bot.core.actions import ActionExpiredError, ActionKind, decode_action, encode_action, options_for
from bot.core.errors import rejected_token, require_token, unreachable
from bot.core.limits import TELEGRAM_DOWNLOAD_LIMIT_BYTES, AudioMeta, Platform
from bot.core.messages import BotStage
from bot.core.options import options_help
from bot.core.progress import ThrottledStatus
from bot.core.reply import TELEGRAM_CAPTION_LIMIT, TELEGRAM_MESSAGE_LIMIT, Reply
from bot.core.service import AudioRequest, BotService, Failure, Status
from bot.telegram.ratelimit import Priority, TelegramRateLimiter
from bot.telegram.settings import TelegramSettings
from m2i_engine.errors import TooLargeError
from m2i_engine.options import VisualizeOptions

__all__ = ["TelegramBot", "TelegramStatus", "build_application", "create_platform", "telegram_platform"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Telegram refuses photos above this size; larger images go out as documents
PHOTO_LIMIT_BYTES = 10_000_000
#: a chat action shows for about 5 s; renew it a little before it fades
CHAT_ACTION_EVERY_S = 4.5
VISUALIZE_COMMANDS = ("visualize", "m2i")


def telegram_platform(settings: TelegramSettings) -> Platform:
    """The public Bot API hands bots files up to 20 MB; a local-mode server has no such limit."""
    if settings.local_mode:
        return Platform("telegram", max_download_bytes=None)
    return Platform("telegram", max_download_bytes=min(TELEGRAM_DOWNLOAD_LIMIT_BYTES,
                                                       int(FileSizeLimit.FILESIZE_DOWNLOAD)),
                    too_large_hint=messages.TELEGRAM_TOO_LARGE_HINT)


AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def build_application(settings: TelegramSettings, service: BotService) -> AnyApplication:
    """A ready-to-start PTB ``Application`` with m2i's handlers, for ``settings`` and ``service``."""
    token = require_token(settings.token, "M2I_TELEGRAM_TOKEN")
    redact.install(token)
    limiter = rate_limiter(settings)
    pool = settings.connection_pool_size
    request = HTTPXRequest(  # one pool for every call and download; a burst waits for a connection
        connection_pool_size=pool, read_timeout=30.0, media_write_timeout=60.0, pool_timeout=10.0,
        httpx_kwargs={"limits": httpx.Limits(max_connections=pool, max_keepalive_connections=pool,
                                             keepalive_expiry=settings.keepalive_s)})
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .local_mode(settings.local_mode)
        .rate_limiter(limiter)
        .concurrent_updates(settings.concurrent_updates)
        .request(request)
        .build()
    )
    TelegramHandlers(service, settings, limiter).register(app)
    return app


def rate_limiter(settings: TelegramSettings) -> TelegramRateLimiter:
    """Telegram's flood limits as ``settings`` state them, answers first."""
    return TelegramRateLimiter(overall_per_second=settings.overall_per_second,
                               chat_per_second=settings.chat_per_second,
                               group_per_minute=settings.group_per_minute,
                               max_retries=settings.retries_on_429)


class TelegramBot:
    """The Telegram platform for :mod:`bot.runner`: start polling, stop cleanly."""

    name = "telegram"

    def __init__(self, service: BotService, settings: TelegramSettings | None = None) -> None:
        self.settings = settings or TelegramSettings()
        self.application = build_application(self.settings, service)

    async def start(self) -> None:
        app = self.application
        try:
            await app.initialize()  # getMe: checks the token and the connection once, before polling
        except InvalidToken as exc:
            raise rejected_token("Telegram", "M2I_TELEGRAM_TOKEN", "@BotFather") from exc
        except NetworkError as exc:
            raise unreachable("the Telegram Bot API", self.settings.base_url) from exc
        if self.settings.register_commands:
            try:
                await app.bot.set_my_commands(list(messages.COMMANDS.items()))
            except TelegramError as exc:
                log.warning("could not publish the command list: %s", exc)
        assert app.updater is not None
        await app.updater.start_polling(
            timeout=int(self.settings.poll_timeout_s),
            allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
            drop_pending_updates=self.settings.drop_pending_updates,
            bootstrap_retries=-1,
            error_callback=_on_polling_error,
        )
        await app.start()
        log.info("Telegram bot @%s is polling", app.bot.username)

    async def stop(self) -> None:
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()


def create_platform(service: BotService) -> TelegramBot:
    """Factory used by :mod:`bot.runner` (settings from the environment)."""
    return TelegramBot(service)


# --- handlers ------------------------------------------------------------------------------------


class TelegramHandlers:
    """The PTB callbacks; each translates one kind of update and hands it to :class:`BotService`."""

    def __init__(self, service: BotService, settings: TelegramSettings,
                 limiter: TelegramRateLimiter | None = None) -> None:
        self.service = service
        self.settings = settings
        self.limiter = limiter
        self.platform = telegram_platform(settings)

    def register(self, app: AnyApplication) -> None:
        media = (filters.AUDIO | filters.VOICE | filters.VIDEO_NOTE | filters.VIDEO | filters.Document.ALL)
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
            text = messages.help_text(options_help(), in_groups=messages.TELEGRAM_GROUPS_HELP)
            await update.effective_message.reply_text(text, do_quote=False)

    async def on_visualize_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/visualize [options]`` as a reply to a message with audio."""
        msg = update.effective_message
        if msg is None or msg.from_user is None:
            return
        _, options_text = _addressing(msg, context.bot.username, context.bot.id)
        source = msg.reply_to_message
        if source is None or _media(source) is None:
            await msg.reply_text(messages.NEEDS_AUDIO_REPLY)
            return
        await self._visualize(context, source=source, status_to=msg, user_id=msg.from_user.id,
                              options=options_text)

    # --- messages -------------------------------------------------------------------------------

    async def on_media(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Audio sent to the bot; options in the caption. In groups only when addressed."""
        msg = update.effective_message
        if msg is None or msg.from_user is None or _media(msg) is None:
            return
        addressed, options_text = _addressing(msg, context.bot.username, context.bot.id)
        if not addressed:
            log.debug("ignoring audio in chat %s: not addressed to the bot", msg.chat_id)
            return
        await self._visualize(context, source=msg, status_to=msg, user_id=msg.from_user.id,
                              options=options_text)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain text: options for the audio it replies to, or a hint. In groups only when addressed."""
        msg = update.effective_message
        if msg is None or msg.from_user is None:
            return
        addressed, options_text = _addressing(msg, context.bot.username, context.bot.id)
        if not addressed:
            return
        source = msg.reply_to_message
        if source is not None and _media(source) is not None:
            await self._visualize(context, source=source, status_to=msg, user_id=msg.from_user.id,
                                  options=options_text)
        else:
            await msg.reply_text(messages.NEEDS_AUDIO_REPLY)

    # --- buttons --------------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Re-roll, variations or prompt & tags; the audio is the message the image replies to."""
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
        if shown is None or source is None or _media(source) is None:
            await query.answer(messages.SOURCE_GONE, show_alert=True)
            return
        await query.answer({ActionKind.reroll: messages.BUTTON_REROLL, ActionKind.variations:
                            messages.BUTTON_VARIATIONS}.get(action.kind, messages.BUTTON_PROMPT) + "…")
        options = options_for(action, variations=self.service.settings.variations)
        if action.kind is ActionKind.prompt:
            await self._describe(context, source=source, shown=shown, user_id=query.from_user.id,
                                 options=options)
        else:
            await self._visualize(context, source=source, status_to=shown, user_id=query.from_user.id,
                                  options=options)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        err = context.error
        log.error("error while handling an update: %s: %s", type(err).__name__, err,
                  exc_info=(type(err), err, err.__traceback__) if err is not None else None)
        if isinstance(update, Update) and update.effective_chat is not None:
            with contextlib.suppress(TelegramError):
                await context.bot.send_message(update.effective_chat.id, messages.internal_error_text())

    # --- the request path -----------------------------------------------------------------------

    async def _visualize(self, context: ContextTypes.DEFAULT_TYPE, *, source: Message, status_to: Message,
                         user_id: int, options: VisualizeOptions | str | None) -> None:
        request = self._request(context, source, user_id, options)
        status = self._status(context, status_to)
        try:
            outcome = await self.service.visualize(request, progress=status.update)
            status.stop()  # no progress edit may start while the answer is on its way
            if isinstance(outcome, Failure):
                await (status.remove() if outcome.silent else status.fail(outcome.text))
                return
            try:
                await self._send_reply(source, outcome)
            except TelegramError as exc:
                log.error("[%s] could not send the image: %s", request.request_id, exc)
                await status.fail(messages.internal_error_text())
                return
            await status.remove()
        finally:
            status.stop()

    async def _describe(self, context: ContextTypes.DEFAULT_TYPE, *, source: Message, shown: Message,
                        user_id: int, options: VisualizeOptions) -> None:
        request = self._request(context, source, user_id, options)
        status = self._status(context, shown, show_progress=False)
        try:
            outcome = await self.service.describe(request, progress=status.update)
            status.stop()
            if isinstance(outcome, Failure) and outcome.silent:
                return
            text = outcome.text if isinstance(outcome, Failure) else outcome.details(TELEGRAM_MESSAGE_LIMIT)
            await _retrying(lambda: shown.reply_text(text, do_quote=True), self.settings.send_retries)
        finally:
            status.stop()

    def _status(self, context: ContextTypes.DEFAULT_TYPE, reply_to: Message, *,
                show_progress: bool = True) -> TelegramStatus:
        s = self.settings
        return TelegramStatus(context.bot, reply_to, limiter=self.limiter, show_progress=show_progress,
                              delay_s=s.progress_after_s, interval_s=s.progress_interval_s,
                              action_after_s=s.chat_action_after_s)

    def _request(self, context: ContextTypes.DEFAULT_TYPE, source: Message, user_id: int,
                 options: VisualizeOptions | str | None) -> AudioRequest:
        found = _media(source)
        assert found is not None
        file_id, meta = found
        bot = context.bot

        async def fetch() -> bytes:
            try:
                tg_file = await bot.get_file(file_id)
            except BadRequest as exc:
                if "too big" in exc.message.lower():
                    raise TooLargeError(messages.too_large(TELEGRAM_DOWNLOAD_LIMIT_BYTES)) from exc
                raise
            return bytes(await tg_file.download_as_bytearray(read_timeout=120))

        return AudioRequest(platform=self.platform, user_id=user_id, chat_id=source.chat_id, fetch=fetch,
                            meta=meta, options=options)

    async def _send_reply(self, source: Message, reply: Reply) -> None:
        retries = self.settings.send_retries
        if len(reply.images) > 1:
            captions = [reply.text(TELEGRAM_CAPTION_LIMIT, with_prompt=False)] + [
                messages.variation_caption(i + 1, img.seed) for i, img in enumerate(reply.images) if i]
            media = [InputMediaPhoto(img.png, caption=caption)
                     for img, caption in zip(reply.images, captions, strict=True)]
            await _retrying(lambda: source.reply_media_group(media, do_quote=True), retries)
            return
        image = reply.images[0]
        caption = reply.text(TELEGRAM_CAPTION_LIMIT)
        markup = _keyboard(reply)
        if len(image.png) > PHOTO_LIMIT_BYTES:
            await _retrying(lambda: source.reply_document(image.png, filename=f"m2i-{image.seed}.png",
                                                          caption=caption, reply_markup=markup,
                                                          do_quote=True), retries)
        else:
            await _retrying(lambda: source.reply_photo(image.png, caption=caption, reply_markup=markup,
                                                       do_quote=True), retries)


# --- helpers -------------------------------------------------------------------------------------


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

    def __init__(self, bot: ExtBot[Any], reply_to: Message, *, limiter: TelegramRateLimiter | None = None,
                 show_progress: bool = True, delay_s: float = 1.0, interval_s: float = 1.0,
                 action_after_s: float = 0.5) -> None:
        super().__init__(interval_s=interval_s, delay_s=delay_s)
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
            action = ChatAction.UPLOAD_PHOTO if status.stage in (BotStage.drawing, BotStage.sending) else (
                ChatAction.TYPING)
            if action != self.action:
                self.action = action
                self._action_changed.set()
            if self._ticker is None:
                self._ticker = asyncio.create_task(self._tick(time.monotonic() + self.action_after_s),
                                                   name="m2i-chat-action")
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
                await self.bot.delete_message(self.chat_id, self.message.message_id,
                                              rate_limit_args=Priority.CLEANUP)
            except TelegramError as exc:
                log.debug("could not delete the status message: %s", exc)

    async def fail(self, text: str) -> None:
        """Show ``text`` (an error the user must see) in the status message if there is one, else reply."""
        await self.close()
        if self.message is not None:
            try:
                await self.bot.edit_message_text(text, chat_id=self.chat_id,
                                                 message_id=self.message.message_id)
                return
            except TelegramError as exc:
                if isinstance(exc, BadRequest) and "not modified" in exc.message:
                    return
                log.info("could not show the error in the status message (%s): replying instead", exc)
        await _retrying(lambda: self.reply_to.reply_text(text, do_quote=True), 2)

    # --- ThrottledStatus ------------------------------------------------------------------------

    async def _show(self, text: str) -> None:
        if self.message is None:
            self.message = await self.bot.send_message(
                self.chat_id, text, message_thread_id=self._thread,
                reply_parameters=ReplyParameters(self.reply_to.message_id, allow_sending_without_reply=True),
                rate_limit_args=Priority.PROGRESS)
        else:
            await self.bot.edit_message_text(text, chat_id=self.chat_id, message_id=self.message.message_id,
                                             rate_limit_args=Priority.PROGRESS)

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
                await self.bot.send_chat_action(self.chat_id, self.action or ChatAction.TYPING,
                                                message_thread_id=self._thread,
                                                rate_limit_args=Priority.PROGRESS)
            except TelegramError as exc:
                log.debug("chat action failed: %s", exc)
            await asyncio.sleep(self.interval_s)  # at most one a second, even when it changes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._action_changed.wait(), CHAT_ACTION_EVERY_S - self.interval_s)


def _media(msg: Message) -> tuple[str, AudioMeta] | None:
    """The file id and metadata of the audio-bearing attachment of ``msg``, if it has one."""
    for kind in ("audio", "voice", "video_note", "video", "document"):
        obj = getattr(msg, kind, None)
        if obj is None:
            continue
        d = obj.to_dict()  # plain JSON values (PTB's duration accessors warn during their migration)
        duration = d.get("duration")
        return obj.file_id, AudioMeta(kind=kind, file_name=d.get("file_name"),  # type: ignore[arg-type]
                                      mime_type=d.get("mime_type"), file_size=d.get("file_size"),
                                      duration_s=float(duration) if duration is not None else None)
    return None


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


def _keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    buttons = [InlineKeyboardButton(b.label, callback_data=encode_action(b.action, max_bytes=64))
               for b in reply.buttons]
    return InlineKeyboardMarkup([buttons[:2], buttons[2:]] if len(buttons) > 2 else [buttons])


async def _retrying(send: Callable[[], Awaitable[T]], retries: int) -> T:
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


def _on_polling_error(exc: TelegramError) -> None:
    """PTB retries polling on its own; one line per failure is enough."""
    log.warning("Telegram polling failed: %s: %s (retrying)", type(exc).__name__, exc)

"""Discord ↔ m2i: the ``/visualize`` command, the Visualize menu, audio sent to the bot, the buttons.

One Cog holds the feature. Each handler turns a Discord event into a :class:`~bot.core.AudioRequest`,
lets :class:`~bot.core.BotService` do the work (limits, rate limits, queue, engine, texts) and lays
out what comes back (:mod:`bot.discord.layout`). Discord specifics handled here:

- interactions are acknowledged at once ("m2i is thinking…", well within Discord's 3 seconds; the
  work starts while it travels), then the response is edited with the progress and finally with
  the answer (:mod:`bot.discord.progress`);
- ``/visualize``'s options are derived from the option model (:mod:`bot.discord.options`); its
  upload is ephemeral, so the song is attached to the answer for the buttons to find;
- audio in a DM, or with a mention of the bot (options in the message text; also as a reply to
  someone's song), is answered with a reply that is edited from progress into the answer;
- the buttons are :class:`ActionButton` dynamic items: the custom id *is* the action
  (:func:`~bot.core.encode_action`), and the song is found again from the message links
  (:func:`~bot.discord.sources.find_source`), so they keep working after a restart. Their progress
  is ephemeral; the new image (or 🎬's video, within the server's upload limit) is a reply to the
  song's message; "prompt & tags" answers ephemerally.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core import (
    DISCORD,
    ActionExpiredError,
    ActionKind,
    AudioRequest,
    BotService,
    Failure,
    Reply,
    VideoReply,
    decode_action,
    encode_action,
    messages,
    options_for,
    options_from_values,
    upscale_button,
)
from bot.discord.layout import reply_embed, reply_files, upload_limit, video_message
from bot.discord.options import option_autocomplete, option_choices, option_descriptions, option_parameters
from bot.discord.progress import InteractionStatus, ReplyStatus, StatusMessage
from bot.discord.settings import DiscordSettings
from bot.discord.sources import audio_attachment, audio_meta, find_source
from m2i_engine.errors import InvalidOptionError
from m2i_engine.options import VisualizeOptions

if TYPE_CHECKING:
    from bot.discord.sources import FetchMessage

__all__ = ["MENU_NAME", "ActionButton", "VisualizeCog", "result_view"]

log = logging.getLogger(__name__)

MENU_NAME = "Visualize"
VISUALIZE_DESCRIPTION = "Hear a song or voice note and draw it (tags: genre, emotion, tempo, key…)"
AUDIO_DESCRIPTION = "The song or voice note: mp3, wav, flac, ogg, opus, m4a, webm or aiff"
#: any m2i action, also one from an older build (answered "this button is too old", not ignored)
ACTION_TEMPLATE = r"m[0-9a-z]{3}\|.+"
_MENTION = re.compile(r"<@!?(\d+)>")
#: message ids remembered so a replayed gateway event is never answered twice
_SEEN_MESSAGES = 2048

Fetch = Callable[[], Awaitable[bytes]]


class ActionButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=ACTION_TEMPLATE):
    """A button under an image. Its custom id is the whole action, so it works after a restart."""

    def __init__(
        self, custom_id: str, *, label: str = "…", style: discord.ButtonStyle = discord.ButtonStyle.secondary
    ) -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=custom_id, style=style))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ActionButton:
        return cls(match.string, label=getattr(item, "label", None) or "…")

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog(VisualizeCog.__cog_name__)  # type: ignore[attr-defined]
        if not isinstance(cog, VisualizeCog):
            log.error("a button was pressed but the %s cog isn't loaded", VisualizeCog.__cog_name__)
            return
        await cog.on_button(interaction, str(self.item.custom_id))


def result_view(reply: Reply) -> discord.ui.View | None:
    """The buttons under an image: re-roll, variations, prompt & tags (and upscale for SD images)."""
    extra = upscale_button(reply)
    buttons = [*reply.buttons, *([extra] if extra is not None else [])]
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for button in buttons:
        style = (
            discord.ButtonStyle.primary
            if button.action.kind is ActionKind.reroll
            else discord.ButtonStyle.secondary
        )
        view.add_item(
            ActionButton(
                encode_action(button.action, max_bytes=DISCORD.button_data_bytes),
                label=button.label,
                style=style,
            )
        )
    return view


class VisualizeCog(commands.Cog, name="Visualize"):
    """Everything m2i does on Discord: one command, one message menu, one listener, the buttons."""

    def __init__(self, bot: commands.Bot, service: BotService, settings: DiscordSettings) -> None:
        self.bot = bot
        self.service = service
        self.settings = settings
        self.menu = app_commands.ContextMenu(name=MENU_NAME, callback=self.visualize_message)
        self._seen: OrderedDict[int, None] = OrderedDict()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)
        self.bot.add_dynamic_items(ActionButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        self.bot.remove_dynamic_items(ActionButton)

    # --- /visualize -----------------------------------------------------------------------------

    @app_commands.command(name="visualize", description=VISUALIZE_DESCRIPTION)
    @app_commands.describe(audio=AUDIO_DESCRIPTION, **option_descriptions())
    @app_commands.choices(**option_choices())
    @app_commands.autocomplete(**option_autocomplete())
    @option_parameters()
    async def visualize(
        self, interaction: discord.Interaction, audio: discord.Attachment, **options: Any
    ) -> None:
        """Acknowledge at once, show progress in the response, answer with the image, tags and buttons."""
        status = self._acknowledge(interaction)
        try:
            chosen = options_from_values(options, base=self.service.defaults)
        except InvalidOptionError as exc:
            await status.fail(messages.error_text(exc))
            return
        kept: list[bytes] = []

        async def fetch() -> bytes:
            data = await audio.read()
            kept.append(data)
            return data

        request = self._request(interaction.user.id, interaction.channel_id, fetch, audio, chosen)
        await self._visualize(
            request,
            status,
            upload_limit=interaction.filesize_limit,
            song=lambda: (kept[0], audio.filename) if kept else None,
        )

    # --- Apps → Visualize on a message ----------------------------------------------------------

    async def visualize_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message menu: draw the message's audio with the bot's default options."""
        attachment = audio_attachment(message.attachments, fallback=True)
        if attachment is None:
            await interaction.response.send_message(messages.NO_AUDIO_IN_MESSAGE, ephemeral=True)
            return
        status = self._acknowledge(interaction)
        request = self._request(
            interaction.user.id, interaction.channel_id, attachment.read, attachment, None
        )
        await self._visualize(request, status, upload_limit=interaction.filesize_limit)

    # --- audio sent to the bot ------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Audio in a DM or with a mention (options in the text), or a mention replying to a song."""
        me = self.bot.user
        if me is None or message.author.bot or not self._first_time(message.id):
            return
        mentioned = any(int(uid) == me.id for uid in _MENTION.findall(message.content))
        replied = message.reference.resolved if message.reference is not None else None
        to_me = isinstance(replied, discord.Message) and replied.author.id == me.id
        if not (message.guild is None or mentioned or (to_me and message.attachments)):
            return
        text = " ".join(_MENTION.sub(" ", message.content).split()) or None
        attachment = audio_attachment(message.attachments, fallback=True)
        if attachment is None and message.reference is not None:
            found = await find_source(message, _fetcher(message.channel))
            attachment = found.attachment if found is not None else None
        if attachment is None:
            await message.reply(DISCORD.how_to, mention_author=False)
            return
        status = ReplyStatus(message, interval_s=self.settings.progress_interval_s)
        request = self._request(message.author.id, message.channel.id, attachment.read, attachment, text)
        await self._visualize(request, status, upload_limit=upload_limit(message.guild))

    # --- buttons --------------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction, custom_id: str) -> None:
        """Re-roll, variations, upscale, video (a new image or a video replying to the song) or prompt &
        tags (ephemeral)."""
        try:
            action = decode_action(custom_id)
        except ActionExpiredError as exc:
            await interaction.response.send_message(messages.error_text(exc), ephemeral=True)
            return
        status = self._acknowledge(interaction, ephemeral=True)
        shown = interaction.message
        source = (
            await find_source(shown, _fetcher(interaction.channel))
            if shown is not None and interaction.channel is not None
            else None
        )
        if source is None:
            await status.fail(messages.SOURCE_GONE)
            return
        options = options_for(action, variations=self.service.settings.variations)
        request = self._request(
            interaction.user.id, interaction.channel_id, source.attachment.read, source.attachment, options
        )
        if action.kind is ActionKind.prompt:
            await self._describe(request, status)
            return
        limit = interaction.filesize_limit
        outcome: Reply | VideoReply | Failure
        if action.kind is ActionKind.video:
            # the reply goes to the channel: the server's limit (an interaction's may be larger)
            request = replace(request, upload_limit=min(limit, upload_limit(interaction.guild)))
            outcome = await self.service.video(request, progress=status.update)
        else:
            outcome = await self.service.visualize(request, progress=status.update)
        if isinstance(outcome, Failure):
            await self._failed(outcome, status)
            return
        await status.close()
        answer = outcome

        def message() -> dict[str, Any]:
            if isinstance(answer, VideoReply):
                return video_message(answer)
            return self._layout(answer, upload_limit=limit, files_key="files")

        try:
            try:
                await source.message.reply(mention_author=False, **message())
            except discord.Forbidden as exc:  # no Send Messages here (e.g. a user-installed app)
                log.info(
                    "[%s] can't reply in the channel (%s): answering in the interaction",
                    request.request_id,
                    exc,
                )
                await interaction.followup.send(**message())
        except discord.HTTPException as exc:
            log.error("[%s] could not answer on Discord: %s", request.request_id, exc)
            await status.fail(messages.internal_error_text())
            return
        await status.remove()

    # --- the request path -----------------------------------------------------------------------

    def _acknowledge(self, interaction: discord.Interaction, *, ephemeral: bool = False) -> InteractionStatus:
        """Send "m2i is thinking…" (Discord wants it within 3 s) without waiting for it to arrive:
        the download and the queue start at once; the status waits for it before its first edit."""
        acknowledged = interaction.response.defer(thinking=True, ephemeral=ephemeral)
        return InteractionStatus(
            interaction, acknowledged=acknowledged, interval_s=self.settings.progress_interval_s
        )

    def _request(
        self,
        user_id: int,
        chat_id: int | None,
        fetch: Fetch,
        attachment: discord.Attachment,
        options: VisualizeOptions | str | None,
    ) -> AudioRequest:
        meta = audio_meta(attachment)
        title = messages.title_for(None, "voice") if meta.kind == "voice" else None
        return AudioRequest(
            platform=DISCORD,
            user_id=user_id,
            chat_id=chat_id or user_id,
            fetch=fetch,
            meta=meta,
            options=options,
            title=title,
        )

    async def _visualize(
        self,
        request: AudioRequest,
        status: StatusMessage,
        *,
        upload_limit: int,
        song: Callable[[], tuple[bytes, str] | None] | None = None,
    ) -> None:
        """Run ``request`` and turn ``status`` into the answer (or the error)."""
        try:
            outcome = await self.service.visualize(request, progress=status.update)
            if isinstance(outcome, Failure):
                await self._failed(outcome, status)
                return
            await status.answer(
                **self._layout(outcome, upload_limit=upload_limit, song=song() if song is not None else None)
            )
        except discord.HTTPException as exc:
            log.error("[%s] could not answer on Discord: %s", request.request_id, exc)
            try:
                await status.fail(messages.internal_error_text())
            except discord.HTTPException:
                log.warning("[%s] could not tell the user either", request.request_id)
        finally:
            await status.close()

    async def _describe(self, request: AudioRequest, status: StatusMessage) -> None:
        outcome = await self.service.describe(request, progress=status.update)
        if isinstance(outcome, Failure):
            await self._failed(outcome, status)
        else:
            await status.answer(content=outcome.details(DISCORD.message_limit))

    async def _failed(self, failure: Failure, status: StatusMessage) -> None:
        if failure.silent:
            await status.remove()
        else:
            await status.fail(failure.text)

    def _layout(
        self,
        reply: Reply,
        *,
        upload_limit: int,
        song: tuple[bytes, str] | None = None,
        files_key: str = "attachments",
    ) -> dict[str, Any]:
        """Embed, files and buttons for ``reply``; without buttons if its song could not travel along."""
        files = reply_files(reply, limit_bytes=upload_limit, audio=song)
        findable = song is None or files.audio_attached
        return {
            "embed": reply_embed(reply, image=files.shown),
            files_key: files.files,
            "view": result_view(reply) if findable else None,
        }

    def _first_time(self, message_id: int) -> bool:
        if message_id in self._seen:
            return False
        self._seen[message_id] = None
        while len(self._seen) > _SEEN_MESSAGES:
            self._seen.popitem(last=False)
        return True


def _fetcher(channel: Any) -> FetchMessage:
    """``channel.fetch_message``, or a fetch that finds nothing where messages can't be read."""
    fetch = getattr(channel, "fetch_message", None)
    if fetch is not None:
        return fetch  # type: ignore[no-any-return]

    async def nothing(message_id: int) -> discord.Message:
        raise LookupError(f"messages of {type(channel).__name__} can't be fetched")

    return nothing

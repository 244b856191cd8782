"""Whole Discord conversations: the unmodified discord.py bot against the local Discord, real engine.

Each test plays users (``tests/fakes/discord_server.py``: gateway, REST and CDN on 127.0.0.1) who
run ``/visualize`` with an attachment, pick Apps → Visualize on a message, mention the bot with a
song, send a voice message in a DM or press the buttons under an image — and checks what the bot
answered and which Discord calls it made: acknowledgements within 3 s, progress edits, downloads
(or none, for files refused from their metadata), retries after 429, gateway reconnects. Nothing is
mocked: discord.py speaks HTTP and WebSocket to the fake and the engine really listens and draws
(short synthetic songs, 256-pixel images).

``M2I_WRITE_TRANSCRIPTS=1 pytest tests/test_discord_bot.py -k transcript`` rewrites
``docs/transcripts/discord.md`` from a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from PIL import Image
from pydantic import SecretStr

pytest.importorskip("discord")

from bot.core import (
    DISCORD,
    Action,
    ActionKind,
    BotService,
    BotSettings,
    Reply,
    ReplyButton,
    ReplyImage,
    decode_action,
    messages,
    options_for,
    options_from_values,
)
from bot.core.redact import redact
from bot.core.reply import tag_lines
from bot.discord.app import DiscordBot
from bot.discord.cog import MENU_NAME, result_view
from bot.discord.options import SLASH_EXCLUDED, complete_terms
from bot.discord.settings import DiscordSettings
from bot.runner import run_platforms
from bot.telegram.app import TelegramBot
from bot.telegram.settings import TelegramSettings
from m2i_engine.config import Settings
from m2i_engine.engine import Engine
from m2i_engine.errors import InvalidOptionError, VideoTooLargeError
from m2i_engine.options import MAX_SEED, Aspect, Backend, Style, VisualizeOptions
from m2i_engine.synth import SongSpec, render_song
from tests.audiofiles import encode
from tests.fakes.media import probe_mp4
from tests.fakes.telegram_server import FakeTelegramServer
from tests.fakes.telegram_server import telegram_server as telegram_server

if TYPE_CHECKING:
    from tests.fakes.discord_server import BotAction, FakeDiscord, InteractionRecord

pytest_plugins = ["tests.fakes.discord_server"]  # the fake_discord fixture
# PTB 22 warns about its own int → timedelta migration (the runner test starts the Telegram bot too)
pytestmark = pytest.mark.filterwarnings(
    "ignore::telegram.warnings.PTBDeprecationWarning", "ignore:'audioop' is deprecated:DeprecationWarning"
)

REPO = Path(__file__).resolve().parents[1]
WEBHOOK_EDIT = "PATCH /webhooks/{application_id}/{interaction_token}/messages/{message_id}"
FOLLOWUP = "POST /webhooks/{application_id}/{interaction_token}"
WAIT_S = 30.0


@functools.cache
def song(fmt: str = "opus", *, bpm: float = 120.0, seed: int = 0) -> bytes:
    """A 6 s synthetic song as the bytes of a ``fmt`` file (opus wants a 24 kHz source)."""
    sr = 24_000 if fmt in ("opus", "webm") else 22_050
    return encode(render_song(SongSpec(bpm=bpm, duration_s=6.0, sr=sr, seed=seed)), sr, fmt)


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(Settings(workers=2)) as eng:
        yield eng


def service_for(engine: Engine, **overrides: Any) -> BotService:
    """Images and videos as small as the engine makes them (256 px; videos at 15 fps), so each takes
    seconds to draw."""
    return BotService(
        engine,
        BotSettings(
            **{
                "image_size": 256,
                "user_burst": 20,
                "chat_burst": 40,
                "video_size": 256,
                "video_fps": 15,
                **overrides,
            }
        ),
    )


@pytest_asyncio.fixture
async def service(engine: Engine) -> BotService:
    return service_for(engine)


def make_bot(fake: FakeDiscord, service: BotService, **settings: Any) -> DiscordBot:
    ds = DiscordSettings(**{"token": SecretStr(fake.token), "progress_interval_s": 0, **settings})
    return DiscordBot(service, ds, guild_ready_timeout=0.05)


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, service: BotService, **settings: Any) -> AsyncIterator[DiscordBot]:
    """A bot logged in to the fake (commands synced, gateway ready) for the duration of the block."""
    bot = make_bot(fake, service, **settings)
    async with fake.run_client(bot.client):
        yield bot


async def answer_to(fake: FakeDiscord, rec: InteractionRecord) -> dict[str, Any]:
    """The interaction's response once it carries the image (current state of the message)."""
    action = await fake.wait_for(
        lambda a: a.interaction is rec and a.kind == "webhook_edit" and bool(a.embeds), timeout=WAIT_S
    )
    return fake.message(action)


async def reply_to(fake: FakeDiscord, message: dict[str, Any], *, image: bool = True) -> dict[str, Any]:
    """The bot's reply to ``message`` once it is final (with an image, or any text when not ``image``)."""

    def final(a: BotAction) -> bool:
        m = a.message
        if (
            m is None
            or a.kind not in ("message", "message_edit")
            or m.get("message_reference", {}).get("message_id") != message["id"]
        ):
            return False
        return bool(m["embeds"]) if image else bool(m["content"]) and not _is_progress(m["content"])

    return fake.message(await fake.wait_for(final, timeout=WAIT_S))


def readable(fake: FakeDiscord, start: int) -> Any:
    """The transcript from item ``start`` on, as a person follows it: what users did and what the bot
    sent (requests only), without the gateway's echoes of the bot's own messages."""
    from tests.fakes.discord_server import GatewayFrame, HttpExchange, Transcript

    out = Transcript()
    for item in fake.transcript[start:]:
        if isinstance(item, HttpExchange):
            out.append(dataclasses.replace(item, response_json=None))
        elif isinstance(item, GatewayFrame):
            author = (item.d or {}).get("author") or {} if isinstance(item.d, dict) else {}
            if item.t == "INTERACTION_CREATE" or (item.t == "MESSAGE_CREATE" and not author.get("bot")):
                out.append(item)
        else:
            out.append(item)
    return out


def _is_progress(text: str) -> bool:
    return text in {messages.progress_text(s) for s in messages.BotStage} or "queue" in text


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Button label → custom id."""
    return {c["label"]: c["custom_id"] for row in message["components"] for c in row["components"]}


def fields(message: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def bot_messages(fake: FakeDiscord, channel: Any) -> list[dict[str, Any]]:
    """What everyone in ``channel`` sees from the bot (ephemeral messages left out)."""
    return [
        m
        for m in fake.messages_in(channel)
        if m["author"]["id"] == fake.bot_user["id"] and not m["flags"] & 64
    ]


def with_image(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in msgs if any(a["filename"].endswith(".png") for a in m["attachments"])]


# --- a song in, a picture out ----------------------------------------------------------------------


async def test_slash_command_is_deferred_then_answered_with_image_tags_and_buttons(
    fake_discord: FakeDiscord, service: BotService
) -> None:
    fake, data = fake_discord, song(bpm=128)
    async with running(fake, service):
        rec = fake.user_invokes_slash(
            "visualize",
            {"style": "neon", "seed": 42, "aspect": "9:16"},
            attachment=(data, "groove.ogg", "audio/ogg"),
        )
        latency = await rec.wait_acknowledged()
        answer = await answer_to(fake, rec)
        analysis = await service.engine.analyze(data)

    assert rec.ack_type == 5 and latency < 3.0  # "m2i is thinking…" within Discord's window
    progress = [a.payload.get("content") for a in rec.actions if a.kind == "webhook_edit" and not a.files]
    assert any("Listening" in (p or "") for p in progress) and any("Drawing" in (p or "") for p in progress)
    assert int(answer["id"]) == rec.original_message_id and answer["content"] == ""
    png, audio = answer["attachments"]
    assert (png["filename"], audio["filename"]) == ("m2i-42.png", "groove.ogg")
    assert png_size(fake.cdn_file(png)) == (144, 256)  # 9:16 at the bot's 256-pixel size
    assert fake.cdn_file(audio) == data  # the song travels with the answer: the buttons find it there
    embed = answer["embeds"][0]
    assert embed["title"] == "🎵 groove.ogg" and embed["image"]["url"] == png["url"]
    assert fields(answer) == {t.label: t.value for t in tag_lines(analysis.tags)}  # the engine's tags
    bpm = float(fields(answer)[messages.LABELS["tempo"]].split()[0])
    assert abs(bpm - 128) <= 2
    assert "seed 42" in embed["footer"]["text"] and "style neon" in embed["footer"]["text"]
    assert embed["description"].startswith(messages.LABELS["prompt"])
    ids = buttons(answer)
    assert list(ids) == [
        messages.BUTTON_REROLL,
        messages.BUTTON_VARIATIONS,
        messages.BUTTON_PROMPT,
        messages.BUTTON_VIDEO,
    ]
    assert all(len(cid) <= 100 for cid in ids.values())
    action = decode_action(ids[messages.BUTTON_REROLL])
    assert action.seed == 42 and action.options.style is Style.neon and action.options.aspect is Aspect.story
    assert fake.dangling_loading_messages() == [] and not fake.unhandled_requests
    assert len(bot_messages(fake, "general")) == 1


async def test_command_sync_registers_options_derived_from_the_option_model(
    fake_discord: FakeDiscord, service: BotService
) -> None:
    async with running(fake_discord, service):
        pass
    cmd = fake_discord.registered_command("visualize", guild=False)
    opts = {o["name"]: o for o in cmd["options"]}
    model = VisualizeOptions.model_fields
    assert list(opts) == ["audio", *(n for n in model if n not in SLASH_EXCLUDED)]
    assert opts["audio"]["type"] == 11 and opts["audio"]["required"] is True
    for name, enum in (("style", Style), ("aspect", Aspect), ("backend", Backend)):
        assert [c["value"] for c in opts[name]["choices"]] == [m.value for m in enum]
        assert opts[name]["description"] == model[name].description
    assert (opts["seed"]["type"], opts["seed"]["min_value"], opts["seed"]["max_value"]) == (4, 0, MAX_SEED)
    assert opts["prompt"]["max_length"] == 400 and opts["negative"]["autocomplete"] is True
    assert not any(o.get("required") for name, o in opts.items() if name != "audio")
    menu = fake_discord.registered_command(MENU_NAME, type=3, guild=False)
    assert "description" not in menu or not menu["description"]

    focused = SimpleNamespace(data={"options": [{"name": "negative", "focused": True}]})
    suggested = [c.value for c in await complete_terms(focused, "blurry, wat")]  # type: ignore[arg-type]
    assert suggested[0] == "blurry, watermark" and all(s.startswith("blurry, ") for s in suggested)
    assert options_from_values({"style": "neon", "seed": None}, base=service.defaults).style is Style.neon
    with pytest.raises(InvalidOptionError, match="seed"):
        options_from_values({"seed": -1})


async def test_context_menu_on_a_message_with_audio(fake_discord: FakeDiscord, service: BotService) -> None:
    fake = fake_discord
    async with running(fake, service):
        target = fake.user_uploads(
            "music", "bob", song("mp3", bpm=100), "tune.mp3", "audio/mpeg", content="new demo, thoughts?"
        )  # no mention: the bot stays quiet
        rec = fake.user_invokes_context_menu(MENU_NAME, target, user="alice")
        assert await rec.wait_acknowledged() < 3.0
        answer = await answer_to(fake, rec)
        # the buttons under it find the song through the menu's target message
        fake.user_presses_button(answer, buttons(answer)[messages.BUTTON_REROLL])
        again = await reply_to(fake, target)
        plain = fake.user_sends("music", "bob", "just text")
        none = fake.user_invokes_context_menu(MENU_NAME, plain)
        await none.wait_acknowledged()

    assert rec.ack_type == 5 and answer["embeds"][0]["title"] == "🎵 tune.mp3"
    assert answer["interaction_metadata"]["target_message_id"] == target["id"]
    assert [a["filename"] for a in answer["attachments"]] == [
        f"m2i-{decode_action(c).seed}.png" for c in list(buttons(answer).values())[:1]
    ]
    assert again["embeds"][0]["footer"]["text"] != answer["embeds"][0]["footer"]["text"]  # a new seed
    assert none.ack_type == 4 and none.actions[0].message is not None
    assert none.actions[0].message["flags"] & 64 and none.actions[0].content == messages.NO_AUDIO_IN_MESSAGE
    assert len(bot_messages(fake, "music")) == 2  # the menu's answer and the re-roll (the hint is ephemeral)


async def test_mention_with_a_song_and_options_in_the_text(
    fake_discord: FakeDiscord, service: BotService
) -> None:
    fake = fake_discord
    async with running(fake, service):
        upload = fake.user_uploads(
            "general",
            "alice",
            song("wav", bpm=96),
            "demo take 3.wav",
            "audio/x-wav",
            content='style=watercolor seed=7 "a red fox"',
            mention_bot=True,
        )
        answer = await reply_to(fake, upload)
        press = fake.user_presses_button(answer, buttons(answer)[messages.BUTTON_PROMPT])
        details = await fake.wait_for(
            lambda a: a.interaction is press and a.kind == "webhook_edit" and "Negative" in a.content,
            timeout=WAIT_S,
        )

    progress = [
        a.payload.get("content")
        for a in fake.actions
        if a.kind in ("message", "message_edit")
        and a.message is not None
        and a.message["id"] == answer["id"]
        and not a.files
    ]
    assert progress and all(_is_progress(p or "") for p in progress)  # a status reply, edited along
    embed = answer["embeds"][0]
    assert embed["title"] == "🎵 demo_take_3.wav" and "red fox" in embed["description"]
    assert "seed 7" in embed["footer"]["text"] and "style watercolor" in embed["footer"]["text"]
    assert [a["filename"] for a in answer["attachments"]] == ["m2i-7.png"]  # the song is right above
    assert press.ack_type == 5 and details.message is not None and details.message["flags"] & 64
    assert "seed 7" in details.content and "Timbre" in details.content
    assert [m["id"] for m in bot_messages(fake, "general")] == [answer["id"]]  # details are ephemeral


async def test_voice_message_in_a_dm(fake_discord: FakeDiscord, service: BotService) -> None:
    fake = fake_discord
    dm = fake.dm_channel("bob")
    async with running(fake, service):
        voice = fake.user_uploads(
            dm, "bob", song("opus", bpm=110), "voice-message.ogg", "audio/ogg", voice=True
        )
        answer = await reply_to(fake, voice)
        fake.user_sends(dm, "bob", "hello?")
        hint = await fake.wait_for(lambda a: a.kind == "message" and a.content == DISCORD.how_to)

    assert voice["flags"] & 8192 and voice["attachments"][0]["waveform"]
    assert answer["embeds"][0]["title"] == messages.title_for(None, "voice")
    assert abs(float(fields(answer)[messages.LABELS["tempo"]].split()[0]) - 110) <= 2
    assert hint.channel_id == int(dm["id"])


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "ctype", "downloaded"),
    [
        (b"verse 1: la la la\n" * 20, "lyrics.txt", "text/plain", False),
        (b"this is not really an mp3 file at all" * 50, "song.mp3", "audio/mpeg", True),
    ],
)
async def test_not_audio_gets_the_friendly_text(
    fake_discord: FakeDiscord, service: BotService, data: bytes, name: str, ctype: str, downloaded: bool
) -> None:
    fake = fake_discord
    async with running(fake, service):
        upload = fake.user_uploads("general", "alice", data, name, ctype, mention_bot=True)
        answer = await reply_to(fake, upload, image=False)

    assert answer["content"].startswith("⚠️") and "audio" in answer["content"]
    assert "Traceback" not in answer["content"] and not answer["embeds"] and not answer["components"]
    assert bool(fake.actions_of("cdn_download")) is downloaded  # metadata first; sniffing has the last word


async def test_oversize_attachment_is_refused_before_any_download(
    fake_discord: FakeDiscord, service: BotService
) -> None:
    fake = fake_discord
    async with running(fake, service):
        rec = fake.user_invokes_slash("visualize", attachment=(bytes(30_000_000), "album.wav", "audio/x-wav"))
        await rec.wait_acknowledged()
        refused = await fake.wait_for(
            lambda a: a.interaction is rec and "too big" in a.content, timeout=WAIT_S
        )

    assert "30 MB" in refused.content and "Traceback" not in refused.content
    assert fake.actions_of("cdn_download") == []  # refused from the attachment's size alone
    assert fake.dangling_loading_messages() == []


# --- buttons -------------------------------------------------------------------------------------


async def test_buttons_keep_working_after_a_restart(fake_discord: FakeDiscord, service: BotService) -> None:
    fake = fake_discord
    async with running(fake, service):
        rec = fake.user_invokes_slash(
            "visualize", {"seed": 42, "style": "minimal"}, attachment=(song(bpm=124), "loop.ogg", "audio/ogg")
        )
        first = await answer_to(fake, rec)
    async with running(fake, service):  # a new process: nothing in memory but the messages
        press = fake.user_presses_button(first, buttons(first)[messages.BUTTON_REROLL])
        assert await press.wait_acknowledged() < 3.0
        second = await reply_to(fake, first)
        fake.user_presses_button(second, buttons(second)[messages.BUTTON_VARIATIONS])
        album = await fake.wait_for(lambda a: a.kind == "message" and len(a.files) == 3, timeout=WAIT_S)
        shown = fake.user_presses_button(second, buttons(second)[messages.BUTTON_PROMPT])
        details = await fake.wait_for(
            lambda a: a.interaction is shown and "Negative" in a.content, timeout=WAIT_S
        )

    seed = decode_action(buttons(second)[messages.BUTTON_REROLL]).seed
    assert seed != 42 and "style minimal" in second["embeds"][0]["footer"]["text"]
    assert fake.cdn_file(second["attachments"][0]) != fake.cdn_file(first["attachments"][0])
    assert press.ack_type == 5 and not press.refused
    assert [f.filename for f in album.files] == [f"m2i-{seed + i}.png" for i in (1, 2, 3)]
    assert album.message is not None and album.message["message_reference"]["message_id"] == first["id"]
    assert f"seed {seed}" in details.content
    assert len(fake.connections) == 2 and fake.dangling_loading_messages() == []


def video_sent(fake: FakeDiscord) -> Any:
    """A predicate: the bot posted a message with an MP4."""
    return lambda a: a.kind == "message" and any(f.filename.endswith(".mp4") for f in a.files)


async def test_video_button_attaches_an_mp4_of_the_song(
    fake_discord: FakeDiscord, service: BotService
) -> None:
    fake = fake_discord
    async with running(fake, service):
        rec = fake.user_invokes_slash(
            "visualize", {"seed": 11, "style": "neon"}, attachment=(song(bpm=124), "loop.ogg", "audio/ogg")
        )
        answer = await answer_to(fake, rec)
        press = fake.user_presses_button(answer, buttons(answer)[messages.BUTTON_VIDEO])
        assert await press.wait_acknowledged() < 3.0
        sent = await fake.wait_for(video_sent(fake), timeout=60)
        await fake.wait_for(lambda a: a.interaction is press and a.kind == "webhook_delete", timeout=WAIT_S)

    assert press.ack_type == 5 and not press.refused
    progress = [a.payload.get("content") for a in press.actions if a.kind == "webhook_edit"]
    assert messages.progress_text(messages.BotStage.drawing, video=True) in progress  # ephemeral progress
    assert sent.message is not None and sent.message["message_reference"]["message_id"] == answer["id"]
    [attachment] = sent.message["attachments"]
    assert (attachment["filename"], attachment["content_type"]) == ("m2i-11.mp4", "video/mp4")
    mp4 = fake.cdn_file(attachment)
    info = probe_mp4(mp4)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (144, 256)  # 9:16 at the bot's 256-pixel video size
    assert abs(info.duration_s - 6.0) < 0.3  # the whole 6 s song
    assert len(mp4) <= 10 * 1024 * 1024  # the fake server has no boosts: Discord's 10 MiB
    assert sent.content.startswith("🎵 loop.ogg") and "seed 11" in sent.content and "144×256" in sent.content
    assert fake.dangling_loading_messages() == [] and not fake.unhandled_requests


async def test_a_video_is_encoded_to_fit_the_server_or_refused_clearly(
    fake_discord: FakeDiscord, service: BotService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose limit is tiny: the bit rate is lowered to fit it, and below what a clip needs the
    user reads why (in chat words, not the CLI's flags)."""
    import discord

    limit = [130_000]
    monkeypatch.setattr(discord.Guild, "filesize_limit", property(lambda _guild: limit[0]))
    fake = fake_discord
    async with running(fake, service):
        rec = fake.user_invokes_slash(
            "visualize", {"seed": 12}, attachment=(song(bpm=110), "loop.ogg", "audio/ogg")
        )
        answer = await answer_to(fake, rec)
        fake.user_presses_button(answer, buttons(answer)[messages.BUTTON_VIDEO])
        fitted = await fake.wait_for(video_sent(fake), timeout=60)
        limit[0] = 20_000
        press = fake.user_presses_button(answer, buttons(answer)[messages.BUTTON_VIDEO])
        refused = await fake.wait_for(
            lambda a: a.interaction is press and a.kind == "webhook_edit" and "too big" in a.content,
            timeout=60,
        )

    mp4 = fitted.file().data
    assert len(mp4) <= 130_000 and probe_mp4(mp4).audio_codec == "aac"
    assert "kbit/s" in fitted.content  # the note says it was encoded down to fit
    assert refused.content == messages.error_text(VideoTooLargeError(messages.video_too_large(20_000)))
    assert "--" not in refused.content
    assert len([a for a in fake.actions if video_sent(fake)(a)]) == 1


async def test_upscale_is_offered_under_stable_diffusion_images_only() -> None:
    opts = VisualizeOptions(size=512, seed=3)
    made = tuple(
        ReplyButton(label, Action(kind, 3, opts))
        for label, kind in (
            (messages.BUTTON_REROLL, ActionKind.reroll),
            (messages.BUTTON_VARIATIONS, ActionKind.variations),
            (messages.BUTTON_PROMPT, ActionKind.prompt),
        )
    )

    def view_of(backend: str) -> list[tuple[str, str]]:
        reply = Reply(
            request_id="r",
            title="t",
            tag_lines=(),
            prompt="p",
            negative_prompt="n",
            style="neon",
            seed=3,
            backend=backend,
            options=opts,
            images=(ReplyImage(b"", 3, 512, 512),),
            buttons=made,
        )
        view = result_view(reply)
        assert view is not None
        return [(item.item.label, item.item.custom_id) for item in view.children]  # type: ignore[attr-defined]

    assert [label for label, _ in view_of("renderer")] == [b.label for b in made]
    sd = view_of("sd")
    assert [label for label, _ in sd] == [*(b.label for b in made), messages.BUTTON_UPSCALE]
    upscaled = options_for(decode_action(sd[-1][1]))
    assert (upscaled.size, upscaled.seed, upscaled.style) == (1024, 3, opts.style)


# --- Discord misbehaving --------------------------------------------------------------------------


async def test_429_on_the_followup_route_still_gives_exactly_one_answer(
    fake_discord: FakeDiscord, service: BotService
) -> None:
    """The answer is an edit of ``@original`` through the interaction's follow-up webhook."""
    fake = fake_discord
    async with running(fake, service, progress_interval_s=60):  # one progress edit, then the answer
        rec = fake.user_invokes_slash("visualize", attachment=(song(), "a.ogg", "audio/ogg"))
        await fake.wait_for(lambda a: a.interaction is rec and a.kind == "webhook_edit", timeout=WAIT_S)
        limit = fake.inject_rate_limit(WEBHOOK_EDIT, retry_after=0.4)
        extra = fake.inject_rate_limit(FOLLOWUP, retry_after=0.4)
        answer = await answer_to(fake, rec)

    edits = [e for e in fake.transcript.http() if e.route == WEBHOOK_EDIT]
    assert [e.status for e in edits] == [200, 429, 200] and limit.hits == 1
    assert extra.hits == 0  # no second message was ever attempted
    assert edits[2].at - edits[1].at >= 0.4  # discord.py waited as told, then sent it once
    assert [m["id"] for m in bot_messages(fake, "general")] == [answer["id"]]
    assert len([a for a in rec.actions if a.kind == "webhook_edit" and a.files and a.ok]) == 1


@pytest.mark.parametrize("mode", ["close", "invalid_session"])
async def test_a_gateway_reconnect_mid_request_still_gives_exactly_one_answer(
    fake_discord: FakeDiscord, service: BotService, mode: str
) -> None:
    fake = fake_discord
    async with running(fake, service):
        upload = fake.user_uploads(
            "general", "alice", song(bpm=132), "live.ogg", "audio/ogg", mention_bot=True
        )
        await fake.wait_for(lambda a: a.kind == "message", timeout=WAIT_S)  # in flight: progress is showing
        await fake.force_reconnect(mode, wait=False)  # type: ignore[arg-type]
        rec = fake.user_invokes_slash(
            "visualize", attachment=(song(bpm=132), "live.ogg", "audio/ogg"), user="bob"
        )  # arrives while the bot is away: delivered after
        await fake.wait_for_handshakes(2)
        first = await reply_to(fake, upload)
        second = await answer_to(fake, rec)
        await asyncio.sleep(0.2)  # room for a duplicate to show up

    assert len(fake.connections) == 2 and fake.connections[1].handshake == (
        "resume" if mode == "close" else "identify"
    )
    assert len(with_image(bot_messages(fake, "general"))) == 2
    assert [m["id"] for m in bot_messages(fake, "general")] == [first["id"], second["id"]]


# --- many users ----------------------------------------------------------------------------------


async def test_two_users_at_once_are_both_served(fake_discord: FakeDiscord, service: BotService) -> None:
    fake = fake_discord
    async with running(fake, service):
        rec = fake.user_invokes_slash("visualize", attachment=(song(bpm=90), "slow.ogg", "audio/ogg"))
        upload = fake.user_uploads(
            "music", "bob", song("mp3", bpm=140), "fast.mp3", "audio/mpeg", mention_bot=True
        )
        a, b = await asyncio.gather(answer_to(fake, rec), reply_to(fake, upload))

    assert abs(float(fields(a)[messages.LABELS["tempo"]].split()[0]) - 90) <= 2
    assert abs(float(fields(b)[messages.LABELS["tempo"]].split()[0]) - 140) <= 3
    assert a["channel_id"] == fake.channel("general")["id"] and b["channel_id"] == fake.channel("music")["id"]


async def test_a_flood_is_limited_while_another_user_is_still_served(
    fake_discord: FakeDiscord, engine: Engine
) -> None:
    fake = fake_discord
    service = service_for(engine, concurrency=1, user_burst=3, user_per_minute=1, max_waiting_per_user=1)
    async with running(fake, service):
        # 1 runs, 1 waits, 1 is over the per-user queue, 2 are over the rate
        flood = [
            fake.user_uploads("general", "alice", song(seed=i), f"take{i}.ogg", "audio/ogg", mention_bot=True)
            for i in range(5)
        ]
        rec = fake.user_invokes_slash(
            "visualize", attachment=(song(seed=9), "mine.ogg", "audio/ogg"), user="bob", channel="music"
        )
        bob = await answer_to(fake, rec)
        await fake.wait_for(lambda a: len(with_image(bot_messages(fake, "general"))) == 2, timeout=WAIT_S)
        await asyncio.sleep(0.2)

    mine = bot_messages(fake, "general")
    texts = [m["content"] for m in mine if not m["embeds"]]
    assert len([t for t in texts if "in progress" in t]) == 1
    assert len([t for t in texts if "faster than I can draw" in t]) == 1, "a flood is told once, not twice"
    assert len(mine) == 4 and {m["message_reference"]["message_id"] for m in mine} < {f["id"] for f in flood}
    order = [m["id"] for m in sorted([*with_image(mine), bob], key=lambda m: m["edited_timestamp"])]
    assert order[1] == bob["id"], "bob goes before alice's second song"
    seen = [a.payload.get("content") or "" for a in rec.actions if a.kind == "webhook_edit"]
    assert any("next in the queue" in s for s in seen)


# --- logs ----------------------------------------------------------------------------------------


async def test_the_token_never_reaches_the_logs(
    fake_discord: FakeDiscord, service: BotService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = fake_discord
    async with running(fake, service):
        upload = fake.user_sends("music", "bob", "", attachments=[(song(), "x.ogg", "audio/ogg")])
        att = dict(upload["attachments"][0])
        att["url"] = att["proxy_url"] = att["url"].split("?")[0]  # an expired CDN link: the download fails
        rec = fake.user_invokes_slash("visualize", {"audio": att})
        failed = await fake.wait_for(
            lambda a: a.interaction is rec and "couldn't download" in a.content, timeout=WAIT_S
        )
        fake.inject_rate_limit(WEBHOOK_EDIT, retry_after=0.1)  # discord.py logs the URL at WARNING
        again = fake.user_invokes_slash("visualize", attachment=(song(), "y.ogg", "audio/ogg"))
        await answer_to(fake, again)
        logging.getLogger("m2i.test").warning("a careless line: %s", fake.token)

    assert failed.content.startswith("🛠") and "download_failed" in caplog.text  # logged with its id…
    assert fake.token not in caplog.text  # …but never the bot token
    assert rec.token not in caplog.text and again.token not in caplog.text  # nor interaction tokens
    assert "rate limited" in caplog.text and "[REDACTED]" in caplog.text


# --- both platforms on one engine, and the transcript for the docs -------------------------------------


async def test_the_runner_serves_telegram_and_discord_on_one_engine(
    fake_discord: FakeDiscord, telegram_server: FakeTelegramServer, engine: Engine
) -> None:
    tg = TelegramSettings(
        token=SecretStr(telegram_server.token),
        base_url=telegram_server.base_url,
        base_file_url=telegram_server.base_file_url,
        poll_timeout_s=5,
    )
    ds = DiscordSettings(token=SecretStr(fake_discord.token), progress_interval_s=0)
    stop = asyncio.Event()
    running_bots = asyncio.create_task(
        run_platforms(
            [lambda s: TelegramBot(s, tg), lambda s: DiscordBot(s, ds, guild_ready_timeout=0.05)],
            engine=engine,
            bot_settings=BotSettings(image_size=256),
            stop=stop,
        )
    )
    await fake_discord.wait_for_handshakes(1)
    user = telegram_server.user("Tess")
    chat = telegram_server.private_chat(user)
    telegram_server.user_sends_audio(chat, user, song(), kind="voice")
    upload = fake_discord.user_uploads("general", "alice", song(), "same.ogg", "audio/ogg", mention_bot=True)
    photo = await telegram_server.wait_for_reply(chat, kind="photo")
    answer = await reply_to(fake_discord, upload)
    stop.set()
    await asyncio.wait_for(running_bots, 10)
    assert "BPM" in photo["caption"] and "BPM" in fields(answer)[messages.LABELS["tempo"]]
    assert fake_discord.connections[-1].closed_at is not None and engine.models is not None


async def test_transcript_of_a_whole_conversation(
    fake_discord: FakeDiscord, service: BotService, tmp_path: Path
) -> None:
    fake = fake_discord
    async with running(fake, service):
        start = len(fake.transcript)
        rec = fake.user_invokes_slash(
            "visualize",
            {"style": "neon", "seed": 42, "prompt": "a red fox"},
            attachment=(song(bpm=124), "night drive.ogg", "audio/ogg"),
        )
        first = await answer_to(fake, rec)
        fake.user_presses_button(first, buttons(first)[messages.BUTTON_REROLL])
        second = await reply_to(fake, first)
        shown = fake.user_presses_button(second, buttons(second)[messages.BUTTON_PROMPT])
        await fake.wait_for(lambda a: a.interaction is shown and "Negative" in a.content, timeout=WAIT_S)
        filmed = fake.user_presses_button(first, buttons(first)[messages.BUTTON_VIDEO])
        video = await fake.wait_for(video_sent(fake), timeout=60)
        await fake.wait_for(lambda a: a.interaction is filmed and a.kind == "webhook_delete", timeout=WAIT_S)
        notes = fake.user_uploads(
            "general", "alice", b"not audio", "notes.txt", "text/plain", mention_bot=True
        )
        await reply_to(fake, notes, image=False)
        await asyncio.sleep(0.1)
        conversation = readable(fake, start)

    out_dir = REPO / "docs" / "transcripts" if os.environ.get("M2I_WRITE_TRANSCRIPTS") == "1" else tmp_path
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "discord-first-image.png").write_bytes(fake.cdn_file(first["attachments"][0]))
    (out_dir / "discord-video.mp4").write_bytes(video.file().data)
    path = conversation.write_markdown(
        out_dir / "discord.md", title="m2i on Discord — one conversation", max_body=1200
    )
    header = (
        "_Generated by `M2I_WRITE_TRANSCRIPTS=1 pytest tests/test_discord_bot.py -k transcript`: the "
        "unmodified discord.py bot against the local Discord in `tests/fakes/discord_server.py` "
        "(gateway, REST, CDN), with the real engine on a 6 s synthetic song. Alice runs `/visualize` "
        "with options, presses 🎲 Re-roll and 📝 Prompt & tags under the answers and 🎬 Video "
        "under the first (an MP4 of the song, H.264 + AAC, replying to it; encoded to fit the "
        "server's upload limit, here the test's small 144×256 at 15 fps: "
        "[discord-video.mp4](discord-video.mp4)), then mentions the bot with a text file. Left out: "
        "logging in and syncing the commands (before this excerpt), heartbeats, the gateway echoes "
        "of the bot's own messages and the bodies of Discord's "
        "responses; tokens in URLs are masked as in the bot's logs. "
        "The first image: ![first image](discord-first-image.png)_\n\n"
    )
    text = redact(path.read_text(encoding="utf-8"))
    path.write_text(text.replace("\n\n", "\n\n" + header, 1), encoding="utf-8")
    assert "INTERACTION_CREATE" in text and "m2i-42.png" in text and fake.token not in text
    assert "m2i-42.mp4" in text
    assert re.search(r"PATCH /api/v10/webhooks/\d+/\S+/messages/@original", text)


async def test_a_token_discord_rejects_is_one_clear_error(
    fake_discord: FakeDiscord, service: BotService
) -> None:
    """The fake answers a wrong token with Discord's real 401; the operator reads a sentence, no traceback."""
    from bot.core.errors import PlatformStartError

    bot = DiscordBot(service, DiscordSettings(token=SecretStr("MTIz.wrong.token")), guild_ready_timeout=0.05)
    rejected = "Discord rejected the bot token in M2I_DISCORD_TOKEN"
    with pytest.raises(PlatformStartError, match=rejected) as err:
        await bot.start()
    assert err.value.exit_code == 3 and "wrong.token" not in str(err.value)
    await bot.stop()

"""Whole Telegram conversations: the unmodified PTB bot against the local Bot API server, real engine.

Each test plays users (``tests/fakes/telegram_server.py``) sending short synthetic songs as voice
notes, audio files, documents and video notes, and checks what the bot answered and which Bot API
calls it made — downloads, retries after 429, polling after dropped connections, group privacy.
Nothing is mocked: PTB speaks HTTP to the fake server and the engine really listens and draws.

``M2I_WRITE_TRANSCRIPTS=1 pytest tests/test_telegram_bot.py -k transcript`` rewrites
``docs/transcripts/telegram.md`` from a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from pydantic import SecretStr
from telegram.error import RetryAfter

from bot.core import BotService, BotSettings, decode_action, messages
from bot.runner import run_platforms
from bot.telegram.app import TelegramBot
from bot.telegram.flood import FloodLimiter, Priority, ProgressDropped
from bot.telegram.settings import TelegramSettings
from m2i_engine.config import Settings
from m2i_engine.engine import Engine
from m2i_engine.synth import SongSpec, render_song
from tests.audiofiles import encode
from tests.fakes.media import probe_mp4
from tests.fakes.telegram_server import FakeChat, FakeTelegramServer, FakeUser
from tests.fakes.telegram_server import telegram_server as telegram_server

# PTB 22 warns about its own int → timedelta migration when it builds a RetryAfter
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
MakeBot = Callable[..., Awaitable[TelegramBot]]
#: progress (chat action, status message) only for a request that takes half a minute
NO_PROGRESS = {"chat_action_after_s": 30.0, "progress_after_s": 30.0}
#: progress from the first moment, paced as in production (the transcript: every request is "slow")
SLOW_REQUEST = {"chat_action_after_s": 0.0, "progress_after_s": 0.0}
#: progress from the first moment, edited as often as the stages change (no 1/s pacing per chat)
PROGRESS = {
    "chat_action_after_s": 0.0,
    "progress_after_s": 0.0,
    "progress_interval_s": 0.0,
    "chat_per_second": 1000.0,
}


#: videos as small as the engine makes them (144×256 at 15 fps): a few seconds to draw, not a minute
SMALL_VIDEO = {"video_size": 256, "video_fps": 15}


def song(fmt: str, *, bpm: float = 120.0, seed: int = 0, duration_s: float = 6.0) -> bytes:
    """A short synthetic song as the bytes of a ``fmt`` file (opus wants a 24 kHz source)."""
    sr = 24_000 if fmt in ("opus", "webm") else 22_050
    return encode(render_song(SongSpec(bpm=bpm, duration_s=duration_s, sr=sr, seed=seed)), sr, fmt)


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(Settings(workers=2)) as eng:
        yield eng


@pytest_asyncio.fixture
async def make_bot(telegram_server: FakeTelegramServer, engine: Engine) -> AsyncIterator[MakeBot]:
    """``await make_bot(telegram={...}, **bot_settings)``: a started bot polling the fake server.

    ``telegram`` overrides :class:`TelegramSettings`; by default the bot shows no progress (the
    request would have to take 30 s), so tests don't depend on how fast this machine draws —
    :data:`PROGRESS` turns it on from the first moment.
    """
    bots: list[TelegramBot] = []

    async def make(*, telegram: dict[str, Any] | None = None, **overrides: Any) -> TelegramBot:
        settings = BotSettings(
            **{"image_size": 256, "user_burst": 20, "chat_burst": 40, **SMALL_VIDEO, **overrides}
        )
        tg = TelegramSettings(
            **{
                "token": SecretStr(telegram_server.token),
                "base_url": telegram_server.base_url,
                "base_file_url": telegram_server.base_file_url,
                "poll_timeout_s": 5,
                **NO_PROGRESS,
                **(telegram or {}),
            }
        )
        bot = TelegramBot(BotService(engine, settings), tg)
        await bot.start()
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        await bot.stop()


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def people(server: FakeTelegramServer, name: str) -> tuple[FakeUser, FakeChat]:
    user = server.user(name)
    return user, server.private_chat(user)


# --- a song in, a picture out ----------------------------------------------------------------------


async def test_voice_note_gets_photo_with_tags_and_buttons(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    ana, chat = people(telegram_server, "Ana")
    voice = telegram_server.user_sends_audio(chat, ana, song("opus"), kind="voice")

    photo = await telegram_server.wait_for_reply(chat, kind="photo")

    assert photo["reply_to_message"]["message_id"] == voice["message_id"]  # buttons find the audio here
    caption = photo["caption"]
    for label in ("Genre", "Emotion", "Tempo", "BPM", "Key", "Loudness", "LUFS", "Mood", "seed", "Prompt"):
        assert label in caption
    assert len(caption.encode("utf-16-le")) // 2 <= 1024
    assert png_size(telegram_server.photo_bytes(photo)) == (256, 256)
    labels = [b["text"] for b in buttons(photo)]
    assert labels == [
        messages.BUTTON_REROLL,
        messages.BUTTON_VARIATIONS,
        messages.BUTTON_PROMPT,
        messages.BUTTON_VIDEO,
    ]
    assert all(len(b["callback_data"].encode()) <= 64 for b in buttons(photo))
    # a quick answer is the progress: no status message, no chat action, nothing to delete — the
    # request costs one message call (and the download)
    await asyncio.sleep(0.2)  # room for a stray progress call to show up
    assert [
        e.method
        for e in telegram_server.calls()
        if e.method != "getUpdates" and e.t_s >= voice_t(telegram_server, voice)
    ] == ["getFile", "download", "sendPhoto"]
    assert [m["message_id"] for m in telegram_server.bot_messages(chat)] == [photo["message_id"]]


def voice_t(server: FakeTelegramServer, message: dict[str, Any]) -> float:
    """When the user sent ``message``, on the fake server's clock."""
    return next(
        e.t_s
        for e in server.transcript
        if e.who == "user"
        and e.method == "sends"
        and e.params["message_id"] == message["message_id"]
        and e.chat_id == message["chat"]["id"]
    )


async def test_a_slow_answer_shows_progress_then_removes_it(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot(telegram=PROGRESS)  # as if every request took longer than progress_after_s
    ana, chat = people(telegram_server, "Ana")
    voice = telegram_server.user_sends_audio(chat, ana, song("opus", seed=3), kind="voice")
    photo = await telegram_server.wait_for_reply(chat, kind="photo")
    assert photo["reply_to_message"]["message_id"] == voice["message_id"]

    deleted = await telegram_server.wait_for_call("deleteMessage")
    status = telegram_server.calls("sendMessage", chat=chat)
    assert len(status) == 1, "one status message, edited along the way"
    status_id = status[0].result["message_id"]
    assert status[0].result["reply_to_message"]["message_id"] == voice["message_id"]
    texts = [e.params["text"] for e in status + telegram_server.calls("editMessageText", chat=chat)]
    assert any("Listening" in t or "Drawing" in t for t in texts)
    assert deleted.params["message_id"] == status_id
    assert deleted.t_s >= telegram_server.calls("sendPhoto")[0].t_s, "removed once the image is out"
    assert {e.params["action"] for e in telegram_server.calls("sendChatAction", chat=chat)} <= {
        "typing",
        "upload_photo",
    }
    assert telegram_server.calls("sendChatAction", chat=chat)
    assert [m["message_id"] for m in telegram_server.bot_messages(chat)] == [photo["message_id"]]


async def test_status_edits_are_coalesced_to_one_per_interval(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot(telegram={**PROGRESS, "progress_interval_s": 60.0})
    bo, chat = people(telegram_server, "Bo")
    telegram_server.user_sends_audio(chat, bo, song("opus", seed=4), kind="voice")
    await telegram_server.wait_for_reply(chat, kind="photo")
    await telegram_server.wait_for_call("deleteMessage")
    # five stages went by, but within one interval: the status message was sent and never edited
    assert len(telegram_server.calls("sendMessage", chat=chat)) == 1
    assert not telegram_server.calls("editMessageText", chat=chat)
    assert len(telegram_server.calls("sendChatAction", chat=chat)) <= 2


async def test_status_edits_keep_the_interval(telegram_server: FakeTelegramServer, make_bot: MakeBot) -> None:
    await make_bot(telegram={**PROGRESS, "progress_interval_s": 0.3})
    cy, chat = people(telegram_server, "Cy")
    telegram_server.user_sends_audio(chat, cy, song("opus", seed=5, duration_s=12.0), kind="voice")
    await telegram_server.wait_for_reply(chat, kind="photo")
    shows = [
        e.t_s for e in telegram_server.calls(chat=chat) if e.method in ("sendMessage", "editMessageText")
    ]
    assert shows and all(b - a >= 0.3 - 0.002 for a, b in itertools.pairwise(shows))


@pytest.mark.parametrize(
    ("kind", "fmt", "file_name", "mime"),
    [
        ("audio", "mp3", "beat.mp3", "audio/mpeg"),
        ("document", "wav", "demo take 3.wav", "audio/x-wav"),
        ("document", "flac", "mixdown.flac", "application/octet-stream"),
        ("video_note", "m4a", None, None),
    ],
)
async def test_other_ways_to_send_audio(
    telegram_server: FakeTelegramServer,
    make_bot: MakeBot,
    kind: str,
    fmt: str,
    file_name: str | None,
    mime: str | None,
) -> None:
    await make_bot()
    ben, chat = people(telegram_server, "Ben")
    telegram_server.user_sends_audio(
        chat,
        ben,
        song(fmt, bpm=100),
        kind=kind,  # type: ignore[arg-type]
        file_name=file_name,
        mime_type=mime,
    )
    photo = await telegram_server.wait_for_reply(chat, kind="photo")
    assert "BPM" in photo["caption"]
    if file_name:
        assert file_name in photo["caption"]  # the title names the file


# --- refusals ------------------------------------------------------------------------------------


async def test_not_audio_by_metadata_is_refused_without_download(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    cai, chat = people(telegram_server, "Cai")
    telegram_server.user_sends_audio(
        chat, cai, b"%PDF-1.7 lyrics", kind="document", file_name="lyrics.pdf", mime_type="application/pdf"
    )
    reply = await telegram_server.wait_for_reply(chat, contains="doesn't look like audio")
    assert "lyrics.pdf" in reply["text"]
    assert not telegram_server.calls("getFile") and not telegram_server.downloads()


@pytest.mark.parametrize("progress", [False, True], ids=["quick", "with-status"])
async def test_bad_file_gets_the_friendly_text(
    telegram_server: FakeTelegramServer, make_bot: MakeBot, progress: bool
) -> None:
    await make_bot(telegram=PROGRESS if progress else None)
    dee, chat = people(telegram_server, "Dee")
    telegram_server.user_sends_audio(
        chat,
        dee,
        b"this is not really an mp3 file at all" * 50,
        kind="audio",
        file_name="song.mp3",
        mime_type="audio/mpeg",
    )
    reply = await telegram_server.wait_for_reply(chat, contains="⚠️")
    assert "audio" in reply["text"] and "Traceback" not in reply["text"]
    assert telegram_server.downloads(), "content sniffing after download has the final word"
    assert not telegram_server.calls("sendPhoto")
    # the error takes the status message's place if there was one; otherwise it is the reply
    assert [m["message_id"] for m in telegram_server.bot_messages(chat)] == [reply["message_id"]]
    sent_error = any("⚠️" in e.params["text"] for e in telegram_server.calls("sendMessage", chat=chat))
    assert sent_error is not progress


async def test_oversize_file_is_refused_before_any_download(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    eli, chat = people(telegram_server, "Eli")
    telegram_server.user_sends_audio(chat, eli, song("mp3"), kind="audio", declared_size=25_000_000)
    reply = await telegram_server.wait_for_reply(chat, contains="too big")
    assert "20 MB" in reply["text"] and "voice note" in reply["text"]
    assert "self-hosted" not in reply["text"] and "--local" not in reply["text"]  # the operator's business
    assert not telegram_server.calls("getFile")
    assert not telegram_server.downloads()


async def test_invalid_caption_option_lists_the_choices(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    fay, chat = people(telegram_server, "Fay")
    telegram_server.user_sends_audio(chat, fay, song("opus"), kind="voice", caption="style=plaid")
    reply = await telegram_server.wait_for_reply(chat, contains="plaid")
    assert "neon" in reply["text"] and "watercolor" in reply["text"]  # choices come from the enum
    assert not telegram_server.downloads()


# --- options and buttons -------------------------------------------------------------------------


async def test_caption_options_are_applied(telegram_server: FakeTelegramServer, make_bot: MakeBot) -> None:
    await make_bot()
    gus, chat = people(telegram_server, "Gus")
    telegram_server.user_sends_audio(
        chat, gus, song("opus"), kind="voice", caption='style=neon seed=42 aspect=9:16 "a red fox"'
    )
    photo = await telegram_server.wait_for_reply(chat, kind="photo")
    assert "seed 42" in photo["caption"] and "style neon" in photo["caption"]
    assert "red fox" in photo["caption"]
    assert png_size(telegram_server.photo_bytes(photo)) == (144, 256)  # 9:16 at size 256
    action = decode_action(buttons(photo)[0]["callback_data"])
    assert action.seed == 42 and action.options.style.value == "neon" and action.options.prompt == "a red fox"


async def test_reroll_prompt_and_variation_buttons(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    hal, chat = people(telegram_server, "Hal")
    voice = telegram_server.user_sends_audio(
        chat, hal, song("opus"), kind="voice", caption="seed=7 style=minimal"
    )
    first = await telegram_server.wait_for_reply(chat, kind="photo")

    telegram_server.user_presses_button(chat, hal, first, label="Re-roll")
    second = await telegram_server.wait_for_reply(chat, kind="photo", after=first["message_id"])
    assert "seed 7" not in second["caption"] and "style minimal" in second["caption"]
    assert telegram_server.photo_bytes(second) != telegram_server.photo_bytes(first)
    assert second["reply_to_message"]["message_id"] == voice["message_id"]  # its buttons work too
    assert telegram_server.calls("answerCallbackQuery")

    telegram_server.user_presses_button(chat, hal, first, label="Prompt")
    details = await telegram_server.wait_for_reply(chat, kind="text", contains="Negative")
    assert details["reply_to_message"]["message_id"] == first["message_id"]
    assert "Prompt:" in details["text"] and "Timbre" in details["text"] and "seed 7" in details["text"]

    telegram_server.user_presses_button(chat, hal, first, label="Variations")
    album = await telegram_server.wait_for_reply(chat, kind="album")
    photos = telegram_server.album(album)
    assert len(photos) == 3
    assert [p["caption"] for p in photos[1:]] == ["Variation 2 · seed 9", "Variation 3 · seed 10"]
    assert "seed 8" in photos[0]["caption"]


async def test_video_button_sends_a_streamable_mp4_of_the_song(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot(telegram=PROGRESS)
    vic, chat = people(telegram_server, "Vic")
    voice = telegram_server.user_sends_audio(
        chat, vic, song("opus"), kind="voice", caption="seed=5 style=neon"
    )
    photo = await telegram_server.wait_for_reply(chat, kind="photo")
    qid = telegram_server.user_presses_button(chat, vic, photo, label="Video")

    video = await telegram_server.wait_for_reply(chat, kind="video", timeout=60)

    assert telegram_server.callback_answers[qid]["text"] == messages.BUTTON_VIDEO + "…"
    assert video["reply_to_message"]["message_id"] == voice["message_id"]  # the song, like every answer
    mp4 = telegram_server.video_bytes(video)
    info = probe_mp4(mp4)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (144, 256)  # 9:16 at the bot's 256-pixel video size
    assert abs(info.duration_s - 6.0) < 0.3 and abs(info.frames - 6 * 15) <= 2  # the whole 6 s song
    assert len(mp4) <= 50_000_000 and video["video"]["file_name"] == "m2i-5.mp4"
    assert (video["video"]["width"], video["video"]["height"], video["video"]["duration"]) == (144, 256, 6)
    sent = telegram_server.calls("sendVideo", ok=True)
    assert len(sent) == 1 and sent[0].params["supports_streaming"] is True
    caption = video["caption"]
    assert caption.startswith("🎙 Your voice note") and "seed 5" in caption and "style neon" in caption
    assert "144×256" in caption and "15 fps" in caption
    # its progress said a video is coming, and went away once it was out
    shown = [
        e.params.get("text")
        for e in telegram_server.calls(chat=chat)
        if e.method in ("sendMessage", "editMessageText")
    ]
    assert messages.progress_text(messages.BotStage.drawing, video=True) in shown
    assert [e.params["action"] for e in telegram_server.calls("sendChatAction")][-1] == "upload_video"
    await telegram_server.wait_for(lambda: len(telegram_server.bot_messages(chat)) == 2)
    assert [m["message_id"] for m in telegram_server.bot_messages(chat)] == [
        photo["message_id"],
        video["message_id"],
    ]


async def test_button_from_an_older_build_is_answered_not_crashed(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    ivy, chat = people(telegram_server, "Ivy")
    telegram_server.user_sends_audio(chat, ivy, song("opus"), kind="voice")
    photo = await telegram_server.wait_for_reply(chat, kind="photo")
    qid = telegram_server.user_presses_button(chat, ivy, photo, data="mzzz|r|1|0")
    await telegram_server.wait_for(lambda: qid in telegram_server.callback_answers)
    assert telegram_server.callback_answers[qid]["text"] == messages.ACTION_EXPIRED


# --- Telegram misbehaving --------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after_and_the_reply_arrives_once(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    jo, chat = people(telegram_server, "Jo")
    telegram_server.inject_fault("sendPhoto", "429", retry_after=1)
    telegram_server.user_sends_audio(chat, jo, song("opus"), kind="voice")
    await telegram_server.wait_for_reply(chat, kind="photo")
    calls = telegram_server.calls("sendPhoto")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].t_s - calls[0].t_s >= 1.0
    assert len([m for m in telegram_server.bot_messages(chat) if "photo" in m]) == 1


async def test_a_5xx_while_sending_the_photo_is_retried(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    kim, chat = people(telegram_server, "Kim")
    telegram_server.inject_fault("sendPhoto", "5xx", status=502)
    telegram_server.user_sends_audio(chat, kim, song("opus"), kind="voice")
    await telegram_server.wait_for_reply(chat, kind="photo")
    assert [c.status for c in telegram_server.calls("sendPhoto")] == [502, 200]


async def test_polling_survives_dropped_connections_and_server_errors(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    telegram_server.inject_fault("getUpdates", "drop")
    telegram_server.inject_fault("getUpdates", "5xx", status=502)
    lee, chat = people(telegram_server, "Lee")
    await telegram_server.wait_for_call("getUpdates", where=lambda e: e.status == 502)
    telegram_server.user_sends_audio(chat, lee, song("opus"), kind="voice")
    await telegram_server.wait_for_reply(chat, kind="photo")
    failed = [c for c in telegram_server.calls("getUpdates") if not c.ok]
    assert [c.status for c in failed] == [0, 502]


# --- many users ----------------------------------------------------------------------------------


async def test_two_users_at_once_both_get_their_replies(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    (mia, chat_a), (ned, chat_b) = people(telegram_server, "Mia"), people(telegram_server, "Ned")
    telegram_server.user_sends_audio(chat_a, mia, song("opus", bpm=90), kind="voice")
    telegram_server.user_sends_audio(chat_b, ned, song("mp3", bpm=140), kind="audio")
    a = await telegram_server.wait_for_reply(chat_a, kind="photo")
    b = await telegram_server.wait_for_reply(chat_b, kind="photo")
    assert a["chat"]["id"] == mia.id and b["chat"]["id"] == ned.id


async def test_a_flood_is_limited_while_another_user_is_still_served(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot(concurrency=1, user_burst=3, user_per_minute=1, max_waiting_per_user=1, telegram=PROGRESS)
    (flo, chat_f), (oli, chat_o) = people(telegram_server, "Flo"), people(telegram_server, "Oli")
    for i in range(5):  # 1 runs, 1 waits, 1 is over the per-user queue, 2 are over the rate
        telegram_server.user_sends_audio(chat_f, flo, song("opus", seed=i), kind="voice")
    telegram_server.user_sends_audio(chat_o, oli, song("opus", seed=9), kind="voice")

    await telegram_server.wait_for_reply(chat_o, kind="photo")
    await telegram_server.wait_for(
        lambda: len([m for m in telegram_server.bot_messages(chat_f) if "photo" in m]) == 2
    )
    texts = [m["text"] for m in telegram_server.bot_messages(chat_f) if "text" in m]
    assert len([t for t in texts if "in progress" in t]) == 1
    assert len([t for t in texts if "faster than I can draw" in t]) == 1, "a flood is told once, not 2×"
    photo_chats = [c.chat_id for c in telegram_server.calls("sendPhoto", ok=True)]
    assert photo_chats == [chat_f.id, chat_o.id, chat_f.id], "Oli goes before Flo's second song"
    assert any(
        "next in the queue" in e.params.get("text", "")
        for e in telegram_server.calls("sendMessage", chat=chat_o)
        + telegram_server.calls("editMessageText", chat=chat_o)
    )


# --- the rate limiter: Telegram's flood limits, answers first ---------------------------------------


class Calls:
    """A stand-in for PTB's request callback: records each call; ``refuse`` answers 429s first."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.refuse: list[float] = []

    async def __call__(self, name: str) -> bool:
        if self.refuse:
            raise RetryAfter(timedelta(seconds=self.refuse.pop(0)))
        self.sent.append((time.monotonic(), name))
        return True

    async def send(
        self,
        limiter: FloodLimiter,
        name: str,
        chat: int,
        priority: Priority | None = None,
        endpoint: str = "sendMessage",
    ) -> Any:
        return await limiter.process_request(self, (name,), {}, endpoint, {"chat_id": chat}, priority)

    @property
    def names(self) -> list[str]:
        return [n for _, n in self.sent]


async def test_flood_limiter_serves_answers_first_and_drops_progress_without_budget() -> None:
    limiter, calls = FloodLimiter(overall_per_second=10, max_retries=0), Calls()
    for i in range(10):  # the whole overall burst, ten users' images at once
        await calls.send(limiter, f"image{i}", chat=100 + i)
    with pytest.raises(ProgressDropped):  # no budget to spare: progress doesn't wait, it's dropped
        await calls.send(limiter, "status", chat=7, priority=Priority.PROGRESS)
    assert limiter.progress_hold_s(7) > 0.3  # …and a status message knows how long to hold its edit
    # a cleanup queued before an answer still goes after it
    cleanup = asyncio.create_task(calls.send(limiter, "delete", chat=8, priority=Priority.CLEANUP))
    await asyncio.sleep(0)
    answer = asyncio.create_task(calls.send(limiter, "image", chat=9))
    await asyncio.gather(cleanup, answer)
    assert calls.names[10:] == ["image", "delete"]
    assert calls.sent[-1][0] - calls.sent[9][0] >= 0.15  # 10 a second: both had to wait for a token
    # calls that name no chat (getFile, answerCallbackQuery) aren't limited
    await limiter.process_request(calls, ("getFile",), {}, "getFile", {"file_id": "x"}, None)
    assert calls.names[-1] == "getFile"


async def test_flood_limiter_paces_progress_per_chat_and_answers_per_group() -> None:
    limiter, calls = FloodLimiter(chat_per_second=1, group_per_minute=3, max_retries=0), Calls()
    # a private chat: progress goes while the chat's budget has room beyond a reserve for answers;
    # a status message takes its budget before it picks the text (many waking at once: none dropped)
    assert limiter.reserve_progress(5) == 0 and limiter.reserve_progress(5) == 0
    assert limiter.reserve_progress(5) > 0.5, "the rest is kept for answers: hold the edit"
    await calls.send(limiter, "typing", chat=5, priority=Priority.PROGRESS)
    await calls.send(limiter, "status", chat=5, priority=Priority.PROGRESS)
    with pytest.raises(ProgressDropped):  # not reserved, no budget: dropped, never queued
        await calls.send(limiter, "edit", chat=5, priority=Priority.PROGRESS)
    await calls.send(limiter, "image", chat=5)  # an answer never waits for a private chat's budget
    assert 1.0 < limiter.progress_hold_s(5) <= 2.0  # but spends it: progress there backs off
    await calls.send(
        limiter, "upload_photo", chat=5, priority=Priority.PROGRESS, endpoint="sendChatAction"
    )  # not a message: the chat's budget doesn't count it
    assert limiter.progress_hold_s(6) == 0  # other chats are not affected
    # a group: 3 a minute; answers wait for it, progress only goes with room to spare
    group = -100123
    await calls.send(limiter, "status", chat=group, priority=Priority.PROGRESS)
    await calls.send(limiter, "image1", chat=group)
    with pytest.raises(ProgressDropped):
        await calls.send(limiter, "edit", chat=group, priority=Priority.PROGRESS)
    await calls.send(limiter, "image2", chat=group)
    third = asyncio.create_task(calls.send(limiter, "image3", chat=group))
    await asyncio.sleep(0.2)
    assert not third.done(), "the group's 3 a minute are spent: the answer waits (~20 s) instead of a 429"
    third.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await third
    await calls.send(limiter, "image", chat=6)  # meanwhile other chats go on


async def test_flood_limiter_retries_after_429_and_pauses_only_that_chat() -> None:
    limiter, calls = FloodLimiter(max_retries=2), Calls()
    calls.refuse = [0.3]
    t0 = time.monotonic()
    sending = asyncio.create_task(calls.send(limiter, "image", chat=5))
    await asyncio.sleep(0.05)
    assert limiter.progress_hold_s(6) > 0, "after a 429, progress everywhere holds off"
    await calls.send(limiter, "other image", chat=6)  # answers in other chats go on
    assert await sending is True
    assert calls.names == ["other image", "image"] and calls.sent[1][0] - t0 >= 0.3
    calls.refuse = [0.05, 0.05, 0.05]
    with pytest.raises(RetryAfter):  # max_retries=2: the third 429 is raised
        await calls.send(limiter, "image", chat=5)


# --- groups and logs -----------------------------------------------------------------------------


async def test_group_privacy_answers_only_when_addressed(
    telegram_server: FakeTelegramServer, make_bot: MakeBot
) -> None:
    await make_bot()
    pat = telegram_server.user("Pat")
    group = telegram_server.group_chat("Studio")
    quiet = telegram_server.user_sends_audio(group, pat, song("opus", seed=1), kind="voice")
    telegram_server.user_sends_text(group, pat, "nice track everyone")
    telegram_server.user_sends_text(group, pat, "/help@some_other_bot")
    telegram_server.user_sends_audio(
        group, pat, song("opus", seed=2), kind="voice", caption="@m2i_test_bot style=watercolor"
    )
    photo = await telegram_server.wait_for_reply(group, kind="photo")
    assert "style watercolor" in photo["caption"]

    telegram_server.user_sends_text(group, pat, "/visualize seed=5", reply_to=quiet)
    second = await telegram_server.wait_for_reply(group, kind="photo", after=photo["message_id"])
    assert second["reply_to_message"]["message_id"] == quiet["message_id"] and "seed 5" in second["caption"]
    # the un-addressed messages got nothing: just the two images
    assert [m["message_id"] for m in telegram_server.bot_messages(group)] == [
        photo["message_id"],
        second["message_id"],
    ]
    assert len(telegram_server.calls("getFile")) == 2


async def test_a_failing_request_logs_no_token(
    telegram_server: FakeTelegramServer, make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await make_bot()
    quinn, chat = people(telegram_server, "Quinn")
    telegram_server.inject_fault("download", "5xx", status=500)
    telegram_server.user_sends_audio(chat, quinn, song("opus"), kind="voice")
    reply = await telegram_server.wait_for_reply(chat, contains="couldn't download")
    assert reply["text"].startswith("🛠")
    assert "download_failed" in caplog.text  # the failure was logged, with its request id…
    secret = telegram_server.token.split(":")[1]
    assert telegram_server.token not in caplog.text and secret not in caplog.text  # …but not the token
    assert "[REDACTED]" in caplog.text  # libraries did try to log URLs with it


async def test_help_and_start(telegram_server: FakeTelegramServer, make_bot: MakeBot) -> None:
    await make_bot()
    rae, chat = people(telegram_server, "Rae")
    telegram_server.user_sends_text(chat, rae, "/help")
    help_msg = await telegram_server.wait_for_reply(chat, kind="text", contains="num_images")
    assert "cinematic" in help_msg["text"]  # option choices come from the model
    telegram_server.user_sends_text(chat, rae, "/visualize style=neon")
    hint = await telegram_server.wait_for_reply(chat, kind="text", contains="Reply to a song")
    assert hint["message_id"] > help_msg["message_id"]
    assert {c["command"] for c in telegram_server.commands} == {"start", "help", "visualize"}


# --- the transcript for the docs -----------------------------------------------------------------


async def test_transcript_of_a_whole_conversation(
    telegram_server: FakeTelegramServer, make_bot: MakeBot, tmp_path: Path
) -> None:
    await make_bot(telegram=SLOW_REQUEST)
    sam, chat = people(telegram_server, "Sam")
    telegram_server.user_sends_text(chat, sam, "/start")
    await telegram_server.wait_for_reply(chat, kind="text", contains="Hi")
    voice = telegram_server.user_sends_audio(
        chat, sam, song("opus", bpm=124), kind="voice", caption='style=neon seed=42 "a red fox"'
    )
    first = await telegram_server.wait_for_reply(chat, kind="photo")
    telegram_server.user_presses_button(chat, sam, first, label="Re-roll")
    second = await telegram_server.wait_for_reply(chat, kind="photo", after=first["message_id"])
    telegram_server.user_presses_button(chat, sam, second, label="Prompt")
    await telegram_server.wait_for_reply(chat, kind="text", contains="Negative")
    telegram_server.user_presses_button(chat, sam, first, label="Video")
    video = await telegram_server.wait_for_reply(chat, kind="video", timeout=60)
    progress = {messages.progress_text(stage, video=True) for stage in messages.BotStage}
    await telegram_server.wait_for(
        lambda: (
            not any(
                m.get("text") in progress
                for m in telegram_server.bot_messages(chat)  # status gone
            )
        )
    )
    telegram_server.user_sends_audio(
        chat, sam, b"not audio", kind="document", file_name="notes.txt", mime_type="text/plain"
    )
    await telegram_server.wait_for_reply(chat, contains="notes.txt")
    assert voice["message_id"] < first["message_id"] < second["message_id"] < video["message_id"]

    out_dir = REPO / "docs" / "transcripts" if os.environ.get("M2I_WRITE_TRANSCRIPTS") == "1" else tmp_path
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "telegram-first-image.png").write_bytes(telegram_server.photo_bytes(first))
    (out_dir / "telegram-video.mp4").write_bytes(telegram_server.video_bytes(video))
    text = telegram_server.render_markdown(
        title="m2i on Telegram — one conversation",
        chats=[chat],
        image_links={first["message_id"]: "telegram-first-image.png"},
    )
    header = (
        "_Generated by `M2I_WRITE_TRANSCRIPTS=1 pytest tests/test_telegram_bot.py -k transcript`: the "
        "unmodified python-telegram-bot bot against the local Bot API server in "
        "`tests/fakes/telegram_server.py`, with the real engine on a 6 s synthetic song. "
        "Times are seconds since the fake server started; `#n` are message ids._\n\n"
        "_The bot is told to treat every request as a slow one (`chat_action_after_s=0`, "
        "`progress_after_s=0`) to show the progress a long song or a Stable Diffusion image gets: "
        '"typing…" and a status message replying to the song, edited as Telegram\'s limits allow '
        "(about once a second per chat; the re-roll was quicker than that and only got "
        '"typing…"), deleted once the image is out. With the default settings an answer ready '
        "within half a second is just the photo replying to the song: no status message, "
        "nothing deleted._\n\n"
        "_🎬 Video under the first image answers with `sendVideo`: an MP4 (H.264 + AAC) of the song "
        "with that image's seed and style, replying to the song like every answer, encoded to fit "
        "the Bot API's 50 MB upload limit; here at the test's small size (144×256, 15 fps): "
        "[telegram-video.mp4](telegram-video.mp4)._\n\n"
    )
    (out_dir / "telegram.md").write_text(text.replace("\n\n", "\n\n" + header, 1))
    assert "sendPhoto" in text and "presses" in text and "sendVideo" in text


async def test_runner_serves_platforms_on_one_shared_engine(
    telegram_server: FakeTelegramServer, engine: Engine
) -> None:
    tg = TelegramSettings(
        token=SecretStr(telegram_server.token),
        base_url=telegram_server.base_url,
        base_file_url=telegram_server.base_file_url,
        poll_timeout_s=5,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_platforms(
            [lambda service: TelegramBot(service, tg)],
            engine=engine,
            bot_settings=BotSettings(image_size=256),
            stop=stop,
        )
    )
    tess, chat = people(telegram_server, "Tess")
    telegram_server.user_sends_audio(chat, tess, song("opus"), kind="voice")
    await telegram_server.wait_for_reply(chat, kind="photo")
    stop.set()
    await asyncio.wait_for(running, 10)
    assert engine.models is not None  # the shared engine stays open for its owner

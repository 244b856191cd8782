"""The platform-neutral bot layer: options, limits, rate limits, fair queue, buttons, replies, service.

Pure parts are tested directly (time is a fake clock, never a sleep — except the progress throttle,
which is about real time and sleeps a few tenths of a second); :class:`BotService` runs the real
engine on short synthetic songs, the way both chat platforms use it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import soundfile as sf

from bot.core import (
    DISCORD,
    Action,
    ActionExpiredError,
    ActionKind,
    AudioMeta,
    AudioRequest,
    BotService,
    BotSettings,
    BotStage,
    Failure,
    FairScheduler,
    Platform,
    Rate,
    RateLimitedError,
    RateLimiter,
    Reply,
    Status,
    UserQueueFullError,
    VideoReply,
    decode_action,
    encode_action,
    label_for,
    messages,
    options_for,
    options_help,
    parse_options,
    redact,
)
from bot.core.limits import check_before_download, download_limit, looks_like_audio
from bot.core.progress import ThrottledStatus
from bot.core.reply import TagLine, tag_lines, utf16_len
from m2i_engine.config import AudioLimits, SDSettings, Settings
from m2i_engine.engine import Engine
from m2i_engine.errors import (
    BusyError,
    CorruptAudioError,
    InvalidOptionError,
    M2IError,
    NotAudioError,
    RequestTimeoutError,
    TooLargeError,
    TooLongError,
)
from m2i_engine.options import MAX_SEED, Aspect, Backend, Style, VisualizeOptions
from m2i_engine.synth import SongSpec, render_song
from m2i_engine.testing import make_tags

# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'style=neon seed=42 aspect=9:16 "a red fox"',
            {"style": Style.neon, "seed": 42, "aspect": Aspect.story, "prompt": "a red fox"},
        ),
        ("--style neon --seed=7 --ar 16x9", {"style": Style.neon, "seed": 7, "aspect": Aspect.wide}),
        ("STYLE=Neon num-images=2 n=3", {"style": Style.neon, "num_images": 3}),
        ("aspect=wide size=512", {"aspect": Aspect.wide, "size": 512}),
        ("“a blue whale” style:watercolor", {"prompt": "a blue whale", "style": Style.watercolor}),
        ("prompt=sunset at sea, golden", {"prompt": "sunset at sea, golden"}),
        ("note:this https://x.y/a=b", {"prompt": "note:this https://x.y/a=b"}),
        ("seed=none", {"seed": None}),
        ("", {}),
    ],
)
def test_parse_options(text: str, expected: dict[str, Any]) -> None:
    opts = parse_options(text)
    for name, value in expected.items():
        assert getattr(opts, name) == value, name


def test_parse_options_keeps_the_bots_defaults() -> None:
    base = VisualizeOptions(size=256, style=Style.minimal)
    assert parse_options("seed=3", base=base) == VisualizeOptions(size=256, style=Style.minimal, seed=3)
    assert parse_options(None, base=base) is base


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("style=plaid", ["plaid", "auto, cover, abstract, neon, watercolor, minimal, cinematic"]),
        ("vibe=chill", ["vibe", "style, prompt, negative, aspect, size, seed, backend, num_images"]),
        ("seed=-1", ["seed", "0 to 4294967295"]),
        ("size=huge", ["size", "256 to 2048"]),
        ("size=4096", ["size", "256 to 2048"]),
        ("aspect=7:3", ["7:3", "1:1, 4:5, 3:4, 9:16, 3:2, 16:9"]),
        ("--style", ["--style needs a value"]),
        ("prompt=" + "x" * 401, ["prompt is too long", "400"]),
    ],
)
def test_bad_options_say_what_is_valid(text: str, says: list[str]) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_options(text)
    for part in says:
        assert part in info.value.message


def test_options_help_has_a_line_per_option() -> None:
    lines = options_help()
    assert [line.split(" — ")[0] for line in lines] == list(VisualizeOptions.model_fields)
    assert any("cinematic" in line for line in lines)


# --- limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "ok"),
    [
        (AudioMeta(kind="voice", mime_type="audio/ogg"), True),
        (AudioMeta(kind="video_note"), True),
        (AudioMeta(kind="document", file_name="x.mp3", mime_type="audio/mpeg"), True),
        (AudioMeta(kind="document", file_name="take.flac", mime_type="application/octet-stream"), True),
        (AudioMeta(kind="document", file_name="clip.webm", mime_type="video/webm"), True),
        (AudioMeta(kind="document", file_name="voice.opus", mime_type="application/ogg"), True),
        (AudioMeta(kind="attachment", file_name="mystery"), True),
        (AudioMeta(kind="document", file_name="score.pdf", mime_type="application/pdf"), False),
        (AudioMeta(kind="document", file_name="cover.png", mime_type="image/png"), False),
        (AudioMeta(kind="attachment", file_name="lyrics.txt"), False),
        (AudioMeta(kind="document", file_name="stems.zip", mime_type="application/octet-stream"), False),
    ],
)
def test_looks_like_audio(meta: AudioMeta, ok: bool) -> None:
    assert looks_like_audio(meta) is ok


def test_checks_before_download() -> None:
    with pytest.raises(TooLargeError, match=r"25 MB.*20 MB"):
        check_before_download(AudioMeta(file_size=25_000_000), max_bytes=20_000_000)
    with pytest.raises(TooLongError, match="20 min"):
        check_before_download(AudioMeta(duration_s=1200), max_bytes=10, max_duration_s=900)
    with pytest.raises(NotAudioError, match=r"a\.pdf"):
        check_before_download(AudioMeta(kind="document", file_name="a.pdf"), max_bytes=10)
    check_before_download(AudioMeta(kind="voice", file_size=10), max_bytes=10)  # at the limit is fine


def test_download_limit_is_the_lower_of_platform_and_engine() -> None:
    engine = AudioLimits(max_bytes=25_000_000)
    assert download_limit(Platform("telegram", 20_000_000), engine) == 20_000_000
    assert download_limit(Platform("telegram", None), engine) == 25_000_000
    assert download_limit(Platform("x", 50_000_000), AudioLimits(max_bytes=1_000)) == 1_000


# --- rate limits ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_per_user_with_one_warning_per_cooldown() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_user=Rate(burst=2, per_minute=6), per_chat=None, clock=clock)
    limiter.check("ana")
    limiter.check("ana")
    with pytest.raises(RateLimitedError) as first:
        limiter.check("ana")
    assert not first.value.silent and first.value.retry_after_s == pytest.approx(10.0)
    with pytest.raises(RateLimitedError) as second:
        limiter.check("ana")
    assert second.value.silent  # told once; the flood isn't answered with a flood
    limiter.check("ben")  # others are unaffected
    clock.now += 10.0
    limiter.check("ana")  # one token refilled


def test_chat_bucket_limits_a_busy_group() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_user=Rate(5, 60), per_chat=Rate(burst=3, per_minute=60), clock=clock)
    for user in ("a", "b", "c"):
        limiter.check(user, "group")
    with pytest.raises(RateLimitedError):
        limiter.check("d", "group")
    limiter.check("d", "other group")
    clock.now += 1.0
    limiter.check("d", "group")


# --- fair scheduling -----------------------------------------------------------------------------


async def test_round_robin_between_users_with_positions() -> None:
    sched = FairScheduler(concurrency=1, max_waiting=10, max_waiting_per_user=3)
    a1 = sched.admit("a")
    assert a1.running
    a2, a3 = sched.admit("a"), sched.admit("a")
    b1 = sched.admit("b")
    c1 = sched.admit("c")
    # b and c were never served, so they go before a's second and third song
    assert [t.position for t in (b1, c1, a2, a3)] == [1, 2, 3, 4]
    order = []
    for _ in range(4):
        running = next(t for t in (a1, a2, a3, b1, c1) if t.running)
        order.append(running)
        running.release()
    assert order == [a1, b1, c1, a2]
    assert a3.running


async def test_per_user_cap_and_global_queue() -> None:
    sched = FairScheduler(concurrency=2, max_waiting=2, max_waiting_per_user=1)
    sched.admit("a")
    sched.admit("a")  # waits: a user runs one at a time
    with pytest.raises(UserQueueFullError) as info:
        sched.admit("a")
    assert info.value.in_progress == 2 and "2 songs in progress" in info.value.message
    sched.admit("b")  # runs in the second slot
    sched.admit("c")  # waits
    with pytest.raises(BusyError):
        sched.admit("d")


async def test_waiting_ticket_reports_positions_and_cancellation_frees_its_place() -> None:
    sched = FairScheduler(concurrency=1, max_waiting=10, max_waiting_per_user=5)
    first = sched.admit("a")
    b = sched.admit("b")
    c = sched.admit("c")
    seen: list[int] = []
    waiter = asyncio.create_task(c.wait(seen.append))
    await asyncio.sleep(0)  # let it report its first position
    b_wait = asyncio.create_task(b.wait())
    await asyncio.sleep(0)
    b_wait.cancel()  # b gives up while waiting
    with pytest.raises(asyncio.CancelledError):
        await b_wait
    first.release()
    await waiter
    assert seen == [2, 1] and c.running
    assert sched.waiting == 0 and sched.running == 1


# --- buttons -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ActionKind))
def test_actions_round_trip_within_telegram_and_discord_limits(kind: ActionKind) -> None:
    opts = VisualizeOptions(
        style=Style.cinematic,
        aspect=Aspect.story,
        size=768,
        backend=Backend.renderer,
        prompt="ein roter Fuchs im Mondlicht über dem Meer 🦊🌊",
        negative="blurry",
    )
    action = Action(kind, MAX_SEED, opts)
    for max_bytes in (64, DISCORD.button_data_bytes):
        data = encode_action(action, max_bytes=max_bytes)
        assert len(data.encode()) <= max_bytes
        back = decode_action(data)
        assert back.kind is kind and back.seed == MAX_SEED
        assert back.options.model_dump(exclude={"prompt", "negative", "seed"}) == opts.model_dump(
            exclude={"prompt", "negative", "seed"}
        )
        assert opts.prompt is not None and opts.prompt.startswith(back.options.prompt or "")
    assert decode_action(encode_action(action, max_bytes=100)).options.prompt == opts.prompt


@pytest.mark.parametrize("data", ["", "hello", "m000|r|1|0|0|0|0|0", "mzzz|r|zz", "m|x|1"])
def test_unreadable_action_is_expired(data: str) -> None:
    with pytest.raises(ActionExpiredError):
        decode_action(data)


def test_options_for_each_button() -> None:
    opts = VisualizeOptions(style=Style.neon, size=256, seed=10)
    reroll = options_for(Action(ActionKind.reroll, 10, opts))
    assert reroll.seed != 10 and reroll.style is Style.neon and reroll.num_images == 1
    varied = options_for(Action(ActionKind.variations, MAX_SEED, opts), variations=9)
    assert varied.seed == 0 and varied.num_images == 4  # wraps around; capped by the option model
    assert options_for(Action(ActionKind.prompt, 10, opts)).seed == 10
    video = options_for(Action(ActionKind.video, 10, opts.model_copy(update={"num_images": 3})))
    assert (video.seed, video.style, video.num_images) == (10, Style.neon, 1)  # one picture moving


def test_every_button_kind_has_its_label() -> None:
    assert label_for(ActionKind.video) == messages.BUTTON_VIDEO
    assert len({label_for(kind) for kind in ActionKind}) == len(ActionKind)


# --- reply and messages --------------------------------------------------------------------------


def _reply(prompt: str, *, notes: tuple[str, ...] = ()) -> Reply:
    lines = tuple(TagLine(k, messages.LABELS[k], "x" * 30) for k in ("genre", "emotion", "tempo", "key"))
    return Reply(
        request_id="r1",
        title="🎵 song.mp3",
        tag_lines=lines,
        prompt=prompt,
        negative_prompt="ugly",
        style="neon",
        seed=42,
        backend="renderer",
        options=VisualizeOptions(),
        notes=notes,
    )


@pytest.mark.parametrize("budget", [1024, 300, 200, 60])
def test_reply_text_fits_any_budget_in_utf16_units(budget: int) -> None:
    reply = _reply("🦊 " * 600, notes=("Drawn by the built-in renderer.",))
    text = reply.text(budget)
    assert utf16_len(text) <= budget
    if budget >= 300:
        assert text.startswith("🎵 song.mp3") and "seed 42" in text and "x" * 30 in text
        assert "🦊" in text and text.endswith("…")  # the prompt gave way, shortened


def test_short_reply_text_is_complete_and_embed_fits_discord() -> None:
    reply = _reply("a red fox", notes=("note",))
    assert reply.text() == "\n".join(
        ["🎵 song.mp3", *(str(t) for t in reply.tag_lines), reply.footer, "ℹ️ note", "📝 Prompt: a red fox"]
    )
    embed = _reply("p" * 9000).embed()
    total = sum(map(len, (embed.title, embed.description, embed.footer))) + sum(
        len(a) + len(b) for a, b in embed.fields
    )
    assert len(embed.description) <= 4096 and total <= 6000 and len(embed.fields) == 4


_STYLES = {
    "electronic": (0.9, "genre"),
    "dance": (0.8, "style"),
    "house": (0.7, "style"),
    "female vocalists": (0.6, "voice"),
}


def _lines(**kwargs: Any) -> dict[str, str]:
    return {t.key: t.value for t in tag_lines(make_tags(**kwargs))}


def test_a_confident_genre_shows_its_scores_and_the_styles_follow_it() -> None:
    lines = tag_lines(make_tags(genre={"rock": 0.81, "pop": 0.09, "metal": 0.05}, styles=_STYLES))
    assert [t.key for t in lines][:3] == ["genre", "styles", "emotion"]
    assert lines[0].value == "rock 81% · pop 9% · metal 5%"
    assert lines[1] == TagLine(
        "styles", messages.LABELS["styles"], "electronic · dance · house · female vocalists"
    )


def test_an_uncertain_genre_names_the_closest_and_the_styles_lead() -> None:
    lines = tag_lines(
        make_tags(genre={"hiphop": 0.31, "disco": 0.22, "pop": 0.2}, genre_uncertain=True, styles=_STYLES)
    )
    assert [t.key for t in lines][:3] == ["styles", "genre", "emotion"]
    assert lines[1].value == "uncertain — closest hip-hop / disco"
    assert "%" not in lines[1].value


def test_no_styles_no_styles_line() -> None:
    for uncertain in (False, True):
        keys = [
            t.key for t in tag_lines(make_tags(genre={"jazz": 0.4, "blues": 0.3}, genre_uncertain=uncertain))
        ]
        assert keys == ["genre", "emotion", "tempo", "key", "loudness", "mood"]
    assert "styles" not in _lines()
    assert _lines()["genre"] == messages.model_missing("genre")


@pytest.mark.parametrize(
    ("valence", "arousal", "quadrant"),
    [
        (0.41, 0.35, "happy, excited (Q1)"),
        (-0.5, 0.6, "angry, tense (Q2)"),
        (-0.4, -0.3, "sad, low (Q3)"),
        (0.3, -0.5, "calm, relaxed (Q4)"),
    ],
)
def test_mood_line_names_the_quadrant(valence: float, arousal: float, quadrant: str) -> None:
    mood = _lines(valence=valence, arousal=arousal)["mood"]
    assert quadrant in mood and f"valence {valence:+.2f}, arousal {arousal:+.2f}" in mood
    assert mood.endswith("(estimated from the signal)") and "leaning" not in mood


def test_mood_near_an_axis_only_leans_to_its_quadrant() -> None:
    mood = _lines(valence=0.0, arousal=0.0)["mood"]
    assert mood.startswith("neutral, steady · leaning happy, excited (Q1) · valence +0.00, arousal +0.00")
    assert "leaning sad, low (Q3)" in _lines(valence=-0.6, arousal=-0.1)["mood"]


def test_mood_line_from_the_model() -> None:
    tags = make_tags(valence=0.41, arousal=0.35)
    tags = tags.model_copy(update={"mood": tags.mood.model_copy(update={"source": "emotion_model"})})
    mood = next(t.value for t in tag_lines(tags) if t.key == "mood")
    assert mood == (
        "bright, energetic · happy, excited (Q1) · valence +0.41, arousal +0.35 (from the mood model)"
    )


def test_styles_line_fits_the_caption_and_the_embed() -> None:
    many = {f"style{i}": (0.9 - i / 100, "style") for i in range(40)}
    tags = make_tags(genre={"pop": 0.3}, genre_uncertain=True, styles=many)
    reply = Reply(
        request_id="r",
        title="🎵 song.mp3",
        tag_lines=tag_lines(tags),
        prompt="p " * 900,
        negative_prompt="n",
        style="neon",
        seed=1,
        backend="renderer",
        options=VisualizeOptions(),
    )
    text = reply.text()
    assert utf16_len(text) <= 1024 and text.splitlines()[1].startswith(messages.LABELS["styles"])
    embed = reply.embed()
    assert embed.fields[0][0] == messages.LABELS["styles"] and len(embed.fields) == 7
    used = sum(len(x) for f in embed.fields for x in f)
    assert used + len(embed.title + embed.description + embed.footer) <= 6000


@pytest.mark.parametrize(
    ("err", "icon"),
    [
        (NotAudioError(), "⚠️"),
        (CorruptAudioError(), "⚠️"),
        (BusyError(), "⏳"),
        (RateLimitedError(30), "⏳"),
        (RequestTimeoutError(), "🛠"),
        (M2IError(), "😵"),
    ],
)
def test_error_texts_come_from_the_error(err: M2IError, icon: str) -> None:
    text = messages.error_text(err)
    assert text.startswith(f"{icon} {err.message}")
    if err.code in messages.HINTS:
        assert messages.HINTS[err.code] in text


def test_progress_texts() -> None:
    assert "next" in messages.progress_text(BotStage.queued, 1)
    assert "number 3" in messages.progress_text(BotStage.queued, 3)
    assert all(messages.progress_text(stage) for stage in BotStage)


def test_redact_plain_and_url_encoded_tokens() -> None:
    token = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    encoded = token.replace(":", "%3A")
    text = f"POST https://api.telegram.org/bot{token}/getMe and /file/bot{encoded}/x"
    clean = redact.redact(text)
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in clean and clean.count(redact.MASK) == 2


# --- the service, on the real engine -------------------------------------------------------------

PLATFORM = Platform("test", max_download_bytes=20_000_000, too_large_hint="Send a smaller file.")


def wav_song(bpm: float = 120.0, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, render_song(SongSpec(bpm=bpm, duration_s=6, seed=seed)), 22_050, format="WAV")
    return buf.getvalue()


@pytest_asyncio.fixture
async def service() -> AsyncIterator[BotService]:
    async with Engine(Settings(workers=2)) as engine:
        yield BotService(engine, BotSettings(image_size=256, user_burst=2, user_per_minute=1))


def request(
    data: bytes | None = None, *, fail: Exception | None = None, user: int = 1, **kw: Any
) -> AudioRequest:
    async def fetch() -> bytes:
        if fail is not None:
            raise fail
        assert data is not None, "fetch must not be called"
        return data

    return AudioRequest(platform=PLATFORM, user_id=user, chat_id=user, fetch=fetch, **kw)


async def test_service_visualize_returns_a_reply_with_progress(service: BotService) -> None:
    seen: list[Status] = []
    out = await service.visualize(
        request(wav_song(), meta=AudioMeta(kind="audio", file_name="a.wav"), options="style=neon seed=5"),
        progress=seen.append,
    )
    assert isinstance(out, Reply), out
    assert out.seed == 5 and out.style == "neon" and out.images[0].png.startswith(b"\x89PNG")
    assert (out.images[0].width, out.images[0].height) == (256, 256)
    keys = [t.key for t in out.tag_lines]
    assert [k for k in keys if k != "styles"] == ["genre", "emotion", "tempo", "key", "loudness", "mood"]
    assert "styles" not in keys or keys.index("styles") in (0, 1)  # first when the genre is uncertain
    assert out.title == "🎵 a.wav" and len(out.buttons) == 4
    stages = [s.stage for s in seen]
    assert stages[0] is BotStage.downloading and stages[-1] is BotStage.sending
    assert BotStage.analysing in stages and BotStage.drawing in stages


async def test_chat_replies_say_how_it_was_drawn_without_operator_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No Stable Diffusion model: the chat says the built-in renderer drew it, in words for a chat
    user; the setting that turns Stable Diffusion on is the operator's, so it goes to the log only."""
    settings = Settings(workers=1, sd_model=None, sd=SDSettings(model=None))
    async with Engine(settings) as engine:
        bot = BotService(engine, BotSettings(image_size=256, video_size=256, video_fps=15))
        opts = VisualizeOptions(size=256, seed=5)
        with caplog.at_level(logging.INFO, logger="bot.core.reply"):
            still = await bot.visualize(request(wav_song(), options=opts))
            clip = await bot.video(request(wav_song(), options=opts, upload_limit=130_000, user=2))
    assert isinstance(still, Reply) and isinstance(clip, VideoReply), (still, clip)
    embed = still.embed()
    shown = [still.text(), still.details(), embed.description, embed.footer, clip.text(), *still.notes]
    for text in shown:
        assert "M2I_" not in text and "diffusers" not in text, text
    said = "Drawn by the built-in renderer (this server has no Stable Diffusion model)."
    assert said in still.notes and said in clip.notes and said in still.text() and said in clip.text()
    assert "M2I_SD__MODEL" in caplog.text  # the operator's hint is in the log


@pytest.mark.parametrize("budget", [1024, 200, 60])
def test_video_reply_text_fits_any_budget(budget: int) -> None:
    lines = tuple(TagLine(k, messages.LABELS[k], "x" * 30) for k in ("genre", "emotion", "tempo", "key"))
    video = VideoReply(
        request_id="r",
        title="🎵 song.mp3",
        mp4=b"",
        width=720,
        height=1280,
        fps=30.0,
        length_s=42.0,
        start_s=75.2,
        seed=7,
        style="neon",
        backend="renderer",
        tag_lines=lines,
        notes=("Encoded at 800 kbit/s to fit 10.5 MB.",),
    )
    text = video.text(budget)
    assert utf16_len(text) <= budget
    if budget >= 200:
        assert text.startswith("🎵 song.mp3\n🎬 42 s from 1:15 · 720×1280 · 30 fps") and "seed 7" in text
    assert video.file_name == "m2i-7.mp4"


async def test_service_video_fits_the_upload_limit_or_says_why(service: BotService) -> None:
    small = BotService(service.engine, BotSettings(image_size=256, video_size=256, video_fps=15))
    seen: list[Status] = []
    opts = VisualizeOptions(size=256, seed=3)
    out = await small.video(request(wav_song(), options=opts, upload_limit=130_000), progress=seen.append)
    assert isinstance(out, VideoReply), out
    assert out.mp4[4:8] == b"ftyp" and len(out.mp4) <= 130_000 and (out.width, out.height) == (144, 256)
    assert any("kbit/s" in n for n in out.notes)  # encoded down to fit
    assert messages.progress_text(BotStage.drawing, video=True) in [s.text for s in seen]
    assert seen[-1].stage is BotStage.sending
    refused = await small.video(request(wav_song(), options=opts, upload_limit=20_000, user=2))
    assert isinstance(refused, Failure) and refused.code == "video_too_large"
    assert messages.video_too_large(20_000) in refused.text and "--" not in refused.text

    class NoVideos:  # an engine without a video method
        settings = service.engine.settings

    queue_bot = BotService(NoVideos(), small.settings)  # type: ignore[arg-type]
    none = await queue_bot.video(request(wav_song(), user=3))
    assert isinstance(none, Failure) and none.code == "video_unavailable"
    assert none.text == f"🛠 {messages.VIDEO_UNAVAILABLE}"


class _OneVideo:
    """An engine stand-in whose ``video`` writes a file (what a real engine hands over) or raises ``fail``."""

    def __init__(self, settings: Settings, path: Path, fail: Exception | None = None) -> None:
        self.settings, self.path, self.fail = settings, path, fail

    async def video(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        self.path.write_bytes(b"\0\0\0\x18ftypmp42")

        class Made:
            path = self.path

        return Made()


async def test_a_video_the_queue_lost_is_one_chat_sentence(service: BotService, tmp_path: Path) -> None:
    from m2i_engine.errors import VideoExpiredError

    gone = VideoExpiredError(detail="video abc expired before it was read (0 of 9000 bytes)")
    bot = BotService(_OneVideo(service.engine.settings, tmp_path / "v.mp4", gone), service.settings)  # type: ignore[arg-type]
    out = await bot.video(request(wav_song()))
    assert isinstance(out, Failure) and out.code == "video_expired"
    assert out.text == f"🛠 {messages.VIDEO_EXPIRED}" and "\n" not in out.text and "abc" not in out.text


async def test_a_video_cancelled_before_it_is_sent_leaves_no_file(
    service: BotService, tmp_path: Path
) -> None:
    """Between the engine's file and the reply that reads (and removes) it, a cancellation — here while
    saying "sending" — must not leave the MP4 behind."""
    path = tmp_path / "made.mp4"
    bot = BotService(_OneVideo(service.engine.settings, path), service.settings)  # type: ignore[arg-type]

    def cancel_on_sending(status: Status) -> None:
        if status.stage is BotStage.sending:
            assert path.exists()  # the engine's file, about to be read
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await bot.video(request(wav_song()), progress=cancel_on_sending)
    assert not path.exists()


async def test_service_describe_gives_prompt_and_tags_without_an_image(service: BotService) -> None:
    out = await service.describe(request(wav_song(), options=VisualizeOptions(size=256, seed=9)))
    assert isinstance(out, Reply) and not out.images
    assert "Negative" in out.details() and "seed 9" in out.details()


async def test_service_refusals_never_raise(service: BotService) -> None:
    big = await service.visualize(request(None, meta=AudioMeta(file_size=30_000_000)))
    assert isinstance(big, Failure) and big.code == "too_large" and "Send a smaller file." in big.text
    broken = await service.visualize(request(b"\x00garbage" * 100))
    assert isinstance(broken, Failure) and broken.code in ("not_audio", "corrupt_audio")
    gone = await service.visualize(request(fail=ConnectionResetError("peer reset")))
    assert isinstance(gone, Failure) and gone.code == "download_failed"
    bad_opt = await service.visualize(request(None, options="style=plaid", user=2))
    assert isinstance(bad_opt, Failure) and "cinematic" in bad_opt.text


async def test_service_rate_limit_answers_once_then_silently(service: BotService) -> None:
    # refused by metadata: no token used
    meta_refusal = await service.visualize(
        request(None, meta=AudioMeta(kind="document", file_name="a.txt"), user=7)
    )
    assert isinstance(meta_refusal, Failure) and meta_refusal.code == "not_audio"
    outs = [await service.visualize(request(fail=OSError("flaky"), user=7)) for _ in range(4)]
    assert [o.code for o in outs if isinstance(o, Failure)] == [
        "download_failed",
        "download_failed",
        "rate_limited",
        "rate_limited",
    ]  # burst of 2
    assert isinstance(outs[2], Failure) and not outs[2].silent and "try again in" in outs[2].text
    assert isinstance(outs[3], Failure) and outs[3].silent
    other = await service.visualize(request(wav_song(), user=8))
    assert isinstance(other, Reply)


async def test_a_broken_progress_callback_does_not_fail_the_request(
    service: BotService, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(status: Status) -> None:
        raise RuntimeError("chat went away")

    with caplog.at_level(logging.WARNING):
        out = await service.visualize(request(wav_song(bpm=100)), progress=explode)
    assert isinstance(out, Reply)
    assert "status update failed" in caplog.text


# --- progress throttling (shared by the platforms' status messages) -------------------------------


class ShownTexts(ThrottledStatus):
    """Records what it shows and when; ``gate`` holds a show in flight, ``holds`` are _hold_s answers."""

    errors = (ConnectionError,)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts: list[tuple[float, str]] = []
        self.gate: asyncio.Event | None = None
        self.holds: list[float] = []
        self.refuse_first = False

    async def _show(self, text: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.texts.append((time.monotonic(), text))
        if self.refuse_first and len(self.texts) == 1:
            raise ConnectionError("edit refused")

    def _hold_s(self) -> float:
        return self.holds.pop(0) if self.holds else 0.0


def stage_status(stage: BotStage) -> Status:
    return Status(stage, messages.progress_text(stage))


async def test_throttled_status_shows_only_the_newest_text_once_per_interval() -> None:
    shown = ShownTexts(interval_s=0.2)
    for stage in (BotStage.downloading, BotStage.decoding, BotStage.analysing):
        shown.update(stage_status(stage))  # never waits; all before the first show: only the newest goes
    await asyncio.sleep(0.05)
    shown.update(stage_status(BotStage.drawing))
    shown.update(stage_status(BotStage.sending))
    await asyncio.sleep(0.4)
    await shown.close()
    assert [t for _, t in shown.texts] == [
        messages.progress_text(BotStage.analysing),
        messages.progress_text(BotStage.sending),
    ]
    assert shown.texts[1][0] - shown.texts[0][0] >= 0.2


async def test_throttled_status_shows_nothing_when_the_answer_comes_first() -> None:
    quick = ShownTexts(delay_s=0.3)
    quick.update(stage_status(BotStage.downloading))
    quick.update(stage_status(BotStage.drawing))
    await asyncio.sleep(0.1)
    await quick.close()
    assert quick.texts == [] and quick.shown is None

    slow = ShownTexts(delay_s=0.1)
    slow.update(stage_status(BotStage.drawing))
    await asyncio.sleep(0.3)
    await slow.close()
    assert slow.shown == messages.progress_text(BotStage.drawing) and len(slow.texts) == 1


async def test_throttled_status_close_waits_for_the_show_in_flight_then_shows_nothing() -> None:
    shown = ShownTexts(interval_s=0)
    shown.gate = asyncio.Event()
    shown.update(stage_status(BotStage.downloading))
    await asyncio.sleep(0.01)  # in flight, held by the gate
    closing = asyncio.create_task(shown.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    shown.gate.set()
    await closing
    assert shown.shown == messages.progress_text(BotStage.downloading)
    shown.update(stage_status(BotStage.drawing))  # too late: the answer is on its way
    await asyncio.sleep(0.01)
    assert len(shown.texts) == 1


async def test_throttled_status_waits_while_the_platform_holds_it_back() -> None:
    shown = ShownTexts()
    shown.holds = [0.15]  # e.g. the platform's rate budget is spent
    t0 = time.monotonic()
    shown.update(stage_status(BotStage.downloading))
    await asyncio.sleep(0.3)
    await shown.close()
    assert len(shown.texts) == 1 and shown.texts[0][0] - t0 >= 0.15


async def test_throttled_status_logs_a_refused_show_and_carries_on() -> None:
    shown = ShownTexts(interval_s=0)
    shown.refuse_first = True
    shown.update(stage_status(BotStage.downloading))
    await asyncio.sleep(0.02)
    shown.update(stage_status(BotStage.drawing))
    await asyncio.sleep(0.02)
    await shown.close()
    assert [t for _, t in shown.texts] == [
        messages.progress_text(BotStage.downloading),
        messages.progress_text(BotStage.drawing),
    ]

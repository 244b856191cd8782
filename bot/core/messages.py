"""Every sentence the bots say, in one place, so every chat platform speaks with one voice.

Progress texts (queued → position N → downloading → listening → drawing → done), error texts from
an :class:`~m2i_engine.errors.M2IError`'s stable ``code``, the start/help texts, button labels and
the labels of the tag lines. Adapters never write user-facing English themselves; they call these.
The few sentences only one platform needs (Telegram's 20 MB hint, Discord's "how to ask") travel on
its :class:`~bot.core.limits.Platform` instead, so every text here is every platform's.

Error messages written by the engine (``M2IError.message``) are shown as they are — they are
already written for the person who sent the file — with an icon per error family and, where it
helps, a hint (:data:`HINTS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from m2i_engine.errors import InputError, M2IError, ServiceError

BOT_NAME = "m2i"


class BotStage(StrEnum):
    """Where a chat request is; the engine's stages plus the bot's own (download, send)."""

    queued = "queued"
    downloading = "downloading"
    decoding = "decoding"
    analysing = "analysing"
    drawing = "drawing"
    sending = "sending"
    done = "done"


# --- progress ------------------------------------------------------------------------------------

_STAGE_TEXT: dict[BotStage, str] = {
    BotStage.queued: "⏳ Waiting for a free spot…",
    BotStage.downloading: "📥 Fetching your audio…",
    BotStage.decoding: "🎧 Listening…",
    BotStage.analysing: "🎼 Listening for tempo, key, genre and mood…",
    BotStage.drawing: "🎨 Drawing your image…",
    BotStage.sending: "📤 Sending…",
    BotStage.done: "✅ Done.",
}


#: where a video's stages read differently from an image's
_VIDEO_STAGE_TEXT: dict[BotStage, str] = {
    BotStage.drawing: "🎬 Making your video — its picture moves with the beat…",
    BotStage.sending: "📤 Sending your video…",
}


def progress_text(stage: BotStage, queue_position: int | None = None, *, video: bool = False) -> str:
    """Status line for ``stage``; while queued, the 1-based ``queue_position`` is shown. ``video``:
    the request makes a music video (drawing it takes longer, and the user should know what comes)."""
    if stage is BotStage.queued and queue_position:
        if queue_position == 1:
            return "⏳ You're next in the queue…"
        return f"⏳ You're number {queue_position} in the queue…"
    if video and stage in _VIDEO_STAGE_TEXT:
        return _VIDEO_STAGE_TEXT[stage]
    return _STAGE_TEXT[stage]


ACCEPTED = "🎧 Got it — give me a moment…"

# --- errors --------------------------------------------------------------------------------------

#: extra advice shown under an error, by ``code``
HINTS: dict[str, str] = {
    "not_audio": "Tip: send it as an audio file or record a voice note.",
    "too_short": "Send at least a few seconds of music.",
    "silent_audio": "Check that the recording isn't muted.",
    "invalid_option": "Send /help to see every option.",
    "timeout": "Try again with a shorter clip.",
}


def error_text(err: M2IError, *, hint: str | None = None) -> str:
    """What the user sees for ``err``: an icon, the error's own message, and a hint if one helps."""
    if isinstance(err, InputError):
        icon = "⚠️"
    elif err.code in ("busy", "rate_limited", "user_queue_full"):
        icon = "⏳"
    elif isinstance(err, ServiceError):
        icon = "🛠"
    else:
        icon = "😵"
    lines = [f"{icon} {err.message}"]
    # a hint is advice for the code's usual cause: not under a message naming another (queue mode's
    # "the queue was too long" is a timeout too, and a shorter clip would not help)
    extra = hint or (HINTS.get(err.code) if err.message == err.default_message else None)
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def internal_error_text() -> str:
    """For failures outside any request (a handler crashed): the same words as an internal error."""
    return error_text(M2IError(INTERNAL))


def too_large(limit_bytes: int, size_bytes: int | None = None) -> str:
    size = f" ({_mb(size_bytes)})" if size_bytes else ""
    return f"That file is too big{size} — I can take up to {_mb(limit_bytes)}."


def too_long(duration_s: float, limit_s: float) -> str:
    return f"That audio is {_duration(duration_s)} long — I can take up to {_duration(limit_s)}."


def empty_file() -> str:
    return "That file is empty — please send the audio again."


def not_audio(file_name: str | None) -> str:
    what = f"“{file_name}”" if file_name else "That file"
    return (
        f"{what} doesn't look like audio — send a song or voice note "
        "(mp3, wav, flac, ogg, opus, m4a, webm or aiff)."
    )


DOWNLOAD_FAILED = "I couldn't download that file — please send it again."
ACTION_EXPIRED = "This button is from an older version of m2i — send the song again."
SOURCE_GONE = "I can't find the original song for this button anymore — please send it again."
NEEDS_AUDIO_REPLY = (
    "Reply to a song or voice note with /visualize (options optional), or just send me "
    "the audio — options go in the caption."
)
INTERNAL = "Something went wrong on our side; please try again later."
VIDEO_UNAVAILABLE = "Videos aren't available on this server — the image buttons still work."
VIDEO_EXPIRED = "Your video expired before I could send it — please ask for it again."


def video_too_large(limit_bytes: int) -> str:
    """A clip that can't be squeezed into what the bot may upload here (the engine's text names CLI flags)."""
    return (
        f"That video would be too big to send here (the limit is {_mb(limit_bytes)}), even at the "
        "lowest quality worth watching — send a shorter song or clip."
    )


def rate_limited(retry_after_s: float) -> str:
    return f"You're sending songs faster than I can draw — try again in {_duration(retry_after_s)}."


def user_queue_full(in_progress: int) -> str:
    return f"You already have {in_progress} songs in progress — I'll take more once one of them is done."


def unknown_option(raw: str, names: Iterable[str]) -> str:
    return f"There's no option called “{raw}”. Options: {', '.join(names)}."


def option_needs_value(name: str, choices: str) -> str:
    return f"--{name} needs a value: {choices}."


def bad_option_value(name: str, raw: object, choices: str) -> str:
    return f"{name} must be {choices}, not “{raw}”."


def bad_choice(name: str, raw: str, choices: str) -> str:
    return f"“{raw}” isn't a valid {name}. Choose one of: {choices}."


def option_too_long(name: str, choices: str) -> str:
    return f"{name} is too long — {choices}."


# --- start / help --------------------------------------------------------------------------------


def start_text() -> str:
    return (
        f"👋 Hi! I'm {BOT_NAME}. Send me a song or a voice note and I'll tell you what I hear — "
        "genre, emotion, tempo, key — and paint it as an image.\n\n"
        "Send /help for options."
    )


def help_text(option_lines: Iterable[str], *, command: str = "/visualize", in_groups: str = "") -> str:
    """Help with one line per option (from :func:`bot.core.options.options_help`)."""
    opts = "\n".join(f"• {line}" for line in option_lines)
    groups = f"\n\n{in_groups}" if in_groups else ""
    return (
        f"🎵 Send me audio (a song file, a voice note, a video note) and I'll answer with an image.\n\n"
        f"Options go in the caption, or reply to a song with {command} and the options:\n"
        f'{command} style=neon seed=42 aspect=9:16 "a red fox"\n'
        f"(--style neon works too; words that aren't options become part of the prompt.)\n\n"
        f"{opts}\n\n"
        "Under each image: 🎲 re-roll (new seed), 🖼 variations (nearby seeds), 📝 the full prompt and tags, "
        "🎬 a music video of the song (its picture moving with the beat, with the sound)."
        f"{groups}"
    )


NO_AUDIO_IN_MESSAGE = "That message has no audio attached — pick a message with a song or voice note."

COMMANDS: dict[str, str] = {
    "start": "What m2i does",
    "help": "Options and how to use m2i",
    "visualize": "Reply to a song: draw it (options optional)",
}

# --- reply ---------------------------------------------------------------------------------------

BUTTON_REROLL = "🎲 Re-roll"
BUTTON_VARIATIONS = "🖼 Variations"
BUTTON_PROMPT = "📝 Prompt & tags"
BUTTON_UPSCALE = "🔍 Upscale"
BUTTON_VIDEO = "🎬 Video"

LABELS: dict[str, str] = {
    "genre": "🎼 Genre",
    "styles": "🏷 Styles",
    "emotion": "💫 Emotion",
    "tempo": "🥁 Tempo",
    "key": "🎹 Key",
    "loudness": "🔊 Loudness",
    "mood": "🌗 Mood",
    "timbre": "✨ Timbre",
    "prompt": "📝 Prompt",
    "negative": "🚫 Negative",
    "seed": "🎲",
}


def model_missing(what: str) -> str:
    return f"no {what} model installed"


def model_failed(what: str) -> str:
    return f"the {what} model failed to run"


def uncertain_closest(closest: Sequence[str]) -> str:
    """A classifier that found no label it is sure of: the closest ones, e.g. "hip-hop / disco"."""
    return f"uncertain — closest {' / '.join(closest)}" if closest else "uncertain"


def energy_word(energy: float) -> str:
    return "calm" if energy < 0.33 else "moderate" if energy < 0.66 else "intense"


def tempo_text(bpm: float, *, beats_per_bar: int | None = None, also_bpm: float | None = None) -> str:
    """E.g. "100 BPM · also felt at 200" (the runner-up only when the octave decision was close)."""
    metre = f", {beats_per_bar} beats/bar" if beats_per_bar else ""
    also = f" · also felt at {also_bpm:.0f}" if also_bpm else ""
    return f"{bpm:.0f} BPM{metre}{also}"


def mood_text(valence: float, arousal: float, *, quadrant: str, quadrant_name: str, origin: str) -> str:
    """E.g. "bright, energetic · happy, excited (Q1) · valence +0.41, arousal +0.35 (from the mood model)".

    Near an axis (either value within ±0.2) the quadrant is only "leaning": the signs still pick it.
    """
    v = "bright" if valence > 0.2 else "dark" if valence < -0.2 else "neutral"
    a = "energetic" if arousal > 0.2 else "calm" if arousal < -0.2 else "steady"
    lean = "leaning " if min(abs(valence), abs(arousal)) <= 0.2 else ""
    return (
        f"{v}, {a} · {lean}{quadrant_name} ({quadrant}) · valence {valence:+.2f}, arousal {arousal:+.2f} "
        f"({origin})"
    )


def title_for(file_name: str | None, kind: str) -> str:
    if file_name:
        return f"🎵 {file_name}"
    return {"voice": "🎙 Your voice note", "video_note": "📹 Your video note"}.get(kind, "🎵 Your song")


def variation_caption(index: int, seed: int) -> str:
    return f"Variation {index} · seed {seed}"


def footer(*, style: str, seed: int, backend: str | None) -> str:
    parts = [f"{LABELS['seed']} seed {seed}", f"style {style}", *([backend] if backend else [])]
    return " · ".join(parts)


def video_line(*, length_s: float, start_s: float, width: int, height: int, fps: float) -> str:
    """E.g. "🎬 12 s from 0:42 · 720×1280 · 30 fps": what the video shows of the song."""
    start = max(0, round(start_s))
    return f"🎬 {length_s:.0f} s from {start // 60}:{start % 60:02d} · {width}×{height} · {fps:g} fps"


def note_line(note: str) -> str:
    return f"ℹ️ {note}"


# --- private -------------------------------------------------------------------------------------


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.0f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.0f} KB"


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds % 60 else f"{seconds // 60} min"

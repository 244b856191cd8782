"""The answer to a song, once, in a platform-neutral shape that each chat platform only lays out.

:func:`build_reply` turns an engine :class:`~m2i_engine.engine.VisualizeResult` into a
:class:`Reply`: PNG bytes, a title, one line per tag (genre, the style words, emotion, tempo, key,
loudness/energy, mood — saying plainly when a model is not installed or unsure), the prompt, the
seed, backend notes and the buttons (:func:`upscale_button` adds one for Stable Diffusion images).
:func:`build_video_reply` turns an engine :class:`~m2i_engine.engine.VideoResult` (the 🎬 button) into
a :class:`VideoReply`: the MP4's bytes, its size and length, and a caption within any budget.
Platforms render it with :meth:`Reply.text` (any length budget: their
:attr:`~bot.core.limits.Platform.caption_limit` or ``message_limit``), :meth:`Reply.details`
(everything, for "show prompt") or :meth:`Reply.embed` (embed pieces within the platform's
``embed_limits``).

Lengths are counted in UTF-16 code units by default, as Telegram counts them (an emoji is 2); that
is never less than Python's ``len``, so the same budget is also safe for Discord.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.core import messages
from bot.core.actions import Action, ActionKind, can_upscale
from m2i_engine.engine import VideoResult, VisualizeResult
from m2i_engine.options import VisualizeOptions
from m2i_engine.prompt import Prompt
from m2i_engine.tags import Classification, Tags

log = logging.getLogger(__name__)

__all__ = [
    "CAPTION_BUDGET",
    "EMBED_LIMITS",
    "MESSAGE_BUDGET",
    "EmbedParts",
    "Reply",
    "ReplyButton",
    "ReplyImage",
    "TagLine",
    "VideoReply",
    "build_reply",
    "build_video_reply",
    "tag_lines",
    "upscale_button",
    "utf16_len",
]

#: the budgets of :meth:`Reply.text` and :meth:`Reply.details` when the caller gives none: a caption
#: and a message that fit every platform's limits
CAPTION_BUDGET = 1024
MESSAGE_BUDGET = 4096
#: the limits of :meth:`Reply.embed` when the caller gives none (those of the one platform with embeds)
EMBED_LIMITS: Mapping[str, int] = {
    "title": 256,
    "description": 4096,
    "fields": 25,
    "field_name": 256,
    "field_value": 1024,
    "footer": 2048,
    "total": 6000,
}

Length = Callable[[str], int]


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class ReplyImage:
    png: bytes
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class TagLine:
    """One thing m2i heard: ``key`` is stable (``"genre"``), ``label`` and ``value`` are for people."""

    key: str
    label: str
    value: str

    def __str__(self) -> str:
        return f"{self.label}: {self.value}"


@dataclass(frozen=True)
class ReplyButton:
    label: str
    action: Action


@dataclass(frozen=True)
class EmbedParts:
    """A Discord embed's pieces, each already within Discord's limits."""

    title: str
    description: str
    fields: list[tuple[str, str]]
    footer: str


@dataclass(frozen=True)
class Reply:
    """Everything a platform needs to answer one request."""

    request_id: str
    title: str
    tag_lines: tuple[TagLine, ...]
    prompt: str
    negative_prompt: str
    style: str
    seed: int
    #: the image backend that drew it; ``None`` when nothing was drawn (prompt & tags only)
    backend: str | None
    options: VisualizeOptions
    images: tuple[ReplyImage, ...] = ()
    notes: tuple[str, ...] = ()
    details_lines: tuple[TagLine, ...] = ()
    buttons: tuple[ReplyButton, ...] = ()
    #: the engine's steps (``decode_ms``, ``draw_ms``, …) and the service's (``queue_ms``,
    #: ``download_ms``, ``engine_ms``, ``png_ms``)
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def footer(self) -> str:
        return messages.footer(style=self.style, seed=self.seed, backend=self.backend)

    def text(
        self, budget: int = CAPTION_BUDGET, *, length: Length = utf16_len, with_prompt: bool = True
    ) -> str:
        """Title, tag lines, seed line, notes and prompt, shortened to fit ``budget``.

        What gives way first: the prompt is shortened (then dropped), then the notes, then the tag
        lines are shortened; the result never exceeds ``budget``.
        """
        prompt = [f"{messages.LABELS['prompt']}: {self.prompt}"] if with_prompt and self.prompt else []
        return _fit_sections(
            head=[self.title, *map(str, self.tag_lines), self.footer],
            optional=[[messages.note_line(n) for n in self.notes], prompt],
            budget=budget,
            length=length,
        )

    def details(self, budget: int = MESSAGE_BUDGET, *, length: Length = utf16_len) -> str:
        """The full prompt and every tag, for the "show prompt & tags" button."""
        lines = [
            self.title,
            f"{messages.LABELS['prompt']}: {self.prompt}",
            f"{messages.LABELS['negative']}: {self.negative_prompt}",
            "",
            *map(str, self.tag_lines),
            *map(str, self.details_lines),
            self.footer,
        ]
        return _fit_sections(
            head=lines,
            optional=[[messages.note_line(n) for n in self.notes]],
            budget=budget,
            length=length,
            shorten_first=1,
        )

    def embed(self, limits: Mapping[str, int] = EMBED_LIMITS) -> EmbedParts:
        """Embed pieces within ``limits``: prompt as description, tags as fields, seed and notes as footer."""
        lim = limits
        title = _cut(self.title, lim["title"], utf16_len)
        fields = [
            (_cut(t.label, lim["field_name"], utf16_len), _cut(t.value, lim["field_value"], utf16_len))
            for t in self.tag_lines[: lim["fields"]]
        ]
        footer = _cut("\n".join([self.footer, *self.notes]), lim["footer"], utf16_len)
        used = utf16_len(title) + utf16_len(footer) + sum(utf16_len(a) + utf16_len(b) for a, b in fields)
        room = min(lim["description"], lim["total"] - used)
        description = _cut(f"{messages.LABELS['prompt']}: {self.prompt}", max(room, 0), utf16_len)
        return EmbedParts(title=title, description=description, fields=fields, footer=footer)


def build_reply(
    result: VisualizeResult,
    *,
    options: VisualizeOptions,
    title: str,
    request_id: str,
    with_buttons: bool = True,
) -> Reply:
    """A :class:`Reply` from an engine result, with each image's PNG bytes as the result holds them
    (encoded once if not yet: blocking, run off-loop; a queue-mode result's pass through unchanged).

    Buttons are added when ``with_buttons`` and there is exactly one image (albums of variations
    can't carry buttons on every platform).
    """
    images = tuple(ReplyImage(png=g.png, seed=g.seed, width=g.width, height=g.height) for g in result.images)
    used = options.model_copy(update={"seed": result.seed})
    buttons: tuple[ReplyButton, ...] = ()
    if with_buttons and len(images) == 1:
        shown = images[0].seed
        buttons = (
            ReplyButton(messages.BUTTON_REROLL, Action(ActionKind.reroll, shown, used)),
            ReplyButton(messages.BUTTON_VARIATIONS, Action(ActionKind.variations, shown, used)),
            ReplyButton(messages.BUTTON_PROMPT, Action(ActionKind.prompt, shown, used)),
            ReplyButton(messages.BUTTON_VIDEO, Action(ActionKind.video, shown, used)),
        )
    return _reply(
        result.tags,
        result.prompt,
        options=used,
        title=title,
        request_id=request_id,
        seed=result.seed,
        backend=result.backend,
        images=images,
        notes=chat_notes(result, request_id),
        buttons=buttons,
        timings_ms=dict(result.timings_ms),
    )


@dataclass(frozen=True)
class VideoReply:
    """A music video answer: the MP4 (H.264 + AAC, already within the platform's upload limit) and its
    caption's parts. Bytes rather than a path: the engine's temporary file is gone before it is sent."""

    request_id: str
    title: str
    mp4: bytes
    width: int
    height: int
    fps: float
    length_s: float
    #: where the clip starts in the song
    start_s: float
    seed: int
    style: str
    backend: str
    tag_lines: tuple[TagLine, ...] = ()
    notes: tuple[str, ...] = ()
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return f"m2i-{self.seed}.mp4"

    @property
    def footer(self) -> str:
        return messages.footer(style=self.style, seed=self.seed, backend=self.backend)

    def text(self, budget: int = CAPTION_BUDGET, *, length: Length = utf16_len) -> str:
        """Title, what the clip is, seed line, then notes and the tag lines as far as ``budget`` allows."""
        clip = messages.video_line(
            length_s=self.length_s, start_s=self.start_s, width=self.width, height=self.height, fps=self.fps
        )
        notes = [messages.note_line(n) for n in self.notes]
        return _fit_sections(
            head=[self.title, clip, self.footer],
            optional=[notes, list(map(str, self.tag_lines))],
            budget=budget,
            length=length,
        )


def build_video_reply(result: VideoResult, *, title: str, request_id: str) -> VideoReply:
    """A :class:`VideoReply` from an engine result; reads the MP4 and removes the engine's file (blocking:
    run off-loop)."""
    video = result.video
    try:
        data = video.read_bytes()
    finally:
        video.path.unlink(missing_ok=True)
    return VideoReply(
        request_id=request_id,
        title=title,
        mp4=data,
        width=video.width,
        height=video.height,
        fps=video.fps,
        length_s=video.length_s,
        start_s=video.start_s,
        seed=result.seed,
        style=video.style,
        backend=video.backend,
        tag_lines=tag_lines(result.tags),
        notes=chat_notes(result, request_id),
        timings_ms=dict(result.timings_ms),
    )


def chat_notes(result: VisualizeResult | VideoResult, request_id: str) -> tuple[str, ...]:
    """The notes a chat shows: the engine's sentences for anyone. What lies behind them for the
    operator (``note_details``: which setting turns Stable Diffusion on, …) goes to the log only — a
    chat user can't change the server's settings."""
    for note, detail in result.note_details.items():
        log.info("[%s] %s (operator: %s)", request_id, note, detail)
    return tuple(result.notes)


def upscale_button(reply: Reply) -> ReplyButton | None:
    """The "upscale" button for a single Stable Diffusion image that can still grow, else ``None``.

    Kept apart from :attr:`Reply.buttons` so each platform opts in where its layout has room.
    """
    if reply.backend != "sd" or len(reply.images) != 1 or not can_upscale(reply.options):
        return None
    action = Action(ActionKind.upscale, reply.images[0].seed, reply.options)
    return ReplyButton(messages.BUTTON_UPSCALE, action)


def build_details_reply(
    tags: Tags, prompt: Prompt, *, options: VisualizeOptions, title: str, request_id: str, seed: int
) -> Reply:
    """A text-only :class:`Reply` (no image) for "show prompt & tags"."""
    return _reply(tags, prompt, options=options, title=title, request_id=request_id, seed=seed, backend=None)


def tag_lines(tags: Tags) -> tuple[TagLine, ...]:
    """The lines shown under every image: genre, styles, emotion, tempo, key, loudness/energy, mood.

    The styles line (the tagger's style, voice, era and mood words) is left out when there are none;
    it comes right after the genre, or first when the genre model is uncertain (no genre fits well,
    so the style words say more about the song).
    """
    L = messages.LABELS
    t, lo, m = tags.tempo, tags.loudness, tags.mood
    genre = TagLine("genre", L["genre"], _classification(tags.genre, "genre"))
    styles = _styles_line(tags)
    first: tuple[TagLine, ...] = (
        (genre,) if styles is None else ((styles, genre) if tags.genre.uncertain else (genre, styles))
    )
    return (
        *first,
        TagLine("emotion", L["emotion"], _classification(tags.emotion, "emotion")),
        TagLine(
            "tempo",
            L["tempo"],
            messages.tempo_text(
                t.bpm,
                beats_per_bar=t.beats_per_bar,
                also_bpm=(alt.bpm if (alt := t.close_alternative) else None),
            ),
        ),
        TagLine("key", L["key"], tags.key.name),
        TagLine(
            "loudness",
            L["loudness"],
            f"{lo.integrated_lufs:.1f} LUFS · energy {lo.energy:.2f} ({messages.energy_word(lo.energy)})",
        ),
        TagLine(
            "mood",
            L["mood"],
            messages.mood_text(
                m.valence,
                m.arousal,
                quadrant=m.quadrant,
                quadrant_name=m.quadrant_name,
                origin=tags.mood_origin(),
            ),
        ),
    )


# --- private helpers -----------------------------------------------------------------------------


def _reply(
    tags: Tags,
    prompt: Prompt,
    *,
    options: VisualizeOptions,
    title: str,
    request_id: str,
    seed: int,
    backend: str | None,
    **extra: object,
) -> Reply:
    a, tb = tags.audio, tags.timbre
    details = (
        TagLine(
            "timbre",
            messages.LABELS["timbre"],
            f"brightness {tb.brightness:.2f} · percussive {tb.percussiveness:.2f} · "
            f"{tb.onset_rate_hz:.1f} onsets/s",
        ),
        TagLine(
            "audio", "🎧 Audio", f"{a.duration_s:.1f} s · {a.codec} · {a.sample_rate_hz} Hz · {a.channels} ch"
        ),
    )
    return Reply(
        request_id=request_id,
        title=title,
        tag_lines=tag_lines(tags),
        prompt=prompt.text,
        negative_prompt=prompt.negative,
        style=prompt.style.value,
        seed=seed,
        backend=backend,
        options=options,
        details_lines=details,
        **extra,
    )  # type: ignore[arg-type]


def _classification(c: Classification, what: str) -> str:
    if c.status == "model_missing":
        return messages.model_missing(what)
    if c.status == "error":
        return messages.model_failed(what)
    if c.uncertain:
        return messages.uncertain_closest([ls.display for ls in c.labels[:2]])
    return " · ".join(f"{ls.display} {ls.score:.0%}" for ls in c.labels[:3]) or "—"


#: at most this many style words on the styles line
_MAX_STYLE_WORDS = 8


def _styles_line(tags: Tags) -> TagLine | None:
    if not tags.styles:
        return None
    words = " · ".join(s.display for s in tags.styles[:_MAX_STYLE_WORDS])
    return TagLine("styles", messages.LABELS["styles"], words)


def _cut(text: str, budget: int, length: Length) -> str:
    """``text`` shortened with an ellipsis to at most ``budget`` units."""
    if length(text) <= budget:
        return text
    if budget <= 0:
        return ""
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix whose length + "…" fits
        mid = (lo + hi + 1) // 2
        if length(text[:mid].rstrip() + "…") <= budget:
            lo = mid
        else:
            hi = mid - 1
    return (text[:lo].rstrip() + "…") if lo else text[:0]


def _fit_sections(
    *,
    head: list[str],
    optional: list[list[str]],
    budget: int,
    length: Length,
    shorten_first: int | None = None,
) -> str:
    """Join ``head`` and the ``optional`` groups line by line within ``budget``.

    Optional groups give way last-first: the last is shortened (then dropped) before the one before
    it; then head lines are shortened, longest first (or line ``shorten_first`` first).
    """
    groups = [list(g) for g in optional if g]

    def total() -> str:
        return "\n".join([*head, *(line for g in groups for line in g)])

    while groups and length(total()) > budget:
        last = groups[-1]
        over = length(total()) - budget
        tail = last[-1]
        if length(tail) - over >= 40:  # still worth showing a shortened line
            last[-1] = _cut(tail, length(tail) - over, length)
        else:
            last.pop()
            if not last:
                groups.pop()
    head = list(head)
    while length(total()) > budget:
        over = length(total()) - budget
        idx = (
            shorten_first
            if shorten_first is not None
            else max(range(len(head)), key=lambda i: length(head[i]))
        )
        shorter = _cut(head[idx], max(length(head[idx]) - over, 1), length)
        if shorter == head[idx] or not shorter:
            return _cut(total(), budget, length)
        head[idx] = shorter
        shorten_first = None
    return total()

"""Button actions packed into the few bytes a chat button can carry, so buttons survive a restart.

A button under an image must still work after the bot restarts, so nothing about it lives in
memory: the button's own data says what to do (re-roll, variations, show prompt, video), with which seed
and which options. The audio is found again from the message the button's reply refers to
(Telegram: ``callback_query.message.reply_to_message``; Discord: the message reference).

Format (``|``-separated, ASCII except the user's own words)::

    m<schema>|<kind>|<seed>|<option>|<option>|…

``schema`` is a 3-character fingerprint of the option model (field names and enum members): a
button made by a build with different options decodes to :class:`ActionExpiredError` instead of
to wrong options. Enum options are stored as their index, numbers in base 36, text options last,
shortened to what fits (each :class:`~bot.core.limits.Platform` says how much: its
``button_data_bytes``).

Offers
------
- :class:`ActionKind`, :class:`Action` — what a button does.
- :func:`encode_action` / :func:`decode_action` — to and from the button's data.
- :func:`is_action` — whether a string is one of ours (cheap prefix check).
- :func:`options_for` — the options a pressed button runs with (new seed, nearby seeds, …).
- :func:`can_upscale` — whether an image's options leave room for the upscale button.
- :func:`label_for` — the label of a kind's button (what a platform echoes when it is pressed).
"""

from __future__ import annotations

import enum
import secrets
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ValidationError

from bot.core import messages
from m2i_engine.errors import InputError
from m2i_engine.options import MAX_SEED, VisualizeOptions, option_fields

__all__ = [
    "BUTTON_DATA_BYTES",
    "Action",
    "ActionExpiredError",
    "ActionKind",
    "can_upscale",
    "decode_action",
    "encode_action",
    "is_action",
    "label_for",
    "options_for",
]

#: what button data fits in when the caller doesn't say: the least any platform allows
BUTTON_DATA_BYTES = 64
_SEP = "|"


class ActionKind(StrEnum):
    reroll = "r"
    variations = "v"
    prompt = "p"
    #: the same seed at twice the size (offered under Stable Diffusion images)
    upscale = "u"
    #: a music video of the song with the shown image's seed and options ("f"ilm: "v" is taken)
    video = "f"


class ActionExpiredError(InputError):
    """The button's data can't be read: made by an older build, or not ours."""

    code: ClassVar[str] = "action_expired"
    default_message: ClassVar[str] = messages.ACTION_EXPIRED


@dataclass(frozen=True)
class Action:
    """What a button does: ``kind`` on the image made with ``seed`` and ``options``."""

    kind: ActionKind
    seed: int
    options: VisualizeOptions


def encode_action(action: Action, *, max_bytes: int = BUTTON_DATA_BYTES) -> str:
    """The button data for ``action``, at most ``max_bytes`` UTF-8 bytes.

    Text options (the user's prompt words) are shortened, at a word boundary where possible, to
    fit; everything else always fits (about 20 bytes).
    """
    fixed = [_PREFIX, action.kind.value, _b36(action.seed)]
    values = action.options.model_dump()
    for name, kind in _FIELDS:
        if kind == "text":
            continue
        fixed.append(_encode_value(kind, values[name]))
    data = _SEP.join(fixed)
    if len(data.encode()) > max_bytes:
        raise ValueError(f"button data needs {len(data.encode())} bytes, more than {max_bytes}")
    for name, kind in _FIELDS:
        if kind != "text":
            continue
        room = max_bytes - len(data.encode()) - len(_SEP)
        data += _SEP + _fit((values[name] or "").replace(_SEP, "/"), room)
    return data.rstrip(_SEP)


def decode_action(data: str) -> Action:
    """The :class:`Action` in a button's data; :class:`ActionExpiredError` when it can't be read."""
    parts = data.split(_SEP)
    if len(parts) < 3 or parts[0] != _PREFIX:
        raise ActionExpiredError(detail=f"not a current m2i action: {data[:16]!r}")
    try:
        kind = ActionKind(parts[1])
        seed = int(parts[2], 36)
        values: dict[str, Any] = {}
        rest = iter(parts[3:])
        for name, kind_of in [f for f in _FIELDS if f[1] != "text"] + [f for f in _FIELDS if f[1] == "text"]:
            values[name] = _decode_value(kind_of, next(rest, ""))
        options = VisualizeOptions.model_validate({**values, "seed": seed})
    except (ValueError, IndexError, ValidationError) as exc:
        raise ActionExpiredError(detail=f"bad action data {data!r}: {exc}") from exc
    return Action(kind=kind, seed=seed, options=options)


def can_upscale(options: VisualizeOptions) -> bool:
    """Whether the upscale button would draw a larger image than ``options`` did."""
    return options.size < _max_size()


def label_for(kind: ActionKind) -> str:
    """The label of ``kind``'s button, so a platform can echo which button was pressed."""
    return {
        ActionKind.reroll: messages.BUTTON_REROLL,
        ActionKind.variations: messages.BUTTON_VARIATIONS,
        ActionKind.prompt: messages.BUTTON_PROMPT,
        ActionKind.upscale: messages.BUTTON_UPSCALE,
        ActionKind.video: messages.BUTTON_VIDEO,
    }[kind]


def is_action(data: str | None) -> bool:
    return bool(data) and data.startswith(_PREFIX + _SEP)  # type: ignore[union-attr]


def options_for(action: Action, *, variations: int = 3) -> VisualizeOptions:
    """The options to run when ``action``'s button is pressed.

    - re-roll: the same options with a new random seed, one image;
    - variations: ``variations`` images on the seeds right after the shown one;
    - prompt: the shown image's exact options (only the prompt is rebuilt, nothing is drawn);
    - upscale: the shown image's seed and options at twice the size (capped by the option model);
    - video: the shown image's exact options (its seed, style and words make the video's picture).
    """
    opts = action.options
    if action.kind is ActionKind.reroll:
        seed = secrets.randbelow(MAX_SEED + 1)
        while seed == action.seed:
            seed = secrets.randbelow(MAX_SEED + 1)
        return opts.model_copy(update={"seed": seed, "num_images": 1})
    if action.kind is ActionKind.variations:
        most = _max_num_images()
        return opts.model_copy(
            update={"seed": (action.seed + 1) % (MAX_SEED + 1), "num_images": max(1, min(variations, most))}
        )
    if action.kind is ActionKind.upscale:
        return opts.model_copy(
            update={"seed": action.seed, "num_images": 1, "size": min(opts.size * 2, _max_size())}
        )
    return opts.model_copy(update={"seed": action.seed, "num_images": 1})


# --- private helpers -----------------------------------------------------------------------------


def _field_kinds() -> list[tuple[str, Any]]:
    """(name, kind) for each option but the seed; kind is an Enum class, ``int`` or ``"text"``."""
    out: list[tuple[str, Any]] = []
    for field in option_fields(VisualizeOptions):
        if field.name == "seed":
            continue
        if field.is_enum:
            out.append((field.name, field.kind))
        elif field.kind is int:
            out.append((field.name, int))
        else:
            out.append((field.name, "text"))
    return out


def _schema(fields: list[tuple[str, Any]]) -> str:
    def spec(kind: Any) -> str:
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return ",".join(str(m.value) for m in kind)
        return str(kind)

    desc = ";".join(f"{name}:{spec(kind)}" for name, kind in fields)
    return _b36(zlib.crc32(desc.encode()) % 36**3).rjust(3, "0")


def _encode_value(kind: Any, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _b36(list(kind).index(kind(value)))
    return _b36(int(value))


def _decode_value(kind: Any, raw: str) -> Any:
    if kind == "text":
        return raw or None
    if raw == "":
        return None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return list(kind)[int(raw, 36)]
    return int(raw, 36)


def _fit(text: str, room: int) -> str:
    """``text`` cut to ``room`` UTF-8 bytes at a word boundary ("" when not even one word fits)."""
    raw = text.encode()
    if len(raw) <= room:
        return text
    if room <= 0:
        return ""
    cut = raw[: room + 1].decode(errors="ignore")
    return cut.rsplit(" ", 1)[0].strip() if " " in cut else ""


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if n == 0:
        return "0"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


def _max_num_images() -> int:
    return _upper_bound("num_images", 1)


def _max_size() -> int:
    return _upper_bound("size", VisualizeOptions().size)


def _upper_bound(name: str, default: int) -> int:
    hi = next(f.hi for f in option_fields(VisualizeOptions) if f.name == name)
    return int(hi) if hi is not None else default


_FIELDS = _field_kinds()
_PREFIX = "m" + _schema(_FIELDS)

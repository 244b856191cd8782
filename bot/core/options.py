"""Turns what a user typed in a chat (a caption, a command) into validated ``VisualizeOptions``.

Chat users write options the way they think of them: ``style=neon seed=42 aspect=9:16 "a red fox"``,
``--style neon --seed 42``, ``ar=16:9``. Everything here is derived from the fields of
:class:`~m2i_engine.options.VisualizeOptions` — option names, enum choices, number ranges and text
lengths, as :func:`~m2i_engine.options.option_fields` reads them for every front end — so a new option
or a new style shows up in parsing, error messages and help at once.

Offers
------
- :func:`parse_options` — free text → ``VisualizeOptions`` (raises :class:`InvalidOptionError`).
- :func:`options_from_values` — typed values (slash-command options, form fields) → ``VisualizeOptions``.
- :func:`options_help` — one line per option with its choices or range, for ``/help``.
- :func:`option_names` — the canonical option names, in declaration order.
- :func:`describe_choices` — "auto, cover, abstract, …" or "a whole number from 0 to 4294967295".

Words that are not options become the prompt (``a red fox``); ``prompt=...`` may be used too.
Unknown ``name=value`` pairs are refused with the list of options rather than silently ignored.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bot.core import messages
from m2i_engine.errors import InvalidOptionError
from m2i_engine.options import OptionField, VisualizeOptions, option_fields

__all__ = ["describe_choices", "option_names", "options_from_values", "options_help", "parse_options"]

#: short names people use in other image tools; each maps to a real field of VisualizeOptions
ALIASES: dict[str, str] = {"ar": "aspect", "n": "num_images", "images": "num_images", "neg": "negative"}
#: values that clear an optional field (e.g. ``seed=none`` → the song picks the seed)
_NONE_WORDS = frozenset({"none", "null", "default"})
#: the option fields by name, in declaration order
_FIELDS: dict[str, OptionField] = {f.name: f for f in option_fields(VisualizeOptions)}

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "＂": '"'})
_TOKEN = re.compile(
    r'--(?P<flag>[A-Za-z][\w-]*)(?:=(?P<flag_val>"[^"]*"|\S+))?'  # --style neon / --style=neon
    r'|(?P<key>[A-Za-z][\w-]*)[=:](?P<val>"[^"]*"|\S+)'  # style=neon / style:neon
    r'|"(?P<quoted>[^"]*)"'  # "a red fox"
    r"|(?P<word>\S+)"
)


def option_names() -> list[str]:
    """Canonical option names in declaration order (``style``, ``prompt``, … ``num_images``)."""
    return list(_FIELDS)


def parse_options(text: str | None, *, base: VisualizeOptions | None = None) -> VisualizeOptions:
    """Options from chat text, on top of ``base`` (the bot's defaults).

    Parameters
    ----------
    text
        What the user typed, without the command or mention (``/visualize``, ``@bot``). ``None``
        or blank text gives ``base``.
    base
        Defaults the user's options override; ``VisualizeOptions()`` when not given.

    Returns
    -------
    VisualizeOptions
        Validated options.

    Raises
    ------
    InvalidOptionError
        With a message that names the bad option and lists the valid choices.

    Examples
    --------
    >>> parse_options('style=neon seed=42 aspect=9:16 "a red fox"').style.value
    'neon'
    >>> parse_options("--size 512 --ar 16:9").aspect.value
    '16:9'
    """
    base = base or VisualizeOptions()
    given = _tokens_to_values(text or "")
    if not given:
        return base
    merged = {**base.model_dump(), **given}
    try:
        return VisualizeOptions.model_validate(merged)
    except ValidationError as exc:
        raise _friendly_error(exc, given) from exc


def options_from_values(
    values: Mapping[str, Any], *, base: VisualizeOptions | None = None
) -> VisualizeOptions:
    """Options from already-typed values (a slash command's options), on top of ``base``.

    ``None`` values mean "not given" and keep ``base``'s value; enum options may be given by value
    or member. Raises :class:`InvalidOptionError` with the same words as :func:`parse_options`.
    """
    base = base or VisualizeOptions()
    given = {name: value for name, value in values.items() if value is not None}
    unknown = [name for name in given if name not in _FIELDS]
    if unknown:
        raise InvalidOptionError(messages.unknown_option(unknown[0], option_names()))
    if not given:
        return base
    try:
        return VisualizeOptions.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        raise _friendly_error(exc, given) from exc


def describe_choices(name: str) -> str:
    """What ``name`` accepts, in words: its enum values, its number range or its maximum length."""
    field = _FIELDS[name]
    if field.is_enum:
        return ", ".join(str(m.value) for m in field.choices)
    if field.kind is int:
        if field.lo is not None and field.hi is not None:
            return f"a whole number from {field.lo} to {field.hi}"
        return "a whole number"
    if field.max_length is not None:
        return f"text, up to {field.max_length} characters"
    return "text"


def options_help() -> list[str]:
    """One line per option: ``style — Look of the image… (auto, cover, …)``."""
    lines = []
    for name, field in _FIELDS.items():
        lines.append(f"{name} — {field.help or ''} ({describe_choices(name)})".replace(" — ()", ""))
    return lines


# --- private helpers -----------------------------------------------------------------------------


def _tokens_to_values(text: str) -> dict[str, Any]:
    """``{"style": "neon", "prompt": "a red fox"}`` from the raw text, names resolved, values raw."""
    given: dict[str, Any] = {}
    words: list[str] = []
    tokens = list(_TOKEN.finditer(text.translate(_QUOTES)))
    i = 0
    while i < len(tokens):
        m = tokens[i]
        i += 1
        if m["flag"] is not None:
            name = _resolve_name(m["flag"], strict=True)
            raw = m["flag_val"]
            if raw is None:  # --style neon: the value is the next token
                if i >= len(tokens):
                    raise InvalidOptionError(messages.option_needs_value(m["flag"], describe_choices(name)))
                raw = tokens[i][0]
                i += 1
            given[name] = _convert(name, _unquote(raw))
        elif m["key"] is not None:
            name = _resolve_name(m["key"], strict=m[0][len(m["key"])] == "=")
            if name is None:  # "note:this" is text, not an option
                words.append(m[0])
                continue
            given[name] = _convert(name, _unquote(m["val"]))
        elif m["quoted"] is not None:
            words.append(m["quoted"])
        else:
            words.append(m["word"].strip('"'))
    free = " ".join(w for w in words if w)
    if free:
        given["prompt"] = f"{given['prompt']} {free}" if given.get("prompt") else free
    return given


def _resolve_name(raw: str, *, strict: bool) -> str:
    """Field name for ``raw`` (``num-images`` → ``num_images``, ``ar`` → ``aspect``).

    With ``strict`` an unknown name is an error; otherwise ``None`` is returned (typed as ``str``
    for the strict callers' convenience).
    """
    key = raw.lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in _FIELDS:
        return key
    if strict:
        raise InvalidOptionError(messages.unknown_option(raw, option_names()))
    return None  # type: ignore[return-value]


def _convert(name: str, raw: str) -> Any:
    """``raw`` as the field's type where the chat spelling differs from the model's (enums, None)."""
    field = _FIELDS[name]
    if field.optional and raw.lower() in _NONE_WORDS:
        return None
    if field.is_enum:
        return _enum_member(field.kind, name, raw)
    if field.kind is int:
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise InvalidOptionError(messages.bad_option_value(name, raw, describe_choices(name))) from None
    return raw


def _enum_member(kind: type[enum.Enum], name: str, raw: str) -> enum.Enum:
    """Member of ``kind`` by value or name, case-insensitive; ``9x16``/``9/16`` for ``9:16``."""
    wanted = raw.lower()
    candidates = [wanted]
    if any(":" in str(m.value) for m in kind):
        candidates.append(re.sub(r"[x×/]", ":", wanted))
    for cand in candidates:
        for member in kind:
            if cand in (str(member.value).lower(), member.name.lower()):
                return member
    raise InvalidOptionError(messages.bad_choice(name, raw, describe_choices(name)))


def _friendly_error(exc: ValidationError, given: dict[str, Any]) -> InvalidOptionError:
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    if name in _FIELDS:
        value = given.get(name)
        shown = value.value if isinstance(value, enum.Enum) else value
        if first["type"] == "string_too_long":
            return InvalidOptionError(messages.option_too_long(name, describe_choices(name)), detail=str(exc))
        return InvalidOptionError(
            messages.bad_option_value(name, shown, describe_choices(name)), detail=str(exc)
        )
    return InvalidOptionError(detail=str(exc))


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    return raw

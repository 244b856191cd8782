"""/visualize's options, derived from ``VisualizeOptions`` so Discord offers exactly what the CLI offers.

Nothing here names an option: each field of :class:`~m2i_engine.options.VisualizeOptions` becomes a
typed slash-command parameter — enums become choices (their values; style choices also say what the
look is, from the style presets), ``ge``/``le`` become integer ranges, ``max_length`` becomes the
text limit, the field's description becomes the option's description. A new option or a new style
shows up in ``/visualize`` the next time the commands are synced.

Offers
------
- :func:`option_parameters` — decorator giving a command callback one keyword parameter per field;
  used with discord.py's own decorators::

      @app_commands.command(name="visualize", description=...)
      @app_commands.describe(audio="…", **option_descriptions())
      @app_commands.choices(**option_choices())
      @app_commands.autocomplete(**option_autocomplete())
      @option_parameters()
      async def visualize(self, interaction, audio: discord.Attachment, **options): ...

- :func:`option_descriptions`, :func:`option_choices`, :func:`option_autocomplete` — the metadata.
- :func:`complete_terms` — autocomplete for comma-separated word lists (``negative``).
- :data:`SLASH_EXCLUDED` — fields the chat bot sets itself (image size, number of images).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import discord
from discord import app_commands

from m2i_engine.options import OptionField, Style, VisualizeOptions, option_fields
from m2i_engine.prompt.styles import BASE_NEGATIVE, PRESETS

__all__ = [
    "SLASH_EXCLUDED",
    "complete_terms",
    "option_autocomplete",
    "option_choices",
    "option_descriptions",
    "option_parameters",
    "slash_fields",
]

F = TypeVar("F", bound=Callable[..., Any])
Autocomplete = Callable[[discord.Interaction, str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]

#: the bot's image size comes from its settings; several images come from the variations button
SLASH_EXCLUDED = frozenset({"size", "num_images"})
#: the option fields by name, in declaration order
_FIELDS: dict[str, OptionField] = {f.name: f for f in option_fields(VisualizeOptions)}
#: Discord's limits on command options
MAX_CHOICES = 25
MAX_DESCRIPTION = 100
MAX_CHOICE_NAME = 100
MAX_CHOICE_VALUE = 100


def slash_fields(exclude: Iterable[str] = SLASH_EXCLUDED) -> list[OptionField]:
    """The option fields offered as slash-command options, in the model's order."""
    skip = set(exclude)
    return [field for field in _FIELDS.values() if field.name not in skip]


def option_parameters(exclude: Iterable[str] = SLASH_EXCLUDED) -> Callable[[F], F]:
    """Give ``func`` (``(self?, interaction, …, **options)``) one optional keyword parameter per field.

    The new parameters are typed the way discord.py reads slash options: ``str`` for enums (their
    choices come from :func:`option_choices`), ``Range[int, ge, le]`` for bounded integers and
    ``Range[str, None, max_length]`` for text. All default to ``None`` (= the bot's default).
    """
    fields = slash_fields(exclude)

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        fixed = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            inspect.Parameter(
                field.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_slash_type(field)
            )
            for field in fields
        ]
        func.__signature__ = sig.replace(parameters=[*fixed, *added])  # type: ignore[attr-defined]
        return func

    return decorate


def option_descriptions(exclude: Iterable[str] = SLASH_EXCLUDED) -> dict[str, str]:
    """Each option's description: the field's own, cut to Discord's 100 characters."""
    return {f.name: _cut(f.help or f.name, MAX_DESCRIPTION) for f in slash_fields(exclude)}


def option_choices(exclude: Iterable[str] = SLASH_EXCLUDED) -> dict[str, list[app_commands.Choice[str]]]:
    """Choices for every enum option with at most 25 members: value = the enum value."""
    out: dict[str, list[app_commands.Choice[str]]] = {}
    for field in slash_fields(exclude):
        if field.is_enum and len(field.choices) <= MAX_CHOICES:
            out[field.name] = [
                app_commands.Choice(name=_choice_name(m), value=str(m.value)) for m in field.choices
            ]
    return out


def option_autocomplete(exclude: Iterable[str] = SLASH_EXCLUDED) -> dict[str, Autocomplete]:
    """Autocomplete where a list helps but choices can't be used: word lists, enums over 25 members."""
    out: dict[str, Autocomplete] = {}
    for field in slash_fields(exclude):
        if field.is_enum and len(field.choices) > MAX_CHOICES:
            out[field.name] = _enum_autocomplete(field.kind)
        elif field.name in _VOCABULARY:
            out[field.name] = complete_terms
    return out


async def complete_terms(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Suggest the next comma-separated term of a word list (the ``negative`` prompt).

    ``"blurry, wat"`` → ``"blurry, watermark"``, …; terms already typed are not offered again.
    """
    name = _focused_name(interaction)
    vocabulary = _VOCABULARY.get(name, _VOCABULARY["negative"])
    limit = min(_max_length(name) or MAX_CHOICE_VALUE, MAX_CHOICE_VALUE)
    head, _, last = current.rpartition(",")
    typed = [t.strip() for t in head.split(",") if t.strip()]
    prefix = last.strip().lower()
    used = {t.lower() for t in typed}
    fresh = [t for t in vocabulary if t.lower() not in used]
    ranked = [t for t in fresh if t.lower().startswith(prefix)] + [
        t for t in fresh if prefix and prefix in t.lower() and not t.lower().startswith(prefix)
    ]
    out: list[app_commands.Choice[str]] = []
    for term in ranked:
        value = ", ".join([*typed, term])
        if len(value) <= limit:
            out.append(app_commands.Choice(name=_cut(value, MAX_CHOICE_NAME), value=value))
        if len(out) == MAX_CHOICES:
            break
    return out


# --- private helpers -----------------------------------------------------------------------------


def _negative_terms() -> list[str]:
    phrases = [BASE_NEGATIVE, *(p.negative for p in PRESETS.values())]
    return list(dict.fromkeys(t.strip() for phrase in phrases for t in phrase.split(",") if t.strip()))


#: word lists offered by :func:`complete_terms`, by option name
_VOCABULARY: dict[str, list[str]] = {"negative": _negative_terms()}

#: a short "what it looks like" for each choice, where the engine has one
_CHOICE_NOTES: dict[type[enum.Enum], dict[Any, str]] = {
    Style: {s: p.description for s, p in PRESETS.items()} | {Style.auto: "Picked from the genre."},
}


def _choice_name(member: enum.Enum) -> str:
    value = str(member.value)
    note = _CHOICE_NOTES.get(type(member), {}).get(member)
    if note:
        return _cut(f"{value} — {note}", MAX_CHOICE_NAME)
    if member.name != value:
        return _cut(f"{value} ({member.name})", MAX_CHOICE_NAME)
    return value


def _enum_autocomplete(kind: type[enum.Enum]) -> Autocomplete:
    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        text = current.strip().lower()
        hits = [m for m in kind if text in str(m.value).lower() or text in m.name.lower()]
        return [app_commands.Choice(name=_choice_name(m), value=str(m.value)) for m in hits[:MAX_CHOICES]]

    return complete


def _slash_type(field: OptionField) -> Any:
    kind, lo, hi, max_len = field.kind, field.lo, field.hi, field.max_length
    if field.is_enum:
        return str
    if kind is int:
        return app_commands.Range[int, lo, hi] if (lo, hi) != (None, None) else int
    if kind is float:
        return app_commands.Range[float, lo, hi] if (lo, hi) != (None, None) else float
    if kind is bool:
        return bool
    return app_commands.Range[str, None, max_len] if max_len else str


def _focused_name(interaction: discord.Interaction) -> str:
    data: Mapping[str, Any] = interaction.data or {}  # type: ignore[assignment]
    for opt in data.get("options", []):
        if opt.get("focused"):
            return str(opt.get("name"))
    return "negative"


def _max_length(name: str) -> int | None:
    field = _FIELDS.get(name)
    return field.max_length if field is not None else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

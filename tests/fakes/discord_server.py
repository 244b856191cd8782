"""Why this exists: the bot must be tested end to end against Discord's real wire protocols, with no network.

This module serves a local Discord — the Gateway WebSocket and the REST API, plus an attachment CDN — with
aiohttp on 127.0.0.1, so that the *unmodified* discord.py client logs in, connects, receives events and
answers them exactly as it would against discord.com. Tests script what users do (upload a voice message,
run a slash command, press a button), then assert on what the bot sent back.

Start it and point a client at it::

    pytest_plugins = ["tests.fakes.discord_server"]  # in the test module (or the root conftest): the fixture

    async def test_something(fake_discord: FakeDiscord) -> None:
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        async with fake_discord.run_client(client):           # logs in, waits for on_ready
            rec = fake_discord.user_invokes_slash("draw", attachment=(ogg, "song.ogg", "audio/ogg"))
            await rec.wait_acknowledged()
            action = await fake_discord.wait_for(lambda a: a.kind == "followup" and a.interaction is rec)

Outside pytest: ``async with FakeDiscord() as fake: ...`` does the same start/stop.

How discord.py is pointed here (no discord.py source is modified; ``FakeDiscord.start`` does it and
``stop`` undoes it):

* ``discord.http.Route.BASE`` — the class attribute every REST route, webhook and interaction call is built
  from — is set to ``http://127.0.0.1:<port>/api/v10``.
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` is set to ``ws://127.0.0.1:<port>/gateway``. A plain
  ``discord.Client`` never calls ``GET /gateway/bot``: it connects straight to this hard-coded
  ``wss://gateway.discord.gg/`` constant (only ``AutoShardedClient`` asks ``/gateway/bot``, which the fake
  also answers), and it falls back to the constant again after a non-resumable INVALID_SESSION. After READY
  it uses ``resume_gateway_url`` from the READY payload, which the fake sets to ``ws://…/gateway-resume`` so
  tests can see that RESUMEs go where Discord told the client to go. Plain ``ws://`` works: discord.py
  does not force TLS, it uses whatever URL it is given.
* Only one FakeDiscord may be started at a time in a process (those two attributes are process-global).

discord.py behaviours the fake has to honour (all verified against discord.py 2.7):

* A 429 without a ``Via`` header is treated as a Cloudflare ban and raised, not retried; every API
  response here carries ``Via: 1.1 google`` like Discord's load balancer does.
* The client asks for transport compression (``compress=zlib-stream``, or ``zstd-stream`` when the
  ``zstandard`` package or Python 3.14's ``compression.zstd`` is importable); the fake compresses with a
  per-connection stream, flushing each message (zlib: ``Z_SYNC_FLUSH``). Without ``compress`` it sends
  plain JSON text frames.
* JSON bodies are parsed only when ``Content-Type`` is exactly ``application/json`` (no charset), as
  Discord sends it; anything else reaches the caller as a ``str``.
* ``RESUMED``'s ``d`` must be an object (discord.py writes a key into it).
* ``with_response=1`` on interaction callbacks: the client needs the ``InteractionCallback`` body
  (``interaction.response_message_id`` is how a View sent with the initial response gets registered).
* a non-initial IDENTIFY (after INVALID_SESSION) waits 5 s in discord.py's default
  ``Client.before_identify_hook``; ``run_client`` replaces that default with a no-op on the instance.
* ``client.close()`` puts close code 4000 on the wire, not 1000 (discord.py's reader closes the socket
  first), so the session stays resumable, exactly as on Discord.
* on_ready is delayed by ``guild_ready_timeout`` (default 2 s) after the last GUILD_CREATE; pass
  ``guild_ready_timeout=0.05`` to the test client (a supported ``Client`` option) to keep tests fast.
* discord.py uploads every file as ``application/octet-stream``; like Discord, the fake derives an
  attachment's ``content_type`` from its filename (and reads PNG/GIF/JPEG sizes for ``width``/``height``).

Discord rules the fake enforces, so bugs show up here rather than in production:

* the 3-second window: a callback arriving more than ``ack_deadline`` seconds after INTERACTION_CREATE
  was written gets ``404 Unknown interaction`` (10062); a second callback gets 400 (40060); follow-ups and
  ``@original`` edits before any acknowledgement get ``404 Unknown Webhook`` (10015);
* message limits (2000 chars, 10 embeds, embed field limits, 6000 embed chars, 10 files, 5 action rows of
  5 buttons, unique ``custom_id``), empty messages (50006), uploads over ``upload_limit`` (413, 40005);
* command sync validation (names, descriptions, option order, choices), answered with 50035 like Discord
  so discord.py raises ``CommandSyncFailure``;
* gateway intents: MESSAGE_CREATE needs GUILD_MESSAGES/DIRECT_MESSAGES, and without MESSAGE_CONTENT a
  guild message that does not mention the bot arrives with empty content, attachments, embeds and
  components; privileged intents the application lacks close the socket with 4014;
* CDN URLs are signed (``ex``/``is``/``hm``): a URL stripped of its query gets 404, as on Discord.

Deliberate simplifications: one guild, one shard; users are never rate-limited unless a test asks
(``inject_rate_limit``) or a bucket's emulated limit (``bucket_limit`` per ``bucket_window`` s, generous by
default) is exceeded; events dispatched while no bot is identified are queued and delivered after the next
READY (Discord would drop them); after a deferred (type 5) response the first follow-up replaces the
loading message (``followup_replaces_loading``).

REST route templates (use them with ``inject_rate_limit`` / ``inject_error``, prefixed with the method,
e.g. ``"POST /webhooks/{application_id}/{interaction_token}"``) are listed in ``ROUTES``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import math
import mimetypes
import os
import re
import secrets
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, unquote

import pytest_asyncio
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

if TYPE_CHECKING:
    import discord
    import pytest

__all__ = [
    "ROUTES",
    "BotAction",
    "FakeDiscord",
    "FaultRule",
    "GatewayConnection",
    "GatewayFrame",
    "HttpExchange",
    "InteractionRecord",
    "Transcript",
    "TranscriptNote",
    "UploadedFile",
    "fake_discord",
]

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000

# Gateway opcodes.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE_STATE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = (
    6,
    7,
    8,
    9,
    10,
    11,
)
_OP_NAMES = {
    0: "DISPATCH", 1: "HEARTBEAT", 2: "IDENTIFY", 3: "PRESENCE_UPDATE", 4: "VOICE_STATE_UPDATE", 6: "RESUME",
    7: "RECONNECT", 8: "REQUEST_GUILD_MEMBERS", 9: "INVALID_SESSION", 10: "HELLO", 11: "HEARTBEAT_ACK",
}  # fmt: skip

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_IS_VOICE_MESSAGE = 1 << 13
FLAG_IS_COMPONENTS_V2 = 1 << 15

# Interaction types and callback types.
INTERACTION_PING, INTERACTION_COMMAND, INTERACTION_COMPONENT = 1, 2, 3
INTERACTION_AUTOCOMPLETE, INTERACTION_MODAL_SUBMIT = 4, 5
CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE_MESSAGE = 4, 5, 6, 7
CB_AUTOCOMPLETE, CB_MODAL, CB_PREMIUM_REQUIRED, CB_LAUNCH_ACTIVITY = 8, 9, 10, 12
_ALLOWED_CALLBACKS = {
    INTERACTION_COMMAND: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_MODAL, CB_PREMIUM_REQUIRED, CB_LAUNCH_ACTIVITY},
    INTERACTION_COMPONENT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE_MESSAGE, CB_MODAL},
    INTERACTION_AUTOCOMPLETE: {CB_AUTOCOMPLETE},
    INTERACTION_MODAL_SUBMIT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE_MESSAGE},
}

# Application command option types.
OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP, OPT_STRING, OPT_INTEGER, OPT_BOOLEAN = 1, 2, 3, 4, 5
OPT_USER, OPT_CHANNEL, OPT_ROLE, OPT_MENTIONABLE, OPT_NUMBER, OPT_ATTACHMENT = 6, 7, 8, 9, 10, 11

# Permissions given to @everyone in the test guild (view, send, embed, attach, history, reactions, app
# commands, voice messages …) and to the bot (administrator).
EVERYONE_PERMISSIONS = (
    (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 18)
    | (1 << 20) | (1 << 21) | (1 << 31) | (1 << 35) | (1 << 38) | (1 << 46)
)  # fmt: skip
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 53) - 1

_COMMAND_NAME_RE = re.compile(r"^[-_'\w]{1,32}$")
_FILE_FIELD_RE = re.compile(r"^files\[(\d+)\]$")
_MENTION_RE = re.compile(r"<@!?(\d+)>")

FileSpec = tuple[bytes, str, str]
"""An upload as ``(data, filename, content_type)``."""
UserRef = str | int | Mapping[str, Any]
"""A user by name (``"alice"``), id, or user payload."""
ChannelRef = str | int | Mapping[str, Any]
"""A channel by name (``"general"``), id, or channel payload."""
ReconnectMode = Literal["reconnect", "close", "invalid_session", "invalid_session_resumable"]

ROUTES: tuple[str, ...] = (
    "GET /gateway",
    "GET /gateway/bot",
    "GET /users/@me",
    "GET /users/{user_id}",
    "POST /users/@me/channels",
    "GET /oauth2/applications/@me",
    "GET /applications/@me",
    "GET /applications/{application_id}/commands",
    "PUT /applications/{application_id}/commands",
    "POST /applications/{application_id}/commands",
    "GET /applications/{application_id}/commands/{command_id}",
    "PATCH /applications/{application_id}/commands/{command_id}",
    "DELETE /applications/{application_id}/commands/{command_id}",
    "GET /applications/{application_id}/guilds/{guild_id}/commands",
    "PUT /applications/{application_id}/guilds/{guild_id}/commands",
    "POST /applications/{application_id}/guilds/{guild_id}/commands",
    "GET /applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
    "PATCH /applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
    "DELETE /applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
    "POST /interactions/{interaction_id}/{interaction_token}/callback",
    "POST /webhooks/{application_id}/{interaction_token}",
    "GET /webhooks/{application_id}/{interaction_token}/messages/{message_id}",
    "PATCH /webhooks/{application_id}/{interaction_token}/messages/{message_id}",
    "DELETE /webhooks/{application_id}/{interaction_token}/messages/{message_id}",
    "GET /channels/{channel_id}",
    "GET /channels/{channel_id}/messages",
    "POST /channels/{channel_id}/messages",
    "GET /channels/{channel_id}/messages/{message_id}",
    "PATCH /channels/{channel_id}/messages/{message_id}",
    "DELETE /channels/{channel_id}/messages/{message_id}",
    "POST /channels/{channel_id}/typing",
    "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
    "DELETE /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
    "GET /guilds/{guild_id}",
    "GET /guilds/{guild_id}/channels",
    "GET /guilds/{guild_id}/members/{user_id}",
)
"""Every REST route the fake implements, as ``"METHOD /template"`` (relative to ``/api/v10``)."""

# Routes authenticated by the interaction token in their path rather than the bot token.
_TOKEN_ROUTES = frozenset(r for r in ROUTES if "{interaction_token}" in r)


# --------------------------------------------------------------------------------------------------
# Small helpers


class _Snowflakes:
    """Discord-style ids: milliseconds since the Discord epoch << 22, strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17)
        self._last = max(value, self._last + 1)
        return self._last


def _iso(snowflake: int | None = None) -> str:
    ms = ((snowflake >> 22) + DISCORD_EPOCH_MS) if snowflake is not None else time.time() * 1000
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON with ``Content-Type: application/json`` exactly, as Discord sends it (discord.py compares the
    header verbatim: aiohttp's ``json_response`` adds ``; charset=utf-8`` and the body arrives as text)."""
    return web.Response(
        body=_dumps(body).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _sid(value: Any) -> int:
    """A snowflake from a str/int id or a payload with an ``id``."""
    if isinstance(value, Mapping):
        value = value["id"]
    return int(value)


_EXTRA_TYPES = {
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".m4a": "audio/mp4",
    ".flac": "audio/flac", ".wav": "audio/x-wav", ".aiff": "audio/aiff", ".webm": "video/webm",
    ".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
    ".json": "application/json; charset=utf-8",
}  # fmt: skip


def _guess_content_type(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    return _EXTRA_TYPES.get(ext) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG, as Discord reports them for image attachments."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _ogg_duration(data: bytes) -> float | None:
    """Duration of an Ogg Opus/Vorbis stream from its last page's granule position."""
    if not data.startswith(b"OggS"):
        return None
    last = data.rfind(b"OggS")
    if last + 14 > len(data):
        return None
    granule = struct.unpack_from("<q", data, last + 6)[0]
    if granule < 0:
        return None
    head = data.find(b"OpusHead")
    if head >= 0 and head + 12 <= len(data):
        pre_skip = struct.unpack_from("<H", data, head + 10)[0]
        return max(0.0, (granule - pre_skip) / 48_000)
    vorbis = data.find(b"\x01vorbis")
    if vorbis >= 0 and vorbis + 16 <= len(data):
        rate = struct.unpack_from("<I", data, vorbis + 12)[0]
        if rate:
            return granule / rate
    return None


def _waveform(data: bytes, samples: int = 64) -> str:
    """A voice message's base64 waveform: one byte per sample (a deterministic stand-in)."""
    chunk = max(1, len(data) // samples)
    values = bytes(
        min(255, sum(data[i * chunk : (i + 1) * chunk]) // chunk) if data[i * chunk : (i + 1) * chunk] else 0
        for i in range(samples)
    )
    return base64.b64encode(values).decode()


def _form_error(path: Sequence[str | int], code: str, message: str) -> dict[str, Any]:
    """Discord's nested ``errors`` object for one failing field of an Invalid Form Body (50035)."""
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        node = {str(key): node}
    return node


def _add(errors: dict[str, Any], path: Sequence[str | int], code: str, message: str) -> None:
    _merge(errors, _form_error(path, code, message))


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if key in into and isinstance(into[key], dict) and isinstance(value, Mapping):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _walk_components(components: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Every component in a message's tree (action rows, containers, sections, labels …)."""
    for comp in components:
        yield comp
        yield from _walk_components(comp.get("components") or [])
        for key in ("accessory", "component"):
            child = comp.get(key)
            if isinstance(child, Mapping):
                yield from _walk_components([child])


class _ApiError(Exception):
    """An error response in Discord's JSON shape."""

    def __init__(self, status: int, code: int, message: str, errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.headers: dict[str, str] = {}
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = dict(errors)


def _invalid_form(errors: Mapping[str, Any]) -> _ApiError:
    return _ApiError(400, 50035, "Invalid Form Body", errors)


# --------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request the bot sent (``files[n]``)."""

    field: str
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class _StoredFile:
    attachment_id: int
    filename: str
    content_type: str
    data: bytes
    expires: str
    issued: str


@dataclass
class HttpExchange:
    """One HTTP request to the fake (REST or CDN) and the response it got."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    route: str | None
    request_headers: dict[str, str]
    request_json: Any = None
    request_files: list[UploadedFile] = field(default_factory=list)
    status: int = 0
    response_json: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)
    injected: str | None = None
    duration: float = 0.0


@dataclass
class GatewayFrame:
    """One gateway payload; ``direction`` is ``"to_bot"`` (Discord → bot) or ``"from_bot"``."""

    at: float
    connection: int
    direction: Literal["to_bot", "from_bot"]
    op: int
    t: str | None
    s: int | None
    d: Any
    compressed_size: int | None = None


@dataclass
class TranscriptNote:
    """Something the fake did that is neither HTTP nor a frame (a fault injected, a socket closed …)."""

    at: float
    text: str


TranscriptItem = HttpExchange | GatewayFrame | TranscriptNote


class Transcript(list[TranscriptItem]):
    """Every HTTP exchange, gateway frame and note, in order; ``write_markdown`` makes it readable."""

    def http(self) -> list[HttpExchange]:
        return [e for e in self if isinstance(e, HttpExchange)]

    def frames(self) -> list[GatewayFrame]:
        return [e for e in self if isinstance(e, GatewayFrame)]

    def to_markdown(self, *, include_heartbeats: bool = False, max_body: int = 1500, title: str = "") -> str:
        def body(value: Any) -> str:
            text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
            if len(text) > max_body:
                text = text[:max_body] + f"\n… ({len(text) - max_body} more characters)"
            return f"```json\n{text}\n```\n"

        lines = [f"# {title or 'Fake Discord transcript'}\n"]
        lines.append("Times are seconds since the fake started; → is towards the bot, ← is from the bot.\n")
        for item in self:
            stamp = f"`{item.at:8.3f}s`"
            if isinstance(item, TranscriptNote):
                lines.append(f"- {stamp} _note_: {item.text}\n")
            elif isinstance(item, GatewayFrame):
                if not include_heartbeats and item.op in (OP_HEARTBEAT, OP_HEARTBEAT_ACK):
                    continue
                arrow = "→ bot" if item.direction == "to_bot" else "← bot"
                name = item.t if item.op == OP_DISPATCH else _OP_NAMES.get(item.op, str(item.op))
                seq = f" s={item.s}" if item.s is not None else ""
                lines.append(f"### {stamp} gateway #{item.connection} {arrow} op {item.op} {name}{seq}\n")
                if item.d is not None:
                    lines.append(body(item.d))
            else:
                injected = f" _(injected {item.injected})_" if item.injected else ""
                query = ("?" + "&".join(f"{k}={v}" for k, v in item.query.items())) if item.query else ""
                lines.append(
                    f"### {stamp} HTTP ← bot `{item.method} {item.path}{query}` "
                    f"→ **{item.status}**{injected}\n"
                )
                if item.route:
                    lines.append(f"route `{item.route}`, {item.duration * 1000:.1f} ms\n")
                if item.request_json is not None:
                    lines.append("request:\n")
                    lines.append(body(item.request_json))
                for f in item.request_files:
                    lines.append(
                        f"- file `{f.field}` `{f.filename}` ({f.content_type}, {f.size} bytes, "
                        f"sha256 {f.sha256[:12]}…)\n"
                    )
                if item.response_json is not None:
                    lines.append("response:\n")
                    lines.append(body(item.response_json))
        return "\n".join(lines)

    def write_markdown(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_markdown(**kwargs), encoding="utf-8")
        return out


@dataclass
class BotAction:
    """Something the bot did through the REST API or CDN (successful or refused by the fake).

    ``kind`` is one of: ``interaction_response`` (a callback; ``callback_type`` says which),
    ``followup``, ``webhook_edit`` (``@original`` or a follow-up edited), ``webhook_delete``,
    ``webhook_fetch``, ``message``, ``message_edit``, ``message_delete``, ``typing``, ``reaction_add``,
    ``reaction_remove``, ``commands_sync`` (bulk PUT), ``command_upsert``, ``command_edit``,
    ``command_delete``, ``dm_open``, ``cdn_download``.
    """

    kind: str
    at: float
    route: str
    status: int
    payload: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    message: dict[str, Any] | None = None
    interaction: InteractionRecord | None = None
    channel_id: int | None = None
    guild_id: int | None = None
    error: dict[str, Any] | None = None
    edited_original: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def callback_type(self) -> int | None:
        return self.payload.get("type") if self.kind == "interaction_response" and self.payload else None

    @property
    def content(self) -> str:
        if self.message is not None:
            return str(self.message.get("content") or "")
        data = self.payload or {}
        if self.kind == "interaction_response":
            data = data.get("data") or {}
        return str(data.get("content") or "") if isinstance(data, Mapping) else ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        if self.message is not None:
            return list(self.message.get("embeds") or [])
        return []

    def file(self, filename: str | None = None) -> UploadedFile:
        """The uploaded file named ``filename`` (or the only one)."""
        matches = [f for f in self.files if filename is None or f.filename == filename]
        if len(matches) != 1:
            raise LookupError(
                f"{len(matches)} files match {filename!r} in {[f.filename for f in self.files]}"
            )
        return matches[0]


@dataclass
class InteractionRecord:
    """An interaction the fake sent, with how and when the bot acknowledged it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    channel_id: int
    user_id: int
    enqueued_at: float
    dispatched_at: float | None = None
    acked_at: float | None = None
    ack_type: int | None = None
    refused: list[str] = field(default_factory=list)
    original_message_id: int | None = None
    message_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    autocomplete_choices: list[dict[str, Any]] | None = None
    actions: list[BotAction] = field(default_factory=list)
    _acked: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def ack_latency(self) -> float | None:
        """Seconds from INTERACTION_CREATE leaving the fake to the bot's callback (Discord allows 3)."""
        if self.acked_at is None or self.dispatched_at is None:
            return None
        return self.acked_at - self.dispatched_at

    @property
    def deferred(self) -> bool:
        return self.ack_type in (CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE)

    @property
    def name(self) -> str | None:
        return self.payload.get("data", {}).get("name")

    async def wait_acknowledged(self, timeout: float = 5.0) -> float:
        """Wait for the callback; returns ``ack_latency``."""
        try:
            await asyncio.wait_for(self._acked.wait(), timeout)
        except TimeoutError:
            why = f" (refused: {'; '.join(self.refused)})" if self.refused else ""
            raise TimeoutError(
                f"interaction {self.id} ({self.name}) was not acknowledged in {timeout}s{why}"
            ) from None
        assert self.ack_latency is not None
        return self.ack_latency


@dataclass
class GatewayConnection:
    """One WebSocket connection the client opened to the gateway."""

    index: int
    path: str
    query: dict[str, str]
    compress: str | None
    opened_at: float
    handshake: Literal["identify", "resume"] | None = None
    session_id: str | None = None
    resume_seq: int | None = None
    identify: dict[str, Any] | None = None
    heartbeats: int = 0
    closed_at: float | None = None
    close_code: int | None = None
    closed_by: Literal["server", "client"] | None = None


@dataclass
class FaultRule:
    """An injected failure: the next ``count`` requests matching ``route`` get ``status``."""

    route: str
    status: int
    count: int | None
    retry_after: float = 0.0
    is_global: bool = False
    scope: str = "user"
    body: dict[str, Any] | None = None
    hits: int = 0

    def matches(self, method: str, template: str | None) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        if self.route == "*":
            return True
        want_method, _, want_path = self.route.partition(" ")
        return want_method in (method, "*") and want_path in (template, "*")


@dataclass
class _Bucket:
    reset_at: float
    used: int = 0


# --------------------------------------------------------------------------------------------------
# Gateway internals


class _Compressor:
    """Transport compression for one connection: every message is flushed so it decodes on its own."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self._zlib: Any = None
        self._zstd: Any = None
        self._flush: Any = None
        if kind == "zlib-stream":
            self._zlib = zlib.compressobj()
        elif kind == "zstd-stream":
            try:
                import zstandard  # type: ignore[import-not-found]

                self._zstd = zstandard.ZstdCompressor().compressobj()
                self._flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
            except ImportError:
                from compression import zstd  # type: ignore[import-not-found]

                self._zstd = zstd.ZstdCompressor()
                self._flush = None
        elif kind is not None:
            raise ValueError(f"unsupported gateway compression {kind!r}")

    def encode(self, text: str) -> str | bytes:
        if self.kind is None:
            return text
        data = text.encode()
        if self._zlib is not None:
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self._flush is not None:  # zstandard
            return bytes(self._zstd.compress(data) + self._zstd.flush(self._flush))
        return bytes(self._zstd.compress(data, mode=self._zstd.FLUSH_BLOCK))  # compression.zstd


@dataclass
class _Close:
    code: int
    reason: str = ""


class _Conn:
    def __init__(self, ws: web.WebSocketResponse, record: GatewayConnection) -> None:
        self.ws = ws
        self.record = record
        self.compressor = _Compressor(record.compress)
        self.outbox: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()
        self.session: _Session | None = None
        self.server_close_code: int | None = None
        self.writer: asyncio.Task[None] | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.sending = False

    def send(self, payload: dict[str, Any]) -> None:
        self.outbox.put_nowait(payload)

    def close(self, code: int, reason: str = "") -> None:
        if self.server_close_code is None:
            self.server_close_code = code
            self.outbox.put_nowait(_Close(code, reason))

    @property
    def live(self) -> bool:
        return self.server_close_code is None and not self.ws.closed


@dataclass
class _Session:
    id: str
    intents: int
    identify: dict[str, Any]
    seq: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    conn: _Conn | None = None
    invalid: bool = False


ClientT = TypeVar("ClientT", bound="discord.Client")

# Per-request storage for the parsed body (typed keys where aiohttp has them, plain strings before 3.12).
_REQUEST_KEY: Any = getattr(web, "RequestKey", None)
_PAYLOAD: Any = _REQUEST_KEY("fake_discord_payload", object) if _REQUEST_KEY else "fake_discord_payload"
_FILES: Any = _REQUEST_KEY("fake_discord_files", list) if _REQUEST_KEY else "fake_discord_files"


# --------------------------------------------------------------------------------------------------
# The fake


class FakeDiscord:
    """A local Discord: gateway, REST API and CDN for one bot, one guild and a few users.

    World: ``bot_user``, ``application_id``, ``guild_id``, ``guild``, users ``alice`` and ``bob``
    (``user(name)``, ``add_user``), text channels ``general`` and ``music`` and voice channel ``Lounge``
    (``channel(name)``, ``add_channel``, ``dm_channel(user)``), ``messages`` (id → payload).

    Scripted users: ``user_sends``, ``user_uploads``, ``user_invokes_slash``, ``user_invokes_context_menu``,
    ``user_presses_button``, ``user_selects``, ``user_submits_modal``, ``dispatch`` (raw event). They queue
    the event and return at once; ``await drain()`` waits until it was written to the socket.

    Observation: ``actions`` (``BotAction``), ``await wait_for(predicate)``, ``interactions``,
    ``commands``/``registered_command``, ``connections``, ``transcript``, ``unhandled_requests``.

    Faults: ``inject_rate_limit``, ``inject_error``, ``clear_faults``, ``await force_reconnect(mode)``.
    """

    def __init__(
        self,
        *,
        token: str = "fake-bot-token.m2i.test",
        bot_name: str = "m2i",
        guild_name: str = "m2i test guild",
        heartbeat_interval_ms: int = 41_250,
        ack_deadline: float | None = 3.0,
        interaction_token_ttl: float = 15 * 60,
        upload_limit: int = 10 * 1024 * 1024,
        allowed_privileged_intents: int = PRIVILEGED_INTENTS,
        enforce_message_content: bool = True,
        echo_bot_messages: bool = True,
        followup_replaces_loading: bool = True,
        cdn_require_signature: bool = True,
        bucket_limit: int = 50,
        bucket_window: float = 1.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ack_deadline = ack_deadline
        self.interaction_token_ttl = interaction_token_ttl
        self.upload_limit = upload_limit
        self.allowed_privileged_intents = allowed_privileged_intents
        self.enforce_message_content = enforce_message_content
        self.echo_bot_messages = echo_bot_messages
        self.followup_replaces_loading = followup_replaces_loading
        self.cdn_require_signature = cdn_require_signature
        self.bucket_limit = bucket_limit
        self.bucket_window = bucket_window
        self.host = host

        self._t0 = time.monotonic()
        self._ids = _Snowflakes()
        self._cdn_secret = secrets.token_bytes(16)

        # Observation.
        self.transcript = Transcript()
        self.actions: list[BotAction] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self.connections: list[GatewayConnection] = []
        self.unhandled_requests: list[HttpExchange] = []
        self.presence_updates: list[dict[str, Any]] = []
        self.faults: list[FaultRule] = []
        self._changed = asyncio.Event()
        self._handshakes = 0

        # Gateway.
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None
        self._conns: set[_Conn] = set()
        self._orphans: list[tuple[str, dict[str, Any]]] = []

        # World.
        self.application_id = self._ids.next()
        self.bot_user: dict[str, Any] = self._user_payload(self.application_id, bot_name, bot=True)
        self.owner_user: dict[str, Any] = self._user_payload(self._ids.next(), "owner")
        self.guild_id = self._ids.next()
        self.guild: dict[str, Any] = {
            "id": str(self.guild_id),
            "name": guild_name,
            "owner_id": self.owner_user["id"],
            "roles": [
                {
                    "id": str(self.guild_id), "name": "@everyone", "color": 0, "hoist": False, "icon": None,
                    "unicode_emoji": None, "position": 0, "permissions": str(EVERYONE_PERMISSIONS),
                    "managed": False, "mentionable": False, "flags": 0,
                },
            ],
            "joined_at": _iso(),
        }  # fmt: skip
        self.users: dict[int, dict[str, Any]] = {}
        self.members: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._dm_channels: dict[int, int] = {}
        self._commands: dict[int | None, dict[tuple[int, str], dict[str, Any]]] = {}
        self._cdn: dict[str, _StoredFile] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        for user in (self.bot_user, self.owner_user):
            self._add_member(user)
        self.add_user("alice")
        self.add_user("bob")
        self.add_channel("general")
        self.add_channel("music")
        self.add_channel("Lounge", type=2)

        # Server.
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._saved_discord: tuple[Any, Any] | None = None
        self._templates: set[str] = set(ROUTES)

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway-resume"

    async def start(self, *, patch_discord: bool = True) -> FakeDiscord:
        """Serve on a free port; with ``patch_discord``, point discord.py here (see the module docstring)."""
        if self._runner is not None:
            return self
        app = web.Application(middlewares=[self._middleware], client_max_size=512 * 1024 * 1024)
        app.router.add_get("/gateway", self._ws_handler)
        app.router.add_get("/gateway-resume", self._ws_handler)
        for prefix in ("", "/media"):
            app.router.add_get(prefix + "/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn_get)
            app.router.add_get(
                prefix + "/ephemeral-attachments/{application_id}/{attachment_id}/{filename}", self._cdn_get
            )
        for route in ROUTES:
            method, template = route.split(" ", 1)
            handler = getattr(self, "_h_" + self._handler_name(method, template))
            app.router.add_route(method, f"/api/v{{api_version:\\d+}}{template}", handler)
        app.router.add_route("*", "/api/{tail:.*}", self._h_unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._note(f"listening on {self.base_url}")
        if patch_discord:
            self.point_discord_py_here()
        return self

    async def stop(self) -> None:
        """Close every gateway socket, stop serving and restore discord.py's URLs."""
        for conn in list(self._conns):
            conn.close(1001, "going away")
        for conn in list(self._conns):
            if conn.writer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(conn.writer), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.restore_discord_py()

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    _active: FakeDiscord | None = None

    def point_discord_py_here(self) -> None:
        """Set ``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` to this fake."""
        import discord.gateway
        import discord.http

        if FakeDiscord._active is not None and FakeDiscord._active is not self:
            raise RuntimeError("another FakeDiscord is already patched into discord.py")
        if self._saved_discord is None:
            self._saved_discord = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        FakeDiscord._active = self

    def restore_discord_py(self) -> None:
        if self._saved_discord is None:
            return
        import discord.gateway
        import discord.http

        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved_discord
        self._saved_discord = None
        if FakeDiscord._active is self:
            FakeDiscord._active = None

    @contextlib.asynccontextmanager
    async def run_client(
        self, client: ClientT, *, timeout: float = 10.0, skip_identify_delay: bool = True
    ) -> AsyncIterator[ClientT]:
        """Run ``client.start(token)`` in a task until the block ends; enter once on_ready has fired.

        Construct the client with ``guild_ready_timeout=0.05`` or entering takes 2 s longer. With
        ``skip_identify_delay``, a client that keeps discord.py's default ``before_identify_hook`` (which
        sleeps 5 s before every IDENTIFY but the first) gets a no-op one on the instance, so re-IDENTIFY
        after an INVALID_SESSION is immediate; a hook the bot overrides itself is left alone.
        """
        import discord

        if skip_identify_delay and type(client).before_identify_hook is discord.Client.before_identify_hook:

            async def no_identify_delay(shard_id: int | None, *, initial: bool = False) -> None:
                return None

            client.before_identify_hook = no_identify_delay  # type: ignore[method-assign]
        task = asyncio.create_task(client.start(self.token), name="fake-discord-client")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not client.is_ready():
                if task.done():
                    task.result()
                    raise RuntimeError("the client stopped before it was ready")
                if loop.time() > deadline:
                    raise TimeoutError(f"the client was not ready within {timeout}s")
                await asyncio.sleep(0.005)
            yield client
        finally:
            await client.close()
            try:
                await asyncio.wait_for(task, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    def now(self) -> float:
        """Seconds since this fake was created (the transcript's clock)."""
        return time.monotonic() - self._t0

    def _note(self, text: str) -> None:
        self.transcript.append(TranscriptNote(self.now(), text))

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(self, check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            event = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(what())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    # ------------------------------------------------------------------ world

    @staticmethod
    def _user_payload(uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(uid), "username": name, "discriminator": "0",
            "global_name": None if bot else name.title(),
            "avatar": None, "bot": bot, "system": False, "public_flags": 0, "flags": 0, "banner": None,
            "accent_color": None, "avatar_decoration_data": None,
        }  # fmt: skip

    def _add_member(self, user: Mapping[str, Any]) -> dict[str, Any]:
        uid = _sid(user)
        self.users[uid] = dict(user)
        member: dict[str, Any] = {
            "user": self.users[uid], "nick": None, "avatar": None, "roles": [], "joined_at": _iso(),
            "premium_since": None, "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None,
        }  # fmt: skip
        self.members[uid] = member
        return member

    def add_user(self, name: str) -> dict[str, Any]:
        """Add a guild member (dispatches GUILD_MEMBER_ADD when a bot is connected)."""
        user = self._user_payload(self._ids.next(), name)
        member = self._add_member(user)
        if self._session is not None:
            self._dispatch("GUILD_MEMBER_ADD", {**member, "guild_id": str(self.guild_id)})
        return user

    def add_channel(self, name: str, *, type: int = 0, topic: str | None = None) -> dict[str, Any]:
        """Add a guild channel (0 text, 2 voice); dispatches CHANNEL_CREATE when a bot is connected."""
        cid = self._ids.next()
        channel: dict[str, Any] = {
            "id": str(cid), "type": type, "guild_id": str(self.guild_id), "name": name,
            "position": len(self.channels), "permission_overwrites": [], "nsfw": False, "parent_id": None,
            "last_message_id": None, "rate_limit_per_user": 0, "flags": 0,
        }  # fmt: skip
        if type == 2:
            channel.update(bitrate=64000, user_limit=0, rtc_region=None)
        else:
            channel["topic"] = topic
        self.channels[cid] = channel
        self._channel_messages[cid] = []
        if self._session is not None:
            self._dispatch("CHANNEL_CREATE", channel)
        return channel

    def user(self, ref: UserRef) -> dict[str, Any]:
        """A user payload by name, id or payload."""
        key: str | int = ref["id"] if isinstance(ref, Mapping) else ref
        if isinstance(key, str) and not key.isdigit():
            for user in self.users.values():
                if user["username"] == key:
                    return user
            raise LookupError(f"no user named {key!r}; known: {[u['username'] for u in self.users.values()]}")
        return self.users[int(key)]

    def channel(self, ref: ChannelRef) -> dict[str, Any]:
        """A channel payload by name, id or payload."""
        key: str | int = ref["id"] if isinstance(ref, Mapping) else ref
        if isinstance(key, str) and not key.isdigit():
            for channel in self.channels.values():
                if channel.get("name") == key:
                    return channel
            raise LookupError(f"no channel named {key!r}")
        return self.channels[int(key)]

    def dm_channel(self, user: UserRef) -> dict[str, Any]:
        """The DM channel between ``user`` and the bot (created on first use)."""
        u = self.user(user)
        uid = int(u["id"])
        if uid not in self._dm_channels:
            cid = self._ids.next()
            self.channels[cid] = {
                "id": str(cid),
                "type": 1,
                "recipients": [u],
                "last_message_id": None,
                "flags": 0,
            }
            self._channel_messages[cid] = []
            self._dm_channels[uid] = cid
        return self.channels[self._dm_channels[uid]]

    def messages_in(self, channel: ChannelRef) -> list[dict[str, Any]]:
        """Messages currently in a channel, oldest first (ephemeral ones included)."""
        cid = _sid(self.channel(channel))
        return [self.messages[m] for m in self._channel_messages.get(cid, []) if m in self.messages]

    def message(self, ref: Mapping[str, Any] | int | str | BotAction) -> dict[str, Any]:
        """The current state of a message (by payload, id, or the action that produced it)."""
        if isinstance(ref, BotAction):
            if ref.message is None:
                raise LookupError(f"action {ref.kind} produced no message")
            ref = ref.message
        mid = _sid(ref)
        if mid not in self.messages:
            raise LookupError(f"unknown message {mid}")
        return self.messages[mid]

    def _is_guild_channel(self, channel: Mapping[str, Any]) -> bool:
        return "guild_id" in channel

    def _guild_create_payload(self, intents: int) -> dict[str, Any]:
        members = list(self.members.values())
        if not intents & INTENT_GUILD_MEMBERS:
            members = [self.members[self.application_id]]
        guild_channels = [c for c in self.channels.values() if self._is_guild_channel(c)]
        return {
            **self._guild_base(),
            "joined_at": self.guild["joined_at"], "large": False, "unavailable": False,
            "member_count": len(self.members), "voice_states": [], "members": copy.deepcopy(members),
            "channels": [{k: v for k, v in c.items() if k != "guild_id"} for c in guild_channels],
            "threads": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }  # fmt: skip

    def _guild_base(self) -> dict[str, Any]:
        general = next((c for c in self.channels.values() if c.get("type") == 0), None)
        return {
            "id": self.guild["id"], "name": self.guild["name"], "icon": None, "splash": None,
            "discovery_splash": None, "owner_id": self.guild["owner_id"], "afk_channel_id": None,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "roles": copy.deepcopy(self.guild["roles"]), "emojis": [],
            "stickers": [], "features": [], "mfa_level": 0, "application_id": None,
            "system_channel_id": general["id"] if general else None, "system_channel_flags": 0,
            "rules_channel_id": None, "vanity_url_code": None, "description": None, "banner": None,
            "premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US",
            "public_updates_channel_id": None, "nsfw_level": 0, "premium_progress_bar_enabled": False,
        }  # fmt: skip

    def _application_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id), "name": self.bot_user["username"], "icon": None,
            "description": "m2i fake application", "rpc_origins": [], "bot_public": True,
            "bot_require_code_grant": False, "owner": self.owner_user, "team": None, "verify_key": "0" * 64,
            "flags": (1 << 19) | (1 << 23), "bot": self.bot_user, "summary": "", "tags": [],
            "interactions_endpoint_url": None, "redirect_uris": [], "approximate_guild_count": 1,
            "integration_types_config": {"0": {}},
        }  # fmt: skip

    def _permissions_for(self, uid: int) -> int:
        if uid == self.application_id or str(uid) == self.guild["owner_id"]:
            return ALL_PERMISSIONS
        return EVERYONE_PERMISSIONS

    # ------------------------------------------------------------------ gateway

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise web.HTTPBadRequest(text="gateway: websocket upgrade expected")
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        query = dict(request.query)
        record = GatewayConnection(
            index=len(self.connections), path=request.path, query=query,
            compress=query.get("compress"), opened_at=self.now(),
        )  # fmt: skip
        self.connections.append(record)
        self._note(f"gateway #{record.index} opened {request.path_qs}")
        try:
            conn = _Conn(ws, record)
        except ValueError as exc:
            await ws.close(code=4000, message=str(exc).encode())
            return ws
        self._conns.add(conn)
        conn.writer = asyncio.create_task(self._writer(conn), name=f"fake-gateway-writer-{record.index}")
        if query.get("encoding", "json") != "json":
            conn.close(4002, "only encoding=json is implemented")
        elif query.get("v") not in (None, "9", "10"):
            conn.close(4012, "Invalid API version")
        else:
            conn.send(
                {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake"]}}
            )
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.close(4002, "Decode error")
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            if conn.close_timer is not None:
                conn.close_timer.cancel()
            record.closed_at = self.now()
            record.closed_by = "server" if conn.server_close_code is not None else "client"
            record.close_code = (
                conn.server_close_code if conn.server_close_code is not None else ws.close_code
            )
            self._note(f"gateway #{record.index} closed by {record.closed_by} (code {record.close_code})")
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                if record.closed_by == "client" and record.close_code in (1000, 1001):
                    self._invalidate(session)  # a clean client close ends the session, as on Discord
            if conn.writer is not None and not conn.writer.done():
                conn.outbox.put_nowait(_Close(1000))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.writer, 1.0)
            self._conns.discard(conn)
            self._bump()
        return ws

    async def _writer(self, conn: _Conn) -> None:
        """The single writer per socket: keeps frames (and the compression stream) in order."""
        while True:
            item = await conn.outbox.get()
            if isinstance(item, _Close):
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=item.code, message=item.reason.encode())
                self._bump()
                return
            conn.sending = True
            try:
                encoded = conn.compressor.encode(_dumps(item))
                if isinstance(encoded, bytes):
                    await conn.ws.send_bytes(encoded)
                else:
                    await conn.ws.send_str(encoded)
            except (ConnectionError, RuntimeError):
                conn.sending = False
                self._bump()
                return
            conn.sending = False
            self.transcript.append(
                GatewayFrame(
                    self.now(), conn.record.index, "to_bot", item["op"], item.get("t"), item.get("s"),
                    item.get("d"), len(encoded) if isinstance(encoded, bytes) else None,
                )
            )  # fmt: skip
            if item.get("t") == "INTERACTION_CREATE":
                rec = self.interactions.get(int(item["d"]["id"]))
                if rec is not None and rec.dispatched_at is None:
                    rec.dispatched_at = time.monotonic()
            self._bump()

    async def _on_frame(self, conn: _Conn, text: str) -> None:
        try:
            msg = json.loads(text)
            op = int(msg["op"])
        except (ValueError, KeyError, TypeError):
            conn.close(4002, "Decode error")
            return
        d = msg.get("d")
        logged = d
        if op in (OP_IDENTIFY, OP_RESUME) and isinstance(d, dict) and "token" in d:
            logged = {**d, "token": "<redacted>"}
        self.transcript.append(
            GatewayFrame(self.now(), conn.record.index, "from_bot", op, None, None, logged)
        )
        if op == OP_HEARTBEAT:
            conn.record.heartbeats += 1
            conn.send({"op": OP_HEARTBEAT_ACK, "d": None})
        elif op == OP_IDENTIFY:
            self._on_identify(conn, d or {})
        elif op == OP_RESUME:
            self._on_resume(conn, d or {})
        elif conn.session is None:
            conn.close(4003, "Not authenticated")
        elif op == OP_PRESENCE:
            self.presence_updates.append(d)
        elif op == OP_REQUEST_MEMBERS:
            self._on_request_members(conn, d or {})
        elif op == OP_VOICE_STATE:
            self._note(f"voice state update ignored: {d}")
        else:
            conn.close(4001, "Unknown opcode")

    def _on_identify(self, conn: _Conn, d: dict[str, Any]) -> None:
        if conn.session is not None:
            conn.close(4005, "Already authenticated")
            return
        if d.get("token") != self.token:
            conn.close(4004, "Authentication failed")
            return
        intents = d.get("intents")
        if not isinstance(intents, int):
            conn.close(4013, "Invalid intent(s)")
            return
        if intents & PRIVILEGED_INTENTS & ~self.allowed_privileged_intents:
            conn.close(4014, "Disallowed intent(s)")
            return
        if self._session is not None:
            self._invalidate(self._session)
        session = _Session(id=secrets.token_hex(16), intents=intents, identify={**d, "token": "<redacted>"})
        self._sessions[session.id] = session
        self._session = session
        session.conn = conn
        conn.session = session
        conn.record.handshake = "identify"
        conn.record.session_id = session.id
        conn.record.identify = session.identify
        ready = {
            "v": API_VERSION, "user": {**self.bot_user, "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(self.guild_id), "unavailable": True}], "session_id": session.id,
            "session_type": "normal", "resume_gateway_url": self.resume_gateway_url,
            "shard": d.get("shard", [0, 1]), "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
            "geo_ordered_rtc_regions": [], "auth": {}, "user_settings": {}, "_trace": ["fake-discord"],
        }  # fmt: skip
        self._deliver(session, "READY", ready)
        if intents & INTENT_GUILDS:
            self._deliver(session, "GUILD_CREATE", self._guild_create_payload(intents))
        orphans, self._orphans = self._orphans, []
        for t, data in orphans:
            self._deliver(session, t, data)
        self._handshakes += 1
        self._bump()

    def _on_resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        conn.record.handshake = "resume"
        conn.record.resume_seq = d.get("seq")
        if session is None or session.invalid or d.get("token") != self.token:
            self._note(f"RESUME of unknown/invalid session {d.get('session_id')}: INVALID_SESSION")
            conn.send({"op": OP_INVALID_SESSION, "d": False})
            return
        old = session.conn
        if old is not None and old is not conn:
            old.session = None
            old.close(4000, "session resumed elsewhere")
        session.conn = conn
        conn.session = session
        conn.record.session_id = session.id
        seq = int(d.get("seq") or 0)
        replay = [frame for frame in session.history if frame["s"] > seq]
        self._note(f"RESUME session {session.id} from s={seq}: replaying {len(replay)} event(s)")
        for frame in replay:
            conn.send(frame)
        self._deliver(session, "RESUMED", {"_trace": ["fake-discord"]})
        self._handshakes += 1
        self._bump()

    def _on_request_members(self, conn: _Conn, d: dict[str, Any]) -> None:
        members = list(self.members.values())
        query = d.get("query")
        user_ids = d.get("user_ids")
        if isinstance(user_ids, (str, int)):
            user_ids = [user_ids]
        if user_ids:
            wanted = {int(u) for u in user_ids}
            members = [m for m in members if int(m["user"]["id"]) in wanted]
        elif query:
            members = [m for m in members if m["user"]["username"].lower().startswith(str(query).lower())]
        if d.get("limit"):
            members = members[: int(d["limit"])]
        assert conn.session is not None
        chunk = {
            "guild_id": str(self.guild_id), "members": copy.deepcopy(members), "chunk_index": 0,
            "chunk_count": 1, "not_found": [],
        }  # fmt: skip
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        self._deliver(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    def _invalidate(self, session: _Session) -> None:
        session.invalid = True
        self._sessions.pop(session.id, None)
        if self._session is session:
            self._session = None

    def _filter_for(self, session: _Session, t: str, d: dict[str, Any]) -> dict[str, Any] | None:
        """Apply the session's intents the way Discord does; ``None`` means not delivered."""
        intents = session.intents
        if t in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
            in_guild = "guild_id" in d
            if not intents & (INTENT_GUILD_MESSAGES if in_guild else INTENT_DIRECT_MESSAGES):
                return None
            author = d.get("author") or {}
            mentioned = any(str(u.get("id")) == str(self.application_id) for u in d.get("mentions") or [])
            if (
                t != "MESSAGE_DELETE"
                and in_guild
                and self.enforce_message_content
                and not intents & INTENT_MESSAGE_CONTENT
                and str(author.get("id")) != str(self.application_id)
                and not mentioned
            ):
                d = {**d, "content": "", "embeds": [], "attachments": [], "components": []}
        elif (t in ("GUILD_CREATE", "CHANNEL_CREATE") and not intents & INTENT_GUILDS) or (
            t == "GUILD_MEMBER_ADD" and not intents & INTENT_GUILD_MEMBERS
        ):
            return None
        return d

    def _deliver(self, session: _Session, t: str, d: dict[str, Any]) -> int | None:
        filtered = self._filter_for(session, t, d)
        if filtered is None:
            self._note(f"{t} not delivered: the session's intents exclude it")
            return None
        session.seq += 1
        frame = {"op": OP_DISPATCH, "t": t, "s": session.seq, "d": filtered}
        session.history.append(frame)
        if session.conn is not None:
            session.conn.send(frame)
        return session.seq

    def _dispatch(self, t: str, d: dict[str, Any]) -> None:
        session = self._session
        if session is None:
            self._orphans.append((t, d))
            self._note(f"{t} queued: no bot is identified (delivered after the next READY)")
            return
        self._deliver(session, t, d)

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a raw DISPATCH event (``t=event``) to the connected bot."""
        self._dispatch(event, data)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every queued gateway frame has been written to its socket."""
        await self._wait_until(
            lambda: all(c.outbox.empty() and not c.sending for c in self._conns),
            timeout,
            lambda: "gateway frames still queued",
        )

    async def wait_for_handshakes(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` READYs/RESUMEDs in total have been sent."""
        await self._wait_until(
            lambda: self._handshakes >= count,
            timeout,
            lambda: f"{self._handshakes}/{count} gateway handshakes",
        )

    async def force_reconnect(
        self,
        mode: ReconnectMode = "reconnect",
        *,
        wait: bool = True,
        timeout: float = 10.0,
        close_code: int = 4000,
    ) -> GatewayConnection | None:
        """Make the client reconnect; with ``wait``, return the new connection once it RESUMEd/IDENTIFYed.

        * ``"reconnect"``: send op 7 RECONNECT; the client closes and RESUMEs.
        * ``"close"``: the server closes the socket (``close_code``, resumable by default) — e.g. in the
          middle of a conversation; the client RESUMEs and missed events are replayed.
        * ``"invalid_session_resumable"``: op 9 with ``d: true``; the client RESUMEs.
        * ``"invalid_session"``: op 9 with ``d: false``; the session is gone and the client IDENTIFYs again
          (events in between are queued and delivered after the new READY).

        Events dispatched after this call and before the client is back are buffered, then replayed.
        """
        session = self._session
        if session is None or session.conn is None:
            raise RuntimeError("no bot is connected to the gateway")
        conn = session.conn
        before = self._handshakes
        session.conn = None
        self._note(f"force_reconnect({mode!r}) on gateway #{conn.record.index}")
        if mode == "reconnect":
            conn.send({"op": OP_RECONNECT, "d": None})
        elif mode == "close":
            conn.close(close_code, "fake: forced close")
        elif mode == "invalid_session_resumable":
            conn.send({"op": OP_INVALID_SESSION, "d": True})
        elif mode == "invalid_session":
            self._invalidate(session)
            conn.send({"op": OP_INVALID_SESSION, "d": False})
        else:
            raise ValueError(f"unknown reconnect mode {mode!r}")
        if mode != "close":
            # Discord closes a socket the client does not close itself after RECONNECT/INVALID_SESSION.
            conn.close_timer = asyncio.get_running_loop().call_later(
                5.0, conn.close, 4000, "fake: reconnect requested"
            )
        if not wait:
            return None
        await self.wait_for_handshakes(before + 1, timeout)
        return self.connections[-1]

    # ------------------------------------------------------------------ REST plumbing

    @staticmethod
    def _handler_name(method: str, template: str) -> str:
        name = template.replace("/@me", "/me").replace("/@original", "")
        name = re.sub(r"\{(\w+)\}", r"\1", name).strip("/").replace("/", "_")
        return f"{method.lower()}_{name}"

    def _route_of(self, request: web.Request) -> str | None:
        info = request.match_info.route.resource
        if info is None:
            return None
        canonical = info.canonical
        prefix = "/api/v{api_version}"
        if canonical.startswith(prefix):
            return f"{request.method} {canonical[len(prefix) :]}"
        return None

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.path.startswith("/gateway"):
            result: web.StreamResponse = await handler(request)
            return result
        started = time.monotonic()
        route = self._route_of(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "user-agent")}
        if "Authorization" in request.headers:
            headers["Authorization"] = "Bot <redacted>"
        exchange = HttpExchange(
            at=self.now(), method=request.method, path=request.path, query=dict(request.query), route=route,
            request_headers=headers,
        )  # fmt: skip
        self.transcript.append(exchange)
        response: web.StreamResponse
        try:
            payload, files = await self._parse_body(request)
            exchange.request_json, exchange.request_files = payload, files
            request[_PAYLOAD], request[_FILES] = payload, files
            fault = self._match_fault(request.method, route)
            if fault is not None:
                response = self._fault_response(fault, route)
                exchange.injected = "rate limit" if fault.status == 429 else f"error {fault.status}"
            elif request.path.startswith("/api/"):
                self._check_auth(request, route)
                bucket_headers = self._take_bucket(request, route)
                response = await handler(request)
                response.headers.update(bucket_headers)
            else:
                response = await handler(request)
        except _ApiError as err:
            response = _json_response(err.body, status=err.status)
            response.headers.update(err.headers)
        if request.path.startswith("/api/"):
            response.headers["Via"] = "1.1 google"
        exchange.status = response.status
        exchange.duration = time.monotonic() - started
        exchange.response_headers = {
            k: v for k, v in response.headers.items() if k.lower().startswith(("x-ratelimit", "retry-after"))
        }
        if (
            isinstance(response, web.Response)
            and response.content_type == "application/json"
            and response.body
        ):
            with contextlib.suppress(ValueError, TypeError):
                exchange.response_json = json.loads(bytes(response.body))  # type: ignore[arg-type]
        self._bump()
        return response

    async def _parse_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if request.method in ("GET", "HEAD") or not request.body_exists:
            return None, []
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            payload: dict[str, Any] | None = None
            extra: dict[str, Any] = {}
            files: list[UploadedFile] = []
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    continue  # a nested multipart: Discord does not use them
                name = part.name or ""
                if name == "payload_json":
                    try:
                        payload = json.loads(await part.text())
                    except ValueError:
                        raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None
                elif part.filename is not None or _FILE_FIELD_RE.match(name):
                    data = bytes(await part.read(decode=False))
                    files.append(
                        UploadedFile(
                            field=name, filename=part.filename or name,
                            content_type=part.headers.get("Content-Type", "application/octet-stream"),
                            data=data,
                        )
                    )  # fmt: skip
                else:
                    extra[name] = await part.text()
            return ({**extra, **(payload or {})} if (payload or extra) else None), files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _check_auth(self, request: web.Request, route: str | None) -> None:
        if route in _TOKEN_ROUTES:
            return
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise _ApiError(401, 0, "401: Unauthorized")

    def _take_bucket(self, request: web.Request, route: str | None) -> dict[str, str]:
        """Emulate Discord's per-route buckets: headers on every response, a real 429 when exceeded."""
        if route is None or route.startswith("POST /interactions/"):
            return {}
        info = request.match_info
        major = "+".join(
            info[k] for k in ("channel_id", "guild_id", "application_id", "interaction_token") if k in info
        )
        bucket_hash = hashlib.sha1(route.encode()).hexdigest()[:16]
        key = f"{bucket_hash}:{major}"
        now = time.time()
        bucket = self._buckets.get(key)
        # 20 ms of slack: a client sleeping exactly Reset-After may wake a hair early (timer resolution).
        if bucket is None or now >= bucket.reset_at - 0.02:
            bucket = self._buckets[key] = _Bucket(reset_at=now + self.bucket_window)
        bucket.used += 1
        reset_after = max(0.0, bucket.reset_at - now)
        headers = {
            "X-RateLimit-Limit": str(self.bucket_limit),
            "X-RateLimit-Remaining": str(max(0, self.bucket_limit - bucket.used)),
            "X-RateLimit-Reset": f"{bucket.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash,
        }
        if bucket.used > self.bucket_limit:
            err = _ApiError(429, 0, "You are being rate limited.")
            err.body.update(retry_after=round(reset_after, 3), **{"global": False})
            headers.update({"Retry-After": str(math.ceil(reset_after)), "X-RateLimit-Scope": "user"})
            err.headers = headers
            self._note(f"emulated bucket {bucket_hash} exhausted: real 429 for {route}")
            raise err
        return headers

    # ------------------------------------------------------------------ fault injection

    def _check_route(self, route: str) -> str:
        if route == "*":
            return route
        method, _, path = route.partition(" ")
        if (
            path == "*"
            or route in self._templates
            or (method == "*" and any(r.endswith(" " + path) for r in ROUTES))
        ):
            return route
        raise ValueError(f"unknown route {route!r}; use one of ROUTES, e.g. {ROUTES[20]!r}")

    def inject_rate_limit(
        self,
        route: str,
        *,
        retry_after: float = 0.5,
        count: int | None = 1,
        is_global: bool = False,
        scope: Literal["user", "shared", "global"] | None = None,
    ) -> FaultRule:
        """Answer the next ``count`` requests on ``route`` with 429 (``None``: until ``clear_faults``).

        The response has what Discord sends: JSON ``retry_after``/``global``, ``Retry-After``, the
        ``X-RateLimit-*`` headers (``X-RateLimit-Global`` for a global limit) and ``Via``.
        """
        rule = FaultRule(
            route=self._check_route(route), status=429, count=count, retry_after=retry_after,
            is_global=is_global, scope=scope or ("global" if is_global else "user"),
        )  # fmt: skip
        self.faults.append(rule)
        return rule

    def inject_error(
        self, route: str, status: int = 500, *, count: int | None = 1, body: dict[str, Any] | None = None
    ) -> FaultRule:
        """Answer the next ``count`` requests on ``route`` with ``status`` (5xx, 4xx …) and ``body``."""
        rule = FaultRule(route=self._check_route(route), status=status, count=count, body=body)
        self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        self.faults.clear()

    def _match_fault(self, method: str, route: str | None) -> FaultRule | None:
        template = route.partition(" ")[2] if route else None
        for rule in self.faults:
            if rule.matches(method, template):
                rule.hits += 1
                return rule
        return None

    def _fault_response(self, rule: FaultRule, route: str | None) -> web.Response:
        self._note(f"injected {rule.status} on {route} (hit {rule.hits}/{rule.count or '∞'})")
        if rule.status != 429:
            body = rule.body or {"message": f"{rule.status}: fake injected error", "code": 0}
            return _json_response(body, status=rule.status)
        body = {
            "message": "You are being rate limited.",
            "retry_after": rule.retry_after,
            "global": rule.is_global,
        }
        if rule.body:
            body.update(rule.body)
        headers = {
            "Retry-After": str(max(1, math.ceil(rule.retry_after))),
            "X-RateLimit-Scope": rule.scope,
        }
        if rule.is_global:
            headers["X-RateLimit-Global"] = "true"
        else:
            bucket_hash = hashlib.sha1((route or "*").encode()).hexdigest()[:16]
            headers.update({
                "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + rule.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}", "X-RateLimit-Bucket": bucket_hash,
            })  # fmt: skip
        return _json_response(body, status=429, headers=headers)

    # ------------------------------------------------------------------ observation

    def _record(self, kind: str, request: web.Request, status: int, **kwargs: Any) -> BotAction:
        payload = kwargs.pop("payload", request.get(_PAYLOAD))
        action = BotAction(
            kind=kind, at=self.now(), route=self._route_of(request) or request.path, status=status,
            payload=payload, files=list(request.get(_FILES) or []), **kwargs,
        )  # fmt: skip
        self.actions.append(action)
        if action.interaction is not None:
            action.interaction.actions.append(action)
        self._bump()
        return action

    async def wait_for(self, predicate: Callable[[BotAction], bool], timeout: float = 5.0) -> BotAction:
        """The first successful ``BotAction`` matching ``predicate``, already recorded or within ``timeout``.

        On timeout the ``TimeoutError`` lists the recent actions and any the fake refused (and why)."""
        found: list[BotAction] = []

        def check() -> bool:
            for action in self.actions:
                if action.ok and predicate(action):
                    found.append(action)
                    return True
            return False

        def describe() -> str:
            recent = ", ".join(f"{a.kind}→{a.status}" for a in self.actions[-10:]) or "none"
            failed = [f"{a.kind}: {a.error}" for a in self.actions if not a.ok][-3:]
            return f"no matching bot action within {timeout}s; recent actions: {recent}" + (
                f"; refused: {failed}" if failed else ""
            )

        await self._wait_until(check, timeout, describe)
        return found[0]

    def actions_of(self, kind: str, *, ok: bool = True) -> list[BotAction]:
        return [a for a in self.actions if a.kind == kind and (a.ok or not ok)]

    def dangling_loading_messages(self) -> list[dict[str, Any]]:
        """Deferred responses still showing "is thinking…" (never edited or followed up)."""
        return [m for m in self.messages.values() if m.get("flags", 0) & FLAG_LOADING]

    # ------------------------------------------------------------------ messages

    def _store_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        channel_id: int,
        ephemeral: bool = False,
        description: str | None = None,
        voice: bool = False,
        duration_secs: float | None = None,
    ) -> dict[str, Any]:
        aid = self._ids.next()
        ctype = content_type if content_type and content_type != "application/octet-stream" else None
        ctype = ctype or _guess_content_type(filename)
        safe = re.sub(r"[^\w.\-]", "_", filename) or "unknown"
        if ephemeral:
            path = f"/ephemeral-attachments/{self.application_id}/{aid}/{safe}"
        else:
            path = f"/attachments/{channel_id}/{aid}/{safe}"
        issued = f"{int(time.time()):x}"
        expires = f"{int(time.time()) + 24 * 3600:x}"
        self._cdn[path] = _StoredFile(aid, safe, ctype, bytes(data), expires, issued)
        query = f"?ex={expires}&is={issued}&hm={self._cdn_sign(path, expires, issued)}&"
        quoted = quote(path)
        att: dict[str, Any] = {
            "id": str(aid), "filename": safe, "size": len(data), "url": f"{self.base_url}{quoted}{query}",
            "proxy_url": f"{self.base_url}/media{quoted}{query}", "content_type": ctype,
        }  # fmt: skip
        size = _image_size(data) if ctype.startswith("image/") else None
        if size is not None:
            att["width"], att["height"] = size
        if description:
            att["description"] = description
        if ephemeral:
            att["ephemeral"] = True
        if voice:
            duration = duration_secs if duration_secs is not None else _ogg_duration(data)
            att["duration_secs"] = round(duration if duration is not None else 1.0, 3)
            att["waveform"] = _waveform(data)
        return att

    def _cdn_sign(self, path: str, expires: str, issued: str) -> str:
        return hmac.new(self._cdn_secret, f"{path}|{expires}|{issued}".encode(), hashlib.sha256).hexdigest()

    def cdn_file(self, url_or_attachment: str | Mapping[str, Any]) -> bytes:
        """The bytes the CDN serves for an attachment (payload or URL)."""
        url = url_or_attachment if isinstance(url_or_attachment, str) else url_or_attachment["url"]
        path = unquote(yarl.URL(url).path).removeprefix("/media")
        return self._cdn[path].data

    async def _cdn_get(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix("/media")
        stored = self._cdn.get(path)
        q = request.query
        if stored is None or (
            self.cdn_require_signature
            and not (
                q.get("ex") == stored.expires
                and q.get("is") == stored.issued
                and hmac.compare_digest(q.get("hm", ""), self._cdn_sign(path, stored.expires, stored.issued))
            )
        ):
            self._record("cdn_download", request, 404, payload={"url": str(request.url)})
            return web.Response(status=404, text="This content is no longer available.")
        self._record(
            "cdn_download", request, 200, payload={"url": str(request.url), "id": stored.attachment_id}
        )
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})

    def _mentions(self, content: str) -> list[dict[str, Any]]:
        ids = dict.fromkeys(int(m) for m in _MENTION_RE.findall(content or ""))
        return [self.users[i] for i in ids if i in self.users]

    def _new_message(
        self,
        channel: Mapping[str, Any],
        author: Mapping[str, Any],
        *,
        content: str = "",
        attachments: list[dict[str, Any]] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        flags: int = 0,
        mtype: int = 0,
        interaction: InteractionRecord | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        mid = self._ids.next()
        cid = _sid(channel)
        msg: dict[str, Any] = {
            "id": str(mid), "channel_id": str(cid), "type": mtype, "content": content or "",
            "author": dict(author), "timestamp": _iso(mid), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": self._mentions(content), "mention_roles": [],
            "attachments": attachments or [], "embeds": [], "components": components or [], "pinned": False,
            "flags": flags,
        }  # fmt: skip
        if self._is_guild_channel(channel):
            msg["guild_id"] = str(self.guild_id)
            member = self.members.get(int(author["id"]))
            if member is not None and interaction is None:
                msg["member"] = {k: v for k, v in member.items() if k != "user"}
        if interaction is not None:
            msg["webhook_id"] = str(self.application_id)
            msg["application_id"] = str(self.application_id)
            msg["interaction_metadata"] = self._interaction_metadata(interaction)
            if interaction.type == INTERACTION_COMMAND:
                msg["interaction"] = {
                    "id": str(interaction.id), "type": interaction.type, "name": interaction.name or "",
                    "user": self.users[interaction.user_id],
                }  # fmt: skip
        if extra:
            msg.update(extra)
        msg["embeds"] = self._normalise_embeds(embeds or [], msg["attachments"])
        self.messages[mid] = msg
        self._channel_messages.setdefault(cid, []).append(mid)
        if self.channels.get(cid) is not None:
            self.channels[cid]["last_message_id"] = str(mid)
        return msg

    def _interaction_metadata(self, rec: InteractionRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": str(rec.id), "type": rec.type, "user": self.users[rec.user_id],
            "authorizing_integration_owners": rec.payload.get("authorizing_integration_owners", {}),
        }  # fmt: skip
        data = rec.payload.get("data") or {}
        if rec.type == INTERACTION_COMMAND:
            meta["name"] = data.get("name")
            meta["command_type"] = data.get("type", 1)
            if data.get("target_id") and data.get("type") == 3:
                meta["target_message_id"] = data["target_id"]
        elif rec.type == INTERACTION_COMPONENT and rec.payload.get("message"):
            meta["interacted_message_id"] = rec.payload["message"]["id"]
        return meta

    @staticmethod
    def _normalise_embeds(
        embeds: list[dict[str, Any]], attachments: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        by_name = {a["filename"]: a for a in attachments}
        out = []
        for embed in embeds:
            e = copy.deepcopy(embed)
            e.setdefault("type", "rich")
            for key in ("image", "thumbnail", "author", "footer"):
                part = e.get(key)
                if not isinstance(part, dict):
                    continue
                url_key = "url" if key in ("image", "thumbnail") else "icon_url"
                url = str(part.get(url_key) or "")
                if url.startswith("attachment://") and url[len("attachment://") :] in by_name:
                    att = by_name[url[len("attachment://") :]]
                    part[url_key] = att["url"]
                    part["proxy_url" if url_key == "url" else "proxy_icon_url"] = att["proxy_url"]
                    if "width" in att and url_key == "url":
                        part["width"], part["height"] = att["width"], att["height"]
            out.append(e)
        return out

    def _validate_message(self, payload: Mapping[str, Any], files: Sequence[UploadedFile]) -> None:
        errors: dict[str, Any] = {}
        content = payload.get("content")
        if content is not None and len(str(content)) > 2000:
            _add(errors, ["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = payload.get("embeds") or []
        if len(embeds) > 10:
            _add(errors, ["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        limits = {"title": 256, "description": 4096}
        for i, embed in enumerate(embeds):
            for key, limit in limits.items():
                text = str(embed.get(key) or "")
                total += len(text)
                if len(text) > limit:
                    _add(
                        errors,
                        ["embeds", i, key],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
            fields = embed.get("fields") or []
            if len(fields) > 25:
                _add(
                    errors, ["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            for j, f in enumerate(fields):
                for key, limit in (("name", 256), ("value", 1024)):
                    text = str(f.get(key) or "")
                    total += len(text)
                    if not text.strip():
                        _add(
                            errors,
                            ["embeds", i, "fields", j, key],
                            "BASE_TYPE_REQUIRED",
                            "This field is required",
                        )
                    elif len(text) > limit:
                        _add(
                            errors,
                            ["embeds", i, "fields", j, key],
                            "BASE_TYPE_MAX_LENGTH",
                            f"Must be {limit} or fewer in length.",
                        )
            for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
                text = str((embed.get(key) or {}).get(sub) or "")
                total += len(text)
                if len(text) > limit:
                    _add(
                        errors,
                        ["embeds", i, key, sub],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
        if total > 6000:
            _add(errors, ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        self._validate_components(payload, errors)
        if len(files) > 10:
            _add(errors, ["files"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        if errors:
            raise _invalid_form(errors)
        if any(f.size > self.upload_limit for f in files) or sum(f.size for f in files) > self.upload_limit:
            raise _ApiError(413, 40005, "Request entity too large")

    def _validate_components(self, payload: Mapping[str, Any], errors: dict[str, Any]) -> None:
        components = payload.get("components") or []
        v2 = bool((payload.get("flags") or 0) & FLAG_IS_COMPONENTS_V2)
        if not v2 and len(components) > 5:
            _add(errors, ["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        seen: set[str] = set()
        for i, row in enumerate(components):
            children = row.get("components") or []
            if row.get("type") == 1 and len(children) > 5:
                _add(
                    errors,
                    ["components", i, "components"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 5 or fewer in length.",
                )
            for comp in _walk_components([row]):
                custom_id = comp.get("custom_id")
                if comp.get("type") == 2:
                    label = str(comp.get("label") or "")
                    if len(label) > 80:
                        _add(
                            errors,
                            ["components", i],
                            "BASE_TYPE_MAX_LENGTH",
                            "label: Must be 80 or fewer in length.",
                        )
                    if comp.get("style") == 5 and not comp.get("url"):
                        _add(errors, ["components", i], "BUTTON_COMPONENT_URL_REQUIRED", "A url is required")
                if custom_id is None:
                    continue
                if len(str(custom_id)) > 100:
                    _add(
                        errors,
                        ["components", i],
                        "BASE_TYPE_MAX_LENGTH",
                        "custom_id: Must be 100 or fewer in length.",
                    )
                if custom_id in seen:
                    _add(
                        errors,
                        ["components", i],
                        "COMPONENT_CUSTOM_ID_DUPLICATED",
                        "Component custom id cannot be duplicated",
                    )
                seen.add(str(custom_id))

    def _resolve_attachments(
        self,
        payload: Mapping[str, Any],
        files: Sequence[UploadedFile],
        channel_id: int,
        *,
        existing: list[dict[str, Any]] | None = None,
        ephemeral: bool = False,
    ) -> list[dict[str, Any]]:
        """Attachments after a create/edit: ``attachments`` entries keep old ones by id or name new
        ``files[n]`` by ``id: n``; files not named there are added too."""
        by_index: dict[int, UploadedFile] = {}
        for n, f in enumerate(files):
            m = _FILE_FIELD_RE.match(f.field)
            by_index[int(m.group(1)) if m else n] = f
        old = {a["id"]: a for a in existing or []}
        spec = payload.get("attachments")
        result: list[dict[str, Any]] = []
        used: set[int] = set()
        if spec is not None:
            for i, entry in enumerate(spec):
                aid = str(entry.get("id"))
                if aid in old:
                    result.append(old[aid])
                elif aid.isdigit() and int(aid) in by_index:
                    f = by_index[int(aid)]
                    used.add(int(aid))
                    result.append(
                        self._store_attachment(
                            f.data, entry.get("filename") or f.filename, f.content_type,
                            channel_id=channel_id,
                            ephemeral=ephemeral, description=entry.get("description"),
                        )
                    )  # fmt: skip
                else:
                    raise _invalid_form(
                        _form_error(["attachments", i, "id"], "UNKNOWN_ATTACHMENT", "Unknown attachment")
                    )
        elif existing is not None:
            result = list(existing)
        for idx, f in sorted(by_index.items()):
            if idx not in used:
                result.append(
                    self._store_attachment(
                        f.data, f.filename, f.content_type, channel_id=channel_id, ephemeral=ephemeral
                    )
                )
        return result

    def _create_from_payload(
        self,
        channel: Mapping[str, Any],
        author: Mapping[str, Any],
        payload: Mapping[str, Any] | None,
        files: Sequence[UploadedFile],
        *,
        interaction: InteractionRecord | None = None,
        mtype: int = 0,
        extra_flags: int = 0,
    ) -> dict[str, Any]:
        payload = payload or {}
        self._validate_message(payload, files)
        flags = (
            int(payload.get("flags") or 0)
            & (FLAG_SUPPRESS_EMBEDS | FLAG_EPHEMERAL | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2)
        ) | extra_flags
        if interaction is None:
            flags &= ~FLAG_EPHEMERAL  # only interaction responses can be ephemeral
        has_body = (
            any(payload.get(k) for k in ("content", "embeds", "components", "sticker_ids", "poll")) or files
        )
        if not has_body and not flags & FLAG_LOADING:
            raise _ApiError(400, 50006, "Cannot send an empty message")
        extra: dict[str, Any] = {}
        ref = payload.get("message_reference")
        if ref:
            target = self.messages.get(int(ref.get("message_id") or 0))
            if target is None:
                if ref.get("fail_if_not_exists", True):
                    raise _invalid_form(
                        _form_error(["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
                    )
            else:
                mtype = 19
                extra["message_reference"] = {
                    "type": 0, "message_id": target["id"], "channel_id": target["channel_id"],
                    "guild_id": target.get("guild_id"),
                }  # fmt: skip
                extra["referenced_message"] = copy.deepcopy(target)
        if payload.get("nonce") is not None:
            extra["nonce"] = payload["nonce"]
        attachments = self._resolve_attachments(
            payload, files, _sid(channel), ephemeral=bool(flags & FLAG_EPHEMERAL)
        )
        return self._new_message(
            channel, author, content=str(payload.get("content") or ""), attachments=attachments,
            embeds=list(payload.get("embeds") or []), components=list(payload.get("components") or []),
            flags=flags, mtype=mtype, interaction=interaction, extra=extra,
        )  # fmt: skip

    def _apply_edit(
        self, msg: dict[str, Any], payload: Mapping[str, Any] | None, files: Sequence[UploadedFile]
    ) -> None:
        payload = payload or {}
        self._validate_message(payload, files)
        cid = int(msg["channel_id"])
        if "content" in payload:
            msg["content"] = str(payload.get("content") or "")
            msg["mentions"] = self._mentions(msg["content"])
        if "components" in payload:
            msg["components"] = list(payload.get("components") or [])
        if "attachments" in payload or files:
            msg["attachments"] = self._resolve_attachments(
                payload,
                files,
                cid,
                existing=msg["attachments"],
                ephemeral=bool(msg["flags"] & FLAG_EPHEMERAL),
            )
        if "embeds" in payload:
            msg["embeds"] = self._normalise_embeds(list(payload.get("embeds") or []), msg["attachments"])
        if payload.get("flags") is not None:
            keep = msg["flags"] & ~(FLAG_SUPPRESS_EMBEDS | FLAG_IS_COMPONENTS_V2)
            msg["flags"] = keep | (int(payload["flags"]) & (FLAG_SUPPRESS_EMBEDS | FLAG_IS_COMPONENTS_V2))
        was_loading = bool(msg["flags"] & FLAG_LOADING)
        msg["flags"] &= ~FLAG_LOADING
        if not (msg["content"] or msg["embeds"] or msg["attachments"] or msg["components"]):
            if was_loading:
                msg["flags"] |= FLAG_LOADING
            raise _ApiError(400, 50006, "Cannot send an empty message")
        msg["edited_timestamp"] = _iso()

    def _echo(self, event: str, msg: Mapping[str, Any]) -> None:
        if self.echo_bot_messages and not int(msg.get("flags", 0)) & FLAG_EPHEMERAL:
            self._dispatch(event, copy.deepcopy(dict(msg)))

    def _channel_or_404(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(int(channel_id)) if channel_id.isdigit() else None
        if channel is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        return channel

    def _message_or_404(self, channel_id: str, message_id: str) -> dict[str, Any]:
        msg = self.messages.get(int(message_id)) if message_id.isdigit() else None
        if msg is None or msg["channel_id"] != channel_id:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg

    # ------------------------------------------------------------------ REST: identity and gateway

    async def _h_unknown(self, request: web.Request) -> web.Response:
        self._note(f"UNIMPLEMENTED route {request.method} {request.path}")
        exchange = next((e for e in reversed(self.transcript) if isinstance(e, HttpExchange)), None)
        if exchange is not None:
            self.unhandled_requests.append(exchange)
        return _json_response({"message": "404: Not Found", "code": 0}, status=404)

    async def _h_get_gateway(self, request: web.Request) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _h_get_gateway_bot(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return _json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _h_get_users_me(self, request: web.Request) -> web.Response:
        return _json_response({**self.bot_user, "verified": True, "mfa_enabled": False, "locale": "en-US"})

    async def _h_get_users_user_id(self, request: web.Request) -> web.Response:
        uid = request.match_info["user_id"]
        if not uid.isdigit() or int(uid) not in self.users:
            raise _ApiError(404, 10013, "Unknown User")
        return _json_response(self.users[int(uid)])

    async def _h_post_users_me_channels(self, request: web.Request) -> web.Response:
        payload = request.get(_PAYLOAD) or {}
        try:
            channel = self.dm_channel(int(payload["recipient_id"]))
        except (KeyError, ValueError, LookupError):
            raise _ApiError(400, 50007, "Cannot send messages to this user") from None
        self._record("dm_open", request, 200, channel_id=_sid(channel))
        return _json_response(channel)

    async def _h_get_oauth2_applications_me(self, request: web.Request) -> web.Response:
        return _json_response(self._application_payload())

    async def _h_get_applications_me(self, request: web.Request) -> web.Response:
        return _json_response(self._application_payload())

    # ------------------------------------------------------------------ REST: application commands

    @property
    def commands(self) -> list[dict[str, Any]]:
        """Every registered command (global ones have no ``guild_id``)."""
        return [copy.deepcopy(c) for scope in self._commands.values() for c in scope.values()]

    def registered_command(self, name: str, *, type: int = 1, guild: bool | None = None) -> dict[str, Any]:
        """A registered command by name; ``guild``: True guild-only, False global-only, None either."""
        scopes: list[int | None] = (
            [self.guild_id, None] if guild is None else [self.guild_id if guild else None]
        )
        for scope in scopes:
            cmd = self._commands.get(scope, {}).get((type, name))
            if cmd is not None:
                return cmd
        known = [f"{c['name']} (type {c.get('type', 1)})" for c in self.commands]
        raise LookupError(f"no registered command {name!r} of type {type}; registered: {known}")

    def _check_app(self, request: web.Request) -> None:
        if request.match_info["application_id"] != str(self.application_id):
            raise _ApiError(403, 50001, "Missing Access")

    def _command_scope(self, request: web.Request) -> int | None:
        self._check_app(request)
        gid = request.match_info.get("guild_id")
        if gid is None:
            return None
        if gid != str(self.guild_id):
            raise _ApiError(403, 50001, "Missing Access")
        return int(gid)

    def _validate_command(self, cmd: Mapping[str, Any], index: int | None) -> dict[str, Any]:
        path: list[str | int] = [] if index is None else [index]
        errors: dict[str, Any] = {}
        ctype = int(cmd.get("type", 1))
        name = str(cmd.get("name") or "")
        if ctype == 1:
            if not _COMMAND_NAME_RE.match(name) or name != name.lower():
                _add(errors, [*path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if not 1 <= len(str(cmd.get("description") or "")) <= 100:
                _add(
                    errors,
                    [*path, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            self._validate_options(cmd.get("options") or [], [*path, "options"], errors, depth=0)
        else:
            if not 1 <= len(name) <= 32:
                _add(errors, [*path, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
            if cmd.get("description"):
                _add(
                    errors,
                    [*path, "description"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                    "Context menu commands cannot have description",
                )
            if cmd.get("options"):
                _add(
                    errors,
                    [*path, "options"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS",
                    "Context menu commands cannot have options",
                )
        return errors

    def _validate_options(
        self, options: Sequence[Mapping[str, Any]], path: list[str | int], errors: dict[str, Any], depth: int
    ) -> None:
        if len(options) > 25:
            _add(errors, path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        seen_optional = False
        names: set[str] = set()
        for i, opt in enumerate(options):
            here = [*path, i]
            name = str(opt.get("name") or "")
            otype = int(opt.get("type") or 0)
            if not _COMMAND_NAME_RE.match(name) or name != name.lower():
                _add(errors, [*here, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if name in names:
                _add(
                    errors,
                    [*here, "name"],
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    "Option name already exists",
                )
            names.add(name)
            if not 1 <= len(str(opt.get("description") or "")) <= 100:
                _add(
                    errors,
                    [*here, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            if otype in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP):
                if depth >= (1 if otype == OPT_SUB_COMMAND_GROUP else 2):
                    _add(
                        errors,
                        [*here, "type"],
                        "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                        "Sub-command groups nest too deep",
                    )
                self._validate_options(opt.get("options") or [], [*here, "options"], errors, depth + 1)
                continue
            if opt.get("required"):
                if seen_optional:
                    _add(
                        errors,
                        here,
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            choices = opt.get("choices") or []
            if len(choices) > 25:
                _add(errors, [*here, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for j, choice in enumerate(choices):
                if not 1 <= len(str(choice.get("name") or "")) <= 100:
                    _add(
                        errors,
                        [*here, "choices", j, "name"],
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )
            if choices and opt.get("autocomplete"):
                _add(
                    errors,
                    [*here, "autocomplete"],
                    "APPLICATION_COMMAND_AUTOCOMPLETE_CHOICES",
                    "Autocomplete cannot be used with choices",
                )

    def _store_command(
        self, scope: int | None, cmd: Mapping[str, Any], existing: Mapping[tuple[int, str], dict[str, Any]]
    ) -> dict[str, Any]:
        key = (int(cmd.get("type", 1)), str(cmd["name"]))
        old = existing.get(key)
        stored: dict[str, Any] = {
            "default_member_permissions": None, "dm_permission": True, "nsfw": False, "contexts": None,
            "integration_types": [0], "description": "", "options": [],
            **copy.deepcopy(dict(cmd)),
            "id": old["id"] if old else str(self._ids.next()), "application_id": str(self.application_id),
            "version": str(self._ids.next()), "type": key[0],
        }  # fmt: skip
        if scope is not None:
            stored["guild_id"] = str(scope)
        else:
            stored.pop("guild_id", None)
        return stored

    async def _h_get_applications_application_id_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        return _json_response(list(self._commands.get(scope, {}).values()))

    _h_get_applications_application_id_guilds_guild_id_commands = _h_get_applications_application_id_commands

    async def _h_put_applications_application_id_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        payload = request.get(_PAYLOAD)
        if not isinstance(payload, list):
            raise _invalid_form(_form_error(["_errors"], "BASE_TYPE_ARRAY", "Must be an array"))
        errors: dict[str, Any] = {}
        keys: set[tuple[int, str]] = set()
        for i, cmd in enumerate(payload):
            _merge(errors, self._validate_command(cmd, i))
            key = (int(cmd.get("type", 1)), str(cmd.get("name")))
            if key in keys:
                _add(
                    errors,
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    f"Application command names must be unique: {key[1]}",
                )
            keys.add(key)
        if errors:
            self._record("commands_sync", request, 400, guild_id=scope, error=errors)
            raise _invalid_form(errors)
        existing = self._commands.get(scope, {})
        stored = [self._store_command(scope, cmd, existing) for cmd in payload]
        self._commands[scope] = {(c["type"], c["name"]): c for c in stored}
        self._record("commands_sync", request, 200, guild_id=scope)
        return _json_response(stored)

    _h_put_applications_application_id_guilds_guild_id_commands = _h_put_applications_application_id_commands

    async def _h_post_applications_application_id_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        cmd = request.get(_PAYLOAD) or {}
        errors = self._validate_command(cmd, None)
        if errors:
            self._record("command_upsert", request, 400, guild_id=scope, error=errors)
            raise _invalid_form(errors)
        existing = self._commands.setdefault(scope, {})
        stored = self._store_command(scope, cmd, existing)
        existing[(stored["type"], stored["name"])] = stored
        self._record("command_upsert", request, 200, guild_id=scope)
        return _json_response(stored)

    _h_post_applications_application_id_guilds_guild_id_commands = (
        _h_post_applications_application_id_commands
    )

    def _command_by_id(self, request: web.Request) -> tuple[int | None, tuple[int, str], dict[str, Any]]:
        scope = self._command_scope(request)
        for key, cmd in self._commands.get(scope, {}).items():
            if cmd["id"] == request.match_info["command_id"]:
                return scope, key, cmd
        raise _ApiError(404, 10063, "Unknown application command")

    async def _h_get_applications_application_id_commands_command_id(
        self, request: web.Request
    ) -> web.Response:
        return _json_response(self._command_by_id(request)[2])

    _h_get_applications_application_id_guilds_guild_id_commands_command_id = (
        _h_get_applications_application_id_commands_command_id
    )

    async def _h_patch_applications_application_id_commands_command_id(
        self, request: web.Request
    ) -> web.Response:
        scope, key, cmd = self._command_by_id(request)
        merged = {**cmd, **(request.get(_PAYLOAD) or {})}
        errors = self._validate_command(merged, None)
        if errors:
            raise _invalid_form(errors)
        scope_cmds = self._commands[scope]
        del scope_cmds[key]
        stored = self._store_command(scope, merged, {key: cmd})
        scope_cmds[(stored["type"], stored["name"])] = stored
        self._record("command_edit", request, 200, guild_id=scope)
        return _json_response(stored)

    _h_patch_applications_application_id_guilds_guild_id_commands_command_id = (
        _h_patch_applications_application_id_commands_command_id
    )

    async def _h_delete_applications_application_id_commands_command_id(
        self, request: web.Request
    ) -> web.Response:
        scope, key, _ = self._command_by_id(request)
        del self._commands[scope][key]
        self._record("command_delete", request, 204, guild_id=scope)
        return web.Response(status=204)

    _h_delete_applications_application_id_guilds_guild_id_commands_command_id = (
        _h_delete_applications_application_id_commands_command_id
    )

    # ------------------------------------------------------------------ REST: interactions

    async def _h_post_interactions_interaction_id_interaction_token_callback(
        self, request: web.Request
    ) -> web.StreamResponse:
        info = request.match_info
        rec = self.interactions.get(int(info["interaction_id"])) if info["interaction_id"].isdigit() else None
        if rec is None or rec.token != info["interaction_token"]:
            raise _ApiError(404, 10062, "Unknown interaction")
        now = time.monotonic()

        def refuse(err: _ApiError, why: str) -> _ApiError:
            rec.refused.append(why)
            self._record("interaction_response", request, err.status, interaction=rec, error=err.body)
            return err

        if rec.acked_at is not None:
            raise refuse(
                _ApiError(400, 40060, "Interaction has already been acknowledged."), "already acknowledged"
            )
        if (
            self.ack_deadline is not None
            and rec.dispatched_at is not None
            and now - rec.dispatched_at > self.ack_deadline
        ):
            late = now - rec.dispatched_at
            self._note(
                f"interaction {rec.id} acknowledged after {late:.2f}s > {self.ack_deadline}s: "
                "Unknown interaction"
            )
            raise refuse(_ApiError(404, 10062, "Unknown interaction"), f"too late ({late:.2f}s)")
        payload = request.get(_PAYLOAD) or {}
        files: list[UploadedFile] = request.get(_FILES) or []
        cb_type = int(payload.get("type") or 0)
        data = payload.get("data") or {}
        if cb_type not in _ALLOWED_CALLBACKS.get(rec.type, set()):
            err = _invalid_form(
                _form_error(
                    ["type"],
                    "INTERACTION_RESPONSE_TYPE_INVALID",
                    f"Interaction response type {cb_type} is not valid for interaction type {rec.type}",
                )
            )
            raise refuse(err, f"callback type {cb_type} invalid")
        channel = self.channels[rec.channel_id]
        message: dict[str, Any] | None = None
        mtype = self._response_message_type(rec)
        try:
            if cb_type == CB_MESSAGE:
                message = self._create_from_payload(
                    channel, self.bot_user, data, files, interaction=rec, mtype=mtype
                )
                rec.original_message_id = int(message["id"])
                self._echo("MESSAGE_CREATE", message)
            elif cb_type == CB_DEFERRED_MESSAGE:
                flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
                message = self._new_message(channel, self.bot_user, flags=flags, mtype=mtype, interaction=rec)
                rec.original_message_id = int(message["id"])
                self._echo("MESSAGE_CREATE", message)
            elif cb_type in (CB_DEFERRED_UPDATE, CB_UPDATE_MESSAGE):
                target = rec.payload.get("message")
                if target is None or int(target["id"]) not in self.messages:
                    raise _ApiError(400, 50035, "Invalid Form Body")
                rec.original_message_id = int(target["id"])
                if cb_type == CB_UPDATE_MESSAGE:
                    message = self.messages[int(target["id"])]
                    self._apply_edit(message, data, files)
                    self._echo("MESSAGE_UPDATE", message)
            elif cb_type == CB_MODAL:
                if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                    raise _invalid_form(
                        _form_error(
                            ["data"], "BASE_TYPE_REQUIRED", "custom_id, title and components are required"
                        )
                    )
                rec.modal = copy.deepcopy(data)
            elif cb_type == CB_AUTOCOMPLETE:
                rec.autocomplete_choices = list(data.get("choices") or [])
        except _ApiError as err:
            raise refuse(err, f"invalid {cb_type} response: {err.body}") from None
        if message is not None and cb_type in (CB_MESSAGE, CB_DEFERRED_MESSAGE):
            rec.message_ids.append(int(message["id"]))
        rec.acked_at = now
        rec.ack_type = cb_type
        rec._acked.set()
        self._record(
            "interaction_response", request, 200, interaction=rec, message=message, channel_id=rec.channel_id
        )
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        ephemeral = bool(message and message["flags"] & FLAG_EPHEMERAL)
        body: dict[str, Any] = {
            "interaction": {
                "id": str(rec.id), "type": rec.type,
                "response_message_loading": cb_type == CB_DEFERRED_MESSAGE,
                "response_message_ephemeral": ephemeral,
            }
        }  # fmt: skip
        if rec.original_message_id is not None and cb_type != CB_DEFERRED_UPDATE:
            body["interaction"]["response_message_id"] = str(rec.original_message_id)
        if message is not None:
            body["resource"] = {"type": cb_type, "message": message}
        elif cb_type != CB_DEFERRED_UPDATE:
            body["resource"] = {"type": cb_type}
        return _json_response(body)

    @staticmethod
    def _response_message_type(rec: InteractionRecord) -> int:
        if rec.type == INTERACTION_COMMAND:
            return 20 if (rec.payload.get("data") or {}).get("type", 1) == 1 else 23
        return 0

    def _interaction_for_webhook(self, request: web.Request, kind: str) -> InteractionRecord:
        info = request.match_info
        rec = self._by_token.get(info["interaction_token"])
        if info["application_id"] != str(self.application_id) or rec is None:
            raise _ApiError(404, 10015, "Unknown Webhook")
        if (
            rec.dispatched_at is not None
            and time.monotonic() - rec.dispatched_at > self.interaction_token_ttl
        ):
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        if rec.acked_at is None:
            rec.refused.append(f"{kind} before the interaction was acknowledged")
            self._record(
                kind, request, 404, interaction=rec, error={"code": 10015, "message": "Unknown Webhook"}
            )
            raise _ApiError(404, 10015, "Unknown Webhook")
        return rec

    def _webhook_message(self, request: web.Request, rec: InteractionRecord) -> dict[str, Any]:
        mid = request.match_info["message_id"]
        if mid == "@original":
            if rec.original_message_id is None or rec.original_message_id not in self.messages:
                raise _ApiError(404, 10008, "Unknown Message")
            return self.messages[rec.original_message_id]
        if not mid.isdigit() or int(mid) not in rec.message_ids or int(mid) not in self.messages:
            raise _ApiError(404, 10008, "Unknown Message")
        return self.messages[int(mid)]

    async def _h_post_webhooks_application_id_interaction_token(
        self, request: web.Request
    ) -> web.StreamResponse:
        rec = self._interaction_for_webhook(request, "followup")
        payload = request.get(_PAYLOAD) or {}
        files: list[UploadedFile] = request.get(_FILES) or []
        original = self.messages.get(rec.original_message_id or 0)
        try:
            if (
                self.followup_replaces_loading
                and rec.ack_type == CB_DEFERRED_MESSAGE
                and original is not None
                and original["flags"] & FLAG_LOADING
            ):
                self._apply_edit(
                    original, payload, files
                )  # keeps the deferral's ephemerality, as Discord does
                message, edited = original, True
                self._echo("MESSAGE_UPDATE", message)
            else:
                channel = self.channels[rec.channel_id]
                message = self._create_from_payload(
                    channel,
                    self.bot_user,
                    payload,
                    files,
                    interaction=rec,
                    mtype=self._response_message_type(rec),
                )
                rec.message_ids.append(int(message["id"]))
                edited = False
                self._echo("MESSAGE_CREATE", message)
        except _ApiError as err:
            self._record("followup", request, err.status, interaction=rec, error=err.body)
            raise
        self._record(
            "followup",
            request,
            200,
            interaction=rec,
            message=message,
            channel_id=rec.channel_id,
            edited_original=edited,
        )
        if request.query.get("wait") in ("false", "False", "0"):
            return web.Response(status=204)
        return _json_response(message)

    async def _h_get_webhooks_application_id_interaction_token_messages_message_id(
        self, request: web.Request
    ) -> web.Response:
        rec = self._interaction_for_webhook(request, "webhook_fetch")
        msg = self._webhook_message(request, rec)
        self._record("webhook_fetch", request, 200, interaction=rec, message=msg, channel_id=rec.channel_id)
        return _json_response(msg)

    async def _h_patch_webhooks_application_id_interaction_token_messages_message_id(
        self, request: web.Request
    ) -> web.Response:
        rec = self._interaction_for_webhook(request, "webhook_edit")
        msg = self._webhook_message(request, rec)
        try:
            self._apply_edit(msg, request.get(_PAYLOAD), request.get(_FILES) or [])
        except _ApiError as err:
            self._record("webhook_edit", request, err.status, interaction=rec, error=err.body)
            raise
        self._echo("MESSAGE_UPDATE", msg)
        is_original = request.match_info["message_id"] == "@original"
        self._record(
            "webhook_edit",
            request,
            200,
            interaction=rec,
            message=msg,
            channel_id=rec.channel_id,
            edited_original=is_original,
        )
        return _json_response(msg)

    async def _h_delete_webhooks_application_id_interaction_token_messages_message_id(
        self, request: web.Request
    ) -> web.Response:
        rec = self._interaction_for_webhook(request, "webhook_delete")
        msg = self._webhook_message(request, rec)
        self._delete_message(msg)
        self._record("webhook_delete", request, 204, interaction=rec, message=msg, channel_id=rec.channel_id)
        return web.Response(status=204)

    def _delete_message(self, msg: Mapping[str, Any]) -> None:
        self.messages.pop(int(msg["id"]), None)
        if self.echo_bot_messages and not int(msg.get("flags", 0)) & FLAG_EPHEMERAL:
            event = {"id": msg["id"], "channel_id": msg["channel_id"]}
            if "guild_id" in msg:
                event["guild_id"] = msg["guild_id"]
            self._dispatch("MESSAGE_DELETE", event)

    # ------------------------------------------------------------------ REST: channels and guild

    async def _h_get_channels_channel_id(self, request: web.Request) -> web.Response:
        return _json_response(self._channel_or_404(request.match_info["channel_id"]))

    async def _h_get_channels_channel_id_messages(self, request: web.Request) -> web.Response:
        channel = self._channel_or_404(request.match_info["channel_id"])
        q = request.query
        limit = max(1, min(100, int(q.get("limit", "50"))))
        msgs = [m for m in self.messages_in(channel) if not m["flags"] & FLAG_EPHEMERAL]
        if "before" in q:
            msgs = [m for m in msgs if int(m["id"]) < int(q["before"])]
        if "after" in q:
            msgs = [m for m in msgs if int(m["id"]) > int(q["after"])]
            return _json_response(list(reversed(msgs[:limit])))
        return _json_response(list(reversed(msgs))[:limit])

    async def _h_post_channels_channel_id_messages(self, request: web.Request) -> web.Response:
        channel = self._channel_or_404(request.match_info["channel_id"])
        try:
            msg = self._create_from_payload(
                channel, self.bot_user, request.get(_PAYLOAD), request.get(_FILES) or []
            )
        except _ApiError as err:
            self._record("message", request, err.status, channel_id=_sid(channel), error=err.body)
            raise
        self._record("message", request, 200, message=msg, channel_id=_sid(channel))
        self._echo("MESSAGE_CREATE", msg)
        return _json_response(msg)

    async def _h_get_channels_channel_id_messages_message_id(self, request: web.Request) -> web.Response:
        info = request.match_info
        self._channel_or_404(info["channel_id"])
        return _json_response(self._message_or_404(info["channel_id"], info["message_id"]))

    async def _h_patch_channels_channel_id_messages_message_id(self, request: web.Request) -> web.Response:
        info = request.match_info
        self._channel_or_404(info["channel_id"])
        msg = self._message_or_404(info["channel_id"], info["message_id"])
        if msg["author"]["id"] != self.bot_user["id"] or msg.get("webhook_id"):
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        try:
            self._apply_edit(msg, request.get(_PAYLOAD), request.get(_FILES) or [])
        except _ApiError as err:
            self._record(
                "message_edit", request, err.status, channel_id=int(info["channel_id"]), error=err.body
            )
            raise
        self._record("message_edit", request, 200, message=msg, channel_id=int(info["channel_id"]))
        self._echo("MESSAGE_UPDATE", msg)
        return _json_response(msg)

    async def _h_delete_channels_channel_id_messages_message_id(self, request: web.Request) -> web.Response:
        info = request.match_info
        self._channel_or_404(info["channel_id"])
        msg = self._message_or_404(info["channel_id"], info["message_id"])
        self._delete_message(msg)
        self._record("message_delete", request, 204, message=msg, channel_id=int(info["channel_id"]))
        return web.Response(status=204)

    async def _h_post_channels_channel_id_typing(self, request: web.Request) -> web.Response:
        channel = self._channel_or_404(request.match_info["channel_id"])
        self._record("typing", request, 204, channel_id=_sid(channel))
        return web.Response(status=204)

    async def _h_put_channels_channel_id_messages_message_id_reactions_emoji_me(
        self, request: web.Request
    ) -> web.Response:
        info = request.match_info
        msg = self._message_or_404(info["channel_id"], info["message_id"])
        emoji = unquote(info["emoji"])
        reactions = msg.setdefault("reactions", [])
        entry = next((r for r in reactions if r["emoji"]["name"] == emoji), None)
        if entry is None:
            entry = {
                "emoji": {"id": None, "name": emoji},
                "count": 0,
                "me": False,
                "count_details": {"burst": 0, "normal": 0},
                "burst_colors": [],
                "me_burst": False,
                "burst_me": False,
                "burst_count": 0,
            }
            reactions.append(entry)
        if not entry["me"]:
            entry["me"] = True
            entry["count"] += 1
        self._record(
            "reaction_add",
            request,
            204,
            message=msg,
            channel_id=int(info["channel_id"]),
            payload={"emoji": emoji},
        )
        return web.Response(status=204)

    async def _h_delete_channels_channel_id_messages_message_id_reactions_emoji_me(
        self, request: web.Request
    ) -> web.Response:
        info = request.match_info
        msg = self._message_or_404(info["channel_id"], info["message_id"])
        emoji = unquote(info["emoji"])
        for entry in msg.get("reactions", []):
            if entry["emoji"]["name"] == emoji and entry["me"]:
                entry["me"] = False
                entry["count"] -= 1
        msg["reactions"] = [r for r in msg.get("reactions", []) if r["count"] > 0]
        self._record(
            "reaction_remove",
            request,
            204,
            message=msg,
            channel_id=int(info["channel_id"]),
            payload={"emoji": emoji},
        )
        return web.Response(status=204)

    def _guild_or_404(self, request: web.Request) -> None:
        if request.match_info["guild_id"] != str(self.guild_id):
            raise _ApiError(404, 10004, "Unknown Guild")

    async def _h_get_guilds_guild_id(self, request: web.Request) -> web.Response:
        self._guild_or_404(request)
        return _json_response({**self._guild_base(), "approximate_member_count": len(self.members)})

    async def _h_get_guilds_guild_id_channels(self, request: web.Request) -> web.Response:
        self._guild_or_404(request)
        return _json_response([c for c in self.channels.values() if self._is_guild_channel(c)])

    async def _h_get_guilds_guild_id_members_user_id(self, request: web.Request) -> web.Response:
        self._guild_or_404(request)
        uid = request.match_info["user_id"]
        if not uid.isdigit() or int(uid) not in self.members:
            raise _ApiError(404, 10007, "Unknown Member")
        return _json_response(self.members[int(uid)])

    # ------------------------------------------------------------------ scripted users: messages

    def user_sends(
        self, channel: ChannelRef, user: UserRef, content: str = "", *, mention_bot: bool = False,
        attachments: Sequence[FileSpec] = (), voice: bool = False, duration_secs: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user posts a message (MESSAGE_CREATE); returns the full message payload."""
        ch = self.channel(channel)
        author = self.user(user)
        if voice and (content or len(attachments) != 1):
            raise ValueError("a voice message has exactly one attachment and no content")
        if mention_bot:
            content = f"<@{self.application_id}> {content}".rstrip()
        stored = [
            self._store_attachment(
                data, filename, content_type, channel_id=_sid(ch), voice=voice, duration_secs=duration_secs
            )
            for data, filename, content_type in attachments
        ]
        msg = self._new_message(
            ch, author, content=content, attachments=stored, flags=FLAG_IS_VOICE_MESSAGE if voice else 0
        )
        self._dispatch("MESSAGE_CREATE", copy.deepcopy(msg))
        return msg

    def user_uploads(
        self,
        channel: ChannelRef,
        user: UserRef,
        data: bytes,
        filename: str,
        content_type: str,
        voice: bool = False,
        content: str = "",
        mention_bot: bool = False,
        *,
        duration_secs: float | None = None,
    ) -> dict[str, Any]:
        """A user uploads a file; ``voice=True`` makes it a voice message (flags 8192, ``duration_secs`` —
        read from the Ogg stream when not given — and ``waveform`` on the attachment)."""
        return self.user_sends(
            channel, user, content, mention_bot=mention_bot, attachments=[(data, filename, content_type)],
            voice=voice, duration_secs=duration_secs,
        )  # fmt: skip

    # ------------------------------------------------------------------ scripted users: interactions

    def _create_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        user: UserRef,
        channel: ChannelRef,
        *,
        message: Mapping[str, Any] | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        ch = self.channel(channel)
        u = self.user(user)
        uid = int(u["id"])
        iid = self._ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        in_guild = self._is_guild_channel(ch)
        perms = self._permissions_for(uid)
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.application_id), "type": itype, "data": data,
            "token": token, "version": 1, "channel_id": ch["id"],
            "channel": {**ch, "permissions": str(perms)},
            "locale": locale, "app_permissions": str(ALL_PERMISSIONS), "entitlements": [],
            "entitlement_sku_ids": [], "attachment_size_limit": self.upload_limit,
            "authorizing_integration_owners": {"0": str(self.guild_id)} if in_guild else {"1": str(uid)},
            "context": 0 if in_guild else 1,
        }  # fmt: skip
        if in_guild:
            payload.update(
                guild_id=str(self.guild_id), guild_locale="en-US",
                guild={"id": str(self.guild_id), "locale": "en-US", "features": []},
                member={**copy.deepcopy(self.members[uid]), "permissions": str(perms)},
            )  # fmt: skip
        else:
            payload["user"] = u
        if message is not None:
            payload["message"] = copy.deepcopy(dict(message))
        rec = InteractionRecord(
            id=iid, token=token, type=itype, payload=payload, channel_id=_sid(ch), user_id=uid,
            enqueued_at=time.monotonic(),
        )  # fmt: skip
        self.interactions[iid] = rec
        self._by_token[token] = rec
        self._dispatch("INTERACTION_CREATE", payload)
        return rec

    def _find_invocable(self, name: str, ctype: int, channel: Mapping[str, Any]) -> dict[str, Any]:
        in_guild = self._is_guild_channel(channel)
        scopes: list[int | None] = [self.guild_id, None] if in_guild else [None]
        for scope in scopes:
            cmd = self._commands.get(scope, {}).get((ctype, name))
            if cmd is not None:
                return cmd
        known = [f"{c['name']} (type {c.get('type', 1)})" for c in self.commands]
        raise LookupError(
            f"command {name!r} (type {ctype}) is not registered where the user is "
            "(did the bot sync its tree?); "
            f"registered: {known}"
        )

    def user_invokes_slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        attachment: FileSpec | None = None,
        user: UserRef = "alice",
        channel: ChannelRef = "general",
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A user runs ``/name`` (``"group sub"`` for subcommands) with ``options`` by option name.

        The command must have been synced: option types, choices, ranges and required options come from
        what the bot registered, as in Discord's client. Values: str/int/float/bool, a user/channel ref for
        USER/CHANNEL/MENTIONABLE options, a role id for ROLE, and a ``FileSpec`` for ATTACHMENT options
        (stored on the CDN and resolved in ``data.resolved.attachments``). ``attachment`` fills the first
        attachment option not given in ``options``.
        """
        ch = self.channel(channel)
        parts = name.split()
        cmd = self._find_invocable(parts[0], 1, ch)
        schema: list[dict[str, Any]] = list(cmd.get("options") or [])
        chain: list[dict[str, Any]] = []
        for sub in parts[1:]:
            opt = next((o for o in schema if o["name"] == sub and o["type"] in (1, 2)), None)
            if opt is None:
                raise LookupError(f"/{' '.join(parts)}: no subcommand {sub!r}")
            chain.append(opt)
            schema = list(opt.get("options") or [])
        if any(o["type"] in (1, 2) for o in schema):
            raise ValueError(f"/{name} needs a subcommand: {[o['name'] for o in schema]}")
        resolved: dict[str, dict[str, Any]] = {}
        values = dict(options or {})
        if attachment is not None:
            free = [o for o in schema if o["type"] == OPT_ATTACHMENT and o["name"] not in values]
            if not free:
                raise ValueError(f"/{name} has no (free) attachment option")
            values[free[0]["name"]] = attachment
        leaf = self._option_values(name, schema, values, resolved, ch)
        for opt in reversed(chain):
            leaf = [{"name": opt["name"], "type": opt["type"], "options": leaf}]
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": leaf}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return self._create_interaction(INTERACTION_COMMAND, data, user, ch, locale=locale)

    def _option_values(
        self,
        command: str,
        schema: Sequence[Mapping[str, Any]],
        values: Mapping[str, Any],
        resolved: dict[str, dict[str, Any]],
        channel: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in schema}
        unknown = [n for n in values if n not in by_name]
        if unknown:
            raise ValueError(f"/{command} has no option(s) {unknown}; options: {list(by_name)}")
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
        if missing:
            raise ValueError(f"/{command} requires {missing}")
        out = []
        for opt in schema:
            if opt["name"] not in values:
                continue
            value = self._option_value(command, opt, values[opt["name"]], resolved, channel)
            out.append({"name": opt["name"], "type": opt["type"], "value": value})
        return out

    def _option_value(
        self,
        command: str,
        opt: Mapping[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        channel: Mapping[str, Any],
    ) -> Any:
        otype = opt["type"]
        where = f"/{command} {opt['name']}"
        if otype == OPT_STRING:
            value = str(value)
            if not opt.get("min_length", 0) <= len(value) <= opt.get("max_length", 6000):
                raise ValueError(f"{where}: length {len(value)} outside the declared range")
        elif otype in (OPT_INTEGER, OPT_NUMBER):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}: expected a number, got {value!r}")
            if otype == OPT_INTEGER and not float(value).is_integer():
                raise ValueError(f"{where}: expected an integer, got {value!r}")
            value = int(value) if otype == OPT_INTEGER else float(value)
            lo, hi = opt.get("min_value"), opt.get("max_value")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ValueError(f"{where}: {value} outside [{lo}, {hi}]")
        elif otype == OPT_BOOLEAN:
            value = bool(value)
        elif otype in (OPT_USER, OPT_MENTIONABLE):
            u = self.user(value)
            resolved.setdefault("users", {})[u["id"]] = u
            if self._is_guild_channel(channel) and int(u["id"]) in self.members:
                member = {k: v for k, v in self.members[int(u["id"])].items() if k != "user"}
                resolved.setdefault("members", {})[u["id"]] = {
                    **member,
                    "permissions": str(EVERYONE_PERMISSIONS),
                }
            return u["id"]
        elif otype == OPT_CHANNEL:
            c = self.channel(value)
            resolved.setdefault("channels", {})[c["id"]] = {
                "id": c["id"], "name": c.get("name"), "type": c["type"],
                "permissions": str(EVERYONE_PERMISSIONS),
            }  # fmt: skip
            return c["id"]
        elif otype == OPT_ROLE:
            role = next((r for r in self.guild["roles"] if r["id"] == str(value) or r["name"] == value), None)
            if role is None:
                raise LookupError(f"{where}: unknown role {value!r}")
            resolved.setdefault("roles", {})[role["id"]] = role
            return role["id"]
        elif otype == OPT_ATTACHMENT:
            if isinstance(value, Mapping):
                att = dict(value)
            else:
                data, filename, content_type = value
                att = self._store_attachment(
                    data, filename, content_type, channel_id=_sid(channel), ephemeral=True
                )
            resolved.setdefault("attachments", {})[att["id"]] = att
            return att["id"]
        choices = opt.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{where}: {value!r} is not one of the choices {[c['value'] for c in choices]}")
        return value

    def user_invokes_context_menu(
        self,
        name: str,
        target_message: Mapping[str, Any] | int | BotAction | None = None,
        *,
        target_user: UserRef | None = None,
        user: UserRef = "alice",
        channel: ChannelRef | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A user picks Apps → ``name`` on a message (message command) or on ``target_user`` (user
        command)."""
        if (target_message is None) == (target_user is None):
            raise ValueError("give exactly one of target_message and target_user")
        if target_message is not None:
            msg = self.message(target_message)
            ch = self.channel(channel if channel is not None else msg["channel_id"])
            ctype, target_id = 3, msg["id"]
            resolved: dict[str, Any] = {"messages": {msg["id"]: copy.deepcopy(msg)}}
        else:
            assert target_user is not None
            u = self.user(target_user)
            ch = self.channel(channel if channel is not None else "general")
            ctype, target_id = 2, u["id"]
            resolved = {"users": {u["id"]: u}}
            if self._is_guild_channel(ch) and int(u["id"]) in self.members:
                resolved["members"] = {
                    u["id"]: {k: v for k, v in self.members[int(u["id"])].items() if k != "user"}
                }
        cmd = self._find_invocable(name, ctype, ch)
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": cmd["name"],
            "type": ctype,
            "target_id": target_id,
            "resolved": resolved,
        }
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return self._create_interaction(INTERACTION_COMMAND, data, user, ch, locale=locale)

    def _component(self, message: Mapping[str, Any], custom_id: str) -> Mapping[str, Any]:
        for comp in _walk_components(message.get("components") or []):
            if comp.get("custom_id") == custom_id:
                if comp.get("disabled"):
                    raise ValueError(f"component {custom_id!r} is disabled")
                return comp
        ids = [
            c.get("custom_id")
            for c in _walk_components(message.get("components") or [])
            if c.get("custom_id")
        ]
        raise LookupError(f"message {message['id']} has no component {custom_id!r}; it has {ids}")

    def user_presses_button(
        self, message: Mapping[str, Any] | int | BotAction, custom_id: str, *, user: UserRef = "alice"
    ) -> InteractionRecord:
        """A user clicks the button ``custom_id`` on a message the bot sent (INTERACTION_CREATE type 3)."""
        msg = self.message(message)
        comp = self._component(msg, custom_id)
        if comp.get("type") != 2:
            raise ValueError(f"component {custom_id!r} is not a button (type {comp.get('type')})")
        data = {"custom_id": custom_id, "component_type": 2}
        return self._create_interaction(INTERACTION_COMPONENT, data, user, msg["channel_id"], message=msg)

    def user_selects(
        self,
        message: Mapping[str, Any] | int | BotAction,
        custom_id: str,
        values: Sequence[str],
        *,
        user: UserRef = "alice",
    ) -> InteractionRecord:
        """A user picks ``values`` in the select menu ``custom_id`` (string selects: option values)."""
        msg = self.message(message)
        comp = self._component(msg, custom_id)
        if comp.get("type") not in (3, 5, 6, 7, 8):
            raise ValueError(f"component {custom_id!r} is not a select menu")
        allowed = {o["value"] for o in comp.get("options") or []}
        if comp.get("type") == 3 and not set(values) <= allowed:
            raise ValueError(f"{sorted(set(values) - allowed)} are not options of {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": comp["type"], "values": list(values)}
        return self._create_interaction(INTERACTION_COMPONENT, data, user, msg["channel_id"], message=msg)

    def user_submits_modal(
        self,
        interaction: InteractionRecord,
        values: Mapping[str, str | Sequence[str]],
        *,
        user: UserRef | None = None,
    ) -> InteractionRecord:
        """A user fills in and submits the modal the bot answered ``interaction`` with (type 5)."""
        modal = interaction.modal
        if modal is None:
            raise LookupError(f"interaction {interaction.id} was not answered with a modal")

        def field_value(comp: Mapping[str, Any]) -> dict[str, Any]:
            cid = str(comp.get("custom_id") or "")
            if comp.get("type") == 4:
                value = str(values.get(cid, comp.get("value") or ""))
                if comp.get("required", True) and not value:
                    raise ValueError(f"text input {cid!r} is required")
                return {"type": 4, "id": comp.get("id", 0), "custom_id": cid, "value": value}
            if comp.get("type") in (3, 5, 6, 7, 8):
                return {"type": comp["type"], "custom_id": cid, "values": list(values.get(cid, []))}
            return {"type": comp.get("type"), "custom_id": cid}

        components: list[dict[str, Any]] = []
        for comp in modal.get("components") or []:
            if comp.get("type") == 1:
                components.append(
                    {"type": 1, "components": [field_value(c) for c in comp.get("components") or []]}
                )
            elif comp.get("type") == 18:
                components.append(
                    {"type": 18, "id": comp.get("id", 0), "component": field_value(comp["component"])}
                )
        data = {"custom_id": modal["custom_id"], "components": components}
        who = user if user is not None else interaction.user_id
        return self._create_interaction(
            INTERACTION_MODAL_SUBMIT,
            data,
            who,
            interaction.channel_id,
            message=interaction.payload.get("message"),
        )


@pytest_asyncio.fixture
async def fake_discord(request: pytest.FixtureRequest) -> AsyncIterator[FakeDiscord]:
    """A started ``FakeDiscord`` with discord.py pointed at it; stopped (and URLs restored) afterwards.

    With ``M2I_FAKE_DISCORD_TRANSCRIPTS=<dir>`` set, each test's transcript is written there as Markdown.
    """
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
        out = os.environ.get("M2I_FAKE_DISCORD_TRANSCRIPTS")
        if out:
            name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
            fake.transcript.write_markdown(Path(out) / f"{name}.md", title=request.node.nodeid)

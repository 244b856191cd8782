"""A local Telegram Bot API server, so bot tests run the unmodified python-telegram-bot over real HTTP.

The bot under test is pointed at this server with ``base_url``/``base_file_url`` — exactly as it
would be pointed at a self-hosted Bot API server — and talks the real wire protocol: form-encoded
and multipart requests, ``{"ok": true, "result": …}`` answers, long-polled ``getUpdates`` with
offsets, ``getFile`` and file downloads, Telegram's own validation errors (caption too long,
``BUTTON_DATA_INVALID``, "message is not modified", "file is too big"). Nothing in PTB is mocked.

Tests act as the users: :meth:`FakeTelegramServer.user_sends_audio`, ``user_sends_text``,
``user_presses_button`` create updates; ``await wait_for_reply(...)`` waits (on an event, never a
sleep) until the bot has sent a matching message. Faults are injected per method
(:meth:`~FakeTelegramServer.inject_fault`: 429 with ``retry_after``, 5xx, dropped connections), and
every request is recorded in :attr:`~FakeTelegramServer.transcript`, which
:meth:`~FakeTelegramServer.render_markdown` turns into a readable conversation.

Use the ``telegram_server`` fixture (re-exported by ``tests/conftest.py`` or imported directly)::

    async def test_x(telegram_server):
        ana = telegram_server.user("Ana")
        chat = telegram_server.private_chat(ana)
        telegram_server.user_sends_audio(chat, ana, ogg_bytes, kind="voice")
        photo = await telegram_server.wait_for_reply(chat, kind="photo")
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest_asyncio
from aiohttp import web

__all__ = ["FakeChat", "FakeTelegramServer", "FakeUser", "Fault", "TranscriptEntry", "telegram_server"]

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijklmn"
#: getFile refuses larger files, like api.telegram.org
DOWNLOAD_LIMIT_BYTES = 20_000_000
#: what bots may upload (sendVideo, sendDocument); larger requests get 413, like api.telegram.org
UPLOAD_LIMIT_BYTES = 50_000_000
CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64

#: parameters PTB sends as plain strings; every other form value is JSON
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "callback_query_id",
        "file_id",
        "action",
        "parse_mode",
        "url",
        "description",
        "short_description",
        "language_code",
        "name",
        "query",
        "inline_message_id",
        "emoji",
    }
)

AudioKind = Literal["audio", "voice", "document", "video_note"]
_MIME = {"voice": "audio/ogg", "audio": "audio/mpeg", "document": "application/octet-stream"}
_BOT_SENDS = ("sendMessage", "sendPhoto", "sendMediaGroup", "sendDocument", "sendVideo")


@dataclass(frozen=True)
class FakeUser:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            d["username"] = self.username
        return d


@dataclass(frozen=True)
class FakeChat:
    id: int
    type: Literal["private", "group", "supergroup"]
    title: str | None = None
    first_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            d["title"] = self.title
        if self.first_name:
            d["first_name"] = self.first_name
        return d


@dataclass
class Fault:
    """What to do instead of answering the next ``times`` calls of ``method``."""

    method: str
    kind: Literal["429", "5xx", "drop"]
    retry_after: int = 1
    status: int = 502
    times: int = 1


@dataclass
class TranscriptEntry:
    """One thing that happened: a user action or one HTTP request from the bot, with its answer."""

    t_s: float
    who: Literal["user", "bot"]
    method: str
    params: dict[str, Any]
    chat_id: int | None = None
    status: int = 200
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    declared_size: int | None = None

    @property
    def size(self) -> int:
        return self.declared_size if self.declared_size is not None else len(self.data)


class _ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


@dataclass
class FakeTelegramServer:
    """A Bot API server for one bot, with a scripted user side. Start with :meth:`start`."""

    token: str = TOKEN
    bot_username: str = "m2i_test_bot"
    host: str = "127.0.0.1"
    transcript: list[TranscriptEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bot = FakeUser(int(self.token.split(":")[0]), "m2i", self.bot_username, is_bot=True)
        self.port = 0
        self.commands: list[dict[str, Any]] = []
        self.files: dict[str, _File] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.deleted: list[dict[str, Any]] = []
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._ids = itertools.count(1000)
        self._faults: list[Fault] = []
        self._changed: asyncio.Condition | None = None
        self._new_update: asyncio.Event | None = None
        self._t0 = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.confirmed_update_id = 0

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> FakeTelegramServer:
        self._changed = asyncio.Condition()
        self._new_update = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing = True
        if self._new_update is not None:
            self._new_update.set()
        await self._notify()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)``: PTB appends the token."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    # --- the user side ---------------------------------------------------------------------------

    def user(self, first_name: str, username: str | None = None) -> FakeUser:
        return FakeUser(next(self._ids), first_name, username)

    def private_chat(self, user: FakeUser) -> FakeChat:
        return FakeChat(user.id, "private", first_name=user.first_name)

    def group_chat(self, title: str, *, supergroup: bool = True) -> FakeChat:
        return FakeChat(-(10**12) - next(self._ids), "supergroup" if supergroup else "group", title=title)

    def user_sends_text(
        self, chat: FakeChat, user: FakeUser, text: str, *, reply_to: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A text message (commands and @mentions get their entities, as Telegram adds them)."""
        msg = self._new_message(chat, user, reply_to=reply_to)
        msg["text"] = text
        entities = _entities(text)
        if entities:
            msg["entities"] = entities
        self._push_message_update(msg, summary={"text": text})
        return msg

    def user_sends_audio(
        self,
        chat: FakeChat,
        user: FakeUser,
        data: bytes,
        *,
        kind: AudioKind = "audio",
        caption: str | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        duration: int = 6,
        declared_size: int | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An audio file, voice note, video note or document carrying ``data``.

        ``declared_size`` overrides the ``file_size`` Telegram reports (to test size limits without
        sending megabytes).
        """
        f = self._store_file(
            data,
            folder={"voice": "voice", "video_note": "video_notes", "document": "documents"}.get(
                kind, "music"
            ),
            declared_size=declared_size,
            suffix=_suffix(kind, file_name),
        )
        media: dict[str, Any] = {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.size,
        }
        if kind in ("audio", "voice", "video_note"):
            media["duration"] = duration
        if kind == "video_note":
            media["length"] = 240
        if kind in ("audio", "document"):
            media["file_name"] = file_name or ("song.mp3" if kind == "audio" else "file.bin")
        if kind != "video_note":
            media["mime_type"] = mime_type or _MIME[kind]
        msg = self._new_message(chat, user, reply_to=reply_to)
        msg[kind] = media
        if caption is not None:
            msg["caption"] = caption
            entities = _entities(caption)
            if entities:
                msg["caption_entities"] = entities
        self._push_message_update(
            msg,
            summary={
                "kind": kind,
                "bytes": len(data),
                "file_size": f.size,
                "file_name": media.get("file_name"),
                "mime_type": media.get("mime_type"),
                "caption": caption,
                "duration": duration,
            },
        )
        return msg

    def user_presses_button(
        self,
        chat: FakeChat,
        user: FakeUser,
        message: dict[str, Any],
        *,
        label: str | None = None,
        data: str | None = None,
    ) -> str:
        """Press the inline button ``label`` (or with ``data``) under ``message``; returns the query id."""
        current = self.messages.get((chat.id, message["message_id"]), message)
        if data is None:
            buttons = [b for row in current.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
            match = [b for b in buttons if label is None or label in b["text"]]
            if not match:
                raise AssertionError(
                    f"no button {label!r} under message {message['message_id']}: "
                    f"{[b['text'] for b in buttons]}"
                )
            data = match[0]["callback_data"]
            label = match[0]["text"]
        query_id = str(next(self._ids))
        update = {
            "update_id": next(self._update_ids),
            "callback_query": {
                "id": query_id,
                "from": user.to_dict(),
                "message": current,
                "chat_instance": str(chat.id),
                "data": data,
            },
        }
        self._add_update(update)
        self._record(
            "user",
            "presses_button",
            {"label": label, "data": data, "message_id": message["message_id"], "from": user.first_name},
            chat.id,
        )
        return query_id

    # --- waiting on the bot ----------------------------------------------------------------------

    async def wait_for(self, check: Callable[[], Any], *, timeout: float = 30.0) -> Any:
        """Wait until ``check()`` returns something truthy (re-checked on every request); return it."""
        assert self._changed is not None, "server not started"
        result: Any = None

        def ready() -> bool:
            nonlocal result
            result = check()
            return bool(result)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(ready), timeout)
        return result

    async def wait_for_reply(
        self,
        chat: FakeChat,
        *,
        kind: Literal["photo", "text", "album", "video", "any"] = "any",
        contains: str | None = None,
        reply_to: int | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        after: int = 0,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """The first message (current state, after edits) the bot has in ``chat`` matching all filters.

        ``after`` skips messages with ``message_id <= after``. For ``kind="album"`` the first
        message of the album is returned; :meth:`album` gives all of it.
        """

        def check() -> dict[str, Any] | None:
            for m in self.bot_messages(chat):
                if m["message_id"] <= after:
                    continue
                if kind == "photo" and ("photo" not in m or "media_group_id" in m):
                    continue
                if kind == "album" and "media_group_id" not in m:
                    continue
                if kind == "text" and "text" not in m:
                    continue
                if kind == "video" and "video" not in m:
                    continue
                if contains is not None and contains not in (m.get("text") or m.get("caption") or ""):
                    continue
                if reply_to is not None and m.get("reply_to_message", {}).get("message_id") != reply_to:
                    continue
                if where is not None and not where(m):
                    continue
                return m
            return None

        return await self.wait_for(check, timeout=timeout)  # type: ignore[no-any-return]

    async def wait_for_call(
        self, method: str, *, where: Callable[[TranscriptEntry], bool] | None = None, timeout: float = 30.0
    ) -> TranscriptEntry:
        return await self.wait_for(  # type: ignore[no-any-return]
            lambda: next(
                (
                    e
                    for e in self.transcript
                    if e.who == "bot" and e.method == method and (where is None or where(e))
                ),
                None,
            ),
            timeout=timeout,
        )

    async def wait_until_fetched(self, message: dict[str, Any], *, timeout: float = 30.0) -> None:
        """Wait until the bot has confirmed (fetched) the update carrying ``message``."""
        uid = message["_update_id"]
        await self.wait_for(lambda: self.confirmed_update_id >= uid, timeout=timeout)

    # --- inspecting ------------------------------------------------------------------------------

    def bot_messages(self, chat: FakeChat) -> list[dict[str, Any]]:
        """The bot's messages in ``chat`` that still exist, oldest first."""
        return sorted(
            (m for (cid, _), m in self.messages.items() if cid == chat.id and m["from"]["id"] == self.bot.id),
            key=lambda m: m["message_id"],
        )

    def album(self, first: dict[str, Any]) -> list[dict[str, Any]]:
        gid = first["media_group_id"]
        return sorted(
            (m for m in self.messages.values() if m.get("media_group_id") == gid),
            key=lambda m: m["message_id"],
        )

    def photo_bytes(self, message: dict[str, Any]) -> bytes:
        return self.files[message["photo"][-1]["file_id"]].data

    def video_bytes(self, message: dict[str, Any]) -> bytes:
        return self.files[message["video"]["file_id"]].data

    def calls(
        self, method: str | None = None, *, chat: FakeChat | None = None, ok: bool | None = None
    ) -> list[TranscriptEntry]:
        """Requests the bot made (``method``/``chat``/``ok`` filter them)."""
        return [
            e
            for e in self.transcript
            if e.who == "bot"
            and (method is None or e.method == method)
            and (chat is None or e.chat_id == chat.id)
            and (ok is None or e.ok == ok)
        ]

    def downloads(self) -> list[TranscriptEntry]:
        return self.calls("download")

    def inject_fault(
        self,
        method: str,
        kind: Literal["429", "5xx", "drop"],
        *,
        retry_after: int = 1,
        status: int = 502,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with a fault instead of the real answer."""
        self._faults.append(Fault(method, kind, retry_after=retry_after, status=status, times=times))

    # --- HTTP ------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _error_response(401, "Unauthorized")
        params, files = await _read_params(request)
        chat_id = _int_or_none(params.get("chat_id"))
        fault = self._take_fault(method)
        if fault is not None:
            return await self._fault_response(request, fault, method, params, chat_id)
        handler = getattr(self, f"_m_{method}", None)
        try:
            if handler is None:
                raise _ApiError(404, "Not Found: method not found")
            if method == "getUpdates":
                result = await self._m_getUpdates(params)
            else:
                result = handler(params, files)
        except _ApiError as exc:
            self._record(
                "bot", method, _summarise(params, files), chat_id, status=exc.status, error=exc.description
            )
            await self._notify()
            return _error_response(exc.status, exc.description, exc.retry_after)
        if method != "getUpdates" or result:
            self._record("bot", method, _summarise(params, files), chat_id, result=result)
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error_response(401, "Unauthorized")
        path = request.match_info["path"]
        fault = self._take_fault("download")
        if fault is not None:
            return await self._fault_response(request, fault, "download", {"path": path}, None)
        f = next((f for f in self.files.values() if f.file_path == path), None)
        if f is None:
            self._record("bot", "download", {"path": path}, None, status=404, error="Not Found")
            await self._notify()
            return _error_response(404, "Not Found")
        self._record("bot", "download", {"path": path, "bytes": len(f.data)}, None)
        await self._notify()
        return web.Response(body=f.data, content_type="application/octet-stream")

    async def _fault_response(
        self, request: web.Request, fault: Fault, method: str, params: dict[str, Any], chat_id: int | None
    ) -> web.StreamResponse:
        if fault.kind == "drop":
            self._record(
                "bot",
                method,
                _summarise(params, {}),
                chat_id,
                status=0,
                error="connection dropped by the server",
            )
            await self._notify()
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the half-done request quietly
        if fault.kind == "429":
            desc = f"Too Many Requests: retry after {fault.retry_after}"
            self._record("bot", method, _summarise(params, {}), chat_id, status=429, error=desc)
            await self._notify()
            return _error_response(429, desc, fault.retry_after)
        desc = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
            fault.status, "Server Error"
        )
        self._record("bot", method, _summarise(params, {}), chat_id, status=fault.status, error=desc)
        await self._notify()
        return _error_response(fault.status, desc)

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # --- Bot API methods -------------------------------------------------------------------------

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if offset - 1 > self.confirmed_update_id:
                self.confirmed_update_id = offset - 1
                await self._notify()

        def pending() -> list[dict[str, Any]]:
            return [u for u in self._updates if u["update_id"] >= offset][:limit]

        assert self._new_update is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while not pending() and not self._closing:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), left)
            except TimeoutError:
                break
        return [{k: v for k, v in u.items() if not k.startswith("_")} for u in pending()]

    def _m_getMe(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot.to_dict(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        self.commands = list(params.get("commands") or [])
        return True

    def _m_getMyCommands(self, params: dict[str, Any], files: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands

    def _m_deleteMyCommands(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        self.commands = []
        return True

    def _m_getFile(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        f = self.files.get(str(params.get("file_id")))
        if f is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if f.size > DOWNLOAD_LIMIT_BYTES:
            raise _ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.size,
            "file_path": f.file_path,
        }

    def _m_sendChatAction(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        self._chat(params)
        return True

    def _m_sendMessage(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        text = str(params.get("text") or "")
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if _utf16(text) > TEXT_LIMIT:
            raise _ApiError(400, "Bad Request: message is too long")
        msg = self._bot_message(params)
        msg["text"] = text
        return self._save(msg)

    def _m_editMessageText(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        msg = self._existing(params, "edit")
        text = str(params.get("text") or "")
        if _utf16(text) > TEXT_LIMIT:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        markup = self._markup(params)
        if msg.get("text") == text and msg.get("reply_markup") == markup:
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        msg["text"] = text
        msg["edit_date"] = int(time.time())
        if markup is not None:
            msg["reply_markup"] = markup
        else:
            msg.pop("reply_markup", None)
        return msg

    def _m_deleteMessage(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        msg = self._existing(params, "delete")
        del self.messages[(msg["chat"]["id"], msg["message_id"])]
        self.deleted.append(msg)
        return True

    def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        data = _file_part(files, params, "photo")
        msg = self._bot_message(params)
        msg["photo"] = [self._photo_size(data)]
        self._caption(msg, params)
        return self._save(msg)

    def _m_sendDocument(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        data = _file_part(files, params, "document")
        f = self._store_file(data, folder="documents", suffix=".png")
        msg = self._bot_message(params)
        msg["document"] = {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.size,
            "file_name": "image.png",
            "mime_type": "image/png",
        }
        self._caption(msg, params)
        return self._save(msg)

    def _m_sendVideo(self, params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        """Like the Bot API: the file (≤ 50 MB) becomes a video with the size and length the bot gave."""
        data = _file_part(files, params, "video")
        if len(data) > UPLOAD_LIMIT_BYTES:
            raise _ApiError(413, "Request Entity Too Large")
        name = next((f["filename"] for f in files.values() if f["data"] == data), None) or "video.mp4"
        f = self._store_file(data, folder="videos", suffix=".mp4")
        msg = self._bot_message(params)
        msg["video"] = {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_size": f.size,
            "file_name": name,
            "mime_type": "video/mp4",
            "width": _int_or_none(params.get("width")) or 0,
            "height": _int_or_none(params.get("height")) or 0,
            "duration": _int_or_none(params.get("duration")) or 0,
        }
        self._caption(msg, params)
        return self._save(msg)

    def _m_sendMediaGroup(self, params: dict[str, Any], files: dict[str, Any]) -> list[dict[str, Any]]:
        media = params.get("media") or []
        if not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media in the album")
        group_id = str(next(self._ids))
        out = []
        for item in media:
            if item.get("type") != "photo":
                raise _ApiError(400, "Bad Request: only photos are supported by this fake")
            ref = str(item.get("media", ""))
            if not ref.startswith("attach://") or ref[9:] not in files:
                raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            msg = self._bot_message(params)
            msg["media_group_id"] = group_id
            msg["photo"] = [self._photo_size(files[ref[9:]]["data"])]
            self._caption(msg, item)
            out.append(self._save(msg))
        return out

    def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        qid = str(params.get("callback_query_id"))
        if qid in self.callback_answers:
            raise _ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        self.callback_answers[qid] = params
        return True

    def _m_close(self, params: dict[str, Any], files: dict[str, Any]) -> bool:
        return True

    # --- helpers ---------------------------------------------------------------------------------

    def _new_message(
        self, chat: FakeChat, user: FakeUser, *, reply_to: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(chat.id),
            "date": int(time.time()),
            "chat": chat.to_dict(),
            "from": user.to_dict(),
        }
        if reply_to is not None:
            replied = self.messages.get((chat.id, reply_to["message_id"]), reply_to)
            msg["reply_to_message"] = _one_level(replied)
        return msg

    def _push_message_update(self, msg: dict[str, Any], *, summary: dict[str, Any]) -> None:
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        uid = next(self._update_ids)
        msg["_update_id"] = uid
        self._add_update({"update_id": uid, "message": _public(msg)})
        user = msg["from"]
        extra = {"reply_to": msg["reply_to_message"]["message_id"]} if "reply_to_message" in msg else {}
        self._record(
            "user",
            "sends",
            {"from": user["first_name"], "message_id": msg["message_id"], **summary, **extra},
            msg["chat"]["id"],
        )

    def _add_update(self, update: dict[str, Any]) -> None:
        self._updates.append(update)
        if self._new_update is not None:
            self._new_update.set()  # wakes a long-polling getUpdates at once

    def _bot_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        msg: dict[str, Any] = {
            "message_id": self._next_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot.to_dict(),
        }
        reply = params.get("reply_parameters") or {}
        reply_id = reply.get("message_id") or params.get("reply_to_message_id")
        if reply_id:
            target = self.messages.get((chat["id"], int(reply_id)))
            if target is None and not reply.get("allow_sending_without_reply"):
                raise _ApiError(400, "Bad Request: message to be replied not found")
            if target is not None:
                msg["reply_to_message"] = _one_level(target)
        markup = self._markup(params)
        if markup is not None:
            msg["reply_markup"] = markup
        return msg

    def _save(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return msg

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _int_or_none(params.get("chat_id"))
        if chat_id is None:
            raise _ApiError(400, "Bad Request: chat_id is empty")
        known = next((m["chat"] for (cid, _), m in self.messages.items() if cid == chat_id), None)
        if known is None:
            raise _ApiError(400, "Bad Request: chat not found")
        return dict(known)

    def _existing(self, params: dict[str, Any], what: str) -> dict[str, Any]:
        chat_id = _int_or_none(params.get("chat_id"))
        msg = self.messages.get((chat_id or 0, int(params.get("message_id") or 0)))
        if msg is None:
            raise _ApiError(400, f"Bad Request: message to {what} not found")
        if msg["from"]["id"] != self.bot.id and what == "edit":
            raise _ApiError(400, "Bad Request: message can't be edited")
        return msg

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if not markup:
            return None
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return dict(markup)

    def _caption(self, msg: dict[str, Any], params: dict[str, Any]) -> None:
        caption = params.get("caption")
        if caption:
            if _utf16(str(caption)) > CAPTION_LIMIT:
                raise _ApiError(400, "Bad Request: message caption is too long")
            msg["caption"] = str(caption)

    def _photo_size(self, data: bytes) -> dict[str, Any]:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
        except Exception as exc:
            raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from exc
        f = self._store_file(data, folder="photos", suffix=".png")
        return {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "width": width,
            "height": height,
            "file_size": len(data),
        }

    def _store_file(
        self, data: bytes, *, folder: str, suffix: str = "", declared_size: int | None = None
    ) -> _File:
        n = next(self._ids)
        f = _File(
            file_id=f"FILE{n:06d}-{folder}",
            file_unique_id=f"U{n}",
            file_path=f"{folder}/file_{n}{suffix}",
            data=data,
            declared_size=declared_size,
        )
        self.files[f.file_id] = f
        return f

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _record(
        self,
        who: Literal["user", "bot"],
        method: str,
        params: dict[str, Any],
        chat_id: int | None,
        *,
        status: int = 200,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        self.transcript.append(
            TranscriptEntry(
                round(time.monotonic() - self._t0, 3), who, method, params, chat_id, status, result, error
            )
        )

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    # --- transcript ------------------------------------------------------------------------------

    def render_markdown(
        self,
        *,
        title: str,
        chats: Iterable[FakeChat] | None = None,
        image_links: dict[int, str] | None = None,
    ) -> str:
        """The transcript as a readable conversation (polling and bookkeeping calls summarised)."""
        return _render_markdown(
            self, title=title, chats=list(chats) if chats else None, image_links=image_links or {}
        )


@pytest_asyncio.fixture
async def telegram_server() -> Any:
    """A started :class:`FakeTelegramServer`, closed after the test."""
    server = await FakeTelegramServer().start()
    try:
        yield server
    finally:
        await server.close()


# --- module helpers ------------------------------------------------------------------------------


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    params: dict[str, Any] = {}
    files: dict[str, Any] = {}
    raw: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            raw.update(await request.json())
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = {
                        "data": value.file.read(),
                        "filename": value.filename,
                        "content_type": value.content_type,
                    }
                else:
                    raw[key] = value
    for key, value in raw.items():
        if isinstance(value, str) and key not in _STRING_PARAMS:
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        params[key] = value
    return params, files


def _file_part(files: dict[str, Any], params: dict[str, Any], name: str) -> bytes:
    if name in files:
        return bytes(files[name]["data"])
    ref = str(params.get(name) or "")
    if ref.startswith("attach://") and ref[9:] in files:
        return bytes(files[ref[9:]]["data"])
    raise _ApiError(400, f"Bad Request: there is no {name} in the request")


def _error_response(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)


def _entities(text: str) -> list[dict[str, Any]]:
    """bot_command and mention entities, with offsets in UTF-16 code units like Telegram's."""
    import re

    out = []
    for m in re.finditer(r"(?<![\w@/])(/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?|@[A-Za-z0-9_]{5,})", text):
        kind = "bot_command" if m.group(0).startswith("/") else "mention"
        out.append({"type": kind, "offset": _utf16(text[: m.start()]), "length": _utf16(m.group(0))})
    return out


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _public(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if not k.startswith("_")}


def _one_level(msg: dict[str, Any]) -> dict[str, Any]:
    """A message as it appears inside ``reply_to_message``: without its own ``reply_to_message``."""
    return {k: v for k, v in _public(msg).items() if k != "reply_to_message"}


def _suffix(kind: str, file_name: str | None) -> str:
    if file_name and "." in file_name:
        return "." + file_name.rsplit(".", 1)[1]
    return {"voice": ".oga", "video_note": ".mp4", "audio": ".mp3"}.get(kind, "")


def _summarise(params: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for key, f in files.items():
        out[key] = f"<{len(f['data'])} bytes>"
    return out


# --- markdown rendering --------------------------------------------------------------------------


def _render_markdown(
    server: FakeTelegramServer, *, title: str, chats: list[FakeChat] | None, image_links: dict[int, str]
) -> str:
    lines = [f"# {title}", ""]
    polls = sum(1 for e in server.transcript if e.method == "getUpdates")
    wanted = {c.id for c in chats} if chats else None
    for e in server.transcript:
        if e.method == "getUpdates":
            if e.ok:
                continue
            lines.append(f"- `{e.t_s:7.3f} s` 🤖 getUpdates → **{e.status or 'dropped'}** {e.error}")
            continue
        if wanted is not None and e.chat_id is not None and e.chat_id not in wanted:
            continue
        lines.append(f"- `{e.t_s:7.3f} s` " + _describe(e, image_links))
    lines += [
        "",
        f"_The bot long-polled `getUpdates` throughout ({polls} calls that returned updates are "
        "not listed)._",
        "",
    ]
    return "\n".join(lines)


def _describe(e: TranscriptEntry, image_links: dict[int, str]) -> str:
    p = e.params
    if e.who == "user":
        if e.method == "presses_button":
            return f"👤 **{p['from']}** presses **{p['label']}** under message #{p['message_id']}"
        reply = f" (reply to #{p['reply_to']})" if p.get("reply_to") else ""
        if "text" in p:
            return f"👤 **{p['from']}** writes #{p['message_id']}{reply}: `{p['text']}`"
        what = {
            "voice": "a voice note",
            "audio": "an audio file",
            "document": "a file",
            "video_note": "a video note",
        }[p["kind"]]
        name = f" `{p['file_name']}`" if p.get("file_name") else ""
        caption = f" with caption `{p['caption']}`" if p.get("caption") else ""
        duration = f", {p['duration']} s" if p["kind"] != "document" else ""
        return (
            f"👤 **{p['from']}** sends {what}{name} #{p['message_id']}{reply} "
            f"({p['file_size'] / 1000:.1f} KB, {p.get('mime_type') or 'no MIME type'}{duration})"
            f"{caption}"
        )
    head = f"🤖 `{e.method}`"
    if not e.ok:
        return f"{head} → **{e.status or 'dropped'}** {e.error}"
    r = e.result if isinstance(e.result, dict) else {}
    if e.method in ("sendMessage", "editMessageText"):
        reply = f" (reply to #{r['reply_to_message']['message_id']})" if r.get("reply_to_message") else ""
        return f"{head} #{r.get('message_id')}{reply}: {_quote(p.get('text', ''))}"
    if e.method == "sendPhoto":
        photo = r["photo"][-1]
        link = f" ![image]({image_links[r['message_id']]})" if r.get("message_id") in image_links else ""
        buttons = " ".join(
            f"[{b['text']}]" for row in r.get("reply_markup", {}).get("inline_keyboard", []) for b in row
        )
        reply = f" (reply to #{r['reply_to_message']['message_id']})" if r.get("reply_to_message") else ""
        return (
            f"{head} #{r['message_id']}{reply}: {photo['width']}×{photo['height']} PNG "
            f"({photo['file_size'] / 1000:.0f} KB){link}, buttons {buttons}, caption:\n\n"
            + _block(r.get("caption", ""))
        )
    if e.method == "sendVideo":
        video = r["video"]
        buttons = " ".join(
            f"[{b['text']}]" for row in r.get("reply_markup", {}).get("inline_keyboard", []) for b in row
        )
        reply = f" (reply to #{r['reply_to_message']['message_id']})" if r.get("reply_to_message") else ""
        streaming = ", streaming" if p.get("supports_streaming") else ""
        return (
            f"{head} #{r['message_id']}{reply}: `{video['file_name']}` "
            f"{video['width']}×{video['height']} MP4, {video['duration']} s "
            f"({video['file_size'] / 1000:.0f} KB{streaming})"
            + (f", buttons {buttons}" if buttons else "")
            + ", caption:\n\n"
            + _block(r.get("caption", ""))
        )
    if e.method == "sendMediaGroup":
        items = e.result if isinstance(e.result, list) else []
        return f"{head}: album of {len(items)} photos — " + "; ".join(
            f"#{m['message_id']} {_quote(m.get('caption', ''))}" for m in items
        )
    if e.method == "sendChatAction":
        return f"{head} `{p.get('action')}`"
    if e.method == "getFile":
        return f"{head} → `{r.get('file_path')}` ({r.get('file_size', 0) / 1000:.0f} KB)"
    if e.method == "download":
        return f"🤖 downloads `{p['path']}` ({p.get('bytes', 0) / 1000:.0f} KB)"
    if e.method == "deleteMessage":
        return f"{head} #{p.get('message_id')}"
    if e.method == "answerCallbackQuery":
        text = f": {_quote(p['text'])}" if p.get("text") else ""
        return f"{head}{text}"
    if e.method == "setMyCommands":
        return f"{head}: " + ", ".join(f"/{c['command']}" for c in p.get("commands", []))
    return head


def _quote(text: str) -> str:
    one_line = " ⏎ ".join(str(text).splitlines())
    return f"“{one_line}”"


def _block(text: str) -> str:
    return "\n".join("  > " + (line or " ") for line in str(text).splitlines()) + "\n"

"""Reading an upload safely: size limits enforced while the body streams in, slow uploads cut off.

The body is read in chunks and counted; the request fails with 413 as soon as it passes the limit
(or at once when ``Content-Length`` already says so), and with 408 when the whole body does not
arrive in time or trickles in slower than a minimum rate. Form fields are small and few; the file
name is only ever echoed back, cleaned, never used as a path. Options come from the form fields
(or a JSON ``options`` field, or the query string for raw-body uploads) and are validated by
:class:`~m2i_engine.options.VisualizeOptions` itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from m2i_engine.errors import EmptyAudioError, InvalidOptionError, TooLargeError
from m2i_engine.options import VisualizeOptions
from m2i_engine.server.errors import (
    BadRequestError,
    MissingAudioError,
    UnsupportedMediaTypeError,
    UploadTimeoutError,
)

AUDIO_FIELDS = ("audio", "file")
MAX_FIELD_BYTES = 4096
MAX_FIELDS = 32
CHUNK = 64 * 1024
RATE_GRACE_S = 5.0
#: query parameters that steer the response rather than the picture
CONTROL_PARAMS = ("image", "wait")
RAW_TYPES = ("application/octet-stream",)


@dataclass
class Upload:
    audio: bytes
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)
    read_ms: float = 0.0


def clean_filename(name: str | None) -> str | None:
    """A display-only version of a client's file name: no path, no control or bidi characters."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = unicodedata.normalize("NFC", name).strip(" .")
    return name[:200] or None


class _Budget:
    """Counts body bytes against the size limit and the minimum average rate."""

    def __init__(self, max_bytes: int, min_rate_bps: int) -> None:
        self.max_bytes = max_bytes
        self.min_rate = min_rate_bps
        self.n = 0
        self.t0 = time.monotonic()

    def add(self, n: int) -> None:
        self.n += n
        if self.n > self.max_bytes:
            raise TooLargeError(f"The upload is too big (limit {_mb(self.max_bytes)}).")
        elapsed = time.monotonic() - self.t0
        if self.min_rate and elapsed > RATE_GRACE_S and self.n / elapsed < self.min_rate:
            raise UploadTimeoutError()


async def read_upload(request: web.Request, *, max_bytes: int, audio_max_bytes: int, timeout_s: float,
                      min_rate_bps: int) -> Upload:
    """The audio and form fields of ``request`` (multipart or raw body), within the limits."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLargeError(f"The upload is too big ({_mb(request.content_length)}; limit {_mb(max_bytes)}).")
    ctype = request.content_type
    budget = _Budget(max_bytes, min_rate_bps)
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            if ctype == "multipart/form-data":
                upload = await _read_multipart(request, budget, audio_max_bytes)
            elif ctype.startswith("audio/") or ctype.startswith("video/") or ctype in RAW_TYPES:
                audio = await _read_stream(request.content, budget, audio_max_bytes)
                upload = Upload(audio=audio, filename=None)
            else:
                raise UnsupportedMediaTypeError(
                    f"Content type {ctype!r} isn't accepted: send multipart/form-data with an 'audio' file "
                    "field, or the raw audio with an audio/* content type.")
    except TimeoutError as exc:
        raise UploadTimeoutError() from exc
    if not upload.audio:
        raise EmptyAudioError()
    upload.read_ms = (time.perf_counter() - t0) * 1000
    return upload


async def _read_stream(stream: Any, budget: _Budget, audio_max: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.read(CHUNK) if not isinstance(stream, BodyPartReader) else \
            await stream.read_chunk(CHUNK)
        if not chunk:
            return b"".join(chunks)
        budget.add(len(chunk))
        size += len(chunk)
        if size > audio_max:
            raise TooLargeError(f"The audio file is too big (limit {_mb(audio_max)}).")
        chunks.append(chunk)


async def _read_multipart(request: web.Request, budget: _Budget, audio_max: int) -> Upload:
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise BadRequestError("The multipart body can't be read (is the boundary missing?).") from exc
    audio: bytes | None = None
    filename: str | None = None
    fields: dict[str, str] = {}
    count = 0
    while True:
        try:
            part = await reader.next()
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise BadRequestError(f"The multipart body is malformed: {exc}.") from exc
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise BadRequestError("Nested multipart bodies aren't accepted.")
        count += 1
        if count > MAX_FIELDS:
            raise BadRequestError(f"Too many form fields (at most {MAX_FIELDS}).")
        name = part.name or ""
        if name in AUDIO_FIELDS:
            if audio is not None:
                raise BadRequestError("Send one audio file per request.")
            audio = await _read_stream(part, budget, audio_max)
            filename = clean_filename(part.filename)
            continue
        if not name:
            raise BadRequestError("A form field has no name.")
        value = await _read_stream(part, _Sub(budget, MAX_FIELD_BYTES, name), MAX_FIELD_BYTES)
        if name in fields:
            raise BadRequestError(f"The field {name!r} is given twice.")
        try:
            fields[name] = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestError(f"The field {name!r} isn't UTF-8 text.") from exc
    if audio is None:
        raise MissingAudioError()
    return Upload(audio=audio, filename=filename, fields=fields)


class _Sub(_Budget):
    """A small per-field limit inside the request's budget."""

    def __init__(self, parent: _Budget, limit: int, name: str) -> None:
        self.parent, self.limit, self.name, self.n = parent, limit, name, 0

    def add(self, n: int) -> None:
        self.parent.add(n)
        self.n += n
        if self.n > self.limit:
            raise BadRequestError(f"The field {self.name!r} is too long (at most {self.limit} bytes).")


def parse_options(fields: dict[str, str], query: dict[str, str] | None = None, *,
                  allowed: bool = True) -> VisualizeOptions:
    """Form fields (and/or a JSON ``options`` field, or query parameters) → validated options."""
    given: dict[str, Any] = {}
    if "options" in fields:
        try:
            obj = json.loads(fields["options"])
        except json.JSONDecodeError as exc:
            raise InvalidOptionError(f"The 'options' field isn't valid JSON: {exc.msg}.") from exc
        if not isinstance(obj, dict):
            raise InvalidOptionError("The 'options' field must be a JSON object.")
        given.update(obj)
    for src in (query or {}), fields:
        for k, v in src.items():
            if k == "options" or k in CONTROL_PARAMS:
                continue
            given[k] = v
    if given and not allowed:
        raise InvalidOptionError(f"This endpoint takes no options (got {', '.join(sorted(given))}).")
    unknown = sorted(set(given) - set(VisualizeOptions.model_fields))
    if unknown:
        known = ", ".join(VisualizeOptions.model_fields)
        raise InvalidOptionError(f"Unknown option {_safe(unknown[0])!r}; the options are: {known}.")
    for k, v in list(given.items()):
        if v == "" or v is None:
            given.pop(k)  # an empty form field means "default"
    try:
        return VisualizeOptions(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "options"
        raise InvalidOptionError(f"Invalid {loc}: {first['msg']}.") from exc


def _safe(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:64]


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"

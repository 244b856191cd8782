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
from aiohttp.http_exceptions import BadHttpMessage
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
#: form fields that are text even when sent as a file (``curl -F options=@options.json``)
TEXT_FIELDS = frozenset({"options", *CONTROL_PARAMS, *VisualizeOptions.model_fields})


@dataclass
class Upload:
    audio: bytes
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)
    read_ms: float = 0.0


def clean_filename(name: str | None) -> str | None:
    """A display-only version of a client's file name: no path, no control or bidi characters.

    Header bytes that aren't UTF-8 reach us surrogate-escaped; HTTP's historical header charset is
    ISO-8859-1 (RFC 9110 §5.5), so such a name is read as Latin-1 rather than losing its accents.
    """
    if not name:
        return None
    if any("\udc80" <= ch <= "\udcff" for ch in name):  # undecodable bytes, surrogate-escaped by aiohttp
        name = name.encode("utf-8", "surrogateescape").decode("latin-1")
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


async def read_upload(
    request: web.Request, *, max_bytes: int, audio_max_bytes: int, timeout_s: float, min_rate_bps: int
) -> Upload:
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
                    "field, or the raw audio with an audio/* content type."
                )
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
        chunk = (
            await stream.read(CHUNK)
            if not isinstance(stream, BodyPartReader)
            else await stream.read_chunk(CHUNK)
        )
        if not chunk:
            return b"".join(chunks)
        budget.add(len(chunk))
        size += len(chunk)
        if size > audio_max:
            raise TooLargeError(f"The audio file is too big (limit {_mb(audio_max)}).")
        chunks.append(chunk)


async def _read_multipart(request: web.Request, budget: _Budget, audio_max: int) -> Upload:
    """The one file part is the audio, whatever its field name (``curl -F song=@x.mp3`` works too).

    A part is the audio when it is named ``audio`` or ``file``, or carries a file name and isn't
    one of the :data:`TEXT_FIELDS`.
    """
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise BadRequestError("The multipart body can't be read (is the boundary missing?).") from exc
    audio: bytes | None = None
    audio_field = ""
    filename: str | None = None
    fields: dict[str, str] = {}
    count = 0
    while True:
        try:
            part = await reader.next()
        except BadHttpMessage as exc:  # aiohttp's part-header parser: control characters, no colon, …
            raise BadRequestError(
                "A part header of the multipart body is malformed (a control character, "
                "or a line without a colon)."
            ) from exc
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise BadRequestError(f"The multipart body is malformed: {exc}.") from exc
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise BadRequestError("Nested multipart bodies aren't accepted.")
        count += 1
        if count > MAX_FIELDS:
            raise BadRequestError(f"Too many form fields (at most {MAX_FIELDS}).")
        _check_part_headers(part)
        name = part.name or ""
        if name in AUDIO_FIELDS or (part.filename is not None and name not in TEXT_FIELDS):
            if audio is not None:
                raise BadRequestError(
                    f"Send one audio file per request (got files in the fields "
                    f"{_safe(audio_field)!r} and {_safe(name)!r})."
                )
            audio = await _read_stream(part, budget, audio_max)
            audio_field, filename = name, clean_filename(part.filename)
            continue
        if not name:
            raise BadRequestError("A form field has no name.")
        value = await _read_stream(part, _Sub(budget, MAX_FIELD_BYTES, name), MAX_FIELD_BYTES)
        if name in fields:
            raise BadRequestError(f"The field {name!r} is given twice.")
        try:
            fields[name] = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestError(f"The field {name!r} isn't UTF-8 text{_audio_hint(name)}") from exc
    if audio is None:
        raise MissingAudioError()
    return Upload(audio=audio, filename=filename, fields=fields)


def _check_part_headers(part: BodyPartReader) -> None:
    """Refuse control characters aiohttp's parser lets through (DEL, or any after percent-decoding)."""
    values = [*part.headers.values(), part.name or "", part.filename or ""]
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for v in values for ch in v):
        raise BadRequestError(
            "A part header of the multipart body (field name, file name, content type) "
            "contains a control character."
        )


def _audio_hint(name: str) -> str:
    """The end of a sentence about a bad text field: where audio goes, when the field isn't an option."""
    if name in TEXT_FIELDS:
        return "."
    return " — if it is the audio, send it as a file in the 'audio' field (curl -F audio=@song.mp3)."


class _Sub(_Budget):
    """A small per-field limit inside the request's budget."""

    def __init__(self, parent: _Budget, limit: int, name: str) -> None:
        self.parent, self.limit, self.name, self.n = parent, limit, name, 0

    def add(self, n: int) -> None:
        self.parent.add(n)
        self.n += n
        if self.n > self.limit:
            raise BadRequestError(
                f"The field {self.name!r} is too long (at most {self.limit} bytes){_audio_hint(self.name)}"
            )


def parse_options(
    fields: dict[str, str], query: dict[str, str] | None = None, *, allowed: bool = True
) -> VisualizeOptions:
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

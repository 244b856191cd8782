"""Hostile or sloppy HTTP clients against ``m2i serve``: the JSON error contract holds, nothing hangs.

The server is the real one (:func:`m2i_engine.server.cli.serve` on a free loopback port, with the
production runner), so aiohttp's own connection handling is what is tested — parse errors it answers
before any route runs, connections that never finish their headers. Requests that no well-behaved
client would send are written byte by byte on raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from m2i_engine.config import Settings
from m2i_engine.options import VisualizeOptions
from m2i_engine.server.cli import serve
from m2i_engine.server.images import DirImages
from tests.queue_harness import form, free_port, harness_engine, song

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADER_TIMEOUT_S = 1.0
MARGIN_S = 1.5  # scheduling slack on a busy CI machine
GOOD = song(1)
SECRET = "s3cret-token-0123456789"


@dataclass
class Api:
    host: str
    port: int
    media: Path

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    media = tmp_path_factory.mktemp("media")
    port = free_port()
    s = Settings(
        backend="renderer",
        workers=1,  # type: ignore[arg-type]
        serve={
            "port": port,
            "header_timeout_s": HEADER_TIMEOUT_S,
            "min_upload_rate_bps": 0,
            "media_dir": str(media),
        },
    )
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(s, engine=harness_engine(s), stop=stop, started=started))
    await asyncio.wait_for(started.wait(), 60)
    api = Api("127.0.0.1", port, media)
    # the first analysis JIT-compiles librosa (a minute on a cold numba cache): not in a timed test
    async with aiohttp.ClientSession() as warm, warm.post(api.url("/v1/analyze"), data=form(GOOD)) as r:
        assert r.status == 200, await r.text()
    yield api
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # no connection reuse: the server closes idle connections, and a reused one could race that
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


# --- helpers ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def exchange(api: Api, data: bytes, *, timeout_s: float = 10) -> Answer:
    """Send ``data`` as is on a fresh connection; read one HTTP response."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            body = await reader.readexactly(n) if n else b""
        return Answer(int(status_line.split()[1]), headers, body)
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def seconds_until_closed(
    api: Api, sends: list[bytes], *, pause_s: float = 0.0, limit_s: float
) -> float | None:
    """Open a connection, write ``sends`` (pausing between them); seconds until the server closes it."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    t0 = time.monotonic()

    async def trickle() -> None:
        for chunk in sends:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(pause_s)

    sender = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(limit_s):
            while await reader.read(4096):
                pass
        return time.monotonic() - t0
    except TimeoutError:  # before OSError, its base class: a timeout means "still open"
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - t0
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


def multipart(*parts: tuple[bytes, bytes], boundary: bytes = b"hardBoundary") -> tuple[bytes, dict[str, str]]:
    """A multipart body from (raw part header lines, content) pairs, bytes exactly as given."""
    out = b"".join(
        b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n" for head, content in parts
    )
    ctype = f"multipart/form-data; boundary={boundary.decode()}"
    return out + b"--" + boundary + b"--\r\n", {"Content-Type": ctype}


def file_part(
    name: bytes = b"audio", filename: bytes = b"song.wav", ctype: bytes = b"audio/wav", content: bytes = GOOD
) -> tuple[bytes, bytes]:
    head = b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"\r\n'
    return head + b"Content-Type: " + ctype, content


def field_part(name: str, value: str) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"'.encode(), value.encode()


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def assert_json_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    doc = answer.json()
    assert doc["error"]["code"] == code and doc["request_id"], doc
    assert 10 < len(doc["error"]["message"]) < 300 and "Traceback" not in doc["error"]["message"]
    assert answer.headers["x-request-id"] == doc["request_id"]
    return doc


async def post(
    http: aiohttp.ClientSession, api: Api, path: str, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with http.post(api.url(path), data=data, headers=headers) as r:
        return r.status, await r.json()


# --- 1. control characters in multipart part headers ----------------------------------------


@pytest.mark.parametrize("char", [b"\x00", b"\x01", b"\x7f"], ids=["nul", "soh", "del"])
@pytest.mark.parametrize("where", ["filename", "field name", "content type"])
async def test_control_characters_in_a_part_header_get_a_400(
    where: str, char: bytes, api: Api, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    part = {
        "filename": file_part(filename=b"so" + char + b"ng.wav"),
        "field name": file_part(name=b"aud" + char + b"io"),
        "content type": file_part(ctype=b"audio/" + char + b"wav"),
    }[where]
    body, headers = multipart(part)
    status, doc = await post(http, api, "/v1/analyze", body, headers)
    assert status == 400 and doc["error"]["code"] == "bad_request", doc
    assert "control character" in doc["error"]["message"]
    assert not problems(caplog), [r.getMessage() for r in problems(caplog)]


# --- 3. header timeout ------------------------------------------------------------------------


async def test_connections_that_never_finish_their_headers_are_closed(api: Api) -> None:
    trickle = [bytes([b]) for b in b"POST /v1/analyze HTTP/1.1\r\nHost: localhost\r\nX-Slow: abcdefghij"]
    limit = HEADER_TIMEOUT_S + MARGIN_S
    bare, slow, partial = await asyncio.gather(
        seconds_until_closed(api, [], limit_s=limit),
        seconds_until_closed(api, trickle, pause_s=0.2, limit_s=limit),  # still sending when cut
        seconds_until_closed(api, [b"GET /heal"], limit_s=limit),
    )
    for kind, took in [("bare connect", bare), ("trickled header", slow), ("partial request line", partial)]:
        assert took is not None, f"{kind}: still open after {limit} s"
        assert took >= HEADER_TIMEOUT_S * 0.8, f"{kind}: closed after {took:.2f} s, before the timeout"


async def test_a_second_request_on_a_kept_alive_connection_gets_the_header_timeout_too(api: Api) -> None:
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        while (await reader.readline()) != b"\r\n":
            pass
        await reader.read(100)  # the tiny JSON body
        t0 = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost")  # the next request's header, never finished
        await writer.drain()
        async with asyncio.timeout(HEADER_TIMEOUT_S + MARGIN_S):
            rest = await reader.read(4096)
        assert rest == b"" and time.monotonic() - t0 >= HEADER_TIMEOUT_S * 0.8
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def test_a_slow_body_is_not_cut_by_the_header_timeout(api: Api) -> None:
    body, headers = multipart(file_part())
    head = (
        f"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['Content-Type']}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(api.host, api.port)
    try:
        writer.write(head)
        await writer.drain()
        t0 = time.monotonic()
        step = len(body) // 10 + 1
        for i in range(0, len(body), step):  # the body takes ~3 header timeouts to arrive
            writer.write(body[i : i + step])
            await writer.drain()
            await asyncio.sleep(HEADER_TIMEOUT_S * 0.3)
        assert time.monotonic() - t0 > 2 * HEADER_TIMEOUT_S
        async with asyncio.timeout(30):
            status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


# --- 4. the file under another field name -----------------------------------------------------


async def test_a_single_file_under_another_field_name_is_the_audio(
    api: Api, http: aiohttp.ClientSession
) -> None:
    f = aiohttp.FormData()
    f.add_field("song", GOOD, filename="x.wav", content_type="audio/wav")  # curl -F song=@x.wav
    status, doc = await post(http, api, "/v1/analyze", f)
    assert status == 200, doc
    assert doc["file_name"] == "x.wav" and len(doc["audio_sha256"]) == 64


async def test_two_files_under_other_names_are_refused_clearly(api: Api, http: aiohttp.ClientSession) -> None:
    body, headers = multipart(file_part(name=b"song"), file_part(name=b"backup", filename=b"b.wav"))
    status, doc = await post(http, api, "/v1/analyze", body, headers)
    assert status == 400 and doc["error"]["code"] == "bad_request"
    assert "one audio file" in doc["error"]["message"]


async def test_an_option_sent_as_a_file_stays_an_option(api: Api, http: aiohttp.ClientSession) -> None:
    f = aiohttp.FormData()
    f.add_field("audio", GOOD, filename="x.wav", content_type="audio/wav")
    # curl -F options=@o.json
    f.add_field("options", b'{"size": 256}', filename="o.json", content_type="application/json")
    status, doc = await post(http, api, "/v1/visualize", f)
    assert status == 200, doc
    assert doc["file_name"] == "x.wav" and max(doc["images"][0]["width"], doc["images"][0]["height"]) == 256


async def test_audio_pasted_into_a_text_field_is_told_where_it_goes(
    api: Api, http: aiohttp.ClientSession
) -> None:
    body, headers = multipart((b'Content-Disposition: form-data; name="song"', GOOD))  # no filename
    status, doc = await post(http, api, "/v1/analyze", body, headers)
    assert status == 400 and doc["error"]["code"] == "bad_request"
    assert "'audio'" in doc["error"]["message"] and "'song'" in doc["error"]["message"]


# --- 5. whitespace in prompts -----------------------------------------------------------------


@pytest.mark.parametrize("sep", ["\t", "\n", "\r\n", "\x00", "\x0b", "\u2028", "\x1f"])
async def test_control_characters_in_a_prompt_separate_words(sep: str) -> None:
    opts = VisualizeOptions(prompt=f"new line{sep}TAB{sep}{sep}here", negative=f"{sep}blur{sep}noise{sep}")
    assert opts.prompt == "new line TAB here" and opts.negative == "blur noise"


async def test_the_prompt_keeps_its_words_apart_over_http(api: Api, http: aiohttp.ClientSession) -> None:
    body, headers = multipart(
        file_part(), field_part("prompt", "glowing\tneon\ncity\x00lights"), field_part("size", "256")
    )
    status, doc = await post(http, api, "/v1/visualize", body, headers)
    assert status == 200, doc
    assert "glowing neon city lights" in doc["prompt"]


# --- 6. image ids -----------------------------------------------------------------------------


async def test_an_image_id_with_a_trailing_newline_names_nothing(
    api: Api, http: aiohttp.ClientSession
) -> None:
    iid = "0123456789abcdef" * 2
    (api.media / f"{iid}\n.png").write_bytes(b"\x89PNG not ours")  # a file the id must not reach
    async with http.get(api.url(f"/v1/images/{iid}%0A.png")) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    store = DirImages(api.media)
    assert await store.get(iid + "\n") is None
    with pytest.raises(ValueError):
        await store.put(iid + "\n", b"png")


# --- 7. aiohttp's own parse errors ------------------------------------------------------------

PARSE_ERRORS = {
    "bad request line": b"GET /healthz HTTP/1.1 trailing junk\r\nHost: x\r\n\r\n",
    "bad method": b"G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "control character in a header": (
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\x01\r\n\r\n"
    ).encode(),
    "header without a colon": f"GET /healthz HTTP/1.1\r\nHost: x\r\nBearer {SECRET}\r\n\r\n".encode(),
    "too-large header": (
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: {SECRET}" + "j" * 20_000 + "\r\n\r\n"
    ).encode(),
    "bad header with a big body": (
        f"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nX-Token: {SECRET}\x00\r\nContent-Length: 6000\r\n\r\n"
    ).encode()
    + b"B" * 6000,
    "negative content length": b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
}


@pytest.mark.parametrize("kind", list(PARSE_ERRORS))
async def test_aiohttp_parse_errors_keep_the_json_contract_and_log_one_short_warning(
    kind: str, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await exchange(api, PARSE_ERRORS[kind])
    assert_json_error(answer, 400, "bad_request")
    assert SECRET.encode() not in answer.body and b"jjjj" not in answer.body
    assert not any(SECRET in v for v in answer.headers.values())
    await asyncio.sleep(0.05)  # let the server finish logging
    assert not problems(caplog), [r.getMessage()[:200] for r in problems(caplog)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage()[:200] for r in warnings]
    line = warnings[0].getMessage()
    assert len(line) < 200 and SECRET not in line and "BBBB" not in line, line


async def test_the_service_answers_normally_after_parse_errors(api: Api, http: aiohttp.ClientSession) -> None:
    for data in PARSE_ERRORS.values():
        await exchange(api, data)
    status, doc = await post(http, api, "/v1/analyze", form(GOOD))
    assert status == 200 and doc["tags"]
    async with http.get(api.url("/metrics")) as r:
        assert 'm2i_errors_total{code="bad_request"}' in await r.text()


# --- 8. file names and nosniff ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("café.mp3".encode("latin-1"), "café.mp3"),  # a client that sends ISO-8859-1 bytes
        ("café.mp3".encode(), "café.mp3"),  # UTF-8 bytes
        ("naïve ÿ.wav".encode("latin-1"), "naïve ÿ.wav"),
    ],
)
async def test_non_ascii_file_names_survive(
    raw: bytes, shown: str, api: Api, http: aiohttp.ClientSession
) -> None:
    body, headers = multipart(file_part(filename=raw))
    status, doc = await post(http, api, "/v1/analyze", body, headers)
    assert status == 200 and doc["file_name"] == shown, doc


async def test_an_rfc_5987_file_name_is_used(api: Api, http: aiohttp.ClientSession) -> None:
    head = (
        b'Content-Disposition: form-data; name="audio"; filename="fallback.wav"; '
        b"filename*=UTF-8''caf%C3%A9%20%E2%99%AA.wav\r\nContent-Type: audio/wav"
    )
    body, headers = multipart((head, GOOD))
    status, doc = await post(http, api, "/v1/analyze", body, headers)
    assert status == 200 and doc["file_name"] == "café ♪.wav", doc


async def test_every_response_says_nosniff(api: Api, http: aiohttp.ClientSession) -> None:
    status, doc = await post(http, api, "/v1/visualize", form(GOOD, size=256))
    assert status == 200
    seen = []
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        doc["images"][0]["url"],
        "/nope",
        "/v1/jobs/unknown",
        "/v1/images/" + "f" * 32 + ".png",
    ]:
        async with http.get(api.url(path) if path.startswith("/") else path) as r:
            seen.append((path, r.status, r.headers.get("X-Content-Type-Options")))
    async with http.post(api.url("/v1/analyze"), data=b"x", headers={"Content-Type": "text/plain"}) as r:
        seen.append(("415", r.status, r.headers.get("X-Content-Type-Options")))
    parse_error = await exchange(api, PARSE_ERRORS["bad method"])
    seen.append(("parse error", parse_error.status, parse_error.headers.get("x-content-type-options")))
    assert {s for _, s, _ in seen} >= {200, 404, 415, 400}
    assert all(v == "nosniff" for _, _, v in seen), seen

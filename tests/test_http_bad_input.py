"""Bad input over HTTP: every kind gets a 4xx with a clear JSON message, and the service stays up.

Requests go over a real loopback socket; some (huge or lying Content-Length, a body that never
ends, a slow-loris upload, a negative length) are written byte by byte with a raw socket, since no
well-behaved client would send them.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf
from aiohttp.test_utils import TestServer

from m2i_engine.config import Settings
from m2i_engine.server.app import create_app
from tests.queue_harness import harness_engine, song

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BYTES = 1024 * 1024  # small limits keep the oversize cases cheap
UPLOAD_TIMEOUT_S = 1.5


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[TestServer]:
    s = Settings(
        backend="renderer",
        workers=1,
        limits={"max_bytes": MAX_BYTES},  # type: ignore[arg-type]
        serve={"upload_timeout_s": UPLOAD_TIMEOUT_S, "min_upload_rate_bps": 0},
    )
    app = create_app(s, harness_engine(s))
    async with TestServer(app) as srv:
        yield srv


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def wav(samples: np.ndarray, sr: int = 22_050) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def form(
    audio: bytes | None = None, *fields: tuple[str, Any], filename: str = "song.wav"
) -> aiohttp.FormData:
    f = aiohttp.FormData(default_to_multipart=True)
    if audio is not None:
        f.add_field("audio", audio, filename=filename, content_type="audio/wav")
    for k, v in fields:
        if isinstance(v, bytes) and k == "audio":
            f.add_field(k, v, filename="second.wav")
        else:
            f.add_field(k, v if isinstance(v, bytes) else str(v), content_type="text/plain")
    return f


def multipart(audio: bytes, filename: str, *fields: tuple[str, str]) -> tuple[bytes, dict[str, str]]:
    """A multipart body written byte by byte (names exactly as a browser or a hostile client sends them)."""
    b = "m2iBoundary"
    out = [
        f'--{b}\r\nContent-Disposition: form-data; name="audio"; filename="{filename}"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + audio
        + b"\r\n"
    ]
    for name, value in fields:
        out.append(f'--{b}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    out.append(f"--{b}--\r\n".encode())
    return b"".join(out), {"Content-Type": f"multipart/form-data; boundary={b}"}


def post_raw_form(
    audio: bytes, *fields: tuple[str, str], filename: str = "a.wav", path: str = "/v1/visualize"
) -> Call:
    body, headers = multipart(audio, filename, *fields)
    return post(body, path=path, headers=headers)


Call = Callable[[TestServer, aiohttp.ClientSession], Awaitable[tuple[int, dict[str, Any] | None]]]


def post(
    data: Any = None, path: str = "/v1/visualize", headers: dict[str, str] | None = None, method: str = "POST"
) -> Call:
    async def call(srv: TestServer, http: aiohttp.ClientSession) -> tuple[int, dict[str, Any] | None]:
        async with http.request(method, srv.make_url(path), data=data, headers=headers) as r:
            body = await r.read()
            try:
                return r.status, json.loads(body)
            except ValueError:
                return r.status, None

    return call


def raw(
    head: str, body_parts: list[bytes] | None = None, *, pause_s: float = 0.0, stream_forever: bool = False
) -> Call:
    """Write a request by hand; read the status line and the JSON body if any."""

    async def call(srv: TestServer, http: aiohttp.ClientSession) -> tuple[int, dict[str, Any] | None]:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
            await writer.drain()

            async def send() -> None:
                for part in body_parts or []:
                    writer.write(part)
                    await writer.drain()
                    if pause_s:
                        await asyncio.sleep(pause_s)
                while stream_forever:  # a body that never ends: the server must cut it off
                    writer.write(b"%x\r\n%s\r\n" % (65536, b"x" * 65536))
                    await writer.drain()

            sender = asyncio.create_task(send())
            try:
                async with asyncio.timeout(20):
                    status_line = await reader.readline()
                    headers = {}
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        k, _, v = line.decode().partition(":")
                        headers[k.strip().lower()] = v.strip()
                    n = int(headers.get("content-length", "0"))
                    body = await reader.readexactly(n) if n else b""
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            status = int(status_line.split()[1])
            try:
                return status, json.loads(body)
            except ValueError:
                return status, None
        finally:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)

    return call


def multipart_head(length: int | None, *, chunked: bool = False, boundary: str = "b0undary") -> str:
    lines = [
        "POST /v1/visualize HTTP/1.1",
        "Host: localhost",
        f"Content-Type: multipart/form-data; boundary={boundary}",
    ]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return "\n".join(lines) + "\n"


def part_head(boundary: str = "b0undary") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


GOOD = song(1)
CASES: dict[str, tuple[Call, int, str | None]] = {
    # kind: (request, status, error code)
    "wrong content type": (
        post(b"hello", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    ),
    "json body": (
        post(b'{"audio": "x"}', headers={"Content-Type": "application/json"}),
        415,
        "unsupported_media_type",
    ),
    "multipart without boundary": (
        post(b"--x\r\n", headers={"Content-Type": "multipart/form-data"}),
        400,
        "bad_request",
    ),
    "missing audio field": (post(form(None, ("size", 256))), 400, "missing_audio"),
    "empty audio file": (post(form(b"")), 400, "empty_file"),
    "text instead of audio": (post(form(b"just some text, not a song " * 20)), 415, "not_audio"),
    "truncated audio": (post(form(GOOD[:5000])), 422, "corrupt_audio"),
    "too short audio": (post(form(wav(np.random.default_rng(0).normal(0, 0.1, 11_025)))), 422, "too_short"),
    "silent audio": (post(form(wav(np.zeros(22_050 * 3)))), 422, "silent_audio"),
    "huge declared length": (raw(multipart_head(10**12)), 413, "too_large"),
    "body over the limit (chunked, streamed)": (
        raw(
            multipart_head(None, chunked=True),
            [b"%x\r\n%s\r\n" % (len(part_head()), part_head())],
            stream_forever=True,
        ),
        413,
        "too_large",
    ),
    "audio over the limit": (post(form(b"RIFF" + b"\0" * (MAX_BYTES + 10))), 413, "too_large"),
    "slow-loris upload": (
        raw(
            multipart_head(len(GOOD) + 500),
            [part_head()] + [GOOD[i : i + 64] for i in range(0, 6400, 64)],
            pause_s=0.1,
        ),
        408,
        "upload_timeout",
    ),
    "negative content length": (
        raw("POST /v1/visualize HTTP/1.1\nHost: x\nContent-Type: audio/wav\nContent-Length: -5\n"),
        400,
        None,
    ),
    "oversized header": (
        raw("POST /v1/visualize HTTP/1.1\nHost: x\nX-Junk: " + "j" * 20_000 + "\n"),
        400,
        None,
    ),
    "unknown option": (post(form(GOOD, ("colour", "red"))), 422, "invalid_option"),
    "unicode trick in an option name": (
        post_raw_form(GOOD, ("size\u202e\u200b", "256")),
        422,
        "invalid_option",
    ),
    "path trick in an option name": (post_raw_form(GOOD, ("../../size", "256")), 422, "invalid_option"),
    "negative size": (post(form(GOOD, ("size", -512))), 422, "invalid_option"),
    "huge size": (post(form(GOOD, ("size", 10**9))), 422, "invalid_option"),
    "non-numeric size": (post(form(GOOD, ("size", "big"))), 422, "invalid_option"),
    "negative seed": (post(form(GOOD, ("seed", -1))), 422, "invalid_option"),
    "seed beyond 32 bits": (post(form(GOOD, ("seed", 2**40))), 422, "invalid_option"),
    "zero images": (post(form(GOOD, ("num_images", 0))), 422, "invalid_option"),
    "a thousand images": (post(form(GOOD, ("num_images", 1000))), 422, "invalid_option"),
    "unknown style": (post(form(GOOD, ("style", "vaporwave"))), 422, "invalid_option"),
    "bad aspect": (post(form(GOOD, ("aspect", "0:0"))), 422, "invalid_option"),
    "prompt too long": (post(form(GOOD, ("prompt", "x" * 401))), 422, "invalid_option"),
    "options not JSON": (post(form(GOOD, ("options", "{size: 3"))), 422, "invalid_option"),
    "options JSON not an object": (post(form(GOOD, ("options", "[1, 2]"))), 422, "invalid_option"),
    "options JSON with a bad value": (
        post(form(GOOD, ("options", '{"size": "huge"}'))),
        422,
        "invalid_option",
    ),
    "field given twice": (post(form(GOOD, ("size", 256), ("size", 512))), 400, "bad_request"),
    "field too long": (post(form(GOOD, ("negative", "n" * 5000))), 400, "bad_request"),
    "too many fields": (post(form(GOOD, *((f"f{i}", 1) for i in range(40)))), 400, "bad_request"),
    "two audio files": (post(form(GOOD, ("audio", GOOD))), 400, "bad_request"),
    "field not UTF-8": (post(form(GOOD, ("prompt", b"\xff\xfe\xfd"))), 400, "bad_request"),
    "bad image mode": (post(form(GOOD), path="/v1/visualize?image=gif"), 422, "invalid_option"),
    "bad wait flag": (post(form(GOOD), path="/v1/visualize?wait=maybe"), 422, "invalid_option"),
    "bad idempotency key": (post(form(GOOD), headers={"Idempotency-Key": "k" * 200}), 400, "bad_request"),
    "options on analyze": (post(form(GOOD, ("style", "neon")), path="/v1/analyze"), 422, "invalid_option"),
    "wrong method": (post(method="GET"), 405, "method_not_allowed"),
    "unknown route": (post(form(GOOD), path="/v2/visualize"), 404, "not_found"),
    "path trick in a job id": (post(method="GET", path="/v1/jobs/..%2F..%2Fetc%2Fpasswd"), 404, "not_found"),
    "path trick in an image id": (
        post(method="GET", path="/v1/images/..%2F..%2Fetc%2Fpasswd.png"),
        404,
        "not_found",
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
async def test_bad_input_gets_a_clear_4xx(kind: str, server: TestServer, http: aiohttp.ClientSession) -> None:
    call, status, code = CASES[kind]
    got, doc = await call(server, http)
    assert got == status, (kind, got, doc)
    if code is not None:
        assert doc is not None and doc["error"]["code"] == code, (kind, doc)
        message = doc["error"]["message"]
        assert 10 < len(message) < 400 and "Traceback" not in message and doc["request_id"]


async def test_path_tricks_in_the_file_name_are_only_echoed_cleaned(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    for name, shown in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("evil\u202egnp.wav", "evilgnp.wav"),
        ("/", None),
    ]:
        body, headers = multipart(GOOD, name)
        async with http.post(server.make_url("/v1/analyze"), data=body, headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["file_name"] == shown


async def test_the_service_is_alive_after_all_of_it(server: TestServer, http: aiohttp.ClientSession) -> None:
    assert len(CASES) >= 25
    async with http.get(server.make_url("/healthz")) as r:
        assert r.status == 200
    async with http.post(server.make_url("/v1/visualize"), data=form(GOOD, ("size", 256))) as r:
        assert r.status == 200 and (await r.json())["images"]
    async with http.get(server.make_url("/metrics")) as r:
        assert 'm2i_errors_total{code="invalid_option"}' in await r.text()

"""The HTTP API in single-process mode: routes, jobs, idempotency, auth, metrics, faults, shutdown.

A real aiohttp server on loopback in front of the real engine (built-in renderer, empty model
registry); the image backend and decoder probe of :mod:`tests.queue_harness` inject the faults.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from m2i_engine.config import SDSettings, Settings
from m2i_engine.engine import Engine
from m2i_engine.imaging.sd.runtime import sd_off_summary
from m2i_engine.options import VisualizeOptions
from m2i_engine.server.app import create_app
from m2i_engine.server.cli import serve
from tests.queue_harness import GATE_ENV, await_until, form, free_port, harness_engine, poison_song, song

pytestmark = pytest.mark.asyncio(loop_scope="module")


class CountingEngine:
    """The real engine, counting the calls that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.settings = inner.settings
        self.calls = 0

    async def start(self) -> Any:
        return await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def analyze(self, audio: Any, *, progress: Any = None) -> Any:
        self.calls += 1
        return await self.inner.analyze(audio, progress=progress)

    async def visualize(self, audio: Any, options: Any = None, *, progress: Any = None) -> Any:
        self.calls += 1
        return await self.inner.visualize(audio, options, progress=progress)


def settings(**kw: Any) -> Settings:
    return Settings(backend="renderer", workers=1, **kw)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine() -> AsyncIterator[CountingEngine]:
    s = settings()
    eng = CountingEngine(harness_engine(s, oom_fallback=True, result_cache=64))
    await eng.start()
    yield eng
    await eng.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(engine: CountingEngine) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(engine.settings, engine, own_engine=False)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_visualize_answers_tags_prompt_and_a_fetchable_image(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/visualize", data=form(song(1), size=256, aspect="3:2", style="neon"))
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["tags"]["tempo"]["bpm"] > 0 and doc["prompt"] and doc["style"] == "neon"
    assert doc["backend"] == "renderer" and doc["file_name"] == "song.wav"
    [img] = doc["images"]
    assert (img["width"], img["height"]) == (256, 168)
    png = await client.get(img["url"])
    assert png.status == 200 and png.content_type == "image/png"
    assert Image.open(io.BytesIO(await png.read())).size == (256, 168)
    assert {"decode_ms", "signal_ms", "draw_ms", "http_ms"} <= set(doc["timings_ms"])
    assert "engine;dur=" in resp.headers["Server-Timing"]


async def test_analyze_answers_tags_only(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/analyze", data=form(song(2)))
    doc = await resp.json()
    assert resp.status == 200 and doc["tags"]["key"]["tonic"] and "images" not in doc
    assert len(doc["audio_sha256"]) == 64
    refused = await client.post("/v1/analyze", data=form(song(2), size=512))
    assert refused.status == 422 and "takes no options" in (await refused.json())["error"]["message"]


async def test_raw_body_upload_with_options_in_the_query(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/v1/visualize?size=256&seed=3", data=song(1), headers={"Content-Type": "audio/wav"}
    )
    doc = await resp.json()
    assert resp.status == 200 and doc["seed"] == 3 and doc["images"][0]["width"] == 256


async def test_the_request_id_is_echoed_and_on_every_log_line(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    resp = await client.post(
        "/v1/visualize", data=form(song(3), size=256), headers={"X-Request-ID": "chat-4242"}
    )
    assert resp.status == 200 and resp.headers["X-Request-ID"] == "chat-4242"
    assert (await resp.json())["request_id"] == "chat-4242"
    ours = [r for r in caplog.records if getattr(r, "request_id", None) == "chat-4242"]
    assert any("POST /v1/visualize -> 200" in r.getMessage() for r in ours)
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    assert unsafe.headers["X-Request-ID"] != "x" * 65  # not echoed: made up instead


async def test_async_job_is_polled_to_its_result(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/visualize?wait=false", data=form(song(4), size=256))
    assert resp.status == 202
    job = await resp.json()
    assert resp.headers["Location"] == job["status_url"] == f"/v1/jobs/{job['job_id']}"

    async def done() -> dict[str, Any] | None:
        doc = await (await client.get(job["status_url"])).json()
        return doc if doc["status"] in ("done", "failed") else None

    doc = await await_until(done, 60, "the async job")
    assert doc["status"] == "done" and doc["result"]["images"][0]["width"] == 256
    assert (await client.get("/v1/jobs/doesnotexist")).status == 404


async def test_retries_with_one_idempotency_key_make_one_job(
    client: TestClient[Any, Any], engine: CountingEngine
) -> None:
    before = engine.calls
    headers = {"Idempotency-Key": "msg-123"}
    a, b = await asyncio.gather(
        client.post("/v1/visualize", data=form(song(5), size=256, seed=1), headers=headers),
        client.post("/v1/visualize", data=form(song(5), size=256, seed=1), headers=headers),
    )
    da, db = await a.json(), await b.json()
    assert a.status == b.status == 200 and da["job_id"] == db["job_id"] and da["images"] == db["images"]
    later = await (
        await client.post("/v1/visualize", data=form(song(5), size=256, seed=1), headers=headers)
    ).json()
    assert later["job_id"] == da["job_id"]
    assert engine.calls == before + 1


async def test_a_repeat_is_answered_from_the_result_cache(client: TestClient[Any, Any]) -> None:
    first = await (await client.post("/v1/visualize", data=form(song(6), size=256, seed=9))).json()
    again = await (await client.post("/v1/visualize", data=form(song(6), size=256, seed=9))).json()
    assert again["images"] == first["images"] and again["cached"] and "draw_ms" not in again["timings_ms"]
    reroll = await (await client.post("/v1/visualize", data=form(song(6), size=256, seed=10))).json()
    assert reroll["cached"] and "draw_ms" in reroll["timings_ms"]  # analysis reused, new picture
    assert reroll["images"][0]["id"] != first["images"][0]["id"]


async def test_accept_png_returns_the_image_bytes(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/v1/visualize", data=form(song(1), size=256, seed=2), headers={"Accept": "image/png"}
    )
    assert resp.status == 200 and resp.content_type == "image/png" and resp.headers["X-M2I-Seed"] == "2"
    assert Image.open(io.BytesIO(await resp.read())).size == (256, 256)
    b64 = await (await client.post("/v1/visualize?image=base64", data=form(song(1), size=256, seed=2))).json()
    assert b64["images"][0]["png_base64"]


async def test_bearer_tokens_guard_the_api_but_not_health(engine: CountingEngine) -> None:
    s = settings(serve={"tokens": ["s3cret-token"]})
    app = create_app(s, engine, own_engine=False)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as c:
        denied = await c.post("/v1/analyze", data=form(song(1)))
        assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = await c.post("/v1/analyze", data=form(song(1)), headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        ok = await c.post("/v1/analyze", data=form(song(1)), headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status == 200
        assert (await c.get("/healthz")).status == 200 and (await c.get("/metrics")).status == 200


async def test_metrics_cover_stages_errors_and_the_queue(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/visualize", data=form(b"not audio at all" * 10))
    text = await (await client.get("/metrics")).text()
    for needle in (
        'm2i_stage_seconds_count{stage="draw"}',
        'm2i_stage_seconds_count{stage="upload"}',
        'm2i_stage_seconds_count{stage="decode"}',
        'm2i_errors_total{code="not_audio"}',
        "m2i_queue_depth",
        'm2i_http_request_seconds_bucket{le="0.005",route="/v1/visualize"}',
        "m2i_ready 1.0",
    ):
        assert needle in text, needle


async def test_openapi_describes_the_routes_and_every_option(client: TestClient[Any, Any]) -> None:
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/visualize", "/v1/analyze", "/v1/jobs/{job_id}", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )
    props = spec["paths"]["/v1/visualize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
        "properties"
    ]
    assert set(VisualizeOptions.model_fields) | {"audio"} <= set(props)


async def test_notes_are_for_anyone_and_their_details_for_the_operator() -> None:
    """No Stable Diffusion model: ``notes`` says so in words an end user may see; ``note_details``
    keeps the operator's hint (which setting turns it on), for the picture and its video alike."""
    s = Settings(workers=1, sd_model=None, sd=SDSettings(model=None))
    async with Engine(s) as eng, TestClient(TestServer(create_app(s, eng, own_engine=False))) as c:
        resp = await c.post(
            "/v1/visualize?video=true&video_size=256&video_fps=15", data=form(song(11), size=256)
        )
        doc = await resp.json()
        spec = await (await c.get("/openapi.json")).json()
    assert resp.status == 200, doc
    said = f"Drawn by the built-in renderer ({sd_off_summary(s.sd)})."
    assert "M2I_" not in said and "Stable Diffusion" in said  # the sentence for anyone names no setting
    assert said in doc["notes"] and said in doc["video"]["notes"]
    assert not any("M2I_" in n for n in doc["notes"])
    assert "M2I_SD__MODEL" in doc["note_details"][said] and doc["video"]["note_details"] == {
        said: doc["note_details"][said]
    }
    result = spec["components"]["schemas"]["VisualizeResult"]["properties"]
    assert "operator" in result["note_details"]["description"]


async def test_a_job_that_raises_gets_a_clear_error_and_the_server_goes_on(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.post("/v1/visualize", data=form(song(1), size=256, prompt="m2i-fault-raise"))
    doc = await resp.json()
    assert resp.status == 500 and doc["error"]["code"] == "internal_error"
    assert "try again" in doc["error"]["message"] and "Traceback" not in await resp.text()
    assert (await client.post("/v1/visualize", data=form(song(1), size=256))).status == 200


async def test_audio_that_crashes_the_decoder_is_isolated(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/visualize", data=form(poison_song(), size=256))
    doc = await resp.json()
    assert resp.status == 422 and doc["error"]["code"] == "corrupt_audio"
    assert "crashes the audio decoder" in doc["error"]["message"]
    assert (await client.post("/v1/visualize", data=form(song(7), size=256))).status == 200


async def test_out_of_gpu_memory_retries_smaller_or_says_so(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/visualize", data=form(song(1), size=512, prompt="m2i-fault-oom"))
    doc = await resp.json()
    assert resp.status == 200 and doc["images"][0]["width"] == 384
    assert any("instead of 512 px" in n for n in doc["notes"])
    resp = await client.post("/v1/visualize", data=form(song(1), size=512, prompt="m2i-fault-oomall"))
    doc = await resp.json()
    assert resp.status == 503 and doc["error"]["code"] == "sd_out_of_memory"
    assert "memory" in doc["error"]["message"]


async def test_sigterm_drains_running_requests_and_refuses_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GATE_ENV, str(tmp_path))
    port = free_port()
    s = settings(serve={"port": port, "shutdown_grace_s": 30})
    stop, started = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(s, engine=harness_engine(s), stop=stop, started=started))
    await started.wait()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        slow = asyncio.create_task(
            http.post(f"{base}/v1/visualize", data=form(song(8), size=256, prompt="m2i-fault-gate-drain"))
        )
        await await_until(lambda: list(tmp_path.glob("drain.started.*")), 60, "the slow request to start")
        stop.set()  # what SIGTERM does
        await await_until(lambda: _status(http, f"{base}/readyz", 503), 10, "readyz to say draining")
        refused = await http.post(f"{base}/v1/visualize", data=form(song(8), size=256))
        assert refused.status == 503 and (await refused.json())["error"]["code"] == "shutting_down"
        assert not server.done()
        (tmp_path / "drain").touch()  # let the running request finish
        resp = await slow
        assert resp.status == 200 and (await resp.json())["images"]
    await asyncio.wait_for(server, 30)


async def _status(http: aiohttp.ClientSession, url: str, status: int) -> bool:
    async with http.get(url) as r:
        return r.status == status


async def test_logs_are_json_with_request_ids_and_no_secrets() -> None:
    from m2i_engine.logs import ContextFilter, JsonFormatter, request_context

    text = "calling redis://:hunter2@redis:6379/0 with Authorization: Bearer abc.def-123"
    rec = logging.LogRecord("m2i", logging.INFO, __file__, 1, text, None, None)
    with request_context("req-1", "job-9"):
        ContextFilter().filter(rec)
    doc = json.loads(JsonFormatter("api").format(rec))
    assert doc["request_id"] == "req-1" and doc["job_id"] == "job-9"
    assert "hunter2" not in doc["msg"] and "abc.def-123" not in doc["msg"]


async def test_a_job_is_not_done_until_its_result_is_set() -> None:
    """The engine reports "done" before the route has encoded its images; pollers must not see "done" yet."""
    from m2i_engine.engine import Progress, Stage
    from m2i_engine.server.jobs import JobRegistry

    release = asyncio.Event()

    async def run(job: Any) -> str:
        job.progress(Progress(Stage.done))
        await release.wait()  # the PNG encoding that follows the engine's last stage
        return "the result"

    jobs = JobRegistry(ttl_s=60, max_jobs=8)
    job, created = jobs.submit("j1", "visualize", "r1", run)
    await asyncio.sleep(0.05)
    assert created and not job.done and job.stage != "done" and job.result is None
    release.set()
    await jobs.wait(job)
    assert job.done and job.stage == "done" and job.result == "the result"

# ruff: noqa: F811  (the redis_server fixture is imported, then named by the tests that use it)
"""Faults in queue mode, each with real parts: redis-server, ``m2i worker`` processes, the HTTP API.

A worker SIGKILLed mid-job, a worker asked to stop mid-job, Redis restarted with jobs in flight, a
job that raises, audio that crashes the decoder, a GPU out of memory, a job that keeps killing its
workers. In each, every client gets exactly one answer — the result, or a clear error — and the
service goes on.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from aiohttp.test_utils import TestClient, TestServer

from m2i_engine.queue.broker import build_broker, job_message
from m2i_engine.queue.client import QueueEngine
from m2i_engine.server.app import create_app
from tests.queue_harness import (  # noqa: F401  (redis_server is a fixture)
    RedisServer,
    WorkerProc,
    alive_workers,
    await_until,
    form,
    poison_song,
    queue_env,
    queue_settings,
    redis_server,
    song,
    start_workers,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(120)]


@dataclass
class Cluster:
    redis: RedisServer
    namespace: str
    gate: Path
    env: dict[str, str]
    workers: list[WorkerProc] = field(default_factory=list)

    def ensure(self, n: int = 2) -> None:
        """Top the cluster up to ``n`` live workers (after a test killed or stopped some)."""
        self.workers = [w for w in self.workers if w.alive]
        if len(self.workers) < n:
            self.workers += start_workers(
                n - len(self.workers), self.env, self.gate, namespace=self.namespace, redis_url=self.redis.url
            )

    def by_pid(self, pid: int) -> WorkerProc:
        return next(w for w in self.workers if w.pid == pid)

    def r(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def job(self, job_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r().hgetall(f"{self.namespace}:job:{job_id}").items()}


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    gate = tmp_path_factory.mktemp("gates")
    namespace = "f" + secrets.token_hex(4)
    c = Cluster(redis_server, namespace, gate, queue_env(redis_server.url, namespace, gate))
    c.ensure(2)
    yield c
    for w in c.workers:
        w.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(cluster: Cluster) -> AsyncIterator[TestClient[Any, Any]]:
    s = queue_settings(cluster.redis.url, cluster.namespace)
    async with TestClient(TestServer(create_app(s, QueueEngine(s)))) as c:
        yield c


async def started_on(cluster: Cluster, gate: str) -> int:
    """The pid of the worker that started the gated job."""
    files = await await_until(
        lambda: list(cluster.gate.glob(f"{gate}.started.*")), 60, f"job {gate} to start"
    )
    return int(files[0].name.rsplit(".", 1)[1])


class DoneEvents:
    """Counts the ``done`` events published for each job (a second reply would be a second event)."""

    def __init__(self, cluster: Cluster) -> None:
        self.pubsub = cluster.r().pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(f"{cluster.namespace}:ev:*")
        self.counts: dict[str, int] = {}

    def drain(self, quiet_s: float = 0.5) -> dict[str, int]:
        """Read every event that arrived, until none has come for ``quiet_s``."""
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            msg = self.pubsub.get_message(timeout=0.05)
            if msg is None:
                continue
            last = time.monotonic()
            if json.loads(msg["data"]).get("done"):
                job = msg["channel"].decode().rsplit(":", 1)[1]
                self.counts[job] = self.counts.get(job, 0) + 1
        return self.counts


async def test_a_worker_killed_mid_job_is_replaced_and_the_client_gets_one_result(
    cluster: Cluster, api: TestClient[Any, Any]
) -> None:
    cluster.ensure(2)
    events = DoneEvents(cluster)
    call = asyncio.create_task(
        api.post("/v1/visualize", data=form(song(1), size=256, seed=11, prompt="m2i-fault-gate-kill"))
    )
    pid = await started_on(cluster, "kill")
    victim = cluster.by_pid(pid)
    victim.signal(signal.SIGKILL)
    victim.proc.wait(10)
    (cluster.gate / "kill").touch()  # the second attempt runs straight through
    resp = await asyncio.wait_for(call, 60)
    doc = await resp.json()
    assert resp.status == 200, doc
    job = cluster.job(doc["job_id"])
    assert job["deliveries"] == "2" and job["state"] == "done"
    assert not job["worker"].endswith(f"-{pid}")  # another worker finished it
    assert events.drain().get(doc["job_id"]) == 1  # one answer, no second "done"
    survivor = next(w for w in cluster.workers if w.alive)
    assert "delivery 2" in survivor.log()


async def test_sigterm_finishes_the_running_job_then_the_worker_exits(
    cluster: Cluster, api: TestClient[Any, Any]
) -> None:
    cluster.ensure(2)
    slow = asyncio.create_task(
        api.post("/v1/visualize", data=form(song(2), size=256, seed=12, prompt="m2i-fault-gate-term"))
    )
    pid = await started_on(cluster, "term")
    stopping = cluster.by_pid(pid)
    stopping.signal(signal.SIGTERM)
    await await_until(
        lambda: "stopping: finishing 1 running job" in stopping.log(), 20, "the worker to drain"
    )
    other = await api.post("/v1/visualize", data=form(song(3), size=256, seed=13))
    other_doc = await other.json()
    assert other.status == 200 and not cluster.job(other_doc["job_id"])["worker"].endswith(f"-{pid}")
    assert stopping.alive  # still finishing its job
    (cluster.gate / "term").touch()
    resp = await asyncio.wait_for(slow, 60)
    doc = await resp.json()
    assert resp.status == 200 and cluster.job(doc["job_id"])["worker"].endswith(f"-{pid}")
    assert cluster.job(doc["job_id"])["deliveries"] == "1"
    assert await asyncio.to_thread(stopping.proc.wait, 30) == 0


async def test_redis_restarting_under_load_loses_nothing(cluster: Cluster, api: TestClient[Any, Any]) -> None:
    cluster.ensure(2)
    calls = [
        asyncio.create_task(
            api.post(
                "/v1/visualize", data=form(song(4), size=256, seed=20 + i, prompt="m2i-fault-gate-restart")
            )
        )
        for i in range(6)
    ]
    await started_on(cluster, "restart")
    await asyncio.to_thread(cluster.redis.restart)
    (cluster.gate / "restart").touch()
    docs = [await r.json() for r in await asyncio.wait_for(asyncio.gather(*calls), 90)]
    assert all("images" in d for d in docs), docs
    assert len({d["images"][0]["id"] for d in docs}) == 6
    fresh = await api.post("/v1/visualize", data=form(song(5), size=256, seed=30))
    assert fresh.status == 200
    assert all(w.alive for w in cluster.workers)
    await await_until(lambda: len(alive_workers(cluster.redis.url, cluster.namespace)) == 2, 20, "heartbeats")


async def test_a_job_that_raises_gets_a_clear_error_and_the_worker_lives(
    cluster: Cluster, api: TestClient[Any, Any]
) -> None:
    cluster.ensure(2)
    pids = {w.pid for w in cluster.workers}
    resp = await api.post("/v1/visualize", data=form(song(1), size=256, prompt="m2i-fault-raise"))
    doc = await resp.json()
    assert resp.status == 500 and doc["error"]["code"] == "internal_error"
    assert "try again" in doc["error"]["message"]
    ok = await api.post("/v1/visualize", data=form(song(1), size=256, seed=40))
    assert ok.status == 200
    assert {w.pid for w in cluster.workers if w.alive} == pids


async def test_audio_that_crashes_the_decoder_is_isolated(
    cluster: Cluster, api: TestClient[Any, Any]
) -> None:
    cluster.ensure(2)
    pids = {w.pid for w in cluster.workers}
    resp = await api.post("/v1/visualize", data=form(poison_song(), size=256))
    doc = await resp.json()
    assert resp.status == 422 and doc["error"]["code"] == "corrupt_audio", doc
    ok = await api.post("/v1/visualize", data=form(song(2), size=256, seed=41))
    assert ok.status == 200
    assert {w.pid for w in cluster.workers if w.alive} == pids


async def test_out_of_gpu_memory_is_retried_smaller_then_reported(
    cluster: Cluster, api: TestClient[Any, Any]
) -> None:
    cluster.ensure(2)
    resp = await api.post("/v1/visualize", data=form(song(3), size=512, seed=42, prompt="m2i-fault-oom"))
    doc = await resp.json()
    assert resp.status == 200 and doc["images"][0]["width"] == 384, doc
    assert any("instead of 512 px" in n for n in doc["notes"])
    resp = await api.post("/v1/visualize", data=form(song(3), size=512, seed=43, prompt="m2i-fault-oomall"))
    doc = await resp.json()
    assert resp.status == 503 and doc["error"]["code"] == "sd_out_of_memory", doc
    assert "memory" in doc["error"]["message"]


async def test_a_job_that_keeps_killing_workers_is_failed_not_looped(cluster: Cluster) -> None:
    """A job whose workers died ``max_deliveries`` times already is answered with an error."""
    cluster.ensure(2)
    s = queue_settings(cluster.redis.url, cluster.namespace)
    r = cluster.r()
    audio = song(6)
    import hashlib

    sha = hashlib.sha256(audio).hexdigest()
    job_id = "poison-" + secrets.token_hex(4)
    r.set(f"{cluster.namespace}:audio:{sha}", audio, ex=600)
    r.hset(
        f"{cluster.namespace}:job:{job_id}", mapping={"created": "0", "deliveries": s.queue.max_deliveries}
    )
    broker = build_broker(s.queue)
    broker.enqueue(
        job_message(
            {
                "job": job_id,
                "kind": "visualize",
                "sha": sha,
                "rid": job_id,
                "options": {"size": 256},
                "oom_step": 0,
            }
        )
    )
    async with QueueEngine(s) as engine:

        async def answered() -> dict[str, Any] | None:
            status = await engine.job_status(job_id)
            return status if status and status["result"] is not None else None

        status = await await_until(answered, 30, "the poison job to be answered", interval=0.05)
    assert status["result"]["error"]["code"] == "job_crashed"

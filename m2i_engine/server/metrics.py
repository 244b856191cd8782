"""Prometheus metrics of one API process: requests, per-stage latencies, errors by code, queue, GPU.

Stage latencies come from the timings every result carries (the engine's ``decode_ms``,
``signal_ms``, ``draw_ms`` …; in queue mode also ``queue_wait_ms`` and ``worker_ms``), so the same
histograms fill in both modes. Gauges (queue depth, workers, GPU memory) are read at scrape time.
"""

from __future__ import annotations

import sys
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "m2i_http_requests",
            "HTTP requests by route and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "m2i_http_request_seconds",
            "Time from request start to response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "m2i_stage_seconds",
            "Time spent in each stage of a request.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("m2i_errors", "Failed requests by error code.", ["code"], registry=r)
        self.cache = Counter("m2i_cache_hits", "Requests answered from a cache.", ["cache"], registry=r)
        self.queue_depth = Gauge(
            "m2i_queue_depth",
            "Jobs waiting (engine admission queue, or the Redis job queue in queue mode).",
            registry=r,
        )
        self.inflight = Gauge("m2i_jobs_inflight", "Jobs this API process is waiting on.", registry=r)
        self.workers = Gauge("m2i_workers_alive", "Queue workers that reported recently.", registry=r)
        self.gpu_memory = Gauge(
            "m2i_gpu_memory_bytes", "GPU memory allocated by the models.", ["worker"], registry=r
        )
        self.up = Gauge("m2i_ready", "1 when this process takes work.", registry=r)

    def observe_timings(self, timings_ms: dict[str, float]) -> None:
        for name, ms in timings_ms.items():
            if name.endswith("_ms") and isinstance(ms, int | float):
                self.stage.labels(name[:-3]).observe(ms / 1000.0)

    async def refresh(self, engine: Any, *, ready: bool, inflight: int) -> None:
        self.up.set(1 if ready else 0)
        self.inflight.set(inflight)
        if hasattr(engine, "queue_depth_now"):
            try:
                self.queue_depth.set(await engine.queue_depth_now())
                workers = await engine.workers()
            except Exception:
                workers = {}
            self.workers.set(len(workers))
            self.gpu_memory.clear()
            for wid, info in workers.items():
                if info.get("gpu_memory_bytes") is not None:
                    self.gpu_memory.labels(wid).set(info["gpu_memory_bytes"])
        else:
            self.queue_depth.set(getattr(engine, "queue_depth", 0))
            torch = sys.modules.get("torch")
            try:
                if torch is not None and torch.cuda.is_available():
                    self.gpu_memory.labels("local").set(torch.cuda.memory_allocated())
            except Exception:
                pass

    def render(self) -> bytes:
        return generate_latest(self.registry)

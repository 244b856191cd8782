"""Load bench for the HTTP API: N requests from C concurrent clients, in one process and with a queue.

Why: the serving goals (throughput with the analysis cache warm, HTTP overhead, nothing lost or
answered twice) are only true if measured end to end, with real processes. The script starts
everything itself on loopback — ``m2i serve`` and, in queue mode, a ``redis-server`` and
``m2i worker`` processes — sends the load, checks every answer, and stops everything gracefully.

Per mode it reports:
- throughput (requests/s) and latency p50/p95/p99 of ``POST /v1/visualize`` under the load;
- HTTP overhead: client latency minus the engine's wall time (``Server-Timing: engine``), p50/p95,
  measured one request at a time so queueing does not count as overhead;
- lost (requests without a 200 result), duplicated (a job id answered twice, or — in queue mode — a
  job executed more than once: its ``deliveries`` count in Redis), and errors by code;
- the API process's RSS after warm-up and after each of ``--rounds`` repeated rounds (each round: the
  load, then ``--mem-requests`` big ``--mem-size`` pictures), so a front end that keeps what it served
  shows as growth from round to round; in queue mode also Redis's memory.

Both modes run in the same invocation and the summary prints queue/single ratios, since the machines
are noisy: compare the ratios, not absolute numbers from different runs.

Every request is a re-roll (a new seed) of one of a few 30-s songs whose analysis is already
cached, so each one draws a new picture: the "analysis cache warm" case.

    python bench/http_load.py --quick              # smoke run: both modes, a few seconds of load each
    python bench/http_load.py                      # both modes, 300 requests, 30 clients, 2 workers, 3 rounds
    python bench/http_load.py --mode queue --requests 500 --concurrency 50 --workers 2 --size 256
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def songs(n: int, duration_s: float) -> list[bytes]:
    """``n`` distinct synthetic songs as OGG/Vorbis (what chat apps send: compressed, ~150 KB)."""
    import soundfile as sf

    from m2i_engine.synth import SongSpec, render_song

    out = []
    for i in range(n):
        spec = SongSpec(
            bpm=90 + 11 * i,
            duration_s=duration_s,
            seed=i,
            style=["house", "ballad", "rock", "dnb", "waltz"][i % 5],
        )  # type: ignore[arg-type]
        buf = io.BytesIO()
        sf.write(buf, render_song(spec), spec.sr, format="OGG", subtype="VORBIS")
        out.append(buf.getvalue())
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


@dataclass
class Stack:
    """The processes of one mode, started and stopped by the bench."""

    mode: str
    workers: int
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    redis_url: str | None = None
    port: int = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("M2I_")}
        env.update(
            {
                "M2I_BACKEND": "renderer",
                "M2I_SERVE__LOG_LEVEL": "WARNING",
                "M2I_MAX_QUEUE": "1000",
                "M2I_REQUEST_TIMEOUT_S": "300",
            }
        )
        if self.redis_url:
            env.update(
                {"M2I_QUEUE__REDIS_URL": self.redis_url, "M2I_QUEUE__CONCURRENCY": "4", "M2I_WORKERS": "1"}
            )
        else:
            env["M2I_WORKERS"] = str(self.workers)
        return env

    def start(self) -> None:
        if self.mode == "queue":
            binary = shutil.which("redis-server")
            if binary is None:
                raise SystemExit("queue mode needs redis-server (apt-get install redis-server)")
            rport = free_port()
            self.redis = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(rport),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.tmp),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.redis_url = f"redis://127.0.0.1:{rport}/0"
            for i in range(self.workers):
                self._spawn(["worker"], f"worker-{i}")
        self.port = free_port()
        self._spawn(["serve", "--port", str(self.port)], "api")

    def _spawn(self, args: list[str], name: str) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "m2i_engine.cli", *args],
                env=self.env(),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{self.base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            for p in self.procs:
                if p.poll() is not None:
                    raise SystemExit(f"a process died at start; see {self.tmp}")
            await asyncio.sleep(0.2)
        raise SystemExit("the API did not become ready")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_rss_mb(self) -> float:
        """Resident memory of the API process (``m2i serve``), from /proc."""
        api = self.procs[-1]
        for line in Path(f"/proc/{api.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def redis_mb(self) -> float | None:
        if self.redis_url is None:
            return None
        import redis

        return round(int(redis.Redis.from_url(self.redis_url).info("memory")["used_memory"]) / 2**20, 1)

    def deliveries(self, job_ids: list[str]) -> Counter[int]:
        import redis

        assert self.redis_url is not None
        r = redis.Redis.from_url(self.redis_url)
        pipe = r.pipeline(transaction=False)
        for j in job_ids:
            pipe.hget(f"m2i:job:{j}", "deliveries")
        return Counter(int(v or 0) for v in pipe.execute())

    def stop(self) -> list[int]:
        codes = []
        for p in reversed(self.procs):  # the API first, then the workers: all gracefully (SIGTERM)
            p.send_signal(signal.SIGTERM)
            try:
                codes.append(p.wait(60))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(-9)
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)
        return codes


async def one(
    http: aiohttp.ClientSession, base: str, audio: bytes, seed: int, size: int, key: str
) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("audio", audio, filename="song.ogg", content_type="audio/ogg")
    form.add_field("size", str(size))
    form.add_field("seed", str(seed))
    t0 = time.perf_counter()
    try:
        async with http.post(f"{base}/v1/visualize", data=form, headers={"Idempotency-Key": key}) as r:
            body = await r.read()
            ms = (time.perf_counter() - t0) * 1000
            timing = {
                p.split(";")[0].strip(): float(p.split("dur=")[1])
                for p in r.headers.get("Server-Timing", "").split(",")
                if "dur=" in p
            }
            doc = json.loads(body)
            return {"status": r.status, "ms": ms, "doc": doc, "timing": timing}
    except Exception as exc:
        return {
            "status": 0,
            "ms": (time.perf_counter() - t0) * 1000,
            "doc": {"error": {"code": type(exc).__name__}},
            "timing": {},
        }


async def load(
    http: aiohttp.ClientSession,
    base: str,
    clips: list[bytes],
    *,
    n: int,
    concurrency: int,
    size: int,
    tag: str,
    seed0: int,
) -> tuple[list[dict[str, Any]], float]:
    """``n`` requests from ``concurrency`` clients; the results in order and the wall time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    results: list[dict[str, Any]] = [{} for _ in range(n)]

    async def client() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results[i] = await one(http, base, clips[i % len(clips)], seed0 + i, size, f"{tag}-{i}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results, time.perf_counter() - t0


async def run_mode(mode: str, args: argparse.Namespace, clips: list[bytes]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"m2i-bench-{mode}-"))
    stack = Stack(mode, args.workers, tmp)
    stack.start()
    timeout = aiohttp.ClientTimeout(total=600)
    rounds: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=args.concurrency)
        ) as http:
            await stack.wait_ready(http)
            run = f"{mode}-{time.time_ns()}"
            # warm the analysis cache: one request per song, then one round of the load to warm the rest
            # (worker processes, code paths) so that round 1's memory is the steady state's
            for i, clip in enumerate(clips):
                first = await one(http, stack.base, clip, 10**6 + i, args.size, f"{run}-warm-{i}")
                if first["status"] != 200:
                    raise SystemExit(f"warm-up failed: {first['doc']}")
            await load(
                http,
                stack.base,
                clips,
                n=min(args.requests, 4 * args.concurrency),
                concurrency=args.concurrency,
                size=args.size,
                tag=f"{run}-warm",
                seed0=5 * 10**6,
            )
            if args.mem_requests:
                await load(
                    http,
                    stack.base,
                    clips,
                    n=args.mem_requests,
                    concurrency=min(4, args.concurrency),
                    size=args.mem_size,
                    tag=f"{run}-warmbig",
                    seed0=6 * 10**6,
                )
            rss_warm = stack.api_rss_mb()
            # HTTP overhead, one request at a time (fresh seeds: the engine really draws)
            seq = [
                await one(http, stack.base, clips[i % len(clips)], 2 * 10**6 + i, args.size, f"{run}-seq-{i}")
                for i in range(args.sequential)
            ]
            overhead = [r["ms"] - r["timing"].get("engine", 0.0) for r in seq if r["status"] == 200]
            server_overhead = [
                r["timing"]["total"] - r["timing"]["engine"] for r in seq if r["status"] == 200
            ]
            # the load, repeated: N requests from C concurrent clients, then the big pictures
            for k in range(args.rounds):
                res, took = await load(
                    http,
                    stack.base,
                    clips,
                    n=args.requests,
                    concurrency=args.concurrency,
                    size=args.size,
                    tag=f"{run}-r{k}",
                    seed0=10**7 * (k + 1),
                )
                big, _ = await load(
                    http,
                    stack.base,
                    clips,
                    n=args.mem_requests,
                    concurrency=min(4, args.concurrency),
                    size=args.mem_size,
                    tag=f"{run}-big{k}",
                    seed0=10**7 * (k + 1) + 10**6,
                )
                ok = [r for r in res if r["status"] == 200]
                rounds.append(
                    {
                        "throughput_rps": round(len(ok) / took, 2),
                        "wall_s": round(took, 2),
                        "p95_ms": round(pct([r["ms"] for r in ok], 95), 1),
                        "api_rss_mb": stack.api_rss_mb(),
                        "redis_mb": stack.redis_mb(),
                    }
                )
                results += res + big
            async with http.get(f"{stack.base}/metrics") as resp:
                metrics = await resp.text()
            answered = [r["doc"]["job_id"] for r in results if r.get("status") == 200]
            deliveries = stack.deliveries(answered) if mode == "queue" else Counter()
    finally:
        codes = stack.stop()
    ok = [r for r in results if r["status"] == 200]
    loaded = [r for r in ok if r["doc"]["images"][0]["width"] <= args.size]  # the load, not the big ones
    job_ids = [r["doc"]["job_id"] for r in ok]
    images = [r["doc"]["images"][0]["id"] for r in ok]
    dup_answers = len(job_ids) - len(set(job_ids))
    wall = sum(r["wall_s"] for r in rounds)
    rss_after = [r["api_rss_mb"] for r in rounds]
    report: dict[str, Any] = {
        "mode": mode,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "workers": args.workers if mode == "queue" else f"1 process, {args.workers} engine threads",
        "size": args.size,
        "songs": len(clips),
        "song_seconds": args.duration,
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(loaded) / wall, 2) if wall else 0.0,
        "latency_ms": {
            "p50": round(pct([r["ms"] for r in loaded], 50), 1),
            "p95": round(pct([r["ms"] for r in loaded], 95), 1),
            "p99": round(pct([r["ms"] for r in loaded], 99), 1),
        },
        "http_overhead_ms": {
            "p50": round(pct(overhead, 50), 2),
            "p95": round(pct(overhead, 95), 2),
            "server_side_p50": round(pct(server_overhead, 50), 2),
            "engine_p50": round(statistics.median(r["timing"].get("engine", 0) for r in seq), 1)
            if seq
            else None,
        },
        "api_rss_mb": {
            "after_warmup": rss_warm,
            "after_rounds": rss_after,
            "growth": round(rss_after[-1] - rss_warm, 1) if rss_after else None,
            # kept jobs fill up to M2I_SERVE__MAX_JOBS (1000): flat after that is the test
            "growth_last_round": round(rss_after[-1] - rss_after[-2], 1) if len(rss_after) > 1 else None,
        },
        "per_round": rounds,
        "lost": len(results) - len(ok),
        "duplicated": dup_answers + (len(images) - len(set(images))),
        "errors": dict(
            Counter(r["doc"].get("error", {}).get("code", "?") for r in results if r["status"] != 200)
        ),
        "exit_codes": codes,
        "logs": str(tmp),
    }
    if mode == "queue":
        report["deliveries"] = dict(deliveries)
        report["duplicated"] += sum(n * (d - 1) for d, n in deliveries.items() if d > 1)
    report["result_cache_hits"] = sum(
        1 for r in ok if r["doc"].get("cached") and "draw_ms" not in r["doc"]["timings_ms"]
    )
    report["metrics_sample"] = [
        line
        for line in metrics.splitlines()
        if line.startswith(("m2i_stage_seconds_count", "m2i_workers_alive"))
    ]
    return report


QUICK = {
    "requests": 40,
    "concurrency": 8,
    "rounds": 2,
    "songs": 2,
    "duration": 8.0,
    "sequential": 3,
    "mem_requests": 2,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["single", "queue", "both"], default="both")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    p.add_argument("--requests", type=int, default=300, help="requests per round")
    p.add_argument("--concurrency", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3, help="repeats of the load (API memory must stay flat)")
    p.add_argument(
        "--workers", type=int, default=2, help="queue mode: worker processes; single: engine threads"
    )
    p.add_argument("--size", type=int, default=256, help="long side of each image")
    p.add_argument("--mem-size", type=int, default=2048, help="long side of the big pictures of each round")
    p.add_argument("--mem-requests", type=int, default=8, help="big pictures per round (0: none)")
    p.add_argument("--songs", type=int, default=5)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per song")
    p.add_argument("--sequential", type=int, default=20, help="one-at-a-time requests for the overhead")
    p.add_argument("--json", type=Path, help="also write the reports here")
    args = p.parse_args()
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    clips = songs(args.songs, args.duration)
    reports = []
    for mode in ["single", "queue"] if args.mode == "both" else [args.mode]:
        rep = asyncio.run(run_mode(mode, args, clips))
        reports.append(rep)
        print(json.dumps(rep, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    print(
        f"\n{args.rounds} rounds of {args.requests} requests from {args.concurrency} clients at "
        f"{args.size} px (+{args.mem_requests} at {args.mem_size} px); RSS of the API process in MB"
    )
    print("mode    rps     p50ms    p95ms    overhead p50ms  rss warm  rss after rounds         lost  dup")
    for r in reports:
        rss = r["api_rss_mb"]
        lat = r["latency_ms"]
        print(
            f"{r['mode']:<7} {r['throughput_rps']:<7} {lat['p50']:<8} {lat['p95']:<8} "
            f"{r['http_overhead_ms']['p50']:<15} {rss['after_warmup']:<9} "
            f"{' '.join(str(x) for x in rss['after_rounds']):<24} {r['lost']:<5} {r['duplicated']}"
        )
    by = {r["mode"]: r for r in reports}
    if {"single", "queue"} <= set(by):
        q, one_proc = by["queue"], by["single"]
        print(
            f"queue/single: throughput {q['throughput_rps'] / one_proc['throughput_rps']:.2f}x, "
            f"p95 {q['latency_ms']['p95'] / one_proc['latency_ms']['p95']:.2f}x; API RSS growth over the "
            f"rounds: queue {q['api_rss_mb']['growth']:+} MB (last round "
            f"{q['api_rss_mb']['growth_last_round']:+}), single {one_proc['api_rss_mb']['growth']:+} MB "
            f"(last round {one_proc['api_rss_mb']['growth_last_round']:+})"
        )
    if any(r["lost"] or r["duplicated"] for r in reports):
        sys.exit(1)


if __name__ == "__main__":
    main()

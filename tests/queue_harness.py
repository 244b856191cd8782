"""Real parts for the HTTP and queue tests: a redis-server per session, worker processes, injected faults.

- :class:`RedisServer` runs the Debian ``redis-server`` binary on a free port in a temp dir (append-only
  file on, so a restart keeps the queue). Without the binary the tests skip — unless
  ``M2I_REQUIRE_REDIS=1`` (CI), which makes that a failure.
- :class:`WorkerProc` runs ``python -m tests.queue_harness worker``: the real ``m2i worker`` code
  (:func:`m2i_engine.queue.worker.run_worker`) around an engine whose image backend can be told, by
  words in the prompt, to fail the ways a GPU worker fails (see :class:`FaultyRenderer`), and whose
  decoder guard crashes (SIGABRT, like a native decoder fault) on audio carrying :data:`POISON`.
- Songs are short synthetic clips from :mod:`m2i_engine.synth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from m2i_engine.config import Settings
from m2i_engine.imaging.base import GeneratedImage, ImageBackend, ImageRequest
from m2i_engine.models import ModelRegistry
from m2i_engine.serving import DecodeGuard, ServingEngine, probe_audio

REPO = Path(__file__).resolve().parents[1]
POISON = b"M2I-POISON"
GATE_ENV = "M2I_TEST_GATE_DIR"


# --- faults -------------------------------------------------------------------------------------


class FaultyRenderer(ImageBackend):
    """The built-in renderer, plus faults chosen by marker words in the prompt option:

    - ``m2i-fault-raise``: the backend raises (a bug);
    - ``m2i-fault-oom``: CUDA out of memory above 384 px; ``m2i-fault-oomall``: at every size;
    - ``m2i-fault-gate-<name>``: write ``<gate dir>/<name>.started``, then wait until the file
      ``<gate dir>/<name>`` exists — a job that is "mid-job" for exactly as long as a test wants.
    """

    name = "renderer"

    def __init__(self) -> None:
        from m2i_engine.imaging.renderer import Renderer

        self.inner = Renderer()

    def generate(self, request: ImageRequest) -> list[GeneratedImage]:
        text = request.prompt.text
        if "m2i-fault-raise" in text:
            raise RuntimeError("injected failure in the image backend")
        big = max(request.width, request.height) > 384
        if "m2i-fault-oomall" in text or ("m2i-fault-oom" in text and big):
            raise RuntimeError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB at {request.width}x"
                f"{request.height} (injected)"
            )
        marker = "m2i-fault-gate-"
        if marker in text:
            name = text.split(marker, 1)[1].split(",", 1)[0].strip()
            gate = Path(os.environ[GATE_ENV])
            (gate / f"{name}.started.{os.getpid()}").touch()
            deadline = time.monotonic() + 60
            while not (gate / name).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return self.inner.generate(request)


def crashing_probe(data: bytes, limits_json: str) -> None:
    """The decoder guard's probe, but audio carrying :data:`POISON` kills the process like a segfault."""
    if POISON in data:
        os.abort()
    probe_audio(data, limits_json)


def harness_engine(
    settings: Settings, *, shared_tags: Any = None, oom_fallback: bool = False, result_cache: int = 0
) -> ServingEngine:
    """The engine the test workers (and the single-process side of mode comparisons) run."""
    return ServingEngine(
        settings,
        models=ModelRegistry(),
        backends={"renderer": FaultyRenderer()},
        guard=DecodeGuard(settings.limits, probe=crashing_probe),
        shared_tags=shared_tags,
        oom_fallback=oom_fallback,
        result_cache=result_cache,
    )


# --- requests -----------------------------------------------------------------------------------


def form(audio: bytes, name: str = "song.wav", **fields: Any) -> Any:
    """A multipart upload as the HTTP API takes it: the audio file plus option fields."""
    import aiohttp

    f = aiohttp.FormData()
    f.add_field("audio", audio, filename=name, content_type="audio/wav")
    for k, v in fields.items():
        f.add_field(k, str(v))
    return f


# --- songs --------------------------------------------------------------------------------------


@cache
def song(seed: int = 1, duration_s: float = 4.0, fmt: str = "WAV") -> bytes:
    import soundfile as sf

    from m2i_engine.synth import SongSpec, render_song

    spec = SongSpec(bpm=96 + 7 * seed, duration_s=duration_s, seed=seed)
    buf = io.BytesIO()
    sub = {"WAV": "PCM_16", "OGG": "VORBIS", "FLAC": "PCM_16"}[fmt]
    sf.write(buf, render_song(spec), spec.sr, format=fmt, subtype=sub)
    return buf.getvalue()


def poison_song() -> bytes:
    """A valid WAV that the harness's decoder probe crashes on."""
    return song(9) + POISON


# --- redis-server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on loopback, with its data in a temp dir (append-only file on)."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "yes",
                "--logfile",
                str(self.root / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, 10, "redis-server did not start")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # redis-server saves and exits on SIGTERM
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def redis_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.path.exists(p)), None
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        msg = "redis-server not installed (apt-get install redis-server)"
        if os.environ.get("M2I_REQUIRE_REDIS") == "1":
            pytest.fail(msg + " — M2I_REQUIRE_REDIS=1 makes this a failure", pytrace=False)
        pytest.skip(msg)
    with tempfile.TemporaryDirectory(prefix="m2i-redis-") as tmp:
        server = RedisServer(binary, Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


# --- workers ------------------------------------------------------------------------------------


def queue_env(redis_url: str, namespace: str, gate_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2I_")}
    env.update(
        {
            "M2I_QUEUE__REDIS_URL": redis_url,
            "M2I_QUEUE__NAMESPACE": namespace,
            "M2I_QUEUE__CONCURRENCY": "2",
            "M2I_QUEUE__POLL_MS": "20",
            "M2I_QUEUE__HEARTBEAT_S": "0.25",
            "M2I_QUEUE__HEARTBEAT_TIMEOUT_S": "2",
            "M2I_QUEUE__MAINTENANCE_CHANCE": "1000000",
            "M2I_QUEUE__POLL_S": "0.5",
            "M2I_QUEUE__SHUTDOWN_TIMEOUT_S": "30",
            "M2I_BACKEND": "renderer",
            "M2I_WORKERS": "1",
            "M2I_REQUEST_TIMEOUT_S": "60",
            "M2I_SERVE__LOG_FORMAT": "json",
            "M2I_SERVE__LOG_LEVEL": "INFO",
            GATE_ENV: str(gate_dir),
            "PYTHONPATH": str(REPO),
            "OPENBLAS_NUM_THREADS": "1",
        }
    )
    env.update(extra)
    return env


def queue_settings(redis_url: str, namespace: str, **queue: Any) -> Settings:
    q = {"redis_url": redis_url, "namespace": namespace, "poll_s": 0.5, "heartbeat_timeout_s": 2.0, **queue}
    return Settings(backend="renderer", workers=1, request_timeout_s=60, queue=q)  # type: ignore[arg-type]


class WorkerProc:
    """One ``m2i worker`` process (the harness engine) with its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.queue_harness", "worker"],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Wait for a real condition in another process (a file, a Redis key, a process state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(interval)


async def await_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        await asyncio.sleep(interval)


def alive_workers(redis_url: str, namespace: str) -> dict[str, Any]:
    import json

    import redis

    r = redis.Redis.from_url(redis_url)
    now = time.time()
    out = {}
    for wid, raw in r.hgetall(f"{namespace}:workers").items():
        info = json.loads(raw)
        if now - info["seen"] < 2.0:
            out[wid.decode()] = info
    return out


@contextlib.contextmanager
def running_workers(n: int, redis_url: str, namespace: str, tmp: Path) -> Iterator[list[WorkerProc]]:
    """``n`` ready workers on ``namespace`` (their logs and media under ``tmp``), stopped afterwards: the
    module fixture of every test file that runs real worker processes."""
    env = queue_env(redis_url, namespace, tmp)
    procs = start_workers(n, env, tmp, namespace=namespace, redis_url=redis_url)
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def start_workers(
    n: int, env: dict[str, str], log_dir: Path, *, namespace: str, redis_url: str
) -> list[WorkerProc]:
    """``n`` workers, returned once every one of them reported ready in Redis."""
    before = set(alive_workers(redis_url, namespace))
    procs = [WorkerProc(env, log_dir / f"worker-{time.monotonic_ns()}-{i}.log") for i in range(n)]
    pids = {p.pid for p in procs}

    def ready() -> bool:
        for p in procs:
            if not p.alive:
                raise AssertionError(f"worker {p.pid} died at start:\n{p.log()[-3000:]}")
        seen = {info["pid"] for wid, info in alive_workers(redis_url, namespace).items() if wid not in before}
        return pids <= seen

    wait_until(ready, 60, "workers to report ready", interval=0.05)
    return procs


def _worker_main() -> int:
    from m2i_engine.logs import setup_logging
    from m2i_engine.queue.worker import run_worker

    settings = Settings()
    setup_logging("worker", fmt=settings.serve.log_format, level=settings.serve.log_level)
    return run_worker(settings, engine_factory=harness_engine)


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        sys.exit(_worker_main())
    sys.exit(f"usage: python -m tests.queue_harness worker (got {sys.argv[1:]})")

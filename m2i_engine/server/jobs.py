"""Jobs of one API process: every request runs as a job, so async clients and retries find it again.

A synchronous ``POST`` waits for its job; ``?wait=false`` (or ``Prefer: respond-async``) answers 202
with the job id at once, and ``GET /v1/jobs/{id}`` reports its stage and, when done, its result. A
request carrying an ``Idempotency-Key`` maps to a fixed job id, so a client that retries after a
dropped connection joins the first job instead of starting a second one (in queue mode the id
travels to Redis, so this holds across API replicas too). Finished jobs are kept for ``job_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from m2i_engine.engine import Progress
from m2i_engine.errors import M2IError, describe
from m2i_engine.logs import request_context


@dataclass
class Job:
    id: str
    kind: str
    request_id: str
    created: float = field(default_factory=time.time)
    stage: str = "queued"
    queue_position: int | None = None
    result: Any = None
    error: M2IError | None = None
    finished: float | None = None
    task: asyncio.Task[Any] | None = None
    #: extra data the route wants back with the result (file name, image mode…)
    extra: dict[str, Any] = field(default_factory=dict)

    def progress(self, p: Progress) -> None:
        # The engine's "done" is not the job's: the route may still encode images after it, and a
        # poller that saw "done" before ``result`` is set would find no result to read.
        self.stage = "finishing" if p.stage.value == "done" else p.stage.value
        self.queue_position = p.queue_position

    @property
    def done(self) -> bool:
        return self.finished is not None


class JobRegistry:
    def __init__(self, *, ttl_s: float, max_jobs: int) -> None:
        self.ttl_s = ttl_s
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def get(self, job_id: str) -> Job | None:
        self._prune()
        return self._jobs.get(job_id)

    @property
    def running(self) -> int:
        return sum(1 for j in self._jobs.values() if not j.done)

    def submit(self, job_id: str, kind: str, request_id: str,
               run: Callable[[Job], Awaitable[Any]]) -> tuple[Job, bool]:
        """The job with this id (new, or the existing one) and whether it was created now."""
        self._prune()
        existing = self._jobs.get(job_id)
        if existing is not None and existing.kind == kind:
            return existing, False
        job = Job(job_id, kind, request_id)
        self._jobs[job_id] = job

        async def body() -> None:
            try:
                job.result = await run(job)
                job.stage = "done"
            except asyncio.CancelledError:
                job.error = describe(RuntimeError("cancelled at shutdown"))
                raise
            except Exception as exc:
                job.error = describe(exc)
                job.stage = "failed"
            finally:
                job.finished = time.time()

        with request_context(request_id, job_id):  # the task inherits the ids for its log lines
            job.task = asyncio.create_task(body(), name=f"m2i-job-{job_id}")
        return job, True

    async def wait(self, job: Job) -> Job:
        assert job.task is not None
        await asyncio.shield(job.task)
        return job

    async def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for running jobs; cancel the rest; returns how many were cancelled."""
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        if not tasks:
            return 0
        _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(BaseException):
                await t
        return len(pending)

    def _prune(self) -> None:
        now = time.time()
        expired = [jid for jid, j in self._jobs.items() if j.done and now - (j.finished or now) > self.ttl_s]
        for jid in expired:
            del self._jobs[jid]
        while len(self._jobs) > self.max_jobs:
            oldest = next((jid for jid, j in self._jobs.items() if j.done), None)
            if oldest is None:
                break
            del self._jobs[oldest]

"""Jobs of one API process: every request runs as a job, so async clients and retries find it again.

A synchronous ``POST`` waits for its job; ``?wait=false`` (or ``Prefer: respond-async``) answers 202
with the job id at once, and ``GET /v1/jobs/{id}`` reports its stage and, when done, its result. A
request carrying an ``Idempotency-Key`` maps to a fixed job id, so a client that retries after a
dropped connection joins the first job instead of starting a second one (in queue mode the id
travels to Redis, so this holds across API replicas too). Finished jobs are kept for ``job_ttl_s``;
one that failed for a passing reason (busy, no worker, timeout) is started afresh by a retry.

A kept job gives its pictures' bytes back ``slim_after_s`` after it finished, when they are stored
elsewhere (queue mode: in Redis, see :func:`~m2i_engine.queue.codec.slim_visualize`): the API's memory
then stays flat under load instead of growing by every PNG it served, up to ``max_jobs`` of them. A
later ``GET /v1/jobs/{id}`` fetches them again; a retry of a slimmed job re-joins it through the engine.

An HTTP client is waiting (or polling) for each job, so in queue mode a job needs a live worker
(:data:`~m2i_engine.queue.client.require_worker`): without one it fails at once with ``no_worker``,
and :meth:`JobRegistry.admitted` lets ``?wait=false`` answer that 503 too instead of a 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from m2i_engine.engine import Progress, VisualizeResult
from m2i_engine.errors import M2IError, ServiceError, describe
from m2i_engine.logs import request_context
from m2i_engine.queue.client import require_worker
from m2i_engine.queue.codec import slim_visualize


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
    #: set once the engine reported anything (queued, a stage) or the job ended
    taken: asyncio.Event = field(default_factory=asyncio.Event)
    #: whether the engine reported progress before the job ended (it got past admission)
    started: bool = False
    #: the result gave its image bytes back (they are fetched again when asked for)
    slimmed: bool = False

    def progress(self, p: Progress) -> None:
        # The engine's "done" is not the job's: the route may still encode images after it, and a
        # poller that saw "done" before ``result`` is set would find no result to read.
        self.stage = "finishing" if p.stage.value == "done" else p.stage.value
        self.queue_position = p.queue_position
        self.started = True
        self.taken.set()

    @property
    def done(self) -> bool:
        return self.finished is not None


class JobRegistry:
    def __init__(self, *, ttl_s: float, max_jobs: int, slim_after_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self.max_jobs = max_jobs
        #: the waiting requests have read the result by then (they do so at once)
        self.slim_after_s = slim_after_s
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pruned_at = 0.0

    def get(self, job_id: str) -> Job | None:
        self._prune()
        return self._jobs.get(job_id)

    @property
    def running(self) -> int:
        return sum(1 for j in self._jobs.values() if not j.done)

    def submit(
        self, job_id: str, kind: str, request_id: str, run: Callable[[Job], Awaitable[Any]]
    ) -> tuple[Job, bool]:
        """The job with this id (new, or the existing one) and whether it was created now."""
        self._prune()
        existing = self._jobs.get(job_id)
        if (
            existing is not None
            and existing.kind == kind
            and not existing.slimmed
            and not isinstance(existing.error, ServiceError)
        ):
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
                job.taken.set()
                if job.result is not None:
                    asyncio.get_running_loop().call_later(self.slim_after_s, _slim, job)

        token = require_worker.set(True)  # an HTTP client waits for every job: no worker → say so now
        try:
            with request_context(request_id, job_id):  # the task inherits the ids for its log lines
                job.task = asyncio.create_task(body(), name=f"m2i-job-{job_id}")
        finally:
            require_worker.reset(token)
        return job, True

    async def admitted(self, job: Job, timeout_s: float = 0.25) -> None:
        """Before a 202: give the engine a moment to take the job, and raise its error if it was
        refused outright (no worker, queue full), so an async client gets the 503/429 a waiting one
        would rather than a job id that can only fail. A slow engine just gets its 202 (``timeout_s``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await job.taken.wait()
        if job.done and not job.started and isinstance(job.error, ServiceError):
            raise job.error

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
        if now - self._pruned_at < 1.0 and len(self._jobs) <= self.max_jobs:
            return  # expiry is to the second anyway: not a scan of every job on every request
        self._pruned_at = now
        expired = [jid for jid, j in self._jobs.items() if j.done and now - (j.finished or now) > self.ttl_s]
        for jid in expired:
            del self._jobs[jid]
        while len(self._jobs) > self.max_jobs:
            oldest = next((jid for jid, j in self._jobs.items() if j.done), None)
            if oldest is None:
                break
            del self._jobs[oldest]


def _slim(job: Job) -> None:
    """Let a finished job's result give its image bytes back, when they can be fetched again."""
    slim = slim_visualize(job.result) if isinstance(job.result, VisualizeResult) else None
    if slim is not None:
        job.result = slim
        job.slimmed = True

"""GPU serving efficiency: concurrent requests that can share a pipeline call are run as one batch.

A GPU makes four 512² images in one UNet pass much faster than in four. :class:`SDBatcher` collects
requests for ``window_ms`` after the first one arrives (or until ``max_batch`` images are waiting),
groups those whose :class:`~m2i_engine.imaging.sd.backend.CallKey` matches (size, steps, guidance,
scheduler, LoRAs, img2img strength), runs each group as one pipeline call with lists of prompt
embeddings and one generator per image, and hands every request its own images back. Requests that
arrive while the GPU is busy wait together and leave in the next batch (no extra window).

It is an :class:`~m2i_engine.imaging.base.ImageBackend` itself: ``generate`` blocks and is safe from any
thread (the engine's workers call it), ``agenerate`` is the asyncio form. The collector runs on its
own event loop thread and the pipeline on one dedicated thread, so the model stays loaded and warm and
GPU calls never overlap.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field

from m2i_engine.imaging.base import GeneratedImage, ImageBackend, ImageRequest
from m2i_engine.imaging.sd.backend import CallKey, Job, Output, SDBackend, SDOptions

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    job: Job
    future: concurrent.futures.Future[list[Output]]
    arrived_s: float

    @property
    def images(self) -> int:
        return len(self.job.items)


@dataclass
class BatchStats:
    """What the batcher has done (for logs, metrics and tests)."""

    requests: int = 0
    images: int = 0
    pipeline_batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class SDBatcher(ImageBackend):
    """Micro-batches concurrent :class:`SDBackend` requests into shared pipeline calls."""

    schedules_itself = True

    name = "sd"

    def __init__(self, backend: SDBackend, *, max_batch: int = 4, window_ms: float = 20.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.backend = backend
        self.max_batch = max_batch
        self.window_s = window_ms / 1000.0
        self.stats = BatchStats()
        self._pending: list[_Waiting] = []
        self._running: list[_Waiting] = []
        self._gpu = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="m2i-sd-gpu")
        self._loop = asyncio.new_event_loop()
        self._arrived = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="m2i-sd-batcher", daemon=True)
        self._closed = False
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    # --- entry points ------------------------------------------------------------------------------

    def generate(self, request: ImageRequest, options: SDOptions | None = None) -> list[GeneratedImage]:
        """Blocking, thread-safe: prepare and finish here (CPU), the pipeline call in a shared batch."""
        job = self.backend.prepare(request, options)
        return self.backend.finish(job, self._enqueue(job).result())

    async def agenerate(
        self, request: ImageRequest, options: SDOptions | None = None
    ) -> list[GeneratedImage]:
        """The asyncio form of :meth:`generate`; preparation runs off the caller's event loop."""
        job = await asyncio.to_thread(self.backend.prepare, request, options)
        outputs = await asyncio.wrap_future(self._enqueue(job))
        return await asyncio.to_thread(self.backend.finish, job, outputs)

    def close(self) -> None:
        """Stop collecting (waiting requests fail) and release the threads; idempotent."""
        if self._closed:
            return
        self._closed = True
        with suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._gpu.shutdown(wait=True)
        for w in (*self._pending, *self._running):
            if not w.future.done():
                w.future.set_exception(RuntimeError("the image batcher was closed"))
        self._pending.clear()
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SDBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> concurrent.futures.Future[list[Output]]:
        if self._closed:
            raise RuntimeError("the image batcher is closed")
        fut: concurrent.futures.Future[list[Output]] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._add, _Waiting(job, fut, time.monotonic()))
        return fut

    def _add(self, waiting: _Waiting) -> None:
        self._pending.append(waiting)
        self._arrived.set()

    async def _start(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._serve())

    async def _stop(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._pending = [w for w in self._pending if not w.future.cancelled()]
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            head = self._pending[0]
            deadline = head.arrived_s + self.window_s
            while True:  # wait for company until the window closes or the batch is full
                group = [w for w in self._pending if w.job.key == head.job.key]
                remaining = deadline - time.monotonic()
                if sum(w.images for w in group) >= self.max_batch or remaining <= 0:
                    break
                self._arrived.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            batch = self._take(group)
            await self._run(loop, head.job.key, batch)

    def _take(self, group: list[_Waiting]) -> list[_Waiting]:
        """The oldest requests of ``group`` that fit in ``max_batch`` images (at least one)."""
        batch: list[_Waiting] = []
        count = 0
        for w in group:
            if batch and count + w.images > self.max_batch:
                break
            batch.append(w)
            count += w.images
        taken = {id(w) for w in batch}
        self._pending = [w for w in self._pending if id(w) not in taken]
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, key: CallKey, batch: list[_Waiting]) -> None:
        items = [it for w in batch for it in w.job.items]
        self.stats.requests += len(batch)
        self.stats.images += len(items)
        self.stats.pipeline_batches += 1
        self.stats.batch_sizes.append(len(items))
        self._running = batch
        try:
            outputs = await loop.run_in_executor(self._gpu, self.backend.run, key, items)
        except Exception as exc:
            self._running = []
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        self._running = []  # (left set on cancellation: close() fails those requests)
        start = 0
        for w in batch:
            if not w.future.done():
                w.future.set_result(outputs[start : start + w.images])
            start += w.images

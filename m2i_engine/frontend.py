"""The engine interface front ends depend on, and the one switch between single-process and queue mode.

The HTTP API and the chat bots are written against :class:`EngineLike` and get their engine from
:func:`make_engine`: with no queue configured that is the in-process engine (models in this process,
no other services); with ``M2I_QUEUE__REDIS_URL`` set it is a :class:`~m2i_engine.queue.client.QueueEngine`
whose jobs run on ``m2i worker`` processes. Same calls, same results, same errors — the front ends run
unchanged in either mode. Front ends that know a stable id for a request (a chat message id, an HTTP
``Idempotency-Key``) wrap the call in :func:`m2i_engine.logs.request_context` with ``job_id`` set, and
a retried request then joins the first one instead of producing a second reply.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from m2i_engine.config import Settings

if TYPE_CHECKING:
    from m2i_engine.engine import AnalysisResult, AudioSource, ProgressCallback, VisualizeResult
    from m2i_engine.options import VisualizeOptions

log = logging.getLogger(__name__)


@runtime_checkable
class EngineLike(Protocol):
    """What the API and the bots need from an engine (``Engine`` and ``QueueEngine`` both have it)."""

    settings: Settings

    async def start(self) -> Any: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def analyze(
        self, audio: AudioSource, *, progress: ProgressCallback | None = None
    ) -> AnalysisResult: ...

    async def visualize(
        self,
        audio: AudioSource,
        options: VisualizeOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> VisualizeResult: ...


def make_engine(settings: Settings | None = None) -> EngineLike:
    """The engine for this deployment: queue-backed when a Redis URL is set, else in-process."""
    settings = settings or Settings()
    if settings.queue.enabled:
        from m2i_engine.queue.client import QueueEngine

        log.info("queue mode: jobs go to m2i workers through Redis")
        return QueueEngine(settings)
    from m2i_engine.serving import local_engine

    return local_engine(settings)

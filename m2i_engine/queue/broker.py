"""The Dramatiq side of the queue: one Redis broker configuration and one actor, shared by both ends.

Dramatiq gives the delivery guarantees (see the README's "Scaling out"): a worker *acknowledges a
message only after the job finished*; a message fetched by a worker that stops heartbeating (killed,
crashed, partitioned) goes back to the queue for another worker; failed jobs retry with backoff;
on SIGTERM a worker finishes what runs and hands back what it had reserved. m2i adds only what is
specific to it: idempotent job ids, results and progress in Redis (:mod:`.client`, :mod:`.worker`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from m2i_engine.config.queue import QueueSettings

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import Middleware

#: the one actor: payload → result document in Redis
ACTOR_NAME = "m2i_job"
QUEUE = "jobs"


def build_broker(q: QueueSettings, middleware: list[Middleware] | None = None) -> RedisBroker:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(
        url=q.url(),
        namespace=q.namespace,
        middleware=middleware or [],
        heartbeat_timeout=int(q.heartbeat_timeout_s * 1000),
        maintenance_chance=q.maintenance_chance,
    )
    broker.declare_queue(QUEUE)
    return broker


def job_message(payload: dict[str, Any]) -> Any:
    """A Dramatiq message for ``payload``; its id is unique per delivery chain, the job id is inside."""
    from dramatiq import Message

    return Message(
        queue_name=QUEUE,
        actor_name=ACTOR_NAME,
        args=(payload,),
        kwargs={},
        options={},
        message_timestamp=int(time.time() * 1000),
    )


def queue_depth_key(q: QueueSettings) -> str:
    """The Redis list Dramatiq keeps waiting message ids in."""
    return f"{q.namespace}:{QUEUE}"

"""Settings of the job queue (``M2I_QUEUE__*``): one Redis URL turns single-process mode into scale-out mode.

Mounted as ``Settings.queue`` and read by :mod:`m2i_engine.queue`. Nothing here imports Redis or
Dramatiq, so reading the configuration stays cheap for every front end.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class QueueSettings(BaseModel):
    """How front ends hand jobs to GPU workers through Redis (Dramatiq), and how workers behave."""

    redis_url: SecretStr | None = Field(
        None,
        description="redis://[:password@]host:port/db. Set → `m2i serve` and the bots enqueue jobs "
        "for `m2i worker` processes; unset → everything runs in one process.",
    )
    namespace: str = Field(
        "m2i",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Prefix of every Redis key and of the Dramatiq queue.",
    )
    concurrency: int = Field(
        4, ge=1, le=64, description="Jobs one worker runs at once (its GPU batcher groups them)."
    )
    prefetch: int = Field(
        0,
        ge=0,
        le=256,
        description="Messages a worker reserves beyond those running (0: none, so an "
        "idle worker is never starved by a busy one).",
    )
    poll_ms: int = Field(
        50,
        ge=5,
        le=5000,
        description="An idle worker looks for new jobs at most this often (latency vs. idle Redis traffic).",
    )
    heartbeat_s: float = Field(1.0, gt=0, description="How often a worker says it is alive.")
    heartbeat_timeout_s: float = Field(
        15.0, gt=0, description="A worker silent this long is dead; its unfinished jobs go to others."
    )
    maintenance_chance: int = Field(
        50_000,
        ge=1,
        le=1_000_000,
        description="Per million broker calls, how many look for dead workers' jobs (Dramatiq's knob).",
    )
    max_deliveries: int = Field(
        3, ge=1, le=20, description="A job whose worker died this many times is failed (poison pill)."
    )
    max_retries: int = Field(3, ge=0, le=20, description="Retries of a job after a transient error.")
    retry_min_backoff_ms: int = Field(200, ge=0)
    retry_max_backoff_ms: int = Field(10_000, ge=0)
    oom_retries: int = Field(
        2, ge=0, le=5, description="Out of GPU memory: re-queue the job this many times, smaller."
    )
    job_timeout_s: float = Field(
        600.0, gt=0, description="A job running longer is stopped (Dramatiq time limit)."
    )
    audio_ttl_s: int = Field(3600, ge=60, description="Uploaded audio kept in Redis for (re)tries.")
    result_ttl_s: int = Field(3600, ge=60, description="Job results (and idempotency) kept for.")
    image_ttl_s: int = Field(24 * 3600, ge=60, description="Images kept in Redis for GET /v1/images.")
    tags_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="Shared analysis cache entries kept for.")
    poll_s: float = Field(
        1.0,
        gt=0,
        description="Clients re-check a job's result at least this often (events usually arrive first).",
    )
    shutdown_timeout_s: float = Field(
        60.0,
        gt=0,
        description="On SIGTERM a worker finishes running jobs for at most this long; the "
        "rest go back to the queue.",
    )
    decode_guard: bool = Field(
        True,
        description="Decode new songs first in a sacrificial child process, "
        "so a file that crashes the decoder can't kill a worker.",
    )

    @property
    def enabled(self) -> bool:
        return self.redis_url is not None

    @property
    def queue_name(self) -> str:
        return f"{self.namespace}.jobs"

    def url(self) -> str:
        if self.redis_url is None:
            raise ValueError("M2I_QUEUE__REDIS_URL is not set")
        return self.redis_url.get_secret_value()

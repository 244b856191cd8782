"""Settings of the HTTP API (``M2I_SERVE__*``): address, auth tokens, upload limits, image storage, logs.

Mounted as ``Settings.serve`` and read by :mod:`m2i_engine.server`. Importing this module loads no
aiohttp, so the CLI stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class ServeSettings(BaseModel):
    """``m2i serve``: the aiohttp API in front of the engine (local or queue-backed)."""

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in a container).")
    port: int = Field(8080, ge=0, le=65535)
    tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Bearer tokens accepted on /v1/* (JSON list). Empty: no auth (keep it on loopback).",
    )
    max_upload_bytes: int | None = Field(
        None,
        gt=0,
        description="Largest request body; default: M2I_LIMITS__MAX_BYTES plus 64 KiB for the "
        "form fields. Enforced while the body streams in.",
    )
    upload_timeout_s: float = Field(
        30.0, gt=0, description="Whole request body must arrive within this (slow-loris uploads get 408)."
    )
    min_upload_rate_bps: int = Field(
        16 * 1024, ge=0, description="…or faster than this on average after the first 5 s (0: off)."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request's line and headers must arrive within this of the connection "
        "opening (or of their first byte on a kept-alive connection), else it is "
        "closed — slow-loris connections don't pile up. The body is not timed by it.",
    )
    keepalive_timeout_s: float = Field(
        75.0,
        gt=0,
        description="Idle kept-alive connections are closed after this; keep it above a "
        "reverse proxy's upstream keep-alive (nginx: 60 s).",
    )
    media_dir: Path | None = Field(
        None, description="Write images here (a shared volume) instead of keeping them in memory/Redis."
    )
    public_url: str | None = Field(None, description="Base URL for image links (default: the request's).")
    image_entries: int = Field(512, ge=1, description="Images kept in memory (single-process mode).")
    result_cache_entries: int = Field(
        256, ge=0, description="Finished results kept for repeats (single-process mode; Redis in queue mode)."
    )
    job_ttl_s: float = Field(3600.0, gt=0, description="How long GET /v1/jobs/{id} remembers a job.")
    max_jobs: int = Field(1000, ge=1, description="Jobs remembered at most (oldest finished dropped).")
    shutdown_grace_s: float = Field(30.0, ge=0, description="On SIGTERM, time given to running requests.")
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_auth: bool = Field(False, description="Require a bearer token on /metrics too.")

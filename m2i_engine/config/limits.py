"""Bounds on the audio a request may bring (``M2I_LIMITS__*``), checked before the expensive work starts.

Mounted as ``Settings.limits``; the decoder and the bots read it too.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class AudioLimits(BaseModel):
    """Bounds checked before the expensive work starts."""

    max_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest upload accepted, in bytes.")
    max_duration_s: float = Field(15 * 60, gt=0, description="Longest audio accepted, in seconds.")
    min_duration_s: float = Field(2.0, ge=0, description="Shortest audio accepted, in seconds.")
    analysis_s: float = Field(
        90.0,
        gt=0,
        description="Seconds of audio analysed; longer songs are analysed on representative windows.",
    )
    max_channels: int = Field(8, ge=1)
    min_sample_rate: int = Field(8_000, gt=0)
    max_sample_rate: int = Field(192_000, gt=0)

"""The top of the settings tree: :class:`Settings` reads ``M2I_*`` variables (or ``.env``) and mounts
the sub-models this package owns — limits, Stable Diffusion, HTTP API, job queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from m2i_engine.config.limits import AudioLimits
from m2i_engine.config.queue import QueueSettings
from m2i_engine.config.sd import SDSettings
from m2i_engine.config.serve import ServeSettings


class Settings(BaseSettings):
    """m2i configuration. Every field can be set as ``M2I_<NAME>`` (nested: ``M2I_LIMITS__MAX_BYTES``)."""

    model_config = SettingsConfigDict(
        env_prefix="M2I_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    limits: AudioLimits = AudioLimits()
    workers: int = Field(2, ge=1, description="CPU worker threads for analysis and rendering.")
    max_queue: int = Field(64, ge=1, description="Requests waiting beyond this are refused as busy.")
    request_timeout_s: float = Field(300.0, gt=0)
    cache_entries: int = Field(256, ge=0, description="Analyses kept in memory for re-rolls.")
    model_dir: Path | None = Field(
        None, description="Folder with genre/emotion models; defaults to the weights in the package."
    )
    model_runtime: Literal["numpy", "keras"] = Field(
        "numpy",
        description="How genre/emotion models run: numpy (no framework in the process, ~270 MB "
        "less memory) or keras (the Keras port on KERAS_BACKEND, torch by default).",
    )
    backend: Literal["auto", "renderer", "sd"] = Field(
        "auto", description="Default image backend: auto uses SD when a model and a GPU are there."
    )
    sd: SDSettings = Field(default_factory=SDSettings, description="Stable Diffusion (M2I_SD__*).")
    sd_model: str | None = Field(None, description="Shorthand for M2I_SD__MODEL (folder or hub id).")
    data_dir: Path = Field(Path("../shared/data"), description="Training/evaluation data.")
    serve: ServeSettings = Field(default_factory=ServeSettings, description="HTTP API (`m2i serve`).")
    queue: QueueSettings = Field(
        default_factory=QueueSettings,
        description="Job queue and workers (`m2i worker`); off unless a Redis URL is set.",
    )

    @model_validator(mode="after")
    def _sd_model_shorthand(self) -> Settings:
        if self.sd_model and not self.sd.model:
            self.sd = self.sd.model_copy(update={"model": self.sd_model})
        return self

"""The knobs every chat bot shares (image size, rate limits, queue), from ``M2I_BOT_*`` variables.

Platform settings (tokens, server URLs) live with each platform (``bot/telegram/settings.py``);
engine settings stay in :class:`m2i_engine.config.Settings`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from m2i_engine.options import MAX_VIDEO_S, VideoOptions, VisualizeOptions

_VIDEO = VideoOptions.model_fields


class BotSettings(BaseSettings):
    """Shared bot behaviour. Every field can be set as ``M2I_BOT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="M2I_BOT_", env_file=".env", extra="ignore")

    image_size: int = Field(1024, ge=256, le=2048, description="Default long side of images, in pixels.")
    variations: int = Field(3, ge=1, le=4, description="Images made by the variations button.")
    user_burst: int = Field(3, ge=1, description="Requests a user may send at once.")
    user_per_minute: float = Field(6.0, gt=0, description="Requests a user may send per minute after that.")
    chat_burst: int = Field(10, ge=1, description="Requests one chat (group) may send at once.")
    chat_per_minute: float = Field(30.0, gt=0, description="Requests per minute per chat after that.")
    concurrency: int | None = Field(
        None, ge=1, description="Requests handled at once; defaults to the engine's worker count."
    )
    max_waiting: int = Field(32, ge=0, description="Requests that may wait for a turn (all users).")
    max_waiting_per_user: int = Field(2, ge=0, description="Requests one user may have waiting.")
    video_size: int = Field(
        _VIDEO["size"].default, ge=256, le=1920, description="Long side of videos (the 🎬 button), in pixels."
    )
    video_fps: int = Field(_VIDEO["fps"].default, ge=8, le=30, description="Frames per second of videos.")
    video_length_s: float | None = Field(
        None,
        ge=2.0,
        le=MAX_VIDEO_S,
        description=f"Longest video clip in seconds; none: the song's most representative part, up to "
        f"{MAX_VIDEO_S:g} s.",
    )

    def default_options(self) -> VisualizeOptions:
        return VisualizeOptions(size=self.image_size)

    def video_options(self) -> VideoOptions:
        """What a video is made at: the chat's upload limit, not the user, decides its bit rate."""
        return VideoOptions(size=self.video_size, fps=self.video_fps, length=self.video_length_s)

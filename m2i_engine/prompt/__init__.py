"""From tags and user options to the text (and structure) an image model gets."""

from m2i_engine.prompt.builder import build_prompt, section_prompt
from m2i_engine.prompt.model import Prompt
from m2i_engine.prompt.styles import PRESETS, StylePreset, resolve_style

__all__ = ["PRESETS", "Prompt", "StylePreset", "build_prompt", "resolve_style", "section_prompt"]

"""Trained models (genre, emotion, mood, styles) found and loaded once at start-up."""

from m2i_engine.models.emotion import GEMS, mood_from_emotions, mood_from_quadrants
from m2i_engine.models.registry import Classifier, Manifest, ModelRegistry, register_loader

__all__ = [
    "GEMS",
    "Classifier",
    "Manifest",
    "ModelRegistry",
    "mood_from_emotions",
    "mood_from_quadrants",
    "register_loader",
]

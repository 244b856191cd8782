"""Trained classifiers (genre, emotion) found and loaded once at start-up."""

from m2i_engine.models.emotion import GEMS, mood_from_emotions
from m2i_engine.models.registry import Classifier, Manifest, ModelRegistry, register_loader

__all__ = ["GEMS", "Classifier", "Manifest", "ModelRegistry", "mood_from_emotions", "register_loader"]

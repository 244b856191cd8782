"""The model registry: finds the trained genre/emotion classifiers at start-up and loads them once.

Each model lives in its own folder with a ``manifest.json`` (task, name, version, labels, format,
file). The registry knows nothing about a model's internals: a *loader* per format turns a folder
into a :class:`Classifier`. A missing model is not an error — its tags say ``model_missing`` so
the output states plainly that it is not installed instead of inventing a label.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from m2i_engine.tags import Classification, Familiarity, StyleTag

log = logging.getLogger(__name__)

#: the model folders the registry looks for: "mood" is the valence/arousal (quadrant) model, "styles"
#: the backbone's tag words with calibrated thresholds, "familiarity" whether a song sounds like the
#: music the others learned from
TASKS = ("genre", "emotion", "mood", "styles", "familiarity")


class Classifier(Protocol):
    """A loaded model: analysis features in, scored labels out."""

    name: str
    labels: tuple[str, ...]

    def predict(self, features: Any) -> Classification: ...


@runtime_checkable
class StyleAware(Protocol):
    """A classifier whose answer also depends on the song's styles (the genre head: a song that sounds
    electronic is held to a higher confidence floor, its ten classes having no word for it)."""

    def given_styles(self, c: Classification, styles: Sequence[StyleTag]) -> Classification: ...


@dataclass(frozen=True)
class Manifest:
    task: str
    name: str
    version: str
    labels: tuple[str, ...]
    format: str
    file: str
    folder: Path
    extra: dict[str, Any] = field(default_factory=dict)
    #: how the engine asked for models to run (``Settings.model_runtime``), for loaders that offer a choice
    runtime: str = "numpy"

    @classmethod
    def read(cls, folder: Path, *, runtime: str = "numpy") -> Manifest:
        raw = json.loads((folder / "manifest.json").read_text())
        known = {"task", "name", "version", "labels", "format", "file"}
        return cls(
            task=raw["task"],
            name=raw["name"],
            version=str(raw["version"]),
            labels=tuple(raw["labels"]),
            format=raw["format"],
            file=raw["file"],
            folder=folder,
            extra={k: v for k, v in raw.items() if k not in known},
            runtime=runtime,
        )

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


Loader = Callable[[Manifest], Classifier]
_LOADERS: dict[str, Loader] = {}


def register_loader(fmt: str) -> Callable[[Loader], Loader]:
    """Decorator: make ``fn`` the loader for model folders whose manifest says ``format: fmt``."""

    def deco(fn: Loader) -> Loader:
        _LOADERS[fmt] = fn
        return fn

    return deco


def verified_bytes(path: Path, want: object, what: str) -> bytes:
    """``path``'s bytes, refused unless they match ``want`` (a manifest's ``weights_sha256``) when one is
    given: weights retrained or swapped without their manifest are not silently served."""
    blob = path.read_bytes()
    if want is not None:
        got = hashlib.sha256(blob).hexdigest()
        if got != str(want).lower():
            raise ValueError(f"{what}: {path.name} has sha256 {got}, the manifest says {want}")
    return blob


def default_model_dir() -> Path:
    """The weights shipped inside the package."""
    return Path(str(resources.files("m2i_engine.models") / "weights"))


@dataclass
class ModelRegistry:
    """The classifiers available to the engine, by task; absent tasks answer ``model_missing``."""

    classifiers: dict[str, Classifier] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, model_dir: Path | None = None, *, runtime: str = "numpy") -> ModelRegistry:
        """Every task's model under ``model_dir`` (default: the package's), run by ``runtime``."""
        root = model_dir or default_model_dir()
        reg = cls()
        for task in TASKS:
            folder = root / task
            if not (folder / "manifest.json").is_file():
                continue
            try:
                manifest = Manifest.read(folder, runtime=runtime)
                loader = _LOADERS.get(manifest.format)
                if loader is None:
                    _import_builtin_loaders()
                    loader = _LOADERS.get(manifest.format)
                if loader is None:
                    raise LookupError(f"no loader for model format {manifest.format!r}")
                reg.classifiers[task] = loader(manifest)
                log.info("loaded %s model %s", task, manifest.id)
            except Exception as exc:  # a broken model must not take the service down
                log.warning("could not load %s model from %s: %s", task, folder, exc)
                reg.problems[task] = f"{type(exc).__name__}: {exc}"
        return reg

    def classify(self, task: str, features: Any, *, styles: Sequence[StyleTag] = ()) -> Classification:
        """``task``'s answer for the song; ``styles``, when already known, for models that weigh them."""
        clf = self.classifiers.get(task)
        if clf is None:
            return Classification(status="error" if task in self.problems else "model_missing")
        try:
            c = clf.predict(features)
            return clf.given_styles(c, styles) if isinstance(clf, StyleAware) else c
        except Exception as exc:
            log.exception("%s model %s failed", task, clf.name)
            self.problems[task] = f"{type(exc).__name__}: {exc}"
            return Classification(status="error", model=clf.name)

    def styles(self, features: Any) -> list[StyleTag]:
        """The style words the styles model is sure of, best first; ``[]`` without the model or on failure."""
        clf = self.classifiers.get("styles")
        if clf is None:
            return []
        try:
            return list(clf.styles(features))  # type: ignore[attr-defined]
        except Exception as exc:
            log.exception("styles model %s failed", clf.name)
            self.problems["styles"] = f"{type(exc).__name__}: {exc}"
            return []

    def familiarity(self, features: Any) -> Familiarity | None:
        """How much the song sounds like the training music; ``None`` without the model or on failure
        (then nothing is overruled)."""
        model = self.classifiers.get("familiarity")
        if model is None:
            return None
        try:
            return model.assess(features)  # type: ignore[attr-defined, no-any-return]
        except Exception as exc:
            log.exception("familiarity model %s failed", model.name)
            self.problems["familiarity"] = f"{type(exc).__name__}: {exc}"
            return None


def _import_builtin_loaders() -> None:
    """Import the modules that register loaders; they may need optional extras (keras)."""
    import importlib

    for mod in (
        "m2i_engine.models.keras_loader",
        "m2i_engine.models.styles",
        "m2i_engine.models.familiarity",
    ):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            log.info("model loader %s unavailable: %s", mod, exc)

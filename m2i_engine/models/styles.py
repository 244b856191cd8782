"""Style words from the musicnn-MSD tagger (manifest ``format: musicnn-tag-thresholds``).

The backbone already computes 50 Last.fm tag probabilities per 3-s patch for the genre and emotion
heads; this loader turns them into the words a song is *sure* to carry. A song's tag score is the mean
over the backbone patches; a style fires when its score reaches a per-style threshold set once on shared
data (``python -m training.train_styles``), never per song, so "none" is an honest answer. Raw tags that
mean the same (``female vocalist`` / ``female vocalists``) merge into one style, taking the larger score.
Styles are ranked by score / threshold (how far past its own bar a word is), at most ``max_styles``.

A style may instead read a *learned tag* (manifest ``learned_tags``): a small linear head on the song's
mean backbone embedding, trained on shared songs' genres where the backbone's own tag hears too little
(AllMusic's Electronic is mostly synth-pop and electro-rock, which the MSD tagger calls pop and rock).
Its probability joins the tag vector under its own name (``learned:electronic``) and is thresholded
like any tag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from m2i_engine.models.heads import HeadSpec, head_rows
from m2i_engine.models.keras_loader import head_runner, shared_backbone
from m2i_engine.models.registry import Manifest, register_loader, verified_bytes
from m2i_engine.tags import Classification, LabelScore, StyleGroup, StyleTag

FORMAT = "musicnn-tag-thresholds"
GROUPS: tuple[str, ...] = get_args(StyleGroup)
#: the default cap on styles per song
MAX_STYLES = 6


@dataclass(frozen=True)
class StyleRule:
    """One style word: the raw backbone tags it reads (max of their song scores) and its bar."""

    label: str
    group: str
    source_tags: tuple[str, ...]
    threshold: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StyleRule:
        rule = cls(
            label=str(d["label"]),
            group=str(d["group"]),
            source_tags=tuple(d["source_tags"]),
            threshold=float(d["threshold"]),
        )
        if rule.group not in GROUPS:
            raise ValueError(f"style {rule.label!r}: group {rule.group!r} is not one of {', '.join(GROUPS)}")
        if not rule.source_tags:
            raise ValueError(f"style {rule.label!r} reads no backbone tag")
        return rule


class StyleThresholds:
    """The backbone-free half of the model: song-level tag means in, ranked styles out.

    Kept apart from the backbone so training and the data tests score cached tag arrays with the very
    code the engine runs.
    """

    def __init__(
        self, rules: Sequence[StyleRule], tag_names: Sequence[str], *, max_styles: int = MAX_STYLES
    ) -> None:
        labels = [r.label for r in rules]
        if len(set(labels)) != len(labels):
            raise ValueError("style labels must be unique")
        index = {t: i for i, t in enumerate(tag_names)}
        missing = sorted({t for r in rules for t in r.source_tags} - set(index))
        if missing:
            raise ValueError(f"styles read tags the backbone does not have: {', '.join(missing)}")
        self.rules = tuple(rules)
        self.labels = tuple(labels)
        self.max_styles = int(max_styles)
        self._cols = [np.array([index[t] for t in r.source_tags]) for r in self.rules]
        self.thresholds = np.array([r.threshold for r in self.rules], np.float64)

    @classmethod
    def from_manifest(cls, extra: Mapping[str, Any], tag_names: Sequence[str]) -> StyleThresholds:
        return cls(
            [StyleRule.from_dict(d) for d in extra["styles"]],
            tag_names,
            max_styles=int(extra.get("max_styles", MAX_STYLES)),
        )

    def scores(self, tag_means: np.ndarray) -> np.ndarray:
        """``(..., tags)`` song-level tag probabilities → ``(..., styles)`` style scores in 0..1."""
        t = np.asarray(tag_means, np.float64)
        return np.clip(np.stack([t[..., c].max(axis=-1) for c in self._cols], axis=-1), 0.0, 1.0)

    def order(self, scores: np.ndarray) -> np.ndarray:
        """Style indices by score / threshold, best first (stable on ties)."""
        return np.argsort(-(scores / np.maximum(self.thresholds, 1e-9)), kind="stable")

    def select(self, tag_means: np.ndarray) -> list[StyleTag]:
        """The styles of one song: score >= threshold, best first, at most ``max_styles``."""
        s = self.scores(tag_means)
        keep = [i for i in self.order(s) if s[i] >= self.thresholds[i]][: self.max_styles]
        return [
            StyleTag(label=self.labels[i], score=float(s[i]), group=self.rules[i].group)  # type: ignore[arg-type]
            for i in keep
        ]


@dataclass(frozen=True)
class LearnedTag:
    """A tag the backbone does not compute itself: ``P(positive)`` of a linear head on the song's mean
    embedding (``HeadSpec(pool="song")``), shipped beside the styles manifest."""

    name: str
    spec: HeadSpec
    positive: int
    run: Any

    @classmethod
    def load(cls, d: Mapping[str, Any], folder: Path, runtime: str) -> LearnedTag:
        """One ``learned_tags`` entry of the manifest; its weights must match ``weights_sha256`` when the
        entry gives one (a head retrained without its manifest is refused, not silently served)."""
        name = d.get("name")
        spec = HeadSpec.from_dict(d["head"])
        if spec.pool != "song" or spec.activation != "softmax" or not 0 <= int(d["positive"]) < spec.n_out:
            raise ValueError(f"learned tag {name!r}: needs a song-level softmax head and a positive class")
        if not name:
            raise ValueError("a learned tag needs a name")
        weights = folder / str(d["file"])
        if not weights.is_file():
            raise FileNotFoundError(f"learned tag {name!r}: {weights} missing")
        verified_bytes(weights, d.get("weights_sha256"), f"learned tag {name!r}")
        return cls(str(name), spec, int(d["positive"]), head_runner(weights, spec, runtime))

    def score(self, per_patch: Mapping[str, np.ndarray]) -> float:
        return float(np.asarray(self.run(head_rows(per_patch, self.spec)))[0, self.positive])


class StyleTagger:
    """The styles model on the shared musicnn backbone: ``styles(features)`` → sure words, best first."""

    def __init__(self, manifest: Manifest) -> None:
        extra = manifest.extra
        self.name = manifest.id
        self.task = manifest.task
        self.backbone = shared_backbone(manifest)
        if len(self.backbone.taggers) != 1:
            raise ValueError("the styles model reads exactly one backbone's tags")
        (tagger,) = self.backbone.taggers.values()
        self.learned = tuple(
            LearnedTag.load(d, manifest.folder, manifest.runtime) for d in extra.get("learned_tags", ())
        )
        self.tag_names = tuple(tagger.labels) + tuple(t.name for t in self.learned)
        self.rules = StyleThresholds.from_manifest(extra, self.tag_names)
        self.labels = self.rules.labels
        if tuple(manifest.labels) != self.labels:
            raise ValueError("manifest labels differ from its styles list")

    def tag_means(self, features: Any) -> np.ndarray:
        """The song's probability per backbone tag (the mean over the backbone patches), then per learned
        tag: the order of :attr:`tag_names`."""
        pp = self.backbone.per_patch(features)
        means = np.asarray(pp["tags"], np.float64).mean(axis=0)
        return np.concatenate([means, [t.score(pp) for t in self.learned]])

    def predict(self, features: Any) -> Classification:
        """Every style with its score, ranked by score / threshold; ``uncertain`` when none passes."""
        r = self.rules
        s = r.scores(self.tag_means(features))
        order = r.order(s)
        return Classification(
            status="ok",
            model=self.name,
            uncertain=not bool((s >= r.thresholds).any()),
            labels=[LabelScore(label=self.labels[i], score=float(s[i])) for i in order],
        )

    def styles(self, features: Any) -> list[StyleTag]:
        return self.rules.select(self.tag_means(features))


@register_loader(FORMAT)
def load_style_tagger(manifest: Manifest) -> StyleTagger:
    return StyleTagger(manifest)

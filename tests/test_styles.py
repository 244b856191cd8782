"""The styles model: backbone tag means → the words above their calibrated bars, best first, capped.

Expected outputs are derived from the raw backbone tags computed here through the NumPy musicnn
directly (not the loader's shared backbone), so a wrong patch selection, merge, order or cap fails.
"""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from m2i_engine.models.heads import HeadSpec
from m2i_engine.models.musicnn_input import WEIGHTS_ROOT
from m2i_engine.models.npnet import NumpyHead, NumpyMusicnn
from m2i_engine.models.registry import Manifest, ModelRegistry, default_model_dir
from m2i_engine.models.styles import GROUPS, StyleTagger, StyleThresholds, load_style_tagger
from m2i_engine.tags import StyleTag

SHIPPED = default_model_dir() / "styles"
BACKBONE = WEIGHTS_ROOT / "musicnn_msd"
TAG_NAMES: tuple[str, ...] = tuple(json.loads((BACKBONE / "manifest.json").read_text())["labels"])
#: a handful of styles for the temporary model, incl. the one merge of the shipped model
SOURCES = {
    "rock": ["rock"],
    "electronic": ["electronic"],
    "jazz": ["jazz"],
    "dance": ["dance"],
    "mellow": ["Mellow"],
    "80s": ["80s"],
    "instrumental": ["instrumental"],
    "female vocalists": ["female vocalists", "female vocalist"],
}
GROUP = {
    "rock": "genre",
    "jazz": "genre",
    "electronic": "style",
    "dance": "style",
    "mellow": "mood",
    "80s": "era",
    "instrumental": "voice",
    "female vocalists": "voice",
}


def _signal(seconds: float = 7.0, sr: int = 16000) -> types.SimpleNamespace:
    """A few seconds of chords, clicks and noise: what the engine's ``Features`` offers (y, sr)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(7)
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    y = y * (0.6 + 0.4 * (np.sin(2 * np.pi * 2 * t) > 0)) + 0.05 * rng.standard_normal(t.size)
    return types.SimpleNamespace(y=y.astype(np.float32), sr=sr)


@pytest.fixture(scope="module")
def features() -> types.SimpleNamespace:
    return _signal()


@pytest.fixture(scope="module")
def raw(features: types.SimpleNamespace) -> dict[str, float]:
    """Song-level tag probabilities (mean over at most 6 patches), straight from the NumPy musicnn."""
    means = NumpyMusicnn.load(BACKBONE).per_patch(features.y, features.sr, max_patches=6)["tags"].mean(axis=0)
    return dict(zip(TAG_NAMES, means.astype(float), strict=True))


def _style_score(raw: dict[str, float], label: str) -> float:
    return max(raw[t] for t in SOURCES[label])


def _model(tmp_path: Path, thresholds: dict[str, float], *, max_styles: int = 3) -> StyleTagger:
    folder = tmp_path / "styles"
    folder.mkdir(exist_ok=True)
    styles = [
        {
            "label": k,
            "group": GROUP[k],
            "source_tags": SOURCES[k],
            "threshold": thresholds[k],
            "threshold_rule": "test",
        }
        for k in SOURCES
    ]
    manifest = {
        "task": "styles",
        "name": "styles-test",
        "version": "0",
        "labels": list(SOURCES),
        "format": "musicnn-tag-thresholds",
        "file": "manifest.json",
        "backbones": {"msd": "musicnn_msd"},
        "max_patches": 6,
        "max_styles": max_styles,
        "styles": styles,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return load_style_tagger(Manifest.read(folder))


def test_only_sure_styles_best_first_capped(tmp_path: Path, features: Any, raw: dict[str, float]) -> None:
    # bars at different multiples of each style's own score: some pass, some do not, ratios all differ
    factors = dict(zip(SOURCES, (0.5, 0.7, 0.9, 1.0, 1.3, 0.6, 2.0, 0.8), strict=True))
    thr = {k: _style_score(raw, k) * f for k, f in factors.items()}
    model = _model(tmp_path, thr, max_styles=3)
    passing = [k for k in SOURCES if _style_score(raw, k) >= thr[k]]
    expected = sorted(passing, key=lambda k: -_style_score(raw, k) / thr[k])[:3]
    got = model.styles(features)
    assert [s.label for s in got] == expected
    assert len(passing) > 3  # the cap did the cutting
    for s in got:
        assert isinstance(s, StyleTag)
        assert s.group == GROUP[s.label]
        assert s.score == pytest.approx(_style_score(raw, s.label), abs=1e-5)


def test_merged_style_takes_the_larger_tag(tmp_path: Path, features: Any, raw: dict[str, float]) -> None:
    thr = dict.fromkeys(SOURCES, 1.01)
    thr["female vocalists"] = 1e-6
    (s,) = _model(tmp_path, thr).styles(features)
    assert s.label == "female vocalists"
    assert s.score == pytest.approx(max(raw["female vocalists"], raw["female vocalist"]), abs=1e-5)


def test_no_style_when_nothing_is_sure(tmp_path: Path, features: Any) -> None:
    model = _model(tmp_path, dict.fromkeys(SOURCES, 1.01))
    assert model.styles(features) == []
    c = model.predict(features)
    assert c.status == "ok" and c.uncertain
    assert sorted(ls.label for ls in c.labels) == sorted(SOURCES)


def test_every_style_at_zero_bars_is_capped(tmp_path: Path, features: Any, raw: dict[str, float]) -> None:
    got = _model(tmp_path, dict.fromkeys(SOURCES, 0.0), max_styles=5).styles(features)
    assert len(got) == 5
    assert [s.label for s in got] == sorted(SOURCES, key=lambda k: -_style_score(raw, k))[:5]


def test_predict_ranks_every_label_by_score_over_threshold(
    tmp_path: Path, features: Any, raw: dict[str, float]
) -> None:
    thr = {k: 0.01 * (i + 1) for i, k in enumerate(SOURCES)}
    c = _model(tmp_path, thr).predict(features)
    ratios = [ls.score / thr[ls.label] for ls in c.labels]
    assert ratios == sorted(ratios, reverse=True)
    assert {ls.label: ls.score for ls in c.labels} == pytest.approx(
        {k: _style_score(raw, k) for k in SOURCES}, abs=1e-5
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("group", "colour", "group"),
        ("source_tags", ["not a tag"], "does not have"),
        ("source_tags", [], "no backbone"),
    ],
)
def test_bad_styles_are_refused(field: str, value: Any, message: str) -> None:
    rule = {"label": "x", "group": "style", "source_tags": ["rock"], "threshold": 0.2, field: value}
    with pytest.raises(ValueError, match=message):
        StyleThresholds.from_manifest({"styles": [rule]}, TAG_NAMES)


def test_labels_must_match_styles(tmp_path: Path) -> None:
    _model(tmp_path, dict.fromkeys(SOURCES, 0.5))
    path = tmp_path / "styles" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["labels"] = raw["labels"][::-1]
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="labels"):
        load_style_tagger(Manifest.read(tmp_path / "styles"))


# ------------------------------------------------------------------------------------ the shipped model


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    if not (SHIPPED / "manifest.json").is_file():
        pytest.fail(f"{SHIPPED} missing: run `python -m training.train_styles`")
    return json.loads((SHIPPED / "manifest.json").read_text())


def _learned(shipped: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in shipped.get("learned_tags", [])}


def test_shipped_manifest_is_valid(shipped: dict[str, Any]) -> None:
    labels = [s["label"] for s in shipped["styles"]]
    assert shipped["format"] == "musicnn-tag-thresholds" and shipped["task"] == "styles"
    assert shipped["labels"] == labels and len(set(labels)) == len(labels)
    assert all(label == label.lower() for label in labels)
    assert 1 <= shipped["max_styles"] <= 6
    learned = _learned(shipped)
    for s in shipped["styles"]:
        assert s["group"] in GROUPS, s
        assert 0.0 < s["threshold"] < 1.0, s
        assert set(s["source_tags"]) <= set(TAG_NAMES) | set(learned), s
        assert s["threshold_rule"]
    for name, t in learned.items():
        assert (SHIPPED / t["file"]).is_file(), t
        assert hashlib.sha256((SHIPPED / t["file"]).read_bytes()).hexdigest() == t["weights_sha256"]
        assert t["numpy_vs_sklearn_max_abs_diff"] < 1e-4 and name.startswith("learned:")
    # every backbone tag is read by exactly one style, but those a learned tag of the same word replaces
    replaced = {name.split(":", 1)[1] for name in learned}
    read = sorted(t for s in shipped["styles"] for t in s["source_tags"])
    assert read == sorted((set(TAG_NAMES) - replaced) | set(learned))


def _learned_score(entry: dict[str, Any], features: Any) -> float:
    """A learned tag computed here: the NumPy musicnn's patches, their mean embedding, the shipped head."""
    pp = NumpyMusicnn.load(BACKBONE).per_patch(features.y, features.sr, max_patches=6)
    spec = HeadSpec.from_dict(entry["head"])
    song = np.concatenate([np.asarray(pp[k], np.float32).mean(axis=0) for k in spec.inputs])[None]
    return float(NumpyHead(SHIPPED / entry["file"], "softmax")(song)[0, entry["positive"]])


def test_shipped_model_loads_and_answers(
    shipped: dict[str, Any], features: Any, raw: dict[str, float]
) -> None:
    model = load_style_tagger(Manifest.read(SHIPPED))
    learned = _learned(shipped)
    scores = {**raw, **{name: _learned_score(t, features) for name, t in learned.items()}}
    assert model.tag_names == (*TAG_NAMES, *learned)
    c = model.predict(features)
    bars = {s["label"]: s for s in shipped["styles"]}
    for ls in c.labels:  # every style's score, learned or not, is the max of the tags it reads
        assert ls.score == pytest.approx(max(scores[t] for t in bars[ls.label]["source_tags"]), abs=1e-5)
    got = model.styles(features)
    assert len(got) <= shipped["max_styles"]
    for s in got:
        rule = bars[s.label]
        assert s.group == rule["group"]
        assert s.score >= rule["threshold"]


def test_a_learned_tag_may_read_the_50_tags(tmp_path: Path, shipped: dict[str, Any], features: Any) -> None:
    """The trainer may choose a detector on the song's mean tag probabilities (``DETECTOR_GRID``): the
    engine serves it with the scores of the logistic regression it was made from."""
    import os
    import shutil

    os.environ.setdefault("KERAS_BACKEND", "torch")  # as the trainer runs it
    pytest.importorskip("keras")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training.cv import lr_to_head

    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (200, len(TAG_NAMES)))
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, (x[:, 4] > 0.5).astype(int))
    spec = HeadSpec(inputs=("tags",), n_out=2, activation="softmax", pool="song")
    folder = tmp_path / "styles"
    shutil.copytree(SHIPPED, folder)
    lr_to_head(lr, spec).save_weights(str(folder / "tags_head.weights.h5"))
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["learned_tags"][0]
    entry.update(
        file="tags_head.weights.h5",
        head=spec.to_dict(),
        weights_sha256=hashlib.sha256((folder / "tags_head.weights.h5").read_bytes()).hexdigest(),
    )
    (folder / "manifest.json").write_text(json.dumps(manifest))
    model = load_style_tagger(Manifest.read(folder))
    song = NumpyMusicnn.load(BACKBONE).per_patch(features.y, features.sr, max_patches=6)["tags"].mean(axis=0)
    want = float(lr.predict_proba(song[None].astype(np.float64))[0, 1])
    got = model.predict(features).score_of("electronic")  # the word reads that learned tag alone
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"file": "missing.weights.h5"}, FileNotFoundError, "missing"),
        ({"positive": 2}, ValueError, "positive class"),
        ({"head": {"pool": "patches"}}, ValueError, "song-level"),
        ({"weights_sha256": "0" * 64}, ValueError, "sha256"),
        ({"name": ""}, ValueError, "needs a name"),
    ],
)
def test_a_bad_learned_tag_is_refused(
    tmp_path: Path, shipped: dict[str, Any], change: dict[str, Any], error: type, message: str
) -> None:
    import shutil

    folder = tmp_path / "styles"
    shutil.copytree(SHIPPED, folder)
    raw_manifest = json.loads((folder / "manifest.json").read_text())
    entry = raw_manifest["learned_tags"][0]
    for k, v in change.items():
        entry[k] = {**entry[k], **v} if isinstance(v, dict) else v
    (folder / "manifest.json").write_text(json.dumps(raw_manifest))
    with pytest.raises(error, match=message):
        load_style_tagger(Manifest.read(folder))


def test_registry_serves_styles(features: Any) -> None:
    reg = ModelRegistry.load()
    assert "styles" in reg.classifiers, reg.problems
    assert reg.styles(features) == reg.classifiers["styles"].styles(features)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------ on the shared data


@pytest.fixture(scope="module")
def electronic_clips(shared_data: Path) -> list[list[str]]:
    """The styles the shipped model gives every 4Q clip AllMusic files under Electronic, through the
    engine's own path (decoded as uploads are, the shared backbone, the learned tag): no feature cache."""
    from m2i_engine.audio import decode_audio
    from m2i_engine.config import AudioLimits
    from training.common import songs

    model = load_style_tagger(Manifest.read(SHIPPED))
    clips = [s for s in songs("mer4q") if "Electronic" in s.allmusic_genres]
    assert len(clips) > 50
    out = []
    for s in clips:
        audio = decode_audio(s.path, limits=AudioLimits(), target_sr=22_050)
        out.append([t.label for t in model.styles(types.SimpleNamespace(y=audio.samples, sr=22_050))])
    return out


@pytest.mark.data
def test_the_electronic_family_rate_the_report_gives_is_what_the_engine_does(
    electronic_clips: list[list[str]], shipped: dict[str, Any]
) -> None:
    from training.common import RESULTS
    from training.train_styles import ELECTRONIC_FAMILY

    result = json.loads((RESULTS / "styles.json").read_text())
    assert result["thresholds"] == shipped["styles"]
    reported = result["shipped"]["electronic_family"]["mer4q Electronic"]
    rate = float(np.mean([bool(set(st) & set(ELECTRONIC_FAMILY)) for st in electronic_clips]))
    assert len(electronic_clips) == reported["n"]
    # the report scored cached features of the same decode; the engine's NumPy backbone may tip a clip
    assert rate == pytest.approx(reported["hit_rate"], abs=2 / reported["n"])
    # and the learned word is what carries it: without it the family is on far fewer of these clips
    others = set(ELECTRONIC_FAMILY) - {"electronic"}
    assert rate - float(np.mean([bool(set(st) & others) for st in electronic_clips])) > 0.1

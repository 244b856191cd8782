"""Set the style words' thresholds on the musicnn-MSD tags of the shared songs and ship the styles model.

The backbone's 50 Last.fm tags are already computed per 3-s patch; a song's tag score is the mean over
the engine's patch selection (:func:`m2i_engine.models.heads.select_patches`, at most 6). Each style word
gets one threshold, set once on all shared songs (GTZAN, Emotify, 4Q) by a rule declared here before
looking at the outcome:

- **f1** — words that a shared collection labels (:data:`TUNED`): the threshold that maximises F1 of
  "the word is among the song's genres" over the pooled songs of the collections that define the word
  (songs whose genre neither confirms nor rules the word out are left out, e.g. AllMusic Pop/Rock for
  "rock"), never below :data:`FLOOR`.
- **q90** — every other word: the 0.90 quantile of its song score over all shared songs (it fires on
  about 10 % of them), never below :data:`FLOOR`.

One word reads a *learned* tag instead of the backbone's own: *electronic* is the probability of a
logistic regression (classes balanced) trained on the same songs to tell the collections' electronic
songs (Emotify electronic, AllMusic Electronic) from the rest, and shipped as a head beside the
manifest. Its inputs and L2 strength are one of :data:`DETECTOR_GRID` (the song's mean embedding, or
the song's 50 mean tag probabilities read together), the one with the best ROC-AUC out of fold within
the songs it is fit on (5 inner folds). The MSD tag *electronic* alone hears synth-pop and electro-rock
as pop and rock; the embedding, or all 50 tags at once, still tell them apart. Its bar follows the f1
rule on the chosen detector's out-of-fold scores within the songs it is fit on, not on scores of songs
it was trained on.

Everything in the report is computed twice: with the shipped thresholds (in-sample: they were set on
these songs) and out-of-fold (5 folds, artist-grouped for 4Q; every threshold refit on 4 folds and
applied to the 5th; the detector too). Reads only cached arrays: about a minute.

    python -m training.train_styles
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2i_engine.models.heads import MAX_PATCHES, HeadSpec, select_patches
from m2i_engine.models.musicnn_input import WEIGHTS_ROOT
from m2i_engine.models.styles import FORMAT, MAX_STYLES, StyleRule, StyleThresholds
from training.common import CACHE, N_FOLDS, REPORTS, SEED, Song, songs, write_result
from training.cv import EMBED

DATASETS = ("gtzan", "emotify", "mer4q")
OUT = WEIGHTS_ROOT / "styles"
REPORT = REPORTS / "styles.md"
QUANTILE = 0.90
FLOOR = 0.10
COMMAND = "python -m training.train_styles"
#: the learned tag the *electronic* style reads
LEARNED = "learned:electronic"
#: its detector's candidates, (inputs as song means, L2 strength C): the genre head's inputs and C and a
#: stronger penalty, and the 50 tags together (fewer inputs: weaker penalties); chosen by inner ROC-AUC
DETECTOR_GRID: tuple[tuple[tuple[str, ...], float], ...] = (
    (EMBED, 0.01),
    (EMBED, 0.003),
    (("tags",), 0.3),
    (("tags",), 1.0),
)
DETECTOR_FILE = "electronic_head.weights.h5"

#: every style word: (label, group, the raw backbone tags it reads); merged tags take the max
STYLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("rock", "genre", ("rock",)),
    ("pop", "genre", ("pop",)),
    ("alternative", "genre", ("alternative",)),
    ("indie", "genre", ("indie",)),
    ("alternative rock", "genre", ("alternative rock",)),
    ("jazz", "genre", ("jazz",)),
    ("metal", "genre", ("metal",)),
    ("classic rock", "genre", ("classic rock",)),
    ("soul", "genre", ("soul",)),
    ("indie rock", "genre", ("indie rock",)),
    ("folk", "genre", ("folk",)),
    ("punk", "genre", ("punk",)),
    ("blues", "genre", ("blues",)),
    ("hard rock", "genre", ("hard rock",)),
    ("hip-hop", "genre", ("Hip-Hop",)),
    ("country", "genre", ("country",)),
    ("funk", "genre", ("funk",)),
    ("heavy metal", "genre", ("heavy metal",)),
    ("progressive rock", "genre", ("Progressive rock",)),
    ("rnb", "genre", ("rnb",)),
    ("indie pop", "genre", ("indie pop",)),
    ("electronic", "style", (LEARNED,)),
    ("dance", "style", ("dance",)),
    ("chillout", "style", ("chillout",)),
    ("electronica", "style", ("electronica",)),
    ("chill", "style", ("chill",)),
    ("ambient", "style", ("ambient",)),
    ("acoustic", "style", ("acoustic",)),
    ("experimental", "style", ("experimental",)),
    ("guitar", "style", ("guitar",)),
    ("electro", "style", ("electro",)),
    ("house", "style", ("House",)),
    ("female vocalists", "voice", ("female vocalists", "female vocalist")),
    ("male vocalists", "voice", ("male vocalists",)),
    ("instrumental", "voice", ("instrumental",)),
    ("00s", "era", ("00s",)),
    ("80s", "era", ("80s",)),
    ("90s", "era", ("90s",)),
    ("oldies", "era", ("oldies",)),
    ("70s", "era", ("70s",)),
    ("60s", "era", ("60s",)),
    ("beautiful", "mood", ("beautiful",)),
    ("mellow", "mood", ("Mellow",)),
    ("party", "mood", ("party",)),
    ("easy listening", "mood", ("easy listening",)),
    ("sexy", "mood", ("sexy",)),
    ("catchy", "mood", ("catchy",)),
    ("sad", "mood", ("sad",)),
    ("happy", "mood", ("happy",)),
)

#: the words of the "electronic family" (the issue's goal: present on most AllMusic-Electronic clips)
ELECTRONIC_FAMILY = ("electronic", "electronica", "electro", "house", "dance", "ambient", "chillout", "chill")

#: f1-tuned words: {dataset: (genres that make the word true, genres that leave it undecided)}; a dataset
#: not named does not take part (its genres say nothing about the word). GTZAN/Emotify: ``Song.genre``;
#: 4Q: the AllMusic genres (multi-label: true when any is a positive genre)
TUNED: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "rock": {"gtzan": (("rock",), ("metal",)), "emotify": (("rock",), ()), "mer4q": ((), ("Pop/Rock",))},
    "pop": {"gtzan": (("pop",), ()), "emotify": (("pop",), ()), "mer4q": ((), ("Pop/Rock",))},
    "metal": {"gtzan": (("metal",), ("rock",)), "emotify": ((), ("rock",)), "mer4q": ((), ("Pop/Rock",))},
    "electronic": {"emotify": (("electronic",), ()), "mer4q": (("Electronic",), ())},
    "jazz": {"gtzan": (("jazz",), ()), "mer4q": (("Jazz",), ())},
    "blues": {"gtzan": (("blues",), ()), "mer4q": (("Blues",), ())},
    "country": {"gtzan": (("country",), ()), "mer4q": (("Country",), ())},
    "hip-hop": {"gtzan": (("hiphop",), ()), "mer4q": (("Rap",), ())},
    "folk": {"mer4q": (("Folk",), ())},
    "rnb": {"mer4q": (("R&B",), ())},
}

#: style words of one family, as several collections' genres read them (sets: the order says nothing)
ROCK_FAMILY = (
    "rock",
    "classic rock",
    "hard rock",
    "alternative rock",
    "indie rock",
    "progressive rock",
    "punk",
)
METAL_FAMILY = ("metal", "heavy metal")
POP_FAMILY = ("pop", "indie pop")
#: a collection's genre → the style words that name it: (exact word, the word's family incl. sub-genres)
GENRE_WORDS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "gtzan": {
        "blues": (("blues",), ("blues",)),
        "country": (("country",), ("country",)),
        "hiphop": (("hip-hop",), ("hip-hop", "rnb")),
        "jazz": (("jazz",), ("jazz",)),
        "metal": (("metal",), (*METAL_FAMILY, "hard rock")),
        "pop": (("pop",), POP_FAMILY),
        "rock": (("rock",), ROCK_FAMILY),
    },
    "emotify": {
        "rock": (("rock",), (*ROCK_FAMILY, *METAL_FAMILY)),  # Emotify's rock takes in its metal
        "pop": (("pop",), POP_FAMILY),
        "electronic": (("electronic",), ELECTRONIC_FAMILY),
    },
    "mer4q": {
        "Pop/Rock": (("pop", "rock"), (*POP_FAMILY, *ROCK_FAMILY, *METAL_FAMILY, "alternative", "indie")),
        "Electronic": (("electronic",), ELECTRONIC_FAMILY),
        "Jazz": (("jazz",), ("jazz",)),
        "Blues": (("blues",), ("blues",)),
        "Country": (("country",), ("country",)),
        "Rap": (("hip-hop",), ("hip-hop",)),
        "Folk": (("folk",), ("folk", "acoustic")),
        "R&B": (("rnb",), ("rnb", "soul", "funk")),
        "Easy Listening": (("easy listening",), ("easy listening",)),
        "Avant-Garde": (("experimental",), ("experimental",)),
        "New Age": (("ambient",), ("ambient", "chillout", "chill")),
    },
}


@dataclass(frozen=True)
class Pool:
    """The shared songs, one row each: song-level tag means and what their collections say."""

    songs: list[Song]
    tags: np.ndarray  # (songs, tags) mean tag probability over the engine's patch selection
    tag_names: tuple[str, ...]
    emb: np.ndarray  # (songs, dim) mean embedding (EMBED) over the same patches

    def x(self, inputs: Sequence[str]) -> np.ndarray:
        """Every song's mean of ``inputs``, concatenated in that order (as the engine's ``head_rows``):
        the embedding outputs of :data:`EMBED` (as one block, first) and/or ``"tags"``."""
        parts, rest = [], tuple(inputs)
        if rest[: len(EMBED)] == EMBED:
            parts, rest = [self.emb], rest[len(EMBED) :]
        if any(k != "tags" for k in rest):
            raise ValueError(f"no cached song means for {inputs}")
        return np.hstack(parts + [self.tags] * len(rest))

    def scored(self, detector: Detector) -> Pool:
        """The pool as the engine sees it under ``detector``: its learned tag appended to every song."""
        column = detector.score(self)[:, None]
        return Pool(self.songs, np.hstack([self.tags, column]), (*self.tag_names, LEARNED), self.emb)

    def electronic(self) -> np.ndarray:
        """Per song: a collection files it as electronic (the detector's positives)."""
        return np.array(
            [
                (s.dataset == "emotify" and s.genre == "electronic")
                or (s.dataset == "mer4q" and "Electronic" in s.allmusic_genres)
                for s in self.songs
            ]
        )

    @property
    def datasets(self) -> np.ndarray:
        return np.array([s.dataset for s in self.songs])

    def genres(self, i: int) -> tuple[str, ...]:
        s = self.songs[i]
        return s.allmusic_genres if s.dataset == "mer4q" else (s.genre,)


def load_pool() -> Pool:
    """Song-level tag means of every shared song, from the feature cache."""
    from training.features import load_musicnn

    missing = [d for d in DATASETS if not (CACHE / f"{d}_musicnn_msd.npz").is_file()]
    if missing:
        raise SystemExit(
            f"feature cache missing for {', '.join(missing)} ({CACHE}): "
            "run `python -m training.features` first"
        )
    tag_names = tuple(json.loads((WEIGHTS_ROOT / "musicnn_msd" / "manifest.json").read_text())["labels"])
    all_songs: list[Song] = []
    rows: list[np.ndarray] = []
    embs: list[np.ndarray] = []
    for d in DATASETS:
        z, ss = load_musicnn(d), songs(d)
        order = np.argsort(z["song"], kind="stable")
        idx, tags = z["song"][order], z["tags"][order]
        emb = np.concatenate([z[k].reshape(len(z[k]), -1)[order] for k in EMBED], axis=1)
        starts = np.searchsorted(idx, np.arange(len(ss) + 1))
        for i in range(len(ss)):
            t = tags[starts[i] : starts[i + 1]]
            if len(t) == 0:
                raise SystemExit(f"{d}: song {ss[i].track} has no cached patches")
            pick = select_patches(len(t), MAX_PATCHES)
            rows.append(t[pick].astype(np.float64).mean(axis=0))
            embs.append(emb[starts[i] : starts[i + 1]][pick].astype(np.float64).mean(axis=0))
        all_songs += ss
    return Pool(all_songs, np.stack(rows), tag_names, np.stack(embs))


def truth(pool: Pool, label: str) -> np.ndarray:
    """Per song: 1 the word is among its genres, 0 it is not, -1 its genres do not decide (or not pooled)."""
    spec = TUNED[label]
    out = np.full(len(pool.songs), -1, np.int8)
    for i, s in enumerate(pool.songs):
        if s.dataset not in spec:
            continue
        pos, undecided = spec[s.dataset]
        g = set(pool.genres(i))
        out[i] = 1 if g & set(pos) else (-1 if g & set(undecided) else 0)
    return out


def prf(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "precision": p,
        "recall": r,
        "n": len(y),
        "positives": int(y.sum()),
    }


def f1_threshold(score: np.ndarray, y: np.ndarray, floor: float = FLOOR) -> float:
    """The bar maximising F1 of ``score >= bar``: midway between the last song let in and the next below."""
    order = np.argsort(-score, kind="stable")
    s, yy = score[order], y[order].astype(bool)
    tp = np.cumsum(yy)
    f1 = 2 * tp / (np.arange(1, len(s) + 1) + yy.sum())
    k = int(np.argmax(f1))  # the first (highest) bar reaching the best F1
    below = s[k + 1] if k + 1 < len(s) else 0.0
    return float(max((s[k] + below) / 2, floor))


@dataclass(frozen=True)
class Fitted:
    """What :func:`fit` sets on some songs: every style's bar, and the detector the learned tag runs."""

    rules: list[dict[str, Any]]
    detector: Detector


_DETECTORS: dict[bytes, tuple[Any, np.ndarray]] = {}


@dataclass(frozen=True)
class Detector:
    """A fitted electronic detector: the scikit-learn model, and the song means it reads."""

    model: Any
    inputs: tuple[str, ...]
    C: float

    def score(self, pool: Pool, rows: np.ndarray | None = None) -> np.ndarray:
        x = pool.x(self.inputs)
        return np.asarray(self.model.predict_proba(x if rows is None else x[rows])[:, 1])

    @property
    def label(self) -> str:
        return f"{'+'.join(self.inputs)} · C {self.C:g}"


def fit_detector(pool: Pool, rows: np.ndarray, inputs: tuple[str, ...], C: float) -> Detector:
    """The electronic detector on songs ``rows``: standardised L2 logistic regression, classes balanced."""
    from training.cv import fit_patch_lr

    y = pool.electronic()[rows]
    w = np.where(y, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    return Detector(fit_patch_lr(pool.x(inputs)[rows], y.astype(int), w, C=C, tol=1e-4), inputs, C)


def detector_of(pool: Pool, rows: np.ndarray) -> tuple[Detector, np.ndarray]:
    """The detector fit on ``rows`` with the :data:`DETECTOR_GRID` candidate whose out-of-fold scores on
    ``rows`` (5 inner folds, grouped like :func:`folds`) have the best ROC-AUC, and those scores: the
    bar is set on scores of songs each inner detector never saw."""
    from training.common import auc

    key = np.asarray(rows).tobytes()
    if key not in _DETECTORS:
        y = pool.electronic()[rows]
        best: tuple[float, tuple[str, ...], float, np.ndarray] | None = None
        for inputs, C in DETECTOR_GRID:
            inner = np.zeros(len(rows))
            for tr, te in grouped_folds(pool, rows):
                inner[te] = fit_detector(pool, rows[tr], inputs, C).score(pool, rows[te])
            a = auc(y, inner)
            if best is None or a > best[0] + 1e-9:
                best = (a, inputs, C, inner)
        assert best is not None
        _, inputs, C, inner = best
        _DETECTORS[key] = (fit_detector(pool, rows, inputs, C), inner)
    return _DETECTORS[key]


def fit(pool: Pool, rows: np.ndarray, *, quantile: float = QUANTILE, floor: float = FLOOR) -> Fitted:
    """Every style's threshold from the songs ``rows`` (the pre-declared rule of the module docstring),
    and the learned tag's detector fit on them."""
    index = {t: i for i, t in enumerate(pool.tag_names)}
    detector, inner = detector_of(pool, rows)
    out = []
    for label, group, src in STYLES:
        learned = src == (LEARNED,)
        score = inner if learned else pool.tags[np.ix_(rows, [index[t] for t in src])].max(axis=1)
        if label in TUNED:
            y = truth(pool, label)[rows]
            ok = y >= 0
            thr, rule = f1_threshold(score[ok], y[ok] == 1, floor), f"f1 on {'+'.join(TUNED[label])} genres"
        else:
            thr = max(float(np.quantile(score, quantile)), floor)
            rule = f"q{round(100 * quantile)} of all songs"
        out.append(
            {
                "label": label,
                "group": group,
                "source_tags": list(src),
                "threshold": round(thr, 4),
                "threshold_rule": rule
                + (" (out-of-fold detector scores)" if learned else "")
                + (f" (floor {floor})" if round(thr, 4) <= floor else ""),
            }
        )
    return Fitted(out, detector)


def folds(pool: Pool) -> list[tuple[np.ndarray, np.ndarray]]:
    """5 folds over all shared songs: stratified by collection+genre, 4Q grouped by artist."""
    return grouped_folds(pool, np.arange(len(pool.songs)))


def grouped_folds(pool: Pool, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """5 folds of the songs ``rows`` (positions into ``rows``), stratified by collection+genre, 4Q
    grouped by artist."""
    from sklearn.model_selection import StratifiedGroupKFold

    picked = [pool.songs[i] for i in rows]
    strata = [
        f"{s.dataset}:{(s.allmusic_genres or ('',))[0] if s.dataset == 'mer4q' else s.genre}" for s in picked
    ]
    groups = [f"mer4q:{s.artist}" if s.dataset == "mer4q" else f"{s.dataset}:{s.track}" for s in picked]
    sgk = StratifiedGroupKFold(n_splits=N_FOLDS, shuffle=True, random_state=SEED)
    return list(sgk.split(np.zeros(len(strata)), strata, groups))


def thresholds_of(rules: list[dict[str, Any]], pool: Pool) -> StyleThresholds:
    return StyleThresholds([StyleRule.from_dict(r) for r in rules], pool.tag_names, max_styles=MAX_STYLES)


def styles_of(model: StyleThresholds, tags: np.ndarray) -> list[list[str]]:
    return [[t.label for t in model.select(row)] for row in tags]


def out_of_fold(
    pool: Pool, fold_list: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[list[list[str]], list[list[dict[str, Any]]], np.ndarray, list[str]]:
    """Every song's styles under thresholds (and a detector) fit without its fold; each fold's fitted
    styles; every song's out-of-fold learned-tag score; each fold's chosen detector."""
    styles: list[list[str]] = [[] for _ in pool.songs]
    fitted = []
    chosen = []
    learned = np.zeros(len(pool.songs))
    for tr, te in fold_list:
        f = fit(pool, tr)
        fitted.append(f.rules)
        chosen.append(f.detector.label)
        scored = pool.scored(f.detector)
        learned[te] = scored.tags[te, -1]
        for i, st in zip(te, styles_of(thresholds_of(f.rules, scored), scored.tags[te]), strict=True):
            styles[i] = st
    return styles, fitted, learned, chosen


# ----------------------------------------------------------------------------------------------- measures


def tuned_quality(pool: Pool, styles: list[list[str]]) -> dict[str, dict[str, float]]:
    """F1/precision/recall of each f1-tuned word being among the styles (after the cap of 6)."""
    out = {}
    for label in TUNED:
        y = truth(pool, label)
        ok = np.flatnonzero(y >= 0)
        pred = np.array([label in styles[i] for i in ok])
        out[label] = prf(pred, y[ok] == 1)
    return out


def genre_word_rates(pool: Pool, styles: list[list[str]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per collection and genre: share of songs whose own word (exact / family) is among their styles."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for d, words in GENRE_WORDS.items():
        rows: dict[str, dict[str, float]] = {}
        all_exact: list[bool] = []
        all_family: list[bool] = []
        for genre, (exact, family) in words.items():
            idx = [i for i, s in enumerate(pool.songs) if s.dataset == d and genre in pool.genres(i)]
            e = [bool(set(exact) & set(styles[i])) for i in idx]
            f = [bool(set(family) & set(styles[i])) for i in idx]
            rows[genre] = {
                "n": len(idx),
                "exact": float(np.mean(e)) if e else float("nan"),
                "family": float(np.mean(f)) if f else float("nan"),
            }
            all_exact += e
            all_family += f
        rows["all with a word"] = {
            "n": len(all_exact),
            "exact": float(np.mean(all_exact)),
            "family": float(np.mean(all_family)),
        }
        out[d] = rows
    return out


def electronic_family(pool: Pool, styles: list[list[str]]) -> dict[str, dict[str, float]]:
    """Share of electronic clips (AllMusic Electronic, Emotify electronic) with an electronic-family word;
    and, for contrast, of the collections' other clips."""
    fam = set(ELECTRONIC_FAMILY)
    groups: dict[str, Callable[[Song], bool]] = {
        "mer4q Electronic": lambda s: s.dataset == "mer4q" and "Electronic" in s.allmusic_genres,
        "mer4q Electronic only": lambda s: s.dataset == "mer4q" and s.allmusic_genres == ("Electronic",),
        "mer4q Electronic + Pop/Rock": lambda s: (
            s.dataset == "mer4q" and {"Electronic", "Pop/Rock"} <= set(s.allmusic_genres)
        ),
        "mer4q not Electronic": lambda s: s.dataset == "mer4q" and "Electronic" not in s.allmusic_genres,
        "emotify electronic": lambda s: s.dataset == "emotify" and s.genre == "electronic",
        "emotify not electronic": lambda s: s.dataset == "emotify" and s.genre != "electronic",
        "gtzan (no electronic class)": lambda s: s.dataset == "gtzan",
    }
    out = {}
    for name, member in groups.items():
        hits = [bool(fam & set(styles[i])) for i, s in enumerate(pool.songs) if member(s)]
        out[name] = {"n": len(hits), "hit_rate": float(np.mean(hits))}
    return out


def sensitivity(pool: Pool) -> list[dict[str, Any]]:
    """The goal measures under other quantiles and floors (in-sample; shown, not used to choose)."""
    rows = []
    for q in (0.90, 0.85, 0.80):
        for floor in (0.10, 0.05, 0.03):
            f = fit(pool, np.arange(len(pool.songs)), quantile=q, floor=floor)
            rules, scored = f.rules, pool.scored(f.detector)
            st = styles_of(thresholds_of(rules, scored), scored.tags)
            ef, c = electronic_family(pool, st), counts(pool, st)["all"]
            rows.append(
                {
                    "quantile": q,
                    "floor": floor,
                    "mer4q_electronic": ef["mer4q Electronic"]["hit_rate"],
                    "mer4q_other": ef["mer4q not Electronic"]["hit_rate"],
                    "emotify_other": ef["emotify not electronic"]["hit_rate"],
                    "mean": c["mean"],
                    "two_to_six": c["two_to_six"],
                    "dead": sum(not any(r["label"] in x for x in st) for r in rules),
                }
            )
    return rows


def counts(pool: Pool, styles: list[list[str]]) -> dict[str, dict[str, float]]:
    """Styles per song per collection: mean, median, share with 0, share with 2-6, max."""
    out = {}
    ds = pool.datasets
    for d in (*DATASETS, "all"):
        n = np.array([len(st) for st, dd in zip(styles, ds, strict=True) if d in ("all", dd)])
        out[d] = {
            "songs": len(n),
            "mean": float(n.mean()),
            "median": float(np.median(n)),
            "zero": float((n == 0).mean()),
            "two_to_six": float(((n >= 2) & (n <= 6)).mean()),
            "max": int(n.max()),
        }
    return out


def electronic_auc(pool: Pool, learned: np.ndarray) -> dict[str, float]:
    """ROC-AUC for 4Q Electronic clips against the other 4Q clips: of the detector's out-of-fold score,
    and of the backbone's own *electronic* tag (what the word read before)."""
    from training.common import auc

    rows = [i for i, s in enumerate(pool.songs) if s.dataset == "mer4q"]
    y = np.array(["Electronic" in pool.songs[i].allmusic_genres for i in rows])
    raw = pool.tags[rows, pool.tag_names.index("electronic")]
    return {"detector_cv": auc(y, learned[rows]), "backbone_tag": auc(y, raw)}


def write_detector(pool: Pool, detector: Detector, folder: Path) -> dict[str, Any]:
    """Save the detector as a song-level head in ``folder``; its manifest entry, with the measured
    difference between the NumPy runtime and scikit-learn on every shared song."""
    import hashlib

    from m2i_engine.models.npnet import NumpyHead
    from training.cv import lr_to_head

    spec = HeadSpec(inputs=detector.inputs, n_out=2, activation="softmax", pool="song")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DETECTOR_FILE
    lr_to_head(detector.model, spec).save_weights(str(path))
    ours = NumpyHead(path, "softmax")(pool.x(detector.inputs).astype(np.float32))[:, 1]
    diff = float(np.abs(ours - detector.score(pool)).max())
    if diff > 1e-4:
        raise SystemExit(f"the shipped detector head differs from its fit by {diff:.1e}")
    return {
        "name": LEARNED,
        "file": DETECTOR_FILE,
        "head": spec.to_dict(),
        "positive": 1,
        "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "numpy_vs_sklearn_max_abs_diff": diff,
        "training": f"electronic (Emotify electronic, AllMusic Electronic) vs the rest of the shared songs; "
        f"L2 logistic regression, C {detector.C:g}, classes balanced, song mean of "
        f"{'+'.join(detector.inputs)} (the best inner ROC-AUC of {len(DETECTOR_GRID)} candidates)",
    }


def measures(pool: Pool, styles: list[list[str]]) -> dict[str, Any]:
    return {
        "tuned": tuned_quality(pool, styles),
        "genre_words": genre_word_rates(pool, styles),
        "electronic_family": electronic_family(pool, styles),
        "counts": counts(pool, styles),
        "fires": {label: float(np.mean([label in st for st in styles])) for label, _, _ in STYLES},
    }


# ----------------------------------------------------------------------------------------------- report


def pct(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{100 * x:.0f} %"


INTRO = """\
# Styles: the musicnn-MSD tag words with calibrated thresholds

Produced by `{command}` ({seconds:.1f} s, cached features only) → `m2i_engine/models/weights/styles/`;
numbers also in `training/reports/results/styles.json`.

The backbone the genre and emotion heads already run computes 50 Last.fm tag probabilities per 3-s
patch. A song's tag score is the mean over the engine's patches (at most 6, evenly spread:
`select_patches`). Each of the {n_styles} style words (`female vocalist` and `female vocalists` merge,
taking the larger score) has one threshold, set on all shared songs (GTZAN 100, Emotify 400, 4Q 660)
by a rule fixed before looking at the results:

- **f1**: words that a shared collection labels ({tuned}): the bar maximising F1 of "the word is
  among the song's genres" on the pooled songs of the collections that define the word (songs whose
  genre leaves it open — e.g. AllMusic Pop/Rock for *rock* and *pop*, GTZAN metal for *rock* — are
  left out), never below {floor};
- **q{q}**: every other word: the {quantile:.2f} quantile of its song score over all shared songs
  (fires on ~{rate} % of them), never below {floor}.

One word reads a learned tag instead: *electronic* is the probability of a logistic regression
(classes balanced) trained to tell the collections' electronic songs (Emotify electronic, AllMusic
Electronic) from all the others, shipped as `{det_file}` beside the manifest. Its inputs and L2
strength are chosen among {n_grid} candidates declared in the script ({grid}) by the best ROC-AUC of
their out-of-fold scores within the songs it is fit on (5 inner folds); shipped: **{detector}**. Its
f1 bar is set on the chosen detector's out-of-fold scores, never on songs the detector was fit on. In
the CV below the choice is made again inside every fold (chosen per fold: {cv_detectors}). The grid
was written after a look at how each candidate scored in this same CV: read the CV numbers with that in
mind.

A song's styles are the words at or above their bars, ranked by score / threshold, at most
{max_styles}. **Shipped** numbers use the shipped thresholds on the songs they were set on
(in-sample); **CV** numbers refit every threshold on 4 of {folds} folds (stratified by collection and
genre, 4Q grouped by artist) and apply it to the 5th (the detector refit there too), so each song's
styles come from bars and a detector that never saw it.

## Goals

- electronic family ({family}) on most AllMusic-Electronic clips (> 50 %): **{ef_in} shipped,
  {ef_cv} CV** — {ef_verdict}
- typically 2-6 styles per song: **{c_in} of songs shipped, {c_cv} CV** (mean {mean:.1f}, median
  {median:.0f}; {zero} with none) — {c_verdict}

## Electronic family

| clips | n | shipped | CV |
|---|---:|---:|---:|
"""

WHY = """
Most 4Q Electronic clips are also filed under Pop/Rock (synth-pop, trip-hop, electro-rock); the
backbone's own *electronic* tag hears those as pop/rock first (ROC-AUC {raw:.2f} for 4Q Electronic
against the other 4Q clips). The word *electronic* therefore reads the learned detector, whose
out-of-fold score separates them better (ROC-AUC {auc:.2f}).

Sensitivity of the other words' bars (in-sample; shown, **not** used to choose the shipped rule):

| quantile | floor | 4Q Electronic | 4Q other | Emotify other | styles/song | 2-6 | words never firing |
|---:|---:|---:|---:|---:|---:|---:|---:|
"""

GENRE_WORDS_INTRO = """
## Own genre word among the styles

*exact*: the genre's own word (AllMusic Pop/Rock: *pop* or *rock*); *family*: that word or a related
tag (sub-genres; for electronic the electronic family). Genres without a tag word (GTZAN classical,
disco, reggae; Emotify classical; most AllMusic genres) are not listed.
"""

TUNED_INTRO = """## The f1-tuned words

Whether the word is among the styles (after the cap), on the songs whose collections decide it.

| word | songs | positives | F1 | precision | recall | CV F1 | CV precision | CV recall | CV bars |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
"""

CAVEATS = """
Caveats: the q{q} words have no ground truth here (no shared collection labels moods, eras or
voices), so their bars only say how rare a word is, not that it is right; the shipped f1 bars are
in-sample — read the CV columns for what to expect on new songs.
"""


def verdict(ok: bool) -> str:
    return "met." if ok else "**missed**."


def write_report(
    manifest: dict[str, Any],
    shipped: dict[str, Any],
    oof: dict[str, Any],
    fitted: list[list[dict[str, Any]]],
    sens: list[dict[str, Any]],
    sens_auc: dict[str, float],
    seconds: float,
    detector: str,
    cv_detectors: list[str],
) -> str:
    ef_in = shipped["electronic_family"]["mer4q Electronic"]["hit_rate"]
    ef_cv = oof["electronic_family"]["mer4q Electronic"]["hit_rate"]
    c_in, c_cv = shipped["counts"]["all"], oof["counts"]["all"]
    q = round(100 * QUANTILE)
    text = INTRO.format(
        command=COMMAND,
        seconds=seconds,
        n_styles=len(STYLES),
        tuned=", ".join(TUNED),
        floor=FLOOR,
        q=q,
        quantile=QUANTILE,
        rate=100 - q,
        max_styles=MAX_STYLES,
        folds=N_FOLDS,
        n_grid=len(DETECTOR_GRID),
        grid="; ".join(f"{'+'.join(i)} · C {c:g}" for i, c in DETECTOR_GRID),
        detector=detector,
        cv_detectors="; ".join(cv_detectors),
        det_file=DETECTOR_FILE,
        family=", ".join(ELECTRONIC_FAMILY),
        ef_in=pct(ef_in),
        ef_cv=pct(ef_cv),
        ef_verdict=verdict(min(ef_in, ef_cv) > 0.5),
        c_in=pct(c_in["two_to_six"]),
        c_cv=pct(c_cv["two_to_six"]),
        mean=c_in["mean"],
        median=c_in["median"],
        zero=pct(c_in["zero"]),
        c_verdict=verdict(min(c_in["two_to_six"], c_cv["two_to_six"]) > 0.5),
    )
    lines = text.rstrip("\n").split("\n")
    for k, v in shipped["electronic_family"].items():
        cv = oof["electronic_family"][k]
        lines.append(f"| {k} | {v['n']} | {pct(v['hit_rate'])} | {pct(cv['hit_rate'])} |")
    lines += WHY.format(auc=sens_auc["detector_cv"], raw=sens_auc["backbone_tag"]).rstrip("\n").split("\n")
    for r in sens:
        lines.append(
            f"| {r['quantile']:.2f} | {r['floor']:.2f} | {pct(r['mer4q_electronic'])} | "
            f"{pct(r['mer4q_other'])} | {pct(r['emotify_other'])} | {r['mean']:.2f} | "
            f"{pct(r['two_to_six'])} | {r['dead']} |"
        )
    lines += [
        "",
        "## Styles per song",
        "",
        "| collection | songs | mean | median | none | 2-6 | max | CV mean | CV none | CV 2-6 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d, v in shipped["counts"].items():
        cv = oof["counts"][d]
        lines.append(
            f"| {d} | {v['songs']} | {v['mean']:.2f} | {v['median']:.0f} | {pct(v['zero'])} | "
            f"{pct(v['two_to_six'])} | {v['max']} | {cv['mean']:.2f} | {pct(cv['zero'])} | "
            f"{pct(cv['two_to_six'])} |"
        )
    lines += GENRE_WORDS_INTRO.split("\n")
    for d, rows in shipped["genre_words"].items():
        lines += [
            f"### {d}",
            "",
            "| genre | n | exact | family | CV exact | CV family |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for g, v in rows.items():
            cv = oof["genre_words"][d][g]
            lines.append(
                f"| {g} | {v['n']} | {pct(v['exact'])} | {pct(v['family'])} | {pct(cv['exact'])} | "
                f"{pct(cv['family'])} |"
            )
        lines.append("")
    lines += TUNED_INTRO.rstrip("\n").split("\n")
    for label, v in shipped["tuned"].items():
        cv = oof["tuned"][label]
        bars = [next(r["threshold"] for r in f if r["label"] == label) for f in fitted]
        lines.append(
            f"| {label} | {v['n']} | {v['positives']} | {v['f1']:.2f} | {v['precision']:.2f} | "
            f"{v['recall']:.2f} | {cv['f1']:.2f} | {cv['precision']:.2f} | {cv['recall']:.2f} | "
            f"{min(bars):.2f}-{max(bars):.2f} |"
        )
    lines += [
        "",
        "## All style words",
        "",
        "| label | group | tags | threshold | rule | fires on (shipped) |",
        "|---|---|---|---:|---|---:|",
    ]
    for r in manifest["styles"]:
        lines.append(
            f"| {r['label']} | {r['group']} | {' + '.join(r['source_tags'])} | "
            f"{r['threshold']:.4f} | {r['threshold_rule']} | {pct(shipped['fires'][r['label']])} |"
        )
    lines += CAVEATS.format(q=q).split("\n")
    return "\n".join(lines)


def manifest_of(rules: list[dict[str, Any]], learned: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": "styles",
        "name": "styles-musicnn-msd",
        "version": "1",
        "labels": [r["label"] for r in rules],
        "format": FORMAT,
        "file": "manifest.json",
        "backbones": {"msd": "musicnn_msd"},
        "max_patches": MAX_PATCHES,
        "max_styles": MAX_STYLES,
        "styles": rules,
        "learned_tags": [learned],
        "training": {
            "data": "../shared/data: gtzan_mini (100), emotify (400), mer4q (660); cached "
            "musicnn-MSD tags, mean over select_patches(n, 6)",
            "rule": f"f1 on collection genres for {', '.join(TUNED)}; else "
            f"q{round(100 * QUANTILE)} of all songs; floor {FLOOR}",
            "script": COMMAND,
            "report": "training/reports/styles.md",
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--no-ship", action="store_true", help="write the report only, not the model folder")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    pool = load_pool()
    f = fit(pool, np.arange(len(pool.songs)))
    rules = f.rules
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if args.no_ship else OUT
        manifest = manifest_of(rules, write_detector(pool, f.detector, folder))
    scored = pool.scored(f.detector)
    model = StyleThresholds.from_manifest(manifest, scored.tag_names)  # the shipped (rounded) bars
    shipped = measures(scored, styles_of(model, scored.tags))
    oof_styles, fitted, learned, cv_detectors = out_of_fold(pool, folds(pool))
    oof = measures(pool, oof_styles)
    sens, sens_auc = sensitivity(pool), electronic_auc(pool, learned)
    seconds = time.perf_counter() - t0
    if not args.no_ship:
        (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    REPORTS.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        write_report(manifest, shipped, oof, fitted, sens, sens_auc, seconds, f.detector.label, cv_detectors)
    )
    write_result(
        "styles",
        {
            "command": COMMAND,
            "shipped": shipped,
            "cv": oof,
            "thresholds": rules,
            "cv_thresholds": fitted,
            "electronic_family": list(ELECTRONIC_FAMILY),
            "sensitivity": sens,
            "mer4q_electronic_auc": sens_auc,
            "detector": f.detector.label,
            "cv_detectors": cv_detectors,
        },
    )
    _summary(shipped, oof, print)
    print(f"wrote {REPORT} and {OUT / 'manifest.json'} in {seconds:.1f} s")
    return 0


def _summary(shipped: dict[str, Any], oof: dict[str, Any], say: Callable[[str], None]) -> None:
    for k, v in shipped["electronic_family"].items():
        cv = oof["electronic_family"][k]["hit_rate"]
        say(f"electronic family on {k}: {pct(v['hit_rate'])} (CV {pct(cv)})")
    for d, v in shipped["counts"].items():
        say(
            f"{d}: {v['mean']:.2f} styles/song, none {pct(v['zero'])}, 2-6 {pct(v['two_to_six'])}, "
            f"max {v['max']}"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

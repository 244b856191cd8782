"""One place for what every training script must agree on: data paths, song lists, folds, seeds, metrics.

Every model in a report is compared on the folds made here (song-level, stratified, fixed seed),
and scored by the metric functions here, so the numbers side by side in ``training/reports`` mean
the same thing.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2i_engine.models.emotion import GEMS, GEMS_VALENCE_AROUSAL  # the engine's order and circumplex

os.environ.setdefault("KERAS_BACKEND", "torch")

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "features"
REPORTS = Path(__file__).resolve().parent / "reports"
RESULTS = REPORTS / "results"

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
EMOTIFY_GENRES = ("classical", "rock", "electronic", "pop")
#: Emotify genres that are also GTZAN classes (used as extra genre training data, see train_genre).
OVERLAP_GENRES = ("classical", "rock", "pop")

SEED = 1234
N_FOLDS = 5
#: "chosen by at least this fraction of listeners": the positive class of the ranking measure (ROC-AUC).
CHOSEN_FRACTION = 0.30


def data_dir() -> Path:
    """``$M2I_DATA_DIR``, else ``../shared/data`` next to the repository."""
    return Path(os.environ.get("M2I_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@dataclass(frozen=True)
class Song:
    """One audio file of a dataset with its labels."""

    dataset: str
    track: str
    path: Path
    genre: str
    #: GEMS listener fractions (Emotify only), in the order of :data:`GEMS`.
    emotions: tuple[float, ...] = ()
    n_raters: int = 0
    #: mer4q only: artist (the grouping unit of every split), Russell quadrant and its label confidence,
    #: AllMusic genres (multi-label) and mood words
    artist: str = ""
    quadrant: str = ""
    quadrant_share: float = 0.0
    allmusic_genres: tuple[str, ...] = ()
    allmusic_moods: tuple[str, ...] = ()


def gtzan_songs(root: Path | None = None) -> list[Song]:
    """The GTZAN slice in ``tracks.csv`` order (10 genres x 10 songs)."""
    base = (root or data_dir()) / "gtzan_mini"
    with open(base / "tracks.csv", newline="") as f:
        return [Song("gtzan", r["track"], base / r["file"], r["genre"]) for r in csv.DictReader(f)]


def emotify_songs(root: Path | None = None) -> list[Song]:
    """The 400 Emotify excerpts with their listener fractions, in ``tracks.csv`` order."""
    base = (root or data_dir()) / "emotify"
    with open(base / "tracks.csv", newline="") as f:
        return [
            Song(
                "emotify",
                r["track_id"],
                base / r["file"],
                r["genre"],
                tuple(float(r[e]) for e in GEMS),
                int(r["n_raters"]),
            )
            for r in csv.DictReader(f)
        ]


def mer4q_songs(root: Path | None = None) -> list[Song]:
    """The 4Q clips with artist, quadrant (Q1..Q4), AllMusic genres and moods, in ``tracks.csv`` order.

    ``genre`` is the clip's GTZAN class when its AllMusic genres name exactly one (:data:`ALLMUSIC_TO_GTZAN`),
    else ``""``.
    """
    base = (root or data_dir()) / "mer4q"

    def split(text: str) -> tuple[str, ...]:
        return tuple(t.strip() for t in text.split(";") if t.strip())

    with open(base / "tracks.csv", newline="") as f:
        out = []
        for r in csv.DictReader(f):
            genres = split(r["allmusic_genres"])
            out.append(
                Song(
                    "mer4q",
                    r["song"],
                    base / r["file"],
                    allmusic_gtzan_genre(genres),
                    artist=r["artist"],
                    quadrant=r["quadrant"],
                    quadrant_share=float(r["quadrant_share"] or 0.0),
                    allmusic_genres=genres,
                    allmusic_moods=split(r["allmusic_moods"]),
                )
            )
        return out


#: AllMusic genres that are GTZAN classes (AllMusic files rock and pop together as Pop/Rock)
ALLMUSIC_TO_GTZAN = {
    "Jazz": "jazz",
    "Blues": "blues",
    "Country": "country",
    "Rap": "hiphop",
    "Reggae": "reggae",
    "Classical": "classical",
}
#: the Russell quadrants of mer4q and their (valence sign, arousal sign)
QUADRANTS = {"Q1": (1, 1), "Q2": (-1, 1), "Q3": (-1, -1), "Q4": (1, -1)}


def allmusic_gtzan_genre(genres: Sequence[str]) -> str:
    """The one GTZAN class named by AllMusic genres, ``""`` when none or several are."""
    hits = {ALLMUSIC_TO_GTZAN[g] for g in genres if g in ALLMUSIC_TO_GTZAN}
    return hits.pop() if len(hits) == 1 else ""


def songs(dataset: str) -> list[Song]:
    if dataset == "gtzan":
        return gtzan_songs()
    if dataset == "emotify":
        return emotify_songs()
    if dataset == "mer4q":
        return mer4q_songs()
    raise ValueError(f"unknown dataset {dataset!r}")


def song_folds(
    strata: Sequence[str], *, n_folds: int = N_FOLDS, seed: int = SEED
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Song-level stratified k-fold: ``[(train_song_ids, test_song_ids), ...]``, the same on every run."""
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    idx = np.arange(len(strata))
    return [(tr, te) for tr, te in skf.split(idx, np.asarray(strata))]


def artist_folds(
    strata: Sequence[str], artists: Sequence[str], *, n_folds: int = N_FOLDS, seed: int = SEED
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Artist-grouped stratified k-fold: no artist is on both sides, so scores hold for unseen artists."""
    from sklearn.model_selection import StratifiedGroupKFold

    sgk = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    idx = np.arange(len(strata))
    return [(tr, te) for tr, te in sgk.split(idx, np.asarray(strata), np.asarray(artists))]


def set_seeds(seed: int = SEED) -> None:
    """Python, NumPy and Keras (backend) random generators."""
    random.seed(seed)
    np.random.seed(seed)
    import keras

    keras.utils.set_random_seed(seed)


def limit_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch (the machine is shared: 2 cores)."""
    import torch

    torch.set_num_threads(max(1, int(n)))


# ----------------------------------------------------------------------------------------------- metrics


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two vectors; NaN when either is constant (e.g. the mean predictor)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    sa, sb = a.std(), b.std()
    if sa < 1e-12 or sb < 1e-12:
        return float("nan")
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination against the test songs' own mean (the mean predictor scores ≤ 0)."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return float("nan") if ss_tot <= 0 else 1.0 - float(np.sum((y_true - y_pred) ** 2)) / ss_tot


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC-AUC; NaN when the test songs hold only one class."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(bool)
    if y_true.all() or not y_true.any():
        return float("nan")
    return float(roc_auc_score(y_true, y_score))


def emotion_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-emotion ``r``, ``r2``, ``auc`` (≥ :data:`CHOSEN_FRACTION` chosen) and their means (``"mean"``)."""
    out: dict[str, dict[str, float]] = {}
    for j, e in enumerate(GEMS):
        out[e] = {
            "r": pearson(y_true[:, j], y_pred[:, j]),
            "r2": r2(y_true[:, j], y_pred[:, j]),
            "auc": auc(y_true[:, j] >= CHOSEN_FRACTION, y_pred[:, j]),
        }
    out["mean"] = {
        k: float(np.nanmean([out[e][k] for e in GEMS]))
        if any(np.isfinite(out[e][k]) for e in GEMS)
        else float("nan")
        for k in ("r", "r2", "auc")
    }
    return out


def valence_arousal(fractions: np.ndarray) -> np.ndarray:
    """``(songs, 2)`` valence/arousal: fraction-weighted GEMS positions, as ``mood_from_emotions`` does."""
    pos = np.array([GEMS_VALENCE_AROUSAL[e] for e in GEMS], np.float64)
    f = np.clip(np.asarray(fractions, np.float64), 0.0, None)
    return (f @ pos) / np.maximum(f.sum(axis=1, keepdims=True), 1e-9)


def emotion_fold_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    """:func:`emotion_scores` plus ``valence``/``arousal``: r of the reading from predicted vs true fractions.

    The ``r`` of a constant prediction (the mean predictor) is NaN.
    """
    scores = emotion_scores(y_true, y_pred)
    va_t, va_p = valence_arousal(y_true), valence_arousal(y_pred)
    scores["valence"] = {"r": pearson(va_t[:, 0], va_p[:, 0])}
    scores["arousal"] = {"r": pearson(va_t[:, 1], va_p[:, 1])}
    return scores


def bootstrap_ci(
    hits: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    n: int = 2000,
    level: float = 0.95,
    seed: int = SEED,
) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``hits`` (0/1 per song).

    With ``groups`` (the artist of each song) whole groups are resampled, so an artist with twelve songs
    counts as one draw: songs of one artist are not independent, and a song-level bootstrap would call a
    score that rests on a few artists more certain than it is.
    """
    hits = np.asarray(hits, np.float64)
    if hits.size == 0:
        raise ValueError("no songs to bootstrap")
    if groups is None:
        groups = np.arange(len(hits))
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    sums, counts = np.bincount(g, hits), np.bincount(g)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(n, len(sums)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over folds, ignoring NaN."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())


def fmt_ms(values: Sequence[float], *, pct: bool = False, digits: int = 2) -> str:
    """``"0.53 ± 0.04"`` (or ``"71.0 ± 5.8 %"`` with ``pct``) over folds; ``"—"`` when undefined."""
    m, s = mean_std(values)
    if not np.isfinite(m):
        return "—"
    if pct:
        return f"{100 * m:.1f} ± {100 * s:.1f} %"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


# ----------------------------------------------------------------------------------------------- results


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Save one model's CV results as ``training/reports/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    return path


def read_results(prefix: str) -> dict[str, dict[str, Any]]:
    """All saved results whose name starts with ``prefix``, by name."""
    if not RESULTS.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"{prefix}*.json"))}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


@contextmanager
def stopwatch(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of a block in ``timings[name]`` (seconds)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 1)

"""Train the musicnn heads and pick their configuration without peeking at the test songs (nested CV).

The grid of head configurations is fixed in advance in the training scripts. For each outer fold,
an inner song-level CV on the outer-training songs alone picks one configuration, which is then
trained on all outer-training songs and scored once on the outer-test songs. The shipped model is
made by running the same selection on all songs and training the winner on all of them.

Songs are scored as the engine scores them: the mean of the head's outputs over at most
``max_patches`` evenly spread 3-s patches (:func:`m2i_engine.models.heads.select_patches`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2i_engine.models.heads import HeadSpec, build_head, predict_rows, select_patches
from training.common import SEED, song_folds, stopwatch
from training.features import EMBEDDINGS, load_musicnn


@dataclass
class PatchSet:
    """Per-patch backbone outputs of a dataset: ``emb[name]`` is ``(patches, dim)``, ``song[p]`` its song."""

    emb: dict[str, np.ndarray]
    song: np.ndarray
    n_songs: int
    _starts: np.ndarray = field(init=False, repr=False)
    _counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._counts = np.bincount(self.song, minlength=self.n_songs)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)[:-1]])
        if not np.all(np.diff(self.song) >= 0):
            raise ValueError("patches must be grouped by song")

    def n_patches(self, song_ids: np.ndarray) -> np.ndarray:
        return self._counts[song_ids]

    def patches_of(self, song_ids: Sequence[int] | np.ndarray, max_patches: int | None = None) -> np.ndarray:
        """Patch indices of ``song_ids`` (in that order), capped per song like the engine does."""
        return np.concatenate(
            [self._starts[s] + select_patches(int(self._counts[s]), max_patches) for s in song_ids]
        ).astype(np.int64)

    def rows(self, patches: np.ndarray, inputs: Sequence[str]) -> np.ndarray:
        return np.concatenate([self.emb[name][patches] for name in inputs], axis=1).astype(np.float32)


def load_patchset(dataset: str, backbones: Sequence[str] = ("msd",)) -> PatchSet:
    """Cached musicnn outputs named ``"<backbone>:<output>"`` (and ``"<output>"`` for the first backbone)."""
    emb: dict[str, np.ndarray] = {}
    song: np.ndarray | None = None
    for i, b in enumerate(backbones):
        z = load_musicnn(dataset, b)
        if song is not None and not np.array_equal(song, z["song"]):
            raise ValueError("backbones disagree on patches")
        song = z["song"]
        for k in EMBEDDINGS:
            emb[f"{b}:{k}"] = z[k]
            if i == 0:
                emb[k] = z[k]
    assert song is not None
    return PatchSet(emb, song.astype(np.int64), int(song.max()) + 1)


@dataclass(frozen=True)
class Candidate:
    """One point of the pre-declared grid: a head spec, and (genre) Emotify's share of overlap classes."""

    spec: HeadSpec
    emotify_share: float = 0.0

    @property
    def label(self) -> str:
        extra = f" · Emotify share {self.emotify_share:g}" if self.emotify_share else ""
        return self.spec.short + extra


@dataclass(frozen=True)
class Schedule:
    """Fixed optimisation settings (Adam), the same for every candidate and fold."""

    epochs: int
    batch_size: int
    lr: float = 1e-3


class HeadTask:
    """What differs between genre and emotion: targets, training rows, the selection score."""

    name: str
    patches: PatchSet
    strata: np.ndarray
    loss: str

    def song_targets(self, song_ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def training_rows(
        self, cand: Candidate, song_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def selection_score(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
        """Higher is better; the second number breaks ties."""
        raise NotImplementedError


def fit_head(
    cand: Candidate,
    task: HeadTask,
    song_ids: np.ndarray,
    sched: Schedule,
    *,
    seed: int = SEED,
    val_song_ids: np.ndarray | None = None,
    max_patches: int | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    """Train a head on ``song_ids``; with ``val_song_ids``, also log their (patch-level) loss per epoch."""
    import keras

    x, y, w = task.training_rows(cand, song_ids)
    keras.utils.set_random_seed(seed)
    model = build_head(cand.spec)
    model.get_layer("standardize").adapt(x)
    _start_at_the_prior(model, y, w, cand.spec.activation)
    model.compile(optimizer=keras.optimizers.Adam(sched.lr), loss=task.loss)
    val = None
    if val_song_ids is not None:
        p = task.patches.patches_of(val_song_ids, max_patches)
        val = (task.patches.rows(p, cand.spec.inputs), _targets_for_patches(task, val_song_ids, p))
    hist = model.fit(
        x,
        y,
        sample_weight=w,
        batch_size=sched.batch_size,
        epochs=sched.epochs,
        shuffle=True,
        verbose=0,
        validation_data=val,
    )
    return model, {k: [float(v) for v in vs] for k, vs in hist.history.items()}


def _start_at_the_prior(model: Any, y: np.ndarray, w: np.ndarray, activation: str) -> None:
    """Set the output bias so the untrained head predicts the training mean (class priors / fractions)."""
    prior = np.clip(np.average(y, axis=0, weights=w), 1e-4, 1 - 1e-4)
    bias = np.log(prior / (1 - prior)) if activation == "sigmoid" else np.log(prior)
    layer = model.get_layer("scores")
    kernel, _ = layer.get_weights()
    layer.set_weights([kernel, bias.astype(np.float32)])


def _targets_for_patches(task: HeadTask, song_ids: np.ndarray, patches: np.ndarray) -> np.ndarray:
    pos = {int(s): i for i, s in enumerate(song_ids)}
    t = task.song_targets(song_ids)
    return t[[pos[int(s)] for s in task.patches.song[patches]]]


def predict_songs(
    model: Any, task: HeadTask, cand: Candidate, song_ids: np.ndarray, max_patches: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Song scores (mean over the capped patches), plus per-patch scores and their song positions."""
    p = task.patches.patches_of(song_ids, max_patches)
    scores = predict_rows(model, task.patches.rows(p, cand.spec.inputs))
    pos = np.repeat(
        np.arange(len(song_ids)),
        [len(select_patches(int(n), max_patches)) for n in task.patches.n_patches(song_ids)],
    )
    sums = np.zeros((len(song_ids), scores.shape[1]), np.float64)
    np.add.at(sums, pos, scores)
    return (sums / np.bincount(pos, minlength=len(song_ids))[:, None]).astype(np.float32), scores, pos


def cv_predictions(
    task: HeadTask,
    cand: Candidate,
    song_ids: np.ndarray,
    k: int,
    sched: Schedule,
    *,
    max_patches: int | None,
    seed: int = SEED,
) -> np.ndarray:
    """Out-of-fold song scores over ``song_ids`` (a stratified ``k``-fold of those songs only)."""
    out = np.zeros((len(song_ids), task.song_targets(song_ids[:1]).shape[1]), np.float32)
    for tr, te in song_folds(task.strata[song_ids], n_folds=k, seed=seed):
        model, _ = fit_head(cand, task, song_ids[tr], sched, seed=seed)
        out[te] = predict_songs(model, task, cand, song_ids[te], max_patches)[0]
    return out


def select(
    task: HeadTask,
    grid: Sequence[Candidate],
    song_ids: np.ndarray,
    *,
    k: int,
    sched: Schedule,
    max_patches: int | None,
    seed: int = SEED,
    on_step: Callable[[], None] = lambda: None,
) -> tuple[Candidate, list[dict[str, Any]]]:
    """Pick the best candidate by ``k``-fold CV on ``song_ids`` alone; also return every candidate's score."""
    y = task.song_targets(song_ids)
    table = []
    for cand in grid:
        pred = cv_predictions(task, cand, song_ids, k, sched, max_patches=max_patches, seed=seed)
        score = task.selection_score(y, pred)
        table.append({"candidate": cand.label, "score": score[0], "tiebreak": score[1]})
        on_step()
    best = max(range(len(grid)), key=lambda i: (table[i]["score"], table[i]["tiebreak"]))
    return grid[best], table


def select_and_train(
    task: HeadTask,
    grid: Sequence[Candidate],
    sched: Schedule,
    *,
    max_patches: int | None,
    k: int = 5,
    seed: int = SEED,
    desc: str = "final selection",
) -> tuple[Candidate, list[dict[str, Any]], Any, dict[str, list[float]]]:
    """The shipped model: select by ``k``-fold CV on *all* songs, then train the winner on all of them."""
    from tqdm import tqdm

    all_ids = np.arange(task.patches.n_songs)
    with tqdm(total=len(grid), desc=desc, unit="cand") as bar:
        chosen, table = select(
            task,
            grid,
            all_ids,
            k=k,
            sched=sched,
            max_patches=max_patches,
            seed=seed,
            on_step=lambda: bar.update(1),
        )
    model, hist = fit_head(chosen, task, all_ids, sched, seed=seed)
    return chosen, table, model, hist


def write_head(model: Any, folder: Path, filename: str, manifest: dict[str, Any]) -> Path:
    """Save a head's weights and its ``manifest.json`` (with the weights' SHA-256) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / filename
    # A fresh, uncompiled copy: Keras 3 would also save the optimizer's slots (3x the size).
    clean = build_head(HeadSpec.from_dict(manifest["head"]))
    clean.set_weights(model.get_weights())
    clean.save_weights(str(weights))
    manifest = {
        **manifest,
        "file": filename,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return weights


@dataclass
class FoldResult:
    fold: int
    chosen: Candidate
    inner_table: list[dict[str, Any]]
    test_songs: np.ndarray
    song_pred: np.ndarray
    patch_pred: np.ndarray
    patch_pos: np.ndarray
    history: dict[str, list[float]]
    seconds: float


def nested_cv(
    task: HeadTask,
    grid: Sequence[Candidate],
    outer: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    inner_k: int,
    sched: Schedule,
    max_patches: int | None,
    seed: int = SEED,
    desc: str = "nested CV",
) -> list[FoldResult]:
    """Per outer fold: select on its training songs (inner CV), train the winner, score the test songs."""
    from tqdm import tqdm

    results = []
    with tqdm(total=len(outer) * len(grid), desc=desc, unit="cand") as bar:
        for i, (tr, te) in enumerate(outer):
            t0 = time.perf_counter()
            chosen, table = select(
                task,
                grid,
                tr,
                k=inner_k,
                sched=sched,
                max_patches=max_patches,
                seed=seed,
                on_step=lambda: bar.update(1),
            )
            model, hist = fit_head(
                chosen, task, tr, sched, seed=seed, val_song_ids=te, max_patches=max_patches
            )
            song_pred, patch_pred, pos = predict_songs(model, task, chosen, te, None)
            if max_patches is not None:
                song_pred = predict_songs(model, task, chosen, te, max_patches)[0]
            bar.set_postfix_str(f"fold {i + 1}: {chosen.label}")
            results.append(
                FoldResult(i, chosen, table, te, song_pred, patch_pred, pos, hist, time.perf_counter() - t0)
            )
    return results


# --- the command line both trainers share -------------------------------------------------------

#: backbone choices → the musicnn backbones a head reads
BACKBONE_SETS: dict[str, tuple[str, ...]] = {"msd": ("msd",), "mtt": ("mtt",), "both": ("msd", "mtt")}


def trainer_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every head trainer takes (each adds its own)."""
    from m2i_engine.models.heads import MAX_PATCHES

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--backbone",
        default="msd",
        choices=list(BACKBONE_SETS),
        help="musicnn backbone of the shipped model (default msd, pre-declared)",
    )
    p.add_argument(
        "--ablations",
        nargs="*",
        choices=list(BACKBONE_SETS),
        metavar="BACKBONE",
        help="also nested-CV these backbones (default: the other two; not shipped)",
    )
    p.add_argument("--skip-cv", action="store_true", help="skip the nested CV (only select, train, ship)")
    p.add_argument("--no-ship", action="store_true", help="do not write the weights")
    p.add_argument(
        "--max-patches",
        type=int,
        default=MAX_PATCHES,
        help=f"patches per song at test/serving time (default {MAX_PATCHES}; 0 = all)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    return p


def run_cv_and_ablations(
    args: argparse.Namespace, task: str, run_cv: Callable[..., dict[str, Any]], timings: dict[str, float]
) -> dict[str, Any] | None:
    """The nested CV of the shipped backbone (unless ``--skip-cv``), then of each ``--ablations`` one."""
    cap = args.max_patches or None
    result = None
    if not args.skip_cv:
        with stopwatch(timings, "nested_cv"):
            result = run_cv(
                BACKBONE_SETS[args.backbone],
                f"{task}_ours",
                f"ours: musicnn-{args.backbone} + head",
                max_patches=cap,
            )
    if args.ablations is not None:
        for name in args.ablations or tuple(BACKBONE_SETS):
            if name != args.backbone:
                with stopwatch(timings, f"ablation_{name}"):
                    run_cv(
                        BACKBONE_SETS[name],
                        f"{task}_ablation_{name}",
                        f"ablation: musicnn-{name} + head",
                        max_patches=cap,
                    )
    return result


# --- linear heads fitted exactly (scikit-learn), shipped in the Keras head format -------------------

#: the backbone's embeddings every linear head reads (optionally with its 50 tag probabilities)
EMBED = ("penultimate", "mean_pool", "max_pool")


@dataclass(frozen=True)
class LRCandidate:
    """One point of a logistic-regression grid: the head's inputs and its inverse L2 strength."""

    inputs: tuple[str, ...]
    C: float

    @property
    def label(self) -> str:
        return f"{'+'.join(self.inputs)} · C {self.C:g}"


def lr_grid(strengths: Sequence[float]) -> list[LRCandidate]:
    """The pre-declared grid: with/without the backbone's 50 tag probabilities x each L2 strength."""
    return [LRCandidate(i, c) for i in (EMBED, (*EMBED, "tags")) for c in strengths]


def fit_patch_lr(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, C: float, tol: float = 1e-4) -> Any:
    """Standardise + L2 multinomial logistic regression on rows (``w``: per-row weights).

    Columns whose spread is tiny next to the others' (dead backbone units) are scaled by a floor,
    1 % of the median spread, not blown up to unit variance: that keeps the shipped float32 head
    equal to this float64 fit instead of amplifying round-off.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    scaler.scale_ = np.maximum(scaler.scale_, 0.01 * float(np.median(scaler.scale_)))
    lr = LogisticRegression(C=C, max_iter=5000, tol=tol)
    lr.fit(scaler.transform(x), y, sample_weight=w / w.mean())
    return make_pipeline(scaler, lr)


def lr_to_head(model: Any, spec: HeadSpec) -> Any:
    """A fitted :func:`fit_patch_lr` pipeline as the linear softmax Keras head of ``spec`` (same maths).

    The classes must be ``0..n_out-1`` in label order; a class absent from training is given a very low
    bias so it is never predicted (its weights stay zero).
    """
    scaler, lr = model[0], model[-1]
    if spec.hidden or spec.activation != "softmax":
        raise ValueError("only a linear softmax head holds a logistic regression")
    head = build_head(spec)
    norm = head.get_layer("standardize")
    mean, var, count = norm.get_weights()
    # scikit-learn's own scale (it leaves constant and near-constant columns unscaled), squared
    var_fit = np.asarray(scaler.scale_, np.float64) ** 2
    norm.set_weights(
        [
            scaler.mean_.reshape(mean.shape).astype(np.float32),
            var_fit.reshape(var.shape).astype(np.float32),
            count,
        ]
    )
    kernel = np.zeros((spec.input_dim, spec.n_out), np.float32)
    bias = np.full(spec.n_out, -30.0, np.float32)
    classes = np.asarray(lr.classes_, int)
    coef, icpt = (lr.coef_, lr.intercept_)
    if len(classes) == 2 and coef.shape[0] == 1:  # binary: scikit-learn keeps one row
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    kernel[:, classes] = coef.T
    bias[classes] = icpt
    head.get_layer("scores").set_weights([kernel, bias])
    return head

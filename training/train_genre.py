"""Train m2i's genre model on three collections, judge it on artists and collections it never saw, ship it.

Steps (one command, fixed seeds; needs ``python -m training.features`` first)::

    python -m training.train_genre              # every evaluation + calibration + ship + report
    python -m training.train_genre --no-ship    # measure only

Training data, all mapped onto GTZAN's ten classes: the GTZAN slice (100 songs, all ten classes),
Emotify's classical, rock and pop songs (300, other artists), and the mer4q clips whose AllMusic genres
name exactly one GTZAN class and no Pop/Rock or Electronic (245 clips by other artists again: jazz,
country, hip-hop ← Rap, blues, reggae, classical) — the *clean* songs — and, for the set-label learner,
also the other mer4q clips whose AllMusic genres allow a set of GTZAN classes (a "Country; Pop/Rock"
clip: country, pop, rock or metal; a Pop/Rock-only clip: pop, rock or metal; 281 clips).

The model is a linear softmax head on the song's mean musicnn-MSD embedding (the mean over the engine's
6 evenly spread 3-s patches; ``HeadSpec(pool="song")``), shipped in the Keras head format. The
pre-declared :data:`GRID` crosses two learners of it with its inputs (with/without the 50 tags) and L2
strength C (0.001, 0.01): the *clean-label* LR (v2's learner: scikit-learn on the clean songs, every class
weighing the same; :func:`training.cv.lr_to_head`) and the *set-label* LR (:func:`fit_set_lr`: loss
−log of the summed probability of the song's allowed classes, same objective scale and standardisation,
every allowed set weighing the same; :func:`set_lr_to_head`). An inner grouped CV on each evaluation's
training songs only picks one, judging every candidate alike: right if the answer is among the song's
allowed classes, on the same folds of all the training songs that have an allowed set.

Evaluations, each beside its baselines in the same folds (v2's clean-label LR with v2's own selection
over :data:`CLEAN_GRID` on the clean training songs; plain logistic regression, scikit-learn defaults,
on song-pooled embeddings of the same clean training songs; the chosen learner on GTZAN alone; and v1,
the previously shipped GTZAN-only head, frozen):

- ``mer4q_artists``: 5 folds of mer4q grouped by artist; the rest of mer4q + GTZAN + Emotify train.
  Scored on the 6-class clips and, as a set, on clips AllMusic files only under Pop/Rock (right when
  the answer is pop, rock or metal).
- ``gtzan_held_out``: GTZAN never trained on (Emotify + mer4q train): GTZAN's 8 reachable classes.
- ``emotify_held_out``: Emotify never trained on (GTZAN + mer4q train): its classical/rock/pop songs.
- ``gtzan_song_cv`` (in-collection, optimistic: GTZAN artists repeat across folds): 5 song-level folds
  of GTZAN with both other collections in training.

Calibration: a temperature fitted to out-of-fold predictions (5-fold grouped CV on the clean songs; the
set-only clips train in the folds that test none of their artist's songs), scored
by ECE and a reliability diagram, cross-fitted; then the confidence floor below which the engine says
"genre uncertain", set to separate music that fits none of the ten classes (Emotify's electronic songs,
mer4q clips AllMusic files only under Electronic) from the training songs; and, that floor kept, a higher
one for songs whose styles include *electronic* (a word none of the ten classes covers), chosen the same
way on the styles each song gets out of fold from the styles trainer's own CV.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from m2i_engine.models.heads import MAX_PATCHES, HeadSpec
from training.common import (
    GTZAN_GENRES,
    REPO,
    SEED,
    artist_folds,
    bootstrap_ci,
    songs,
    stopwatch,
    write_result,
)
from training.cv import (
    EMBED,
    PatchSet,
    fit_patch_lr,
    load_patchset,
    lr_to_head,
    write_head,
)

WEIGHTS_DIR = REPO / "m2i_engine" / "models" / "weights" / "genre"
#: AllMusic's Pop/Rock, read as a set of GTZAN classes (a Pop/Rock-only clip is right as any of them)
POP_ROCK = ("pop", "rock", "metal")
N_CLASSES = len(GTZAN_GENRES)
#: classes only GTZAN has: with GTZAN held out nothing can learn them, so that evaluation leaves them out
ONLY_GTZAN = [GTZAN_GENRES.index("disco"), GTZAN_GENRES.index("metal")]
#: the style word whose presence raises the confidence floor (GTZAN's ten classes have none for it)
STYLE_FLOOR_WORD = "electronic"
#: at most this share of the (out-of-fold) training songs may be called uncertain: the floor's bound
MAX_FLAGGED = 0.25


#: the two learners of the grid (both a linear softmax over the ten classes on the song-mean embedding)
LEARNERS = {
    "clean": "clean-label LR",  # trains on the songs with exactly one clean class (v2's learner)
    "set": "set-label LR",  # also trains on the songs whose label is a set of classes
}


@dataclass(frozen=True)
class GenreCandidate:
    """One point of the pre-declared grid: the learner, the head's inputs and the inverse L2 strength ``C``
    (the same objective scale for both learners: per-row weights of mean 1, penalty ||W||² / 2C)."""

    learner: str
    inputs: tuple[str, ...]
    C: float

    @property
    def label(self) -> str:
        return f"{LEARNERS[self.learner]} · {'+'.join(self.inputs)} · C {self.C:g}"


def head_spec(cand: GenreCandidate) -> HeadSpec:
    """The shipped head of a candidate: linear softmax on the song's mean embedding."""
    return HeadSpec(inputs=cand.inputs, n_out=N_CLASSES, activation="softmax", pool="song")


#: the pre-declared grid: learner x (embeddings, embeddings + the backbone's 50 tags) x C; ties go to the
#: earlier candidate (v2's clean-label learner first)
GRID = [
    GenreCandidate(learner, inputs, c)
    for learner in LEARNERS
    for inputs in (EMBED, (*EMBED, "tags"))
    for c in (1e-3, 1e-2)
]
#: v2's grid and selection (clean-label LR only, judged on the clean songs), kept as a baseline column
CLEAN_GRID = [c for c in GRID if c.learner == "clean"]


@dataclass
class Pool:
    """Every song of the three collections, one row each, with what the evaluations need to know."""

    collection: np.ndarray  # "gtzan" | "emotify" | "mer4q"
    label: np.ndarray  # GTZAN class index of a training song, -1 when it has no single clean class
    group: np.ndarray  # artist for mer4q, the song itself elsewhere (no artist data)
    pop_rock: np.ndarray  # mer4q clip AllMusic files under Pop/Rock and no GTZAN class
    allowed: np.ndarray  # (songs, 10): classes that count as right (a clip's AllMusic genres, as a set)
    no_fit: np.ndarray  # music that fits none of the ten classes (electronic only)
    patches: dict[str, PatchSet]
    local: np.ndarray  # song index inside its collection's PatchSet
    _song_x: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls) -> Pool:
        cols, labels, groups, pr, nf, local, allowed = [], [], [], [], [], [], []
        for ds in ("gtzan", "emotify", "mer4q"):
            for i, s in enumerate(songs(ds)):
                cols.append(ds)
                local.append(i)
                am = set(s.allmusic_genres)
                # a mer4q clip trains its class only when AllMusic names no Pop/Rock or Electronic beside it
                # (a "Country; Pop/Rock" clip is as much pop as country); it is *scored* on the whole set
                clean = ds != "mer4q" or not am & {"Pop/Rock", "Electronic"}
                labels.append(GTZAN_GENRES.index(s.genre) if s.genre in GTZAN_GENRES and clean else -1)
                ok = np.zeros(N_CLASSES, bool)
                if s.genre in GTZAN_GENRES:
                    ok[GTZAN_GENRES.index(s.genre)] = True
                if ds == "mer4q" and "Pop/Rock" in am:
                    ok[[GTZAN_GENRES.index(g) for g in POP_ROCK]] = True
                allowed.append(ok)
                groups.append(f"mer4q:{s.artist}" if ds == "mer4q" else f"{ds}:{s.track}")
                pr.append(ds == "mer4q" and not s.genre and am == {"Pop/Rock"})
                nf.append(
                    (ds == "emotify" and s.genre == "electronic") or (ds == "mer4q" and am == {"Electronic"})
                )
        return cls(
            np.array(cols),
            np.array(labels),
            np.array(groups),
            np.array(pr),
            np.stack(allowed),
            np.array(nf),
            {ds: load_patchset(ds) for ds in ("gtzan", "emotify", "mer4q")},
            np.array(local),
        )

    def labelled(self, collections: Sequence[str]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.collection, collections) & (self.label >= 0))

    def with_set(self, collections: Sequence[str]) -> np.ndarray:
        """Songs with an allowed set of classes (the clean ones and mer4q's mixed / Pop/Rock clips)."""
        return np.flatnonzero(np.isin(self.collection, collections) & self.allowed.any(1))

    def signature(self, ids: np.ndarray) -> np.ndarray:
        """Each song's allowed set as a string (one class name for a clean song)."""
        return np.array(["+".join(np.array(GTZAN_GENRES)[self.allowed[i]]) for i in ids])

    def add_song_features(self, name: str, x: np.ndarray) -> tuple[str]:
        """Register a song-level matrix (one row per pool song) as the input ``(name,)`` of a candidate:
        for studies of inputs the engine's heads do not compute (:mod:`training.genre_ceiling`)."""
        if len(x) != len(self.collection):
            raise ValueError(f"{name}: {len(x)} rows for {len(self.collection)} songs")
        self._song_x[(name,)] = np.asarray(x)
        return (name,)

    def song_x(self, ids: np.ndarray, inputs: Sequence[str]) -> np.ndarray:
        """Each song's mean embedding over the engine's patches (at most 6, evenly spread)."""
        key = tuple(inputs)
        if key not in self._song_x:
            rows = []
            for ds, j in zip(self.collection, self.local, strict=True):
                ps = self.patches[ds]
                rows.append(ps.rows(ps.patches_of([int(j)], MAX_PATCHES), inputs).mean(0))
            self._song_x[key] = np.stack(rows)
        return self._song_x[key][ids]


# ----------------------------------------------------------------------------------------------- learners


@dataclass
class SetLR:
    """A fitted set-label softmax regression: ``p = softmax(((x - mean) / scale) @ coef.T + intercept)``
    over ``classes`` (the classes some training song allows; the others get 0)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (classes, dim)
    intercept: np.ndarray  # (classes,)
    classes_: np.ndarray
    converged: bool
    iterations: int

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


def fit_set_lr(x: np.ndarray, allowed: np.ndarray, w: np.ndarray, *, C: float, gtol: float = 1e-7) -> SetLR:
    """Linear softmax regression on set-valued labels: minimise, by L-BFGS with the analytic gradient,

        sum_i w_i * -log(sum of p_i over the classes row i allows) + ||W||² / 2C

    with ``w`` rescaled to mean 1 and the intercept not penalised: scikit-learn's L2 multinomial
    logistic regression (:func:`training.cv.fit_patch_lr`) when every set has one class, on the same
    standardisation (spreads floored at 1 % of the median spread).
    """
    from scipy.optimize import minimize
    from scipy.special import logsumexp
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)  # as fit_patch_lr: constant columns unscaled, then the 1 % floor
    mean = np.asarray(scaler.mean_, np.float64)
    scale = np.asarray(scaler.scale_, np.float64)
    scale = np.maximum(scale, 0.01 * float(np.median(scale)))
    xs = (np.asarray(x, np.float64) - mean) / scale
    classes = np.flatnonzero(allowed.any(0))
    a = allowed[:, classes]
    n = len(xs)
    k = len(classes)
    w = np.asarray(w, np.float64) / np.mean(w) / n  # mean 1, and the objective divided by n
    # the optimal W lies in the span of the rows (the penalty is zero only off it): solve for W = V @ B
    # on the rows' coordinates U·S in that span (the same optimum; fewer unknowns when rows < columns)
    u, sv, vt = np.linalg.svd(xs, full_matrices=False)
    keep = sv > sv[0] * 1e-10
    us, v = u[:, keep] * sv[keep], vt[keep].T
    r_dim = us.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        B, b = theta[: r_dim * k].reshape(r_dim, k), theta[r_dim * k :]
        z = us @ B + b
        log_all = logsumexp(z, axis=1)
        log_set = logsumexp(np.where(a, z, -np.inf), axis=1)
        loss = float(w @ (log_all - log_set)) + 0.5 / (C * n) * float((B**2).sum())
        g = (np.exp(z - log_all[:, None]) - np.where(a, np.exp(z - log_set[:, None]), 0.0)) * w[:, None]
        return loss, np.concatenate([(us.T @ g + B / (C * n)).ravel(), g.sum(0)])

    r = minimize(
        objective,
        np.zeros(r_dim * k + k),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "maxfun": 10000, "gtol": gtol, "ftol": 1e-12},
    )
    W, b = v @ r.x[: r_dim * k].reshape(r_dim, k), r.x[r_dim * k :]
    return SetLR(mean, scale, W.T.copy(), b.copy(), classes, bool(r.success), int(r.nit))


def set_lr_to_head(model: SetLR, spec: HeadSpec) -> Any:
    """A fitted :class:`SetLR` as the linear softmax Keras head of ``spec`` (same maths as
    :func:`training.cv.lr_to_head`: the scaler in ``standardize``, absent classes at bias -30)."""
    from m2i_engine.models.heads import build_head

    if spec.hidden or spec.activation != "softmax":
        raise ValueError("only a linear softmax head holds a softmax regression")
    head = build_head(spec)
    norm = head.get_layer("standardize")
    mean, var, count = norm.get_weights()
    norm.set_weights(
        [
            model.mean.reshape(mean.shape).astype(np.float32),
            (model.scale**2).reshape(var.shape).astype(np.float32),
            count,
        ]
    )
    kernel = np.zeros((spec.input_dim, spec.n_out), np.float32)
    bias = np.full(spec.n_out, -30.0, np.float32)
    kernel[:, model.classes_] = model.coef.T
    bias[model.classes_] = model.intercept
    head.get_layer("scores").set_weights([kernel, bias])
    return head


def to_head(model: Any, spec: HeadSpec) -> Any:
    return set_lr_to_head(model, spec) if isinstance(model, SetLR) else lr_to_head(model, spec)


def fit(pool: Pool, cand: GenreCandidate, train: np.ndarray) -> Any:
    """Fit ``cand`` on the training songs ``train``: the clean-label learner uses those with one clean
    class (every class weighs the same), the set-label learner every one with an allowed set (every
    allowed set weighs the same; a clean song's set is its class)."""
    if cand.learner == "clean":
        ids = train[pool.label[train] >= 0]
        y = pool.label[ids]
        w = 1.0 / np.bincount(y, minlength=N_CLASSES)[y]
        return fit_patch_lr(pool.song_x(ids, cand.inputs), y, w, C=cand.C, tol=1e-3)
    ids, w = set_rows(pool, train)
    return fit_set_lr(pool.song_x(ids, cand.inputs), pool.allowed[ids], w, C=cand.C)


def set_rows(pool: Pool, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The set-label learners' rows: the training songs with an allowed set, and their weights (every
    allowed set weighs the same)."""
    ids = train[pool.allowed[train].any(1)]
    _, inv, cnt = np.unique(pool.signature(ids), return_inverse=True, return_counts=True)
    return ids, 1.0 / cnt[inv]


def predict(model: Any, pool: Pool, cand: GenreCandidate, ids: np.ndarray) -> np.ndarray:
    """Song probabilities over all ten classes; classes absent from training get 0."""
    out = np.zeros((len(ids), N_CLASSES))
    classes = model.classes_ if isinstance(model, SetLR) else model[-1].classes_
    out[:, classes] = model.predict_proba(pool.song_x(ids, cand.inputs))
    return out


def grouped_folds(pool: Pool, ids: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds of ``ids`` grouped by artist (mer4q) and stratified by class (index into ``ids``)."""
    return artist_folds(pool.label[ids].astype(str), pool.group[ids], n_folds=k)


def select(
    pool: Pool, train: np.ndarray, k: int = 3, grid: Sequence[GenreCandidate] = GRID
) -> tuple[GenreCandidate, list[dict[str, Any]]]:
    """The candidate of ``grid`` with the best grouped ``k``-fold song accuracy on ``train`` alone.

    Every candidate is judged alike: on the same folds of the training songs that have an allowed set,
    a song right when the answer is among its allowed classes (for a clean song: its class). With only
    clean songs in ``train`` (``CLEAN_GRID``) this is v2's selection exactly."""
    train = train[pool.allowed[train].any(1)]
    folds = grouped_folds(pool, train, k)
    table: list[dict[str, Any]] = []
    for cand in grid:
        hits = []
        for tr, te in folds:
            pred = predict(fit(pool, cand, train[tr]), pool, cand, train[te]).argmax(1)
            hits.append(pool.allowed[train[te], pred])
        table.append({"candidate": cand.label, "acc": float(np.concatenate(hits).mean())})
    best = max(range(len(grid)), key=lambda i: table[i]["acc"])
    return grid[best], table


def pooled_lr(pool: Pool, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Baseline: plain logistic regression (scikit-learn defaults) on each song's mean embedding."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = train[pool.label[train] >= 0]
    m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    m.fit(pool.song_x(train, EMBED), pool.label[train])
    out = np.zeros((len(test), N_CLASSES))
    out[:, m[-1].classes_] = m.predict_proba(pool.song_x(test, EMBED))
    return out


def v1_head(pool: Pool, test: np.ndarray) -> np.ndarray:
    """Baseline: the previously shipped GTZAN-only head (v1), frozen, as the engine ran it."""
    from m2i_engine.models.npnet import NumpyHead

    folder = REPO / "training" / "reports" / "results" / "genre_v1"
    head = NumpyHead(folder / "genre_head.weights.h5", "softmax")
    out = np.zeros((len(test), N_CLASSES))
    for k, i in enumerate(test):  # v1 scores every patch and averages, as the engine ran it
        ps = pool.patches[pool.collection[i]]
        out[k] = head(ps.rows(ps.patches_of([int(pool.local[i])], MAX_PATCHES), EMBED)).mean(0)
    return out


# ----------------------------------------------------------------------------------------------- evaluations


def score(pool: Pool, ids: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """``acc``: the answer is one of the song's classes (its AllMusic genres as a set, for mer4q), with
    ``ci`` its 95 % bootstrap interval;
    ``exact``/``per_class``: the training-clean single-class songs; ``pop_rock_set_acc``: Pop/Rock-only."""
    pred = probs.argmax(1)
    lab = pool.label[ids]
    allowed = pool.allowed[ids]
    out: dict[str, Any] = {"n": len(ids)}
    hits = allowed[np.arange(len(ids)), pred]
    out["acc"] = float(np.mean(hits))
    out["ci"] = list(bootstrap_ci(hits, pool.group[ids]))  # artists resampled (mer4q), songs elsewhere
    has = lab >= 0
    if has.any():
        out["exact"] = float(np.mean(pred[has] == lab[has]))
        out["n_exact"] = int(has.sum())
        out["per_class"] = {GTZAN_GENRES[c]: float(np.mean(pred[lab == c] == c)) for c in np.unique(lab[has])}
    pr = pool.pop_rock[ids]
    if pr.any():
        ok = np.isin(pred[pr], [GTZAN_GENRES.index(g) for g in POP_ROCK])
        out["pop_rock_set_acc"] = float(ok.mean())
        out["n_pop_rock"] = int(pr.sum())
    return out


def evaluation(
    pool: Pool, name: str, splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    """Ours + baselines on ``splits`` = [(train, test, GTZAN-only train)] song ids; test songs pooled."""
    test_all = np.concatenate([te for _, te, _ in splits])
    probs: dict[str, np.ndarray] = {k: np.zeros((len(test_all), N_CLASSES)) for k in MODELS}
    chosen = []
    at = 0
    for tr, te, tr_gtzan in splits:
        assert not set(pool.group[te]) & set(pool.group[tr])
        sl = slice(at, at + len(te))
        cand, table = select(pool, tr)
        clean, clean_table = select(pool, tr[pool.label[tr] >= 0], grid=CLEAN_GRID)
        chosen.append(
            {"chosen": cand.label, "inner": table, "clean_chosen": clean.label, "clean_inner": clean_table}
        )
        probs["ours"][sl] = predict(fit(pool, cand, tr), pool, cand, te)
        probs["clean_lr"][sl] = predict(fit(pool, clean, tr), pool, clean, te)
        probs["pooled_lr"][sl] = pooled_lr(pool, tr, te)
        if len(tr_gtzan):
            probs["gtzan_only"][sl] = predict(fit(pool, cand, tr_gtzan), pool, cand, te)
        else:
            probs["gtzan_only"][sl] = np.nan
        probs["v1"][sl] = v1_head(pool, te)
        at += len(te)
    out = {
        "name": name,
        "test": test_all,
        "chosen": chosen,
        "models": {
            k: (score(pool, test_all, p) if not np.isnan(p).any() else None) for k, p in probs.items()
        },
        "probs": {k: p.round(4) for k, p in probs.items() if not np.isnan(p).any()},
    }
    if name.startswith("gtzan"):  # v1 was trained on these very songs: not a held-out score
        out["models"]["v1"] = None
        out["probs"].pop("v1")
    return out


MODELS = {
    "ours": "ours: three collections, linear head on the song-mean embedding (nested selection, GRID)",
    "clean_lr": "v2's learner: clean-label LR with v2's own nested selection (CLEAN_GRID, clean songs)",
    "pooled_lr": "baseline: plain logistic regression, pooled embeddings, same training songs",
    "gtzan_only": "baseline: the same learner on the GTZAN slice alone",
    "v1": "baseline: v1, the previously shipped GTZAN-only head (frozen)",
}


def evaluation_plan(pool: Pool) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Each evaluation's splits, ``[(train, test, GTZAN-only train)]`` song ids (the same for every study
    of these songs, e.g. :mod:`training.genre_ceiling`)."""
    # training songs are every song with an allowed set (each learner takes the rows it can use);
    # mer4q's mixed and Pop/Rock-only clips are training songs only where their artist is
    g, e, m = (pool.with_set([c]) for c in ("gtzan", "emotify", "mer4q"))
    splits = []
    for _tr, te in grouped_folds(pool, m, 5):
        test = m[te]
        train = np.concatenate([g, e, np.setdiff1d(m, test)])
        splits.append((train, test, g))
    return {
        "mer4q_artists": splits,
        "gtzan_held_out": [
            (np.concatenate([e, m]), g[~np.isin(pool.label[g], ONLY_GTZAN)], np.array([], int))
        ],
        "emotify_held_out": [(np.concatenate([g, m]), e, g)],
        "gtzan_song_cv": [
            (np.concatenate([g[tr], e, m]), g[te], g[tr]) for tr, te in grouped_folds(pool, g, 5)
        ],
    }


def evaluations(pool: Pool) -> dict[str, Any]:
    from tqdm import tqdm

    res = {}
    for name, sp in tqdm(evaluation_plan(pool).items(), desc="genre evaluations", unit="eval"):
        t0 = time.perf_counter()
        res[name] = evaluation(pool, name, sp)
        res[name]["seconds"] = round(time.perf_counter() - t0, 1)
    return res


# ----------------------------------------------------------------------------------------------- calibration


def _nll_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(probs, 1e-9, 1.0))

    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(1, keepdims=True)
        return float(-np.mean(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))))

    return float(minimize_scalar(nll, bounds=(0.2, 10.0), method="bounded").x)


def temper(probs: np.ndarray, t: float) -> np.ndarray:
    """The engine's calibration: softmax(log p / T)."""
    z = np.log(np.clip(probs, 1e-9, 1.0)) / t
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, float]]]:
    conf, hit = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    table, total = [], 0.0
    for lo, hi in pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs(conf[sel].mean() - hit[sel].mean())
            table.append(
                {
                    "lo": lo,
                    "hi": hi,
                    "n": int(sel.sum()),
                    "conf": float(conf[sel].mean()),
                    "acc": float(hit[sel].mean()),
                }
            )
    return float(total), table


def calibration(pool: Pool, cand: GenreCandidate) -> dict[str, Any]:
    """Out-of-fold probabilities of all labelled songs + the no-fit songs; temperature, ECE, floor.

    The folds are those of the labelled (clean single-class) songs; the set-only songs (mer4q's mixed
    and Pop/Rock-only clips) train in every fold that tests none of their artist's songs."""
    lab = np.flatnonzero(pool.label >= 0)
    set_only = np.flatnonzero(pool.allowed.any(1) & (pool.label < 0))
    nofit = np.flatnonzero(pool.no_fit)
    oof = np.zeros((len(lab), N_CLASSES))
    nofit_p = np.zeros((len(nofit), N_CLASSES))
    folds = grouped_folds(pool, lab, 5)
    for tr, te in folds:
        extra = set_only[~np.isin(pool.group[set_only], pool.group[lab[te]])]
        model = fit(pool, cand, np.concatenate([lab[tr], extra]))
        oof[te] = predict(model, pool, cand, lab[te])
        nofit_p += predict(model, pool, cand, nofit) / len(folds)
    y = pool.label[lab]
    # cross-fitted temperature: fitted on four folds' songs, applied to the fifth
    cal = np.zeros_like(oof)
    for tr, te in folds:
        cal[te] = temper(oof[te], _nll_temperature(oof[tr], y[tr]))
    t_all = _nll_temperature(oof, y)
    before, rel_before = ece(oof, y)
    after, rel_after = ece(cal, y)
    # the floor: the calibrated top score that best separates no-fit songs (below) from labelled ones
    # (above), among floors that call at most MAX_FLAGGED of the labelled songs uncertain
    top_in, top_out = temper(oof, t_all).max(1), temper(nofit_p, t_all).max(1)
    grid = [c for c in np.round(np.arange(0.2, 0.95, 0.01), 2) if np.mean(top_in < c) <= MAX_FLAGGED]
    bal = [(np.mean(top_out < c) + np.mean(top_in >= c)) / 2 for c in grid]
    floor = float(grid[int(np.argmax(bal))])
    # then, that floor kept, a higher one for songs whose styles say electronic (GTZAN's ten classes have
    # no word for it): the same criterion and bound, on the styles each song gets out of fold
    fires_in, fires_out = (style_fires(pool, STYLE_FLOOR_WORD)[ids] for ids in (lab, nofit))

    def flagged(top: np.ndarray, fires: np.ndarray, style_floor: float) -> np.ndarray:
        return (top < floor) | (fires & (top < style_floor))

    grid_s = [
        c
        for c in np.round(np.arange(floor, 0.995, 0.01), 2)
        if np.mean(flagged(top_in, fires_in, c)) <= MAX_FLAGGED
    ]
    bal_s = [
        (np.mean(flagged(top_out, fires_out, c)) + np.mean(~flagged(top_in, fires_in, c))) / 2 for c in grid_s
    ]
    style_floor = float(grid_s[int(np.argmax(bal_s))])
    hit = oof.argmax(1) == y

    def summary(flag_in: np.ndarray, flag_out: np.ndarray) -> dict[str, Any]:
        return {
            "nofit_flagged": float(np.mean(flag_out)),
            "labelled_flagged": float(np.mean(flag_in)),
            "acc_confident": float(hit[~flag_in].mean()),
            "acc_flagged": float(hit[flag_in].mean()) if flag_in.any() else None,
        }

    return {
        "temperature": t_all,
        "ece_before": before,
        "ece_after_crossfit": after,
        "reliability_before": rel_before,
        "reliability_after": rel_after,
        "min_confidence": floor,
        "style_floors": {STYLE_FLOOR_WORD: style_floor},
        # the rule the engine applies (both floors), and the confidence floor alone beside it
        **summary(flagged(top_in, fires_in, style_floor), flagged(top_out, fires_out, style_floor)),
        "floor_only": summary(top_in < floor, top_out < floor),
        "style_fires": {"labelled": float(fires_in.mean()), "nofit": float(fires_out.mean())},
        "acc_all": float(hit.mean()),
        "n_nofit": len(nofit),
        "nofit_closest": np.bincount(nofit_p.argmax(1), minlength=N_CLASSES).tolist(),
    }


def style_fires(pool: Pool, word: str) -> np.ndarray:
    """Per song of ``pool``: whether ``word`` is among the styles the styles trainer gives it out of fold
    (thresholds and detector fit without the song's fold: :func:`training.train_styles.out_of_fold`)."""
    from training import train_styles

    sp = train_styles.load_pool()
    styles, _, _, _ = train_styles.out_of_fold(sp, train_styles.folds(sp))
    at = {(s.dataset, s.track): i for i, s in enumerate(sp.songs)}
    order = [at[(s.dataset, s.track)] for ds in ("gtzan", "emotify", "mer4q") for s in songs(ds)]
    if len(order) != len(pool.collection):
        raise RuntimeError("the styles pool and the genre pool hold different songs")
    return np.array([word in styles[i] for i in order])


# ----------------------------------------------------------------------------------------------- ship


def ship(pool: Pool, cap: int | None) -> dict[str, Any]:
    from m2i_engine.models.npnet import NumpyHead

    all_ids = np.flatnonzero(pool.allowed.any(1))
    cand, table = select(pool, all_ids, k=5)
    model = fit(pool, cand, all_ids)
    cal = calibration(pool, cand)
    used = all_ids if cand.learner == "set" else all_ids[pool.label[all_ids] >= 0]
    counts = {c: int(n) for c, n in zip(*np.unique(pool.collection[used], return_counts=True), strict=True)}
    n_set = int((pool.label[used] < 0).sum())
    if cand.learner == "set":
        data = (
            f"GTZAN slice ({counts.get('gtzan', 0)}), Emotify classical/rock/pop "
            f"({counts.get('emotify', 0)}), mer4q clips with a GTZAN class or Pop/Rock among their "
            "AllMusic genres "
            f"({counts.get('mer4q', 0)}; {n_set} of them set-labelled, e.g. Pop/Rock = pop, rock or metal); "
            "every allowed set weighted equally"
        )
        how = (
            f"set-label softmax regression (loss -log of the allowed classes' probability, L2 C={cand.C:g}, "
            "scipy L-BFGS) on the song's mean embedding"
        )
    else:
        data = (
            f"GTZAN slice ({counts.get('gtzan', 0)}), Emotify classical/rock/pop "
            f"({counts.get('emotify', 0)}), mer4q single-class AllMusic clips "
            f"({counts.get('mer4q', 0)}); classes weighted equally"
        )
        how = f"scikit-learn LogisticRegression(C={cand.C:g}) on the song's mean embedding"
    manifest = {
        "task": "genre",
        "name": "genre-musicnn-head",
        "version": "3" if cand.learner == "set" else "2",  # v2: the clean-label recipe
        "labels": list(GTZAN_GENRES),
        "format": "keras-musicnn-head",
        "backbones": {"msd": "musicnn_msd"},
        "max_patches": cap,
        "head": head_spec(cand).to_dict(),
        "calibration": {
            "temperature": round(cal["temperature"], 4),
            "min_confidence": cal["min_confidence"],
            "style_floors": cal["style_floors"],
            "rule": "scores = softmax(log p / temperature); uncertain when the top score is below "
            "min_confidence, or below style_floors[w] when the song's styles include the word w",
        },
        "training": {
            "data": data,
            "fit": how,
            "candidate": cand.label,
            "selected_by": "5-fold CV grouped by artist (mer4q) over the pre-declared grid, right if "
            "among the song's allowed classes",
            "selection_score": max(r["acc"] for r in table),
            "seed": SEED,
            "report": "training/reports/genre.md",
            "script": "python -m training.train_genre",
        },
        "licence": "Trained on GTZAN/Emotify/4Q (research collections); see the data README.",
    }
    weights = write_head(to_head(model, head_spec(cand)), WEIGHTS_DIR, "genre_head.weights.h5", manifest)
    x_ids = all_ids[np.linspace(0, len(all_ids) - 1, 60).round().astype(int)]
    diff = float(
        np.abs(
            NumpyHead(weights, "softmax")(pool.song_x(x_ids, cand.inputs)) - predict(model, pool, cand, x_ids)
        ).max()
    )
    if diff > 1e-5:
        raise RuntimeError(f"shipped head disagrees with the fitted model by {diff:.2e}")
    out = {
        "chosen": cand.label,
        "learner": cand.learner,
        "version": manifest["version"],
        "converged": getattr(model, "converged", True),
        "table": table,
        "calibration": cal,
        "train_counts": counts,
        "max_abs_diff_numpy_vs_fit": diff,
        "weights_bytes": weights.stat().st_size,
    }
    write_result("genre_shipped", out)
    return out


def keep_v1() -> None:
    """Keep the v1 head (GTZAN-only) beside the results once, as the frozen baseline, before shipping v2."""
    import json
    import shutil

    dest = REPO / "training" / "reports" / "results" / "genre_v1"
    if (dest / "genre_head.weights.h5").is_file():
        return
    man = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
    if man.get("version") != "1":
        raise FileNotFoundError(f"{dest} is missing and the shipped head is not v1: restore it from git")
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("manifest.json", "genre_head.weights.h5"):
        shutil.copy2(WEIGHTS_DIR / f, dest / f)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train_genre", description=__doc__.split("\n\n")[0])
    p.add_argument("--no-ship", action="store_true", help="measure only; do not write the weights")
    args = p.parse_args(argv)
    np.random.seed(SEED)
    keep_v1()
    timings: dict[str, float] = {}
    pool = Pool.load()
    with stopwatch(timings, "evaluations"):
        res = evaluations(pool)
    for name, r in res.items():
        print(
            name,
            {
                k: (None if v is None else round(v.get("acc", float("nan")), 3))
                for k, v in r["models"].items()
            },
        )
    write_result(
        "genre_across",
        {
            **res,
            "labels": list(GTZAN_GENRES),
            "pool_label": pool.label,
            "pool_collection": pool.collection,
            "pool_pop_rock": pool.pop_rock,
        },
    )
    final = None
    if not args.no_ship:
        with stopwatch(timings, "ship"):
            final = ship(pool, MAX_PATCHES)
        print(
            "shipped:", final["chosen"], {k: v for k, v in final["calibration"].items() if "reliab" not in k}
        )
    print("timings (s):", timings)
    from training.genre_report import report

    print("report:", report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train m2i's emotion model — GEMS-9 listener fractions from musicnn embeddings — measure it, and ship it.

Steps (one command, fixed seeds)::

    python -m training.train_emotion               # nested CV + ship + checks (~15 min on 2 cores)
    python -m training.train_emotion --ablations   # also MTT and MSD+MTT backbones (CV only)
    python -m training.train_emotion --skip-cv     # only select on all songs, train, ship

The target is the *fraction of listeners* who chose each of the nine GEMS emotions for an Emotify
excerpt (multi-label, soft): a sigmoid output per emotion trained with binary cross-entropy against
the fractions. Every 3-s patch of a song is a training row with the song's fractions; a song's
prediction is the mean over its (at most ``max_patches``) patches.

1. Nested song-level CV on the 400 Emotify songs (5 outer folds stratified by Emotify genre, the
   same folds as ``training.baselines``; 4-fold inner selection over :data:`GRID`), scored per
   emotion: Pearson r and R² of predicted vs true fractions, ROC-AUC for "chosen by ≥ 30 % of
   listeners", and the valence/arousal reading derived from the fractions.
2. The shipped model: selection by 5-fold CV on all 400 songs, the winner trained on all of them →
   ``m2i_engine/models/weights/emotion/``.
3. Out-of-collection look: the shipped model on the 100 GTZAN songs (no emotion ground truth there:
   mean predicted fractions and valence/arousal per GTZAN genre, a plausibility check).
4. ``training/reports/emotion.md``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np

from m2i_engine.models.heads import HeadSpec
from training.common import (
    GEMS,
    GTZAN_GENRES,
    REPO,
    SEED,
    emotion_fold_metrics,
    limit_threads,
    pearson,
    set_seeds,
    song_folds,
    stopwatch,
    valence_arousal,
    write_result,
)
from training.cv import (
    BACKBONE_SETS,
    Candidate,
    HeadTask,
    PatchSet,
    Schedule,
    load_patchset,
    nested_cv,
    predict_songs,
    run_cv_and_ablations,
    select_and_train,
    trainer_parser,
    write_head,
)
from training.features import load_seed

WEIGHTS_DIR = REPO / "m2i_engine" / "models" / "weights" / "emotion"
SCHEDULE = Schedule(epochs=15, batch_size=256, lr=3e-3)


def grid(backbones: Sequence[str] = ("msd",)) -> list[Candidate]:
    """The pre-declared grid (12 candidates): inputs x linear/MLP x L2."""

    def names(*outs: str) -> tuple[str, ...]:
        if len(backbones) == 1:
            return outs
        return tuple(f"{b}:{o}" for b in backbones for o in outs)

    inputs = (names("penultimate"), names("penultimate", "mean_pool", "max_pool"))
    return [
        Candidate(HeadSpec(inputs=i, n_out=len(GEMS), activation="sigmoid", hidden=h, l2=l2))
        for i, h, l2 in product(inputs, (0, 256), (3e-4, 3e-3, 3e-2))
    ]


GRID = grid()


class EmotionTask(HeadTask):
    """Emotify: nine soft targets per song (listener fractions)."""

    loss = "binary_crossentropy"

    def __init__(self, patches: PatchSet, genres: np.ndarray, fractions: np.ndarray) -> None:
        self.name = "emotion"
        self.patches = patches
        self.strata = np.asarray(genres)
        self.fractions = np.asarray(fractions, np.float32)

    def song_targets(self, song_ids: np.ndarray) -> np.ndarray:
        return self.fractions[song_ids]

    def training_rows(
        self, cand: Candidate, song_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.patches.patches_of(song_ids)
        s = self.patches.song[p]
        w = 1.0 / self.patches.n_patches(s)
        return self.patches.rows(p, cand.spec.inputs), self.fractions[s], (w / w.mean()).astype(np.float32)

    def selection_score(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
        r = [pearson(y_true[:, j], y_pred[:, j]) for j in range(y_true.shape[1])]
        return float(np.nanmean(r)), -float(np.mean((y_true - y_pred) ** 2))


def make_task(backbones: Sequence[str]) -> EmotionTask:
    em = load_seed("emotify")
    return EmotionTask(load_patchset("emotify", backbones), em["genre"], em["emotions"])


def run_cv(backbones: Sequence[str], name: str, title: str, *, max_patches: int | None) -> dict[str, Any]:
    task = make_task(backbones)
    outer = song_folds(task.strata)
    t0 = time.perf_counter()
    results = nested_cv(
        task,
        grid(backbones),
        outer,
        inner_k=4,
        sched=SCHEDULE,
        max_patches=max_patches,
        desc=f"emotion CV ({'+'.join(backbones)})",
    )
    folds = []
    for r in results:
        m = emotion_fold_metrics(task.fractions[r.test_songs], r.song_pred)
        folds.append(
            {
                "fold": r.fold,
                "chosen": r.chosen.label,
                "seconds": round(r.seconds, 1),
                "inner_best": max(t["score"] for t in r.inner_table),
                **m,
            }
        )
    out = {
        "task": "emotion",
        "name": name,
        "title": title,
        "labels": list(GEMS),
        "max_patches": max_patches,
        "protocol": f"nested CV: 5 outer song-level folds stratified by genre (seed {SEED}), 4-fold inner",
        "folds": folds,
        "song_track": np.concatenate([r.test_songs for r in results]).tolist(),
        "song_pred": np.concatenate([r.song_pred for r in results]).round(4).tolist(),
        "histories": [r.history for r in results],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_result(name, out)
    return out


def ship(backbones: Sequence[str], *, max_patches: int | None) -> tuple[dict[str, Any], Any]:
    task = make_task(backbones)
    chosen, table, model, hist = select_and_train(
        task, grid(backbones), SCHEDULE, max_patches=max_patches, desc="emotion final selection"
    )
    manifest = {
        "task": "emotion",
        "name": "emotion-musicnn-head",
        "version": "1",
        "labels": list(GEMS),
        "format": "keras-musicnn-head",
        "backbones": {b: f"musicnn_{b}" for b in backbones},
        "max_patches": max_patches,
        "head": chosen.spec.to_dict(),
        "scores_are": "predicted fraction of listeners who would choose each GEMS emotion (0..1)",
        "training": {
            "data": "Emotify (400 one-minute excerpts, GEMS-9 listener fractions, all songs)",
            "selected_by": "5-fold song-level CV on all training songs over the pre-declared grid",
            "selection_score": max(r["score"] for r in table),
            "seed": SEED,
            "epochs": SCHEDULE.epochs,
            "batch_size": SCHEDULE.batch_size,
            "lr": SCHEDULE.lr,
            "report": "training/reports/emotion.md",
            "script": "python -m training.train_emotion",
        },
        "licence": "Trained on Emotify (non-commercial research collection); see the data README.",
    }
    weights = write_head(model, WEIGHTS_DIR, "emotion_head.weights.h5", manifest)
    out = {
        "task": "emotion",
        "chosen": chosen.label,
        "spec": chosen.spec.to_dict(),
        "table": table,
        "history": hist,
        "weights_bytes": weights.stat().st_size,
    }
    write_result("emotion_final", out)
    return out, (model, chosen)


def out_of_collection(
    model: Any, chosen: Candidate, backbones: Sequence[str], *, max_patches: int | None
) -> dict[str, Any]:
    """The shipped model on GTZAN (never seen in training): mean fractions and valence/arousal per genre."""
    gt = load_seed("gtzan")
    gtask = EmotionTask(
        load_patchset("gtzan", backbones), gt["genre"], np.zeros((len(gt["genre"]), len(GEMS)), np.float32)
    )
    pred = predict_songs(model, gtask, chosen, np.arange(len(gt["genre"])), max_patches)[0]
    va = valence_arousal(pred)
    per_genre = {}
    for g in GTZAN_GENRES:
        sel = gt["genre"] == g
        per_genre[g] = {
            "fractions": dict(zip(GEMS, pred[sel].mean(0).round(3).tolist(), strict=True)),
            "valence": round(float(va[sel, 0].mean()), 3),
            "arousal": round(float(va[sel, 1].mean()), 3),
        }
    out = {
        "task": "emotion",
        "data": "GTZAN 100-song slice (not used to train the emotion model)",
        "per_genre": per_genre,
        "track": gt["track"].tolist(),
        "pred": pred.round(4).tolist(),
    }
    write_result("emotion_ooc", out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = trainer_parser("python -m training.train_emotion", __doc__.split("\n\n")[0])
    args = p.parse_args(argv)
    limit_threads(args.threads)
    set_seeds(SEED)
    cap = args.max_patches or None
    backbones = BACKBONE_SETS[args.backbone]
    timings: dict[str, float] = {}
    r = run_cv_and_ablations(args, "emotion", run_cv, timings)
    if r is not None:
        print("ours: mean r per fold", [round(f["mean"]["r"], 3) for f in r["folds"]])
    if not args.no_ship:
        with stopwatch(timings, "ship"):
            final, (model, chosen) = ship(backbones, max_patches=cap)
        print("shipped:", final["chosen"])
        with stopwatch(timings, "out_of_collection"):
            out_of_collection(model, chosen, backbones, max_patches=cap)
    print("timings (s):", timings)
    from training.report import emotion_report

    print("report:", emotion_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

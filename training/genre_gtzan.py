"""The in-collection GTZAN genre study: Keras heads on musicnn embeddings vs the seed CNN, GTZAN folds only.

This made m2i's first genre model (v1, GTZAN-only). The shipped genre model now comes from
``python -m training.train_genre``, selected and scored across artists and collections; this study
stays as the labelled in-collection comparison with the seed CNN and never ships (``--ship`` to
write the v1 head again, e.g. to reproduce it).

Steps (one command, fixed seeds)::

    python -m training.genre_gtzan                 # nested CV + out-of-collection (~10 min)
    python -m training.genre_gtzan --ablations     # also MTT and MSD+MTT backbones (CV only)

1. Nested song-level CV on the 100 GTZAN songs (the same stratified 5 folds as the seed baseline,
   ``training/common.song_folds``): in each outer fold a 4-fold inner CV on the 80 training songs
   picks one configuration of the fixed grid :data:`GRID`, which is trained on those 80 songs and
   scored once on the 20 test songs (per song and per 3-s segment).
2. The shipped model: the same selection by 5-fold CV on all 100 songs, the winner trained on all of
   them → ``m2i_engine/models/weights/genre/`` (``genre_head.weights.h5`` + ``manifest.json``).
3. Out-of-collection check: the shipped configuration trained on GTZAN only, applied to the 400
   Emotify songs (classical/rock/pop are GTZAN classes; electronic is not).
4. ``training/reports/genre.md`` (with the baselines of ``training.baselines`` when present).

Emotify's own genre labels are a grid option: Emotify classical/rock/pop songs as extra training
data for those classes (``emotify_share`` of each such class's weight; class priors stay uniform).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np

from m2i_engine.models.heads import HeadSpec
from training.common import (
    GTZAN_GENRES,
    OVERLAP_GENRES,
    REPO,
    SEED,
    limit_threads,
    set_seeds,
    song_folds,
    stopwatch,
    write_result,
)
from training.cv import (
    BACKBONE_SETS,
    Candidate,
    HeadTask,
    PatchSet,
    Schedule,
    fit_head,
    load_patchset,
    nested_cv,
    predict_songs,
    run_cv_and_ablations,
    select_and_train,
    trainer_parser,
    write_head,
)
from training.features import load_seed

WEIGHTS_DIR = REPO / "m2i_engine" / "models" / "weights" / "genre"
#: patches per Emotify song used as extra genre data (evenly spread over its 20)
EMOTIFY_PATCHES_PER_SONG = 5
SCHEDULE = Schedule(epochs=20, batch_size=128, lr=3e-3)


def grid(backbones: Sequence[str] = ("msd",), shares: Sequence[float] = (0.0, 0.5)) -> list[Candidate]:
    """The pre-declared grid (24 candidates): inputs x linear/MLP x L2 x Emotify share."""

    def names(*outs: str) -> tuple[str, ...]:
        if len(backbones) == 1:
            return outs
        return tuple(f"{b}:{o}" for b in backbones for o in outs)

    inputs = (names("penultimate"), names("penultimate", "mean_pool", "max_pool"))
    return [
        Candidate(
            HeadSpec(inputs=i, n_out=len(GTZAN_GENRES), activation="softmax", hidden=h, l2=l2),
            emotify_share=share,
        )
        for i, h, l2, share in product(inputs, (0, 256), (3e-4, 3e-3, 3e-2), shares)
    ]


GRID = grid()


class GenreTask(HeadTask):
    """GTZAN genres; optionally Emotify's classical/rock/pop songs as extra training data."""

    loss = "categorical_crossentropy"

    def __init__(
        self,
        gtzan: PatchSet,
        genres: np.ndarray,
        emotify: PatchSet | None = None,
        emotify_genres: np.ndarray | None = None,
    ) -> None:
        self.name = "genre"
        self.patches = gtzan
        self.strata = np.asarray(genres)
        self.y = np.array([GTZAN_GENRES.index(g) for g in genres])
        self.onehot = np.eye(len(GTZAN_GENRES), dtype=np.float32)[self.y]
        self.emotify = emotify
        self.emotify_genres = emotify_genres
        #: Emotify songs that may be used as extra data (None: all of them)
        self.emotify_allowed: np.ndarray | None = None

    def song_targets(self, song_ids: np.ndarray) -> np.ndarray:
        return self.onehot[song_ids]

    def training_rows(
        self, cand: Candidate, song_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ps = self.patches
        p = ps.patches_of(song_ids)
        s = ps.song[p]
        xs, ys = [ps.rows(p, cand.spec.inputs)], [self.onehot[s]]
        n_class = np.bincount(self.y[song_ids], minlength=len(GTZAN_GENRES)).astype(float)
        share = np.array([cand.emotify_share if g in OVERLAP_GENRES else 0.0 for g in GTZAN_GENRES])
        ws = [(1.0 - share[self.y[s]]) / n_class[self.y[s]] / ps.n_patches(s)]
        if cand.emotify_share > 0:
            if self.emotify is None or self.emotify_genres is None:
                raise ValueError("Emotify patches needed for emotify_share > 0")
            for g in OVERLAP_GENRES:
                ids = np.flatnonzero(self.emotify_genres == g)
                if self.emotify_allowed is not None:
                    ids = np.intersect1d(ids, self.emotify_allowed)
                ep = self.emotify.patches_of(ids, EMOTIFY_PATCHES_PER_SONG)
                xs.append(self.emotify.rows(ep, cand.spec.inputs))
                ys.append(
                    np.repeat(
                        np.eye(len(GTZAN_GENRES), dtype=np.float32)[[GTZAN_GENRES.index(g)]], len(ep), axis=0
                    )
                )
                ws.append(np.full(len(ep), cand.emotify_share / len(ep)))
        w = np.concatenate(ws)
        return np.concatenate(xs), np.concatenate(ys), (w / w.mean()).astype(np.float32)

    def selection_score(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
        t = y_true.argmax(1)
        acc = float(np.mean(y_pred.argmax(1) == t))
        nll = float(-np.mean(np.log(np.clip(y_pred[np.arange(len(t)), t], 1e-9, 1.0))))
        return acc, -nll


def make_task(backbones: Sequence[str]) -> GenreTask:
    gt = load_seed("gtzan")
    em = load_seed("emotify")
    return GenreTask(
        load_patchset("gtzan", backbones), gt["genre"], load_patchset("emotify", backbones), em["genre"]
    )


def fold_metrics(task: GenreTask, res: Any) -> dict[str, Any]:
    t = task.y[res.test_songs]
    seg_true = t[res.patch_pos]
    return {
        "fold": res.fold,
        "song_acc": float(np.mean(res.song_pred.argmax(1) == t)),
        "segment_acc": float(np.mean(res.patch_pred.argmax(1) == seg_true)),
        "chosen": res.chosen.label,
        "seconds": round(res.seconds, 1),
        "inner_best": max(r["score"] for r in res.inner_table),
    }


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
        desc=f"genre CV ({'+'.join(backbones)})",
    )
    out = {
        "task": "genre",
        "name": name,
        "title": title,
        "labels": list(GTZAN_GENRES),
        "protocol": f"nested CV: 5 outer song-level stratified folds (seed {SEED}), 4-fold inner selection",
        "segment": "3-s musicnn patch",
        "max_patches": max_patches,
        "folds": [fold_metrics(task, r) for r in results],
        "song_true": np.concatenate([task.y[r.test_songs] for r in results]).tolist(),
        "song_pred": np.concatenate([r.song_pred.argmax(1) for r in results]).tolist(),
        "song_track": np.concatenate([r.test_songs for r in results]).tolist(),
        "histories": [r.history for r in results],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_result(name, out)
    return out


def ship(
    backbones: Sequence[str], *, max_patches: int | None, shares: Sequence[float] = (0.0, 0.5)
) -> dict[str, Any]:
    """Select on all GTZAN songs (5-fold CV), train the winner on all of them, write weights + manifest."""
    task = make_task(backbones)
    chosen, table, model, hist = select_and_train(
        task, grid(backbones, shares), SCHEDULE, max_patches=max_patches, desc="genre final selection"
    )
    manifest = {
        "task": "genre",
        "name": "genre-musicnn-head",
        "version": "1",
        "labels": list(GTZAN_GENRES),
        "format": "keras-musicnn-head",
        "backbones": {b: f"musicnn_{b}" for b in backbones},
        "max_patches": max_patches,
        "head": chosen.spec.to_dict(),
        "training": {
            "data": "GTZAN (100-song slice, all songs)"
            + (
                f" + Emotify classical/rock/pop (share {chosen.emotify_share:g})"
                if chosen.emotify_share
                else ""
            ),
            "selected_by": "5-fold song-level CV on all training songs over the pre-declared grid",
            "selection_score": max(r["score"] for r in table),
            "seed": SEED,
            "epochs": SCHEDULE.epochs,
            "batch_size": SCHEDULE.batch_size,
            "lr": SCHEDULE.lr,
            "report": "training/reports/genre_gtzan.md",
            "script": "python -m training.genre_gtzan --ship",
        },
        "licence": "Trained on GTZAN/Emotify (non-commercial research collections); see the data README.",
    }
    weights = write_head(model, WEIGHTS_DIR, "genre_head.weights.h5", manifest)
    out = {
        "task": "genre",
        "chosen": chosen.label,
        "emotify_share": chosen.emotify_share,
        "spec": chosen.spec.to_dict(),
        "table": table,
        "history": hist,
        "weights_bytes": weights.stat().st_size,
    }
    write_result("genre_final", out)
    return out


def out_of_collection(
    backbones: Sequence[str], spec: dict[str, Any], *, max_patches: int | None
) -> dict[str, Any]:
    """The shipped head configuration trained on GTZAN only, applied to all 400 Emotify songs."""
    task = make_task(backbones)
    cand = Candidate(HeadSpec.from_dict(spec), emotify_share=0.0)
    model, _ = fit_head(cand, task, np.arange(len(task.y)), SCHEDULE)
    em = load_seed("emotify")
    em_task = GenreTask(task.emotify, np.array(["rock"] * len(em["genre"])))  # only patches/strata used
    probs = predict_songs(model, em_task, cand, np.arange(len(em["genre"])), max_patches)[0]
    pred = probs.argmax(1)
    by_genre: dict[str, dict[str, int]] = {}
    for g in sorted(set(em["genre"].tolist())):
        counts = np.bincount(pred[em["genre"] == g], minlength=len(GTZAN_GENRES))
        by_genre[g] = {GTZAN_GENRES[i]: int(c) for i, c in enumerate(counts)}
    # With Emotify's labels as training data the Emotify songs are no longer out of collection; to see
    # whether they help on music like Emotify's, cross-fit: GTZAN + 4/5 of Emotify's overlap songs
    # (share 0.5), tested on the held-out fifth. In-collection for Emotify: reported as such.
    overlap = np.flatnonzero(np.isin(em["genre"], OVERLAP_GENRES))
    with_em = Candidate(HeadSpec.from_dict(spec), emotify_share=0.5)
    cross = np.zeros(len(em["genre"]), int) - 1
    for tr, te in song_folds(em["genre"][overlap]):
        task.emotify_allowed = overlap[tr]
        m, _ = fit_head(with_em, task, np.arange(len(task.y)), SCHEDULE)
        cross[overlap[te]] = predict_songs(m, em_task, with_em, overlap[te], max_patches)[0].argmax(1)
    task.emotify_allowed = None
    truth = np.array([GTZAN_GENRES.index(g) if g in OVERLAP_GENRES else -1 for g in em["genre"]])
    cross_acc = {
        g: float(np.mean(cross[em["genre"] == g] == truth[em["genre"] == g])) for g in OVERLAP_GENRES
    }
    base_acc = {g: float(np.mean(pred[em["genre"] == g] == truth[em["genre"] == g])) for g in OVERLAP_GENRES}
    out = {
        "task": "genre",
        "trained_on": "all 100 GTZAN songs, no Emotify",
        "config": cand.label,
        "max_patches": max_patches,
        "counts": by_genre,
        "track": em["track"].tolist(),
        "emotify_genre": em["genre"].tolist(),
        "pred": pred.tolist(),
        "prob": probs.round(4).tolist(),
        "with_emotify_crossfit": {
            "config": with_em.label,
            "acc": cross_acc,
            "without_acc": base_acc,
            "note": "5 folds of Emotify's 300 overlap songs; GTZAN + 4/5 Emotify",
        },
    }
    write_result("genre_ooc", out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = trainer_parser("python -m training.genre_gtzan", __doc__.split("\n\n")[0])
    p.add_argument("--ship", action="store_true", help="write the v1 GTZAN-only head into the package")
    p.add_argument(
        "--ooc-only",
        action="store_true",
        help="only redo the out-of-collection check of the shipped configuration",
    )
    p.add_argument(
        "--ship-emotify-share",
        type=float,
        nargs="+",
        default=[0.0, 0.5],
        metavar="SHARE",
        help="Emotify shares the shipped model may choose from (default: the grid's 0 and 0.5; "
        "0.5 alone forces GTZAN + Emotify training data)",
    )
    args = p.parse_args(argv)
    args.no_ship = args.no_ship or not args.ship
    limit_threads(args.threads)
    set_seeds(SEED)
    cap = args.max_patches or None
    backbones = BACKBONE_SETS[args.backbone]
    timings: dict[str, float] = {}
    if args.ooc_only:
        manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
        ooc = out_of_collection(backbones, manifest["head"], max_patches=cap)
        print("out of collection:", json.dumps(ooc["counts"]), json.dumps(ooc["with_emotify_crossfit"]))
        args.skip_cv, args.no_ship = True, True
    r = run_cv_and_ablations(args, "genre", run_cv, timings)
    if r is not None:
        print("ours: song accuracy per fold", [round(f["song_acc"], 3) for f in r["folds"]])
    if not args.no_ship:
        with stopwatch(timings, "ship"):
            final = ship(backbones, max_patches=cap, shares=args.ship_emotify_share)
        print("shipped:", final["chosen"])
        with stopwatch(timings, "out_of_collection"):
            ooc = out_of_collection(backbones, final["spec"], max_patches=cap)
        print("out of collection:", json.dumps(ooc["counts"]))
    print("timings (s):", timings)
    from training.report import genre_report

    print("report:", genre_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

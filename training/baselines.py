"""Re-train the seed's two CNNs (and the trivial mean predictor) on our folds, so "better" has a baseline.

    python -m training.baselines                    # all three (~75 min on 2 cores, mostly the emotion CNN)
    python -m training.baselines --only genre       # seed genre CNN only (~3 min)
    python -m training.baselines --only mean        # training-mean emotion predictor only (seconds)

- **Seed genre CNN** (``training/original_cnns.py``) on the seed's features (5 × MFCC-13 segments per 30-s
  track), the seed's optimiser settings (Adam 1e-4, batch 32, 30 epochs, no early stopping);
  predictions per 6-s segment and per song (mean of the 5 segment probabilities).
- **Seed emotion CNN** (the 11-conv A2E network) on 10-s log-spectrogram segments, trained against
  the listener fractions normalised to a distribution (its softmax output can only express a
  distribution; the seed trained it on one class per song). Song prediction = mean over the 6
  segments, rescaled by the training songs' mean fraction total so R² is on the fraction scale
  (r and AUC do not depend on that scale). **Reduced budget** — the full network on the full
  ``(1025, 431)`` input costs ~6.8 s per training segment here (≈ 3.6 h per epoch per fold): it is
  trained on the seed spectrogram average-pooled 4 × 4 to ``(256, 107)`` (~0.1–0.4 s/segment), for
  ``--emotion-epochs`` epochs of ``--segments-per-epoch`` segments per training song (default: 6 x 1,
  i.e. one pass over every training segment), Adam 1e-4, input standardised (one mean/std of the
  training fold's dB values: on raw dB, Adam diverged).
- **Mean predictor**: the training songs' mean fractions for every test song.

Same song-level stratified 5 folds as the heads (``training.common.song_folds``). The test fold's
loss is logged per epoch for the learning curves only; nothing is selected on it.
Finished emotion-CNN folds are kept in ``.cache/baselines/`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from training.common import (
    CACHE,
    GEMS,
    GTZAN_GENRES,
    SEED,
    emotion_fold_metrics,
    limit_threads,
    set_seeds,
    song_folds,
    stopwatch,
    write_result,
)
from training.features import load_seed

PARTIAL = CACHE.parent / "baselines"


def seed_genre(*, epochs: int = 30, batch_size: int = 32, lr: float = 1e-4) -> dict[str, Any]:
    """5-fold CV of the seed genre CNN on the seed's MFCC segments."""
    import keras
    from tqdm import tqdm

    from training.original_cnns import build_seed_genre_cnn

    gt = load_seed("gtzan")
    x = gt["mfcc"][..., None]  # (songs, 5, 259, 13, 1)
    y = np.array([GTZAN_GENRES.index(g) for g in gt["genre"]])
    n_seg = x.shape[1]
    folds_out, hist_out, true_all, pred_all, track_all = [], [], [], [], []
    t0 = time.perf_counter()
    for i, (tr, te) in enumerate(tqdm(song_folds(gt["genre"]), desc="seed genre CNN", unit="fold")):
        set_seeds(SEED)
        model = build_seed_genre_cnn(x.shape[2:], len(GTZAN_GENRES))
        model.compile(
            optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        xtr, ytr = x[tr].reshape(-1, *x.shape[2:]), np.repeat(y[tr], n_seg)
        xte, yte = x[te].reshape(-1, *x.shape[2:]), np.repeat(y[te], n_seg)
        h = model.fit(
            xtr,
            ytr,
            batch_size=batch_size,
            epochs=epochs,
            shuffle=True,
            verbose=0,
            validation_data=(xte, yte),
        )
        seg_p = np.asarray(model.predict(xte, batch_size=256, verbose=0))
        song_p = seg_p.reshape(len(te), n_seg, -1).mean(axis=1)
        folds_out.append(
            {
                "fold": i,
                "song_acc": float(np.mean(song_p.argmax(1) == y[te])),
                "segment_acc": float(np.mean(seg_p.argmax(1) == yte)),
            }
        )
        hist_out.append({k: [float(v) for v in vs] for k, vs in h.history.items()})
        true_all.append(y[te])
        pred_all.append(song_p.argmax(1))
        track_all.append(te)
    out = {
        "task": "genre",
        "name": "genre_seed_cnn",
        "title": "seed CNN (MFCC-13 x 5 segments)",
        "labels": list(GTZAN_GENRES),
        "segment": "6-s segment (1/5 of the track)",
        "config": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "Adam"},
        "folds": folds_out,
        "song_true": np.concatenate(true_all).tolist(),
        "song_pred": np.concatenate(pred_all).tolist(),
        "song_track": np.concatenate(track_all).tolist(),
        "histories": hist_out,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_result("genre_seed_cnn", out)
    return out


def mean_predictor() -> dict[str, Any]:
    """The trivial emotion baseline: every test song gets the training songs' mean fractions."""
    em = load_seed("emotify")
    y = em["emotions"]
    folds, preds, tracks = [], [], []
    for i, (tr, te) in enumerate(song_folds(em["genre"])):
        pred = np.repeat(y[tr].mean(axis=0, keepdims=True), len(te), axis=0)
        folds.append({"fold": i, **emotion_fold_metrics(y[te], pred)})
        preds.append(pred)
        tracks.append(te)
    out = {
        "task": "emotion",
        "name": "emotion_mean",
        "title": "mean predictor (training-set mean)",
        "labels": list(GEMS),
        "folds": folds,
        "song_track": np.concatenate(tracks).tolist(),
        "song_pred": np.concatenate(preds).round(4).tolist(),
    }
    write_result("emotion_mean", out)
    return out


def seed_emotion(
    *, epochs: int = 6, segments_per_epoch: int = 1, batch_size: int = 32, lr: float = 1e-4
) -> dict[str, Any]:
    """5-fold CV of the seed emotion CNN on 4 x 4-pooled seed log-spectrograms (reduced budget)."""
    import keras
    from tqdm import tqdm

    from training.original_cnns import build_seed_emotion_cnn

    em = load_seed("emotify")
    x = em["logspec"]  # (songs, 6, 256, 107) float16
    y = em["emotions"].astype(np.float32)
    dist = y / np.maximum(y.sum(axis=1, keepdims=True), 1e-6)
    n_seg = x.shape[1]
    PARTIAL.mkdir(parents=True, exist_ok=True)
    config = {
        "epochs": epochs,
        "segments_per_epoch": segments_per_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": "Adam",
        "input": list(x.shape[2:]),
        "pool": [4, 4],
        "standardised": True,
    }
    folds, preds, tracks, hists, fold_seconds = [], [], [], [], []
    for i, (tr, te) in enumerate(song_folds(em["genre"])):
        part = PARTIAL / f"emotion_seed_cnn_fold{i}.json"
        if part.is_file() and json.loads(part.read_text()).get("config") == config:
            saved = json.loads(part.read_text())
        else:
            saved = _seed_emotion_fold(i, tr, te, x, y, dist, config, build_seed_emotion_cnn, keras, tqdm)
            part.write_text(json.dumps(saved))
        pred = np.asarray(saved["pred"], np.float32)
        folds.append({"fold": i, **emotion_fold_metrics(y[te], pred)})
        preds.append(pred)
        tracks.append(te)
        hists.append(saved["history"])
        fold_seconds.append(saved["seconds"])
    out = {
        "task": "emotion",
        "name": "emotion_seed_cnn",
        "title": "seed CNN (11 conv, 10-s log-spectrograms, pooled 4x4; reduced budget)",
        "labels": list(GEMS),
        "config": config,
        "n_segments": n_seg,
        "folds": folds,
        "song_track": np.concatenate(tracks).tolist(),
        "song_pred": np.concatenate(preds).round(4).tolist(),
        "histories": hists,
        "seconds": round(float(sum(fold_seconds)), 1),
        "fold_seconds": fold_seconds,
    }
    write_result("emotion_seed_cnn", out)
    return out


def _seed_emotion_fold(
    i: int,
    tr: np.ndarray,
    te: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    dist: np.ndarray,
    config: dict[str, Any],
    build: Any,
    keras: Any,
    tqdm: Any,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    set_seeds(SEED + i)
    rng = np.random.default_rng(SEED + i)
    n_seg = x.shape[1]
    # One scalar mean/std of the training fold's dB values (raw dB made Adam diverge, loss > 10).
    sample = x[tr[:: max(1, len(tr) // 64)]].astype(np.float32)
    mu, sd = float(sample.mean()), float(sample.std()) or 1.0

    def prep(a: np.ndarray) -> np.ndarray:
        return ((a.astype(np.float32) - mu) / sd)[..., None]

    model = build((*x.shape[2:], 1), len(GEMS))
    model.compile(optimizer=keras.optimizers.Adam(config["lr"]), loss="categorical_crossentropy")
    # A fixed segment of every test song, for the learning curve only.
    xval = prep(x[te, rng.integers(0, n_seg, len(te))])
    # Epoch e shows each training song's segment order[song, e % n_seg]: with segments_per_epoch=1,
    # n_seg epochs are exactly one pass over every training segment.
    order = np.stack([rng.permutation(n_seg) for _ in tr])
    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    bar = tqdm(range(config["epochs"]), desc=f"seed emotion CNN fold {i + 1}/5", unit="epoch")
    k = config["segments_per_epoch"]
    for e in bar:
        cols = [(e * k + j) % n_seg for j in range(k)]
        segs = order[:, cols]
        songs_rep = np.repeat(tr, k)
        xtr = prep(x[songs_rep, segs.ravel()])
        h = model.fit(
            xtr, dist[songs_rep], batch_size=config["batch_size"], epochs=1, shuffle=True, verbose=0
        )
        val_loss = float(model.evaluate(xval, dist[te], batch_size=64, verbose=0))
        history["loss"].append(float(h.history["loss"][0]))
        history["val_loss"].append(val_loss)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", test_loss=f"{val_loss:.3f}")
    seg_p = np.asarray(model.predict(prep(x[te].reshape(-1, *x.shape[2:])), batch_size=32, verbose=0))
    total = float(y[tr].sum(axis=1).mean())
    pred = seg_p.reshape(len(te), n_seg, -1).mean(axis=1) * total
    return {
        "config": config,
        "pred": pred.tolist(),
        "history": history,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.baselines", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only",
        nargs="+",
        choices=["genre", "emotion", "mean"],
        default=["genre", "mean", "emotion"],
        help="which baselines (default: all)",
    )
    p.add_argument(
        "--emotion-epochs",
        type=int,
        default=6,
        help="seed emotion CNN epochs (default 6: with 1 segment per song, one pass over all)",
    )
    p.add_argument(
        "--segments-per-epoch",
        type=int,
        default=1,
        help="10-s segments per training song per epoch (default 1 of 6)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = p.parse_args(argv)
    limit_threads(args.threads)
    timings: dict[str, float] = {}
    if "genre" in args.only:
        with stopwatch(timings, "seed_genre_cnn"):
            r = seed_genre()
        print("seed genre CNN: song accuracy per fold", [round(f["song_acc"], 3) for f in r["folds"]])
    if "mean" in args.only:
        with stopwatch(timings, "mean_predictor"):
            mean_predictor()
    if "emotion" in args.only:
        with stopwatch(timings, "seed_emotion_cnn"):
            r = seed_emotion(epochs=args.emotion_epochs, segments_per_epoch=args.segments_per_epoch)
        print("seed emotion CNN: mean r per fold", [round(f["mean"]["r"], 3) for f in r["folds"]])
    print("timings (s):", timings)
    from training.report import emotion_report, genre_report

    print("reports:", genre_report(), emotion_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

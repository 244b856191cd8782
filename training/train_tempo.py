"""Train m2i's tempo level decision: which level of the tracked pulse (½, ¾, 1, 4⁄3 or 2×) a listener taps.

Steps (one command, fixed seeds; about 10 minutes on 2 cores the first time, seconds once cached)::

    python -m training.train_tempo              # collect, song-level CV + baselines, ship, report
    python -m training.train_tempo --no-ship    # measure only

Songs: the 100 annotated excerpts of ``gtzan_mini`` (tempo and beats by people) and synthetic songs
rendered here by :mod:`m2i_engine.synth` in every style at random tempi across its range (tempo and
beats exact; seeds disjoint from the bench's sets). Each song runs through the engine's own steps
(decode, features, tracker, timbre, the mood and genre models) and keeps what
:func:`m2i_engine.analysis.tempo_octave.octave_features` reads, cached under ``.cache/tempo/``.

Target: the factor f in (½, ¾, 1, 4⁄3, 2) for which f × the tracker's tempo is within 4 % of the
annotation (songs where none is, e.g. a pulse tracked at 3×, train nothing but count as misses); the ¾
and 4⁄3 levels mend a pulse tracked at the dotted beat (an 80-BPM song read at 107) or across it.
Model: multinomial logistic regression (scikit-learn, L2, balanced between GTZAN and synthetic songs),
three input sets compared side by side — signal only, + mood (valence/arousal model), + genre — each
with its L2 strength chosen by an inner CV on the training folds only.

Judged by song-level 5-fold CV stratified by genre/style, repeated with 5 seeds, against the tracker
itself and librosa's ``beat_track`` on the same songs: Acc1, Acc2, beat F-measure of the beats decoded
at the chosen tempo, and accuracy by confidence bin. The genre model was trained on these very GTZAN
excerpts, so the "+ genre" row is optimistic on them (the report says so). The shipped model is the
input set with the best mean CV Acc1 on GTZAN, refitted on all songs →
``m2i_engine/analysis/weights/tempo_octave.json``; report ``training/reports/tempo.md``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import multiprocessing as mp
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from m2i_engine.analysis import analyze_signal, describe_timbre
from m2i_engine.analysis.features import ANALYSIS_SR
from m2i_engine.analysis.tempo import TempoEvidence
from m2i_engine.analysis.tempo_octave import (
    ALL_FEATURES,
    DEFAULT_WEIGHTS,
    FACTORS,
    FOUR_THIRDS_FEATURES,
    MOOD_FEATURES,
    SIGNAL_FEATURES,
    OctaveModel,
    apply_decision,
    level_probabilities,
    octave_features,
)
from m2i_engine.synth import SongSpec, render_song
from m2i_engine.tags import PITCH_CLASSES, Tempo
from training.common import REPO, REPORTS, SEED, data_dir, gtzan_songs, write_result
from training.tempo_eval import acc1, acc2, f_measure

CACHE = REPO / ".cache" / "tempo"
CACHE_VERSION = 3  # 3: the features of the 4:3 levels
#: each synthetic style's tempo range (BPM), as wide as the style is played
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "ballad": (52.0, 80.0),
    "ambient": (58.0, 95.0),
    "waltz": (78.0, 160.0),
    "hiphop": (76.0, 104.0),
    "funk": (92.0, 122.0),
    "house": (115.0, 135.0),
    "rock": (95.0, 185.0),
    "dnb": (155.0, 185.0),
}
#: without the 4:3 levels and their features the decision is the previous recipe
OCTAVES_ONLY = "signal, octaves only (previous recipe)"
INPUT_SETS: dict[str, tuple[str, ...]] = {
    "signal": SIGNAL_FEATURES,
    "signal+mood": SIGNAL_FEATURES + MOOD_FEATURES,
    "signal+mood+genre": ALL_FEATURES,
    OCTAVES_ONLY: tuple(f for f in SIGNAL_FEATURES if f not in FOUR_THIRDS_FEATURES),
}
#: the levels an input set may choose (default: all of FACTORS)
LEVELS: dict[str, tuple[float, ...]] = {OCTAVES_ONLY: (0.5, 1.0, 2.0)}
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
N_FOLDS, N_REPEATS = 5, 5
#: synthetic songs weigh this much in all, relative to the GTZAN songs
SYNTH_WEIGHT = 0.5
CONF_BINS = (0.0, 0.25, 0.5, 0.75, 1.01)


@dataclass
class Record:
    """One song as the decision and the scores see it."""

    set_name: str
    name: str
    stratum: str
    ref_bpm: float
    ref_beats: list[float]
    tracker: Tempo
    features: dict[str, float]
    novelty: np.ndarray
    frame_rate_hz: float
    duration_s: float
    librosa_bpm: float
    librosa_beats: list[float] = field(default_factory=list)

    def evidence(self) -> TempoEvidence:
        return TempoEvidence.from_novelty(
            novelty=self.novelty, frame_rate_hz=self.frame_rate_hz, duration_s=self.duration_s
        )

    @property
    def label(self) -> int:
        """Index in FACTORS of the level that matches the annotation, or -1."""
        for k, f in enumerate(FACTORS):
            if acc1(f * self.tracker.bpm, self.ref_bpm):
                return k
        return -1


# --- collection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    set_name: str
    name: str
    stratum: str
    bpm: float
    beats: tuple[float, ...] = ()
    path: str | None = None
    spec: SongSpec | None = None


def sources(per_style: int) -> list[Source]:
    out: list[Source] = []
    root = data_dir() / "gtzan_mini"
    rows = {r.track: r for r in gtzan_songs()}
    with open(root / "tracks.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            lines = (root / row["beats_file"]).read_text().splitlines()
            beats = tuple(float(line.split()[0]) for line in lines if line.split())
            out.append(
                Source(
                    "gtzan",
                    row["track"],
                    rows[row["track"]].genre,
                    float(row["bpm"]),
                    beats,
                    path=str(root / row["file"]),
                )
            )
    rng = np.random.default_rng(SEED + 13)
    for style, (lo, hi) in STYLE_RANGES.items():
        for k in range(per_style):
            bpm = round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), 1)
            swung = style in ("hiphop", "funk", "house", "rock")
            swing = float(rng.choice([0.0, 0.15, 0.3])) if swung else 0.0
            duration = round(float(rng.uniform(20.0, 30.0)), 1)
            spec = SongSpec(
                bpm=bpm,
                tonic=PITCH_CLASSES[int(rng.integers(12))],
                mode="minor" if rng.random() < 0.5 else "major",
                style=style,  # type: ignore[arg-type]
                duration_s=duration,
                swing=swing,
                seed=50_000 + 100 * k + len(out),
            )
            beats = tuple(float(t) for t in np.arange(0.0, duration - 1e-6, 60.0 / bpm))
            out.append(Source("synth", f"{style}-{bpm:g}-{k}", style, bpm, beats, spec=spec))
    return out


_MODELS: Any = None


def _models() -> Any:
    global _MODELS
    if _MODELS is None:
        from m2i_engine.models.registry import ModelRegistry

        _MODELS = ModelRegistry.load()
    return _MODELS


def collect_one(src: Source) -> Record:
    import librosa

    from m2i_engine.audio.decode import decode_audio
    from m2i_engine.models.emotion import mood_from_quadrants

    if src.spec is not None:
        y = render_song(src.spec)
    else:
        assert src.path is not None
        y = decode_audio(src.path, target_sr=ANALYSIS_SR).samples
    sig = analyze_signal(y=y, sr=ANALYSIS_SR)
    assert sig.tempo_evidence is not None
    models = _models()
    mood = mood_from_quadrants(models.classify("mood", sig.features))
    genre = models.classify("genre", sig.features)
    feats = octave_features(
        sig.tempo_evidence, sig.tempo, timbre=describe_timbre(features=sig.features), mood=mood, genre=genre
    )
    lb_bpm, lb_beats = librosa.beat.beat_track(y=y, sr=ANALYSIS_SR, units="time")
    ev = sig.tempo_evidence
    return Record(
        src.set_name,
        src.name,
        src.stratum,
        src.bpm,
        list(src.beats),
        sig.tempo,
        feats,
        ev.novelty.astype(np.float32),
        ev.frame_rate_hz,
        ev.duration_s,
        float(np.atleast_1d(lb_bpm)[0]),
        [float(b) for b in lb_beats],
    )


def collect(per_style: int, jobs: int, *, refresh: bool = False) -> list[Record]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"records-v{CACHE_VERSION}-{per_style}.pkl"
    if path.is_file() and not refresh:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    todo = sources(per_style)
    print(f"analysing {len(todo)} songs with {jobs} job(s) …", flush=True)
    from tqdm import tqdm

    if jobs > 1:
        # compile the analysis' numba kernels here first: workers that all compile and write the same
        # cache at once can load a half-written one and crash, and a crashed worker leaves the pool
        # waiting for ever. Spawned, not forked, for the same reason (a forked child of a parent that
        # has run numba or BLAS threads is not safe either).
        analyze_signal(
            y=render_song(SongSpec(bpm=120.0, style="house", duration_s=4.0, seed=1)), sr=ANALYSIS_SR
        )
        with mp.get_context("spawn").Pool(jobs) as pool:
            records = list(tqdm(pool.imap(collect_one, todo, chunksize=2), total=len(todo)))
    else:
        records = [collect_one(s) for s in tqdm(todo)]
    with open(path, "wb") as fh:
        pickle.dump(records, fh)
    return records


# --- model ---------------------------------------------------------------------------------------


def design(records: Sequence[Record], names: Sequence[str]) -> np.ndarray:
    return np.array([[r.features.get(n, 0.0) for n in names] for r in records], dtype=np.float64)


def weights(records: Sequence[Record]) -> np.ndarray:
    n_real = sum(r.set_name == "gtzan" for r in records)
    n_syn = max(1, len(records) - n_real)
    w_syn = SYNTH_WEIGHT * max(1, n_real) / n_syn
    return np.array([1.0 if r.set_name == "gtzan" else w_syn for r in records])


def fit(
    records: Sequence[Record], names: Sequence[str], C: float, levels: Sequence[float] = FACTORS
) -> OctaveModel:
    """The decision on ``records``, trained on the songs whose annotated level is one of ``levels`` (the
    other levels are never chosen)."""
    from sklearn.linear_model import LogisticRegression

    train = [r for r in records if r.label >= 0 and FACTORS[r.label] in levels]
    x = design(train, names)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    y = np.array([r.label for r in train])
    clf = LogisticRegression(C=C, max_iter=5000)
    clf.fit((x - mean) / scale, y, sample_weight=weights(train))
    coef = np.zeros((len(FACTORS), len(names)))
    intercept = np.full(len(FACTORS), -30.0)  # a level never seen in training is never chosen
    for row, k in enumerate(clf.classes_):
        coef[k], intercept[k] = clf.coef_[row], clf.intercept_[row]
    if len(clf.classes_) == 2:  # binary: scikit-learn keeps one row for the second class
        coef[:] = 0.0
        intercept[:] = -30.0
        k0, k1 = clf.classes_
        coef[k1], intercept[k1] = clf.coef_[0], clf.intercept_[0]
        intercept[k0] = 0.0
    return OctaveModel(
        features=tuple(names), mean=mean, scale=scale, coef=coef, intercept=intercept, name="tempo-octave-1"
    )


def folds(records: Sequence[Record], seed: int, k: int = N_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    strata = [f"{r.set_name}:{r.stratum}" for r in records]
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(records)), strata))


def choose_c(
    records: Sequence[Record], names: Sequence[str], seed: int, levels: Sequence[float] = FACTORS
) -> float:
    """The L2 strength with the best inner-CV Acc1 (GTZAN and synthetic songs, weighted as in training)."""
    best, best_score = C_GRID[0], -1.0
    w = weights(records)
    for C in C_GRID:
        ok = np.zeros(len(records))
        for tr, te in folds(records, seed + 1, k=4):
            model = fit([records[i] for i in tr], names, C, levels)
            for i in te:
                ok[i] = acc1(_decide(records[i], model, retrack=False).bpm, records[i].ref_bpm)
        score = float(np.average(ok, weights=w))
        if score > best_score + 1e-9:
            best, best_score = C, score
    return best


def _decide(r: Record, model: OctaveModel, *, retrack: bool = True) -> Tempo:
    """The engine's decision on a cached song (beats decoded again only when asked)."""
    if not retrack:
        p = level_probabilities(model, r.features, r.tracker.bpm)
        return r.tracker.model_copy(update={"bpm": r.tracker.bpm * FACTORS[int(np.argmax(p))]})
    return apply_decision(r.evidence(), r.tracker, r.features, model)


# --- evaluation ----------------------------------------------------------------------------------


def cross_validate(records: Sequence[Record]) -> dict[str, Any]:
    """Out-of-fold decisions for every input set and repeat: tempo, confidence, beats per song."""
    out: dict[str, Any] = {}
    for set_name, names in INPUT_SETS.items():
        reps = []
        for rep in range(N_REPEATS):
            seed = SEED + rep
            bpm = np.zeros(len(records))
            conf = np.zeros(len(records))
            beat_f = np.full(len(records), np.nan)
            chosen_c = []
            for tr, te in folds(records, seed):
                train = [records[i] for i in tr]
                C = choose_c(train, names, seed, LEVELS.get(set_name, FACTORS))
                chosen_c.append(C)
                model = fit(train, names, C, LEVELS.get(set_name, FACTORS))
                for i in te:
                    t = _decide(records[i], model, retrack=rep == 0)
                    bpm[i], conf[i] = t.bpm, t.confidence
                    if rep == 0 and records[i].ref_beats:
                        beat_f[i] = f_measure(t.beats_s, records[i].ref_beats)
            reps.append({"bpm": bpm, "confidence": conf, "beat_f": beat_f, "C": chosen_c})
            print(
                f"  {set_name:18s} repeat {rep + 1}/{N_REPEATS}: "
                f"gtzan Acc1 {_acc(records, bpm, 'gtzan', acc1):.3f}",
                flush=True,
            )
        out[set_name] = reps
    return out


def _acc(records: Sequence[Record], bpm: np.ndarray, set_name: str, fn: Any) -> float:
    idx = [i for i, r in enumerate(records) if r.set_name == set_name]
    return float(np.mean([fn(bpm[i], records[i].ref_bpm) for i in idx])) if idx else float("nan")


def summarise(records: Sequence[Record], cv: dict[str, Any]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    tracker = np.array([r.tracker.bpm for r in records])
    lib = np.array([r.librosa_bpm for r in records])
    for name, bpm, beats in (
        ("tracker (today)", tracker, [r.tracker.beats_s for r in records]),
        ("librosa beat_track", lib, [r.librosa_beats for r in records]),
    ):
        rows[name] = {
            s: {
                "acc1": [_acc(records, bpm, s, acc1)],
                "acc2": [_acc(records, bpm, s, acc2)],
                "beat_f": _beat_f(records, beats, s),
            }
            for s in ("gtzan", "synth")
        }
    for set_name, reps in cv.items():
        rows[f"decision: {set_name}"] = {
            s: {
                "acc1": [_acc(records, rep["bpm"], s, acc1) for rep in reps],
                "acc2": [_acc(records, rep["bpm"], s, acc2) for rep in reps],
                "beat_f": float(
                    np.nanmean([reps[0]["beat_f"][i] for i, r in enumerate(records) if r.set_name == s])
                ),
            }
            for s in ("gtzan", "synth")
        }
        rows[f"decision: {set_name}"]["C"] = sorted({c for rep in reps for c in rep["C"]})
    return rows


def _beat_f(records: Sequence[Record], beats: Sequence[list[float]], set_name: str) -> float:
    vals = [
        f_measure(b, r.ref_beats)
        for r, b in zip(records, beats, strict=True)
        if r.set_name == set_name and r.ref_beats
    ]
    return float(np.mean(vals)) if vals else float("nan")


def confidence_bins(records: Sequence[Record], rep: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for lo, hi in itertools.pairwise(CONF_BINS):
        for s in ("gtzan", "synth"):
            idx = [i for i, r in enumerate(records) if r.set_name == s and lo <= rep["confidence"][i] < hi]
            ok = [acc1(rep["bpm"][i], records[i].ref_bpm) for i in idx]
            out.append(
                {
                    "bin": f"{lo:.2f}–{min(hi, 1.0):.2f}",
                    "set": s,
                    "n": len(idx),
                    "acc1": float(np.mean(ok)) if ok else float("nan"),
                }
            )
    return out


def _ms(vals: Sequence[float]) -> str:
    a = np.asarray(vals, dtype=np.float64)
    return f"{a.mean():.3f}" if len(a) == 1 else f"{a.mean():.3f} ± {a.std():.3f}"


def write_report(
    records: Sequence[Record],
    rows: dict[str, Any],
    bins: list[dict[str, Any]],
    shipped: str,
    shipped_c: float,
    timing: dict[str, float],
    misses: list[str],
) -> None:
    n_g = sum(r.set_name == "gtzan" for r in records)
    n_s = len(records) - n_g
    lines = [
        "# Tempo: the level decision after the tracker",
        "",
        "Generated by `python -m training.train_tempo` (fixed seeds). Songs: the "
        f"{n_g} annotated excerpts of `gtzan_mini` and {n_s} synthetic songs rendered by the trainer "
        "(8 styles, random tempi across each style's range). Scores are **song-level 5-fold CV, stratified "
        f"by genre/style, repeated {N_REPEATS}× (mean ± sd over repeats)**; every decision row is trained "
        "on the other folds only (its L2 strength chosen by an inner 4-fold CV inside them). The tracker "
        "and librosa have nothing to train, so they have one number. Beat F-measure (±70 ms, first 5 s "
        "ignored) of the beats decoded at the chosen tempo, first repeat.",
        "",
        "| method | GTZAN Acc1 | GTZAN Acc2 | GTZAN beat F | synth Acc1 | synth Acc2 | synth beat F |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        g, s = row["gtzan"], row["synth"]
        mark = " **(shipped)**" if name == f"decision: {shipped}" else ""
        lines.append(
            f"| {name}{mark} | {_ms(g['acc1'])} | {_ms(g['acc2'])} | {g['beat_f']:.3f} | "
            f"{_ms(s['acc1'])} | {_ms(s['acc2'])} | {s['beat_f']:.3f} |"
        )
    lines += [
        "",
        f"Shipped: the `{shipped}` inputs (best mean CV Acc1 on GTZAN), L2 C = {shipped_c:g} by 5-fold CV on "
        "all songs, refitted on all of them → `m2i_engine/analysis/weights/tempo_octave.json`.",
        "",
        "Caveats, read before quoting these numbers:",
        "",
        "- The genre model was trained on these same GTZAN excerpts, so on them its probabilities are "
        "sharper than on songs it never heard: the `+genre` row is optimistic for GTZAN.",
        "- 100 GTZAN excerpts are few; one song is 1 %. Tracks 00-09 of a genre are mostly a few artists, "
        "so song-level folds share artists between training and test.",
        "- GTZAN's tempo annotations pick one octave per song by the annotator's feel; some slow ballads "
        "are annotated at the quarter note, others with the same feel at the eighth.",
        "- The decision chooses among ½, ¾, 1, 4⁄3 and 2× the tracked tempo. The ¾ and 4⁄3 levels and "
        f"their four features ({', '.join(f'`{f}`' for f in FOUR_THIRDS_FEATURES)}) were added after "
        "reading the misses of the octave-only decision (three pop/rock songs tracked at 4⁄3 of their "
        "tempo); one feature set was tried, under this same CV, and the octave-only recipe is the row "
        f"`decision: {OCTAVES_ONLY}` above, in the same folds. The gain is measured on the songs whose "
        "misses suggested it: read it with that in mind.",
        "",
        "## Confidence means something",
        "",
        "Acc1 of the shipped decision by its confidence (out-of-fold, first repeat):",
        "",
        "| confidence | set | songs | Acc1 |",
        "|---|---|---|---|",
    ]
    for b in bins:
        acc = f"{b['acc1']:.2f}" if b["n"] else "—"
        lines.append(f"| {b['bin']} | {b['set']} | {b['n']} | {acc} |")
    lines += [
        "",
        "## Time",
        "",
        f"The decision adds {timing['decide_ms']:.1f} ms per song (features + model, mean over the songs "
        f"here; beats are decoded again only when the level changes: {timing['retrack_ms']:.0f} ms then), "
        f"against {timing['signal_ms']:.0f} ms for `analyze_signal` on a 30-s clip: "
        f"+{100 * timing['ratio']:.1f} %.",
        "",
        "## GTZAN songs the shipped decision still misses (out-of-fold, first repeat)",
        "",
        "| song | annotated | tracker | decision |",
        "|---|---|---|---|",
        *misses,
        "",
    ]
    (REPORTS / "tempo.md").write_text("\n".join(lines))


def time_decision(records: Sequence[Record], model: OctaveModel) -> dict[str, float]:
    """Milliseconds the decision adds per song, against the whole signal analysis of a 30-s clip."""
    from m2i_engine.analysis import compute_features, tempo_evidence, tempo_from_evidence

    y = render_song(SongSpec(bpm=126.0, style="rock", duration_s=30.0, seed=1))
    analyze_signal(y=y, sr=ANALYSIS_SR)
    t0 = time.perf_counter()
    for _ in range(3):
        analyze_signal(y=y, sr=ANALYSIS_SR)
    signal_ms = (time.perf_counter() - t0) / 3 * 1000
    feats = compute_features(y=y, sr=ANALYSIS_SR)
    ev = tempo_evidence(features=feats)
    tempo = tempo_from_evidence(ev)
    timbre = describe_timbre(features=feats)
    t0 = time.perf_counter()
    for _ in range(20):
        octave_features(ev, tempo, timbre=timbre)
        model.probabilities(octave_features(ev, tempo, timbre=timbre))
    decide_ms = (time.perf_counter() - t0) / 40 * 1000
    t0 = time.perf_counter()
    ev.beats_at(tempo.bpm * 2)
    retrack_ms = (time.perf_counter() - t0) * 1000
    changed = np.mean([_decide(r, model, retrack=False).bpm != r.tracker.bpm for r in records])
    mean_ms = decide_ms + changed * retrack_ms
    return {
        "signal_ms": signal_ms,
        "decide_ms": mean_ms,
        "retrack_ms": retrack_ms,
        "ratio": mean_ms / signal_ms,
        "changed_share": float(changed),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-style", type=int, default=16, help="synthetic songs per style (default 16)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--refresh", action="store_true", help="analyse the songs again, ignoring the cache")
    ap.add_argument("--no-ship", action="store_true", help="measure only; keep the shipped weights")
    args = ap.parse_args(argv)
    if not (data_dir() / "gtzan_mini" / "tracks.csv").is_file():
        print(f"gtzan_mini not found under {data_dir()} (set M2I_DATA_DIR)")
        return 1
    records = collect(args.per_style, args.jobs, refresh=args.refresh)
    print(f"{len(records)} songs; cross-validating {len(INPUT_SETS)} input sets …", flush=True)
    cv = cross_validate(records)
    rows = summarise(records, cv)
    shipped = max(INPUT_SETS, key=lambda s: np.mean(rows[f"decision: {s}"]["gtzan"]["acc1"]))
    levels = LEVELS.get(shipped, FACTORS)
    shipped_c = choose_c(records, INPUT_SETS[shipped], SEED, levels)
    model = fit(records, INPUT_SETS[shipped], shipped_c, levels)
    rep0 = cv[shipped][0]
    bins = confidence_bins(records, rep0)
    misses = [
        f"| {r.name} | {r.ref_bpm:.1f} | {r.tracker.bpm:.1f} | {rep0['bpm'][i]:.1f} |"
        for i, r in enumerate(records)
        if r.set_name == "gtzan" and not acc1(rep0["bpm"][i], r.ref_bpm)
    ]
    timing = time_decision(records, model)
    for name, row in rows.items():
        print(
            f"{name:28s} gtzan Acc1 {_ms(row['gtzan']['acc1'])}  Acc2 {_ms(row['gtzan']['acc2'])}  "
            f"beatF {row['gtzan']['beat_f']:.3f} | synth Acc1 {_ms(row['synth']['acc1'])}"
        )
    print(
        f"shipped: {shipped} (C={shipped_c:g}); decision adds {100 * timing['ratio']:.1f} % to analyze_signal"
    )
    write_result(
        "tempo",
        {
            "rows": rows,
            "bins": bins,
            "shipped": shipped,
            "C": shipped_c,
            "timing": timing,
            "n_gtzan": sum(r.set_name == "gtzan" for r in records),
            "n_synth": sum(r.set_name == "synth" for r in records),
        },
    )
    write_report(records, rows, bins, shipped, shipped_c, timing, misses)
    if not args.no_ship:
        DEFAULT_WEIGHTS.write_text(json.dumps(model.to_dict(), indent=1) + "\n")
        print(f"wrote {DEFAULT_WEIGHTS.relative_to(REPO)}")
    print(f"wrote {(REPORTS / 'tempo.md').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

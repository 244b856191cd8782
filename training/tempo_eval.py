"""Tempo and beat scores as the MIR literature counts them, in one place for the trainer and the bench.

Acc1: within ±4 % of the annotated tempo. Acc2: also at ×2, ×½, ×3 or ×⅓ of it (octave errors
forgiven). Beat F-measure: ±70 ms one-to-one matches, events in the first 5 s ignored (as mir_eval).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

TOLERANCE = 0.04
BEAT_WINDOW_S = 0.07
TRIM_S = 5.0


def acc1(est: float, ref: float) -> bool:
    return abs(est - ref) <= TOLERANCE * ref


def acc2(est: float, ref: float) -> bool:
    return any(acc1(est, ref * f) for f in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0))


def f_measure(
    est: Iterable[float], ref: Iterable[float], window_s: float = BEAT_WINDOW_S, *, trim_s: float = TRIM_S
) -> float:
    """Beat F-measure with ±window_s tolerance, one-to-one matches; events before ``trim_s`` ignored."""
    e = np.array([t for t in est if t >= trim_s])
    r = np.array([t for t in ref if t >= trim_s])
    if len(r) == 0 and len(e) == 0:
        return 1.0
    if len(r) == 0 or len(e) == 0:
        return 0.0
    used = np.zeros(len(e), dtype=bool)
    hits = 0
    for t in r:
        d = np.abs(e - t)
        d[used] = np.inf
        j = int(np.argmin(d))
        if d[j] <= window_s:
            used[j] = True
            hits += 1
    if hits == 0:
        return 0.0
    p, q = hits / len(e), hits / len(r)
    return 2 * p * q / (p + q)

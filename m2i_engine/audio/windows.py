"""Pick the part of a long song worth analysing, because intros and fade-outs misrepresent it.

A 7-minute track is analysed on ``analysis_s`` seconds. Its first seconds are often a quiet intro
and its last a fade, so the window is the stretch whose *median* short-term energy is highest
(the median ignores a single loud hit and favours a sustained chorus), searched away from the
first and last 10 % of the song.

Offers
------
- :func:`block_energy` — mean-square energy of consecutive blocks of a signal.
- :func:`representative_window` — start/end sample of the most representative window.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def block_energy(*, y: np.ndarray, block: int) -> np.ndarray:
    """Mean square of each whole ``block``-sample block of ``y`` (a trailing partial block is dropped).

    Works on a reshaped view, so a long signal is not copied.
    """
    if block <= 0:
        raise ValueError("block must be positive")
    n_blocks = len(y) // block
    blocks = y[: n_blocks * block].reshape(n_blocks, block)
    return np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / block


def representative_window(
    *,
    y: np.ndarray,
    sr: int,
    window_s: float,
    margin: float = 0.1,
    block_s: float = 0.5,
    hop_s: float = 1.0,
) -> tuple[int, int]:
    """``(start, end)`` samples of the ``window_s``-second window with the highest median energy.

    Parameters
    ----------
    y, sr : signal and its sample rate.
    window_s : window length; if ``y`` is not longer, the whole signal is returned.
    margin : share of the song skipped at each end (kept smaller when the window would not fit).
    block_s : length of the short-term energy blocks.
    hop_s : spacing of candidate window starts.

    Returns
    -------
    (start, end) sample indices with ``end - start == round(window_s * sr)``.
    """
    length = round(window_s * sr)
    if len(y) <= length:
        return 0, len(y)
    block = max(1, round(block_s * sr))
    energy = block_energy(y=y, block=block)
    n_win = max(1, min(len(energy), length // block))
    slack = len(energy) - n_win
    edge = min(int(margin * len(energy)), slack // 2)
    hop = max(1, round(hop_s / block_s))
    starts = np.arange(edge, slack - edge + 1, hop)
    scores = np.median(sliding_window_view(energy, n_win)[starts], axis=1)
    start = int(starts[int(np.argmax(scores))]) * block
    start = min(start, len(y) - length)
    return start, start + length

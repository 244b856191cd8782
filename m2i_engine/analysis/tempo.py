"""Estimate the tempo and the beats of a song, and say how sure we are.

Tempo is read from the periodicity of an onset novelty curve (the positive spectral flux of four
sub-bands, each normalised, so kick/bass, snare and hats all count): windowed autocorrelations
(a tempogram, averaged over the song) are summed over the first four multiples of each candidate
beat period (a comb), weighted by a log-normal tempo prior, and the best candidate is sharpened on
the autocorrelation peaks. Beats are decoded with a hidden Markov model of beat period and phase
(madmom's bar-pointer style beat state space) over the same novelty, near the estimated tempo.

If the onsets halfway between the beats (or at both thirds) are as strong as those on the beats,
the chosen level is not the pulse and the next faster level is taken (×2, or ×1.5; up to 200 BPM).

Confidence is the product of how periodic the onsets are at the chosen period and how clearly
that period beats its metrical relatives (×2, ×½, ×3, ×⅓, ×1.5, ×⅔): a clear metronome scores
near 1; noise, rubato and songs whose tempo could as well be half or double score low.

Offers
------
- :func:`estimate_tempo` — the :class:`~m2i_engine.tags.Tempo` of a song from its features.
- :func:`tempo_from_novelty` — the same estimator on any onset/beat activation curve.
- :func:`tempo_evidence` / :class:`TempoEvidence` — the periodicity evidence the octave step re-reads.
- :func:`onset_novelty` — the novelty curve tempo and beats are read from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import librosa
import numba
import numpy as np

from m2i_engine.analysis.features import Features
from m2i_engine.tags import Tempo

MIN_BPM = 30.0
MAX_BPM = 300.0
#: Log-normal tempo prior: centre and spread (in octaves) of the preferred tempo.
PRIOR_CENTER_BPM = 115.0
PRIOR_STD_OCTAVES = 0.9
#: Tempogram window (about 9 s).
TEMPOGRAM_S = 8.9
#: Move to a faster level when the onsets halfway (or a third of the way) between beats are at
#: least this strong relative to those on the beats, unless that would exceed
#: :data:`MAX_BEAT_LEVEL_BPM`.
SUBDIVISION_RATIO = 0.85
MAX_BEAT_LEVEL_BPM = 200.0
_GRID_STEPS_PER_OCTAVE = 96
_COMB = ((1, 1.0), (2, 0.5), (3, 0.33), (4, 0.25))
_RELATIVES = (2.0, 0.5, 3.0, 1.0 / 3.0, 1.5, 2.0 / 3.0)


def estimate_tempo(*, features: Features) -> Tempo:
    """Estimate tempo (BPM), its confidence and the beat times of a song.

    Parameters
    ----------
    features : Features
        Shared intermediates from :func:`~m2i_engine.analysis.features.compute_features`.

    Returns
    -------
    Tempo
        ``bpm``, ``confidence`` (0 … 1), ``beats_s``. ``downbeats_s`` stays empty and
        ``beats_per_bar`` ``None``: no downbeat estimator here was reliable enough to report.

    Examples
    --------
    >>> from m2i_engine.analysis.features import compute_features
    >>> from m2i_engine.synth import click_track
    >>> t = estimate_tempo(features=compute_features(y=click_track(100.0, 12.0), sr=22_050))
    >>> round(t.bpm)
    100
    """
    return tempo_from_evidence(tempo_evidence(features=features))


def tempo_evidence(*, features: Features) -> TempoEvidence:
    """The periodicity evidence of a song's onset novelty (what the tracker and the octave step read)."""
    bands = _band_novelties(features)
    return TempoEvidence.from_novelty(
        novelty=bands.sum(axis=0),
        frame_rate_hz=features.frame_rate_hz,
        duration_s=features.duration_s,
        bands=bands,
    )


def onset_novelty(*, features: Features) -> np.ndarray:
    """Sum of the sub-band onset envelopes, each minus its 1-s moving average, rectified and
    scaled to unit standard deviation (so quiet hats weigh as much as a loud kick)."""
    return _band_novelties(features).sum(axis=0)


def _band_novelties(features: Features) -> np.ndarray:
    """Each sub-band's onset envelope minus its 1-s moving average, rectified, at unit std (bands × n)."""
    bands = features.onset_env_bands.astype(np.float64)
    out = np.zeros_like(bands)
    n = max(1, round(features.frame_rate_hz))
    for k, band in enumerate(bands):
        band = np.maximum(band - _moving_average(band, n), 0.0)
        std = float(np.std(band))
        if std > 1e-9:
            out[k] = band / std
    return out


@dataclass(frozen=True, eq=False)
class TempoEvidence:
    """What the tracker measured once, kept so a later step can weigh other tempi without recomputing.

    ``acf`` is the song's mean windowed autocorrelation of the novelty; ``salience`` the comb over its
    first four beat multiples on :func:`bpm_grid`, ``score`` the same times the tempo prior.
    """

    novelty: np.ndarray
    frame_rate_hz: float
    duration_s: float
    acf: np.ndarray
    grid: np.ndarray
    salience: np.ndarray
    score: np.ndarray
    #: the sub-band novelties the sum was made of (low … high), when known
    bands: np.ndarray | None = None

    @classmethod
    def from_novelty(
        cls, *, novelty: np.ndarray, frame_rate_hz: float, duration_s: float, bands: np.ndarray | None = None
    ) -> TempoEvidence:
        novelty = np.asarray(novelty, dtype=np.float64)
        acf = _mean_acf(novelty, max(8, round(TEMPOGRAM_S * frame_rate_hz)))
        grid = bpm_grid()
        salience = _comb_salience(acf, frame_rate_hz, grid)
        prior = np.exp(-0.5 * (np.log2(grid / PRIOR_CENTER_BPM) / PRIOR_STD_OCTAVES) ** 2)
        return cls(
            novelty=novelty,
            frame_rate_hz=float(frame_rate_hz),
            duration_s=float(duration_s),
            acf=acf,
            grid=grid,
            salience=salience,
            score=salience * prior,
            bands=bands,
        )

    @property
    def peak_bpm(self) -> float:
        """The grid tempo with the best prior-weighted comb score (before the pulse-level rule)."""
        return float(self.grid[int(np.argmax(self.score))])

    def band_salience_at(self, band: int, bpm: float) -> float:
        """Comb salience of one sub-band's novelty near ``bpm`` (0 without band novelties)."""
        if self.bands is None or not MIN_BPM <= bpm <= MAX_BPM:
            return 0.0
        acf = self._band_acfs.get(band)
        if acf is None:  # once per band, however many tempi are asked about
            acf = self._band_acfs[band] = _mean_acf(
                self.bands[band], max(8, round(TEMPOGRAM_S * self.frame_rate_hz))
            )
        return float(_comb_salience(acf, self.frame_rate_hz, np.array([bpm]))[0])

    @cached_property
    def _band_acfs(self) -> dict[int, np.ndarray]:
        return {}

    @property
    def rhythmic(self) -> bool:
        """Whether the novelty repeats at all (silence and constant tones give nothing to track)."""
        return bool(np.any(self.acf[1:] > 0)) and float(self.score.max()) > 0

    def salience_at(self, bpm: float) -> float:
        """Comb salience near ``bpm`` (the best within ±3 grid steps); 0 outside the grid."""
        if not MIN_BPM <= bpm <= MAX_BPM:
            return 0.0
        j = int(np.argmin(np.abs(np.log2(self.grid / bpm))))
        return float(self.salience[max(0, j - 3) : j + 4].max())

    def beats_at(self, bpm: float) -> list[float]:
        """Beat times decoded near ``bpm``."""
        return _track_beats(self.novelty, self.frame_rate_hz, bpm, self.duration_s)

    def onset_strength(self, times_s: np.ndarray) -> float:
        """Mean novelty peak (±1 frame) at the given times; 0 when none falls inside the song."""
        return _strength(self.novelty, self.frame_rate_hz, np.asarray(times_s, dtype=np.float64))

    def subdivision_ratio(self, beats_s: list[float], fractions: tuple[float, ...]) -> float:
        """Onset strength at the given fractions of each inter-beat interval over that on the beats."""
        return _subdivision_ratio(self.novelty, self.frame_rate_hz, beats_s, fractions)


def tempo_from_novelty(*, novelty: np.ndarray, frame_rate_hz: float, duration_s: float) -> Tempo:
    """Tempo, confidence and beats from a non-negative onset novelty (or beat activation) curve."""
    return tempo_from_evidence(
        TempoEvidence.from_novelty(novelty=novelty, frame_rate_hz=frame_rate_hz, duration_s=duration_s)
    )


def tempo_from_evidence(ev: TempoEvidence) -> Tempo:
    """The tracker: the best prior-weighted comb tempo, sharpened, its beats, and the pulse-level rule."""
    if not ev.rhythmic:
        return Tempo(bpm=120.0, confidence=0.0)
    i = int(np.argmax(ev.score))
    bpm = _refine_bpm(ev.acf, ev.frame_rate_hz, float(ev.grid[i]))
    confidence = _confidence(ev.acf, ev.frame_rate_hz, ev.grid, ev.score, i, ev.duration_s)
    beats_s = ev.beats_at(bpm)
    for factor, fractions in ((2.0, (0.5,)), (1.5, (1.0 / 3.0, 2.0 / 3.0))):
        if factor * bpm > MAX_BEAT_LEVEL_BPM:
            continue
        if ev.subdivision_ratio(beats_s, fractions) >= SUBDIVISION_RATIO:
            # Onsets between our beats (halves, or thirds) are as strong as those on the beats, so
            # this level is not the pulse: take the next faster one (×2, or ×1.5 for a grid of
            # thirds). Drum & bass is the typical case: its bar-level periodicity favours ½ or ⅔
            # of the tempo. We are less sure than usual.
            bpm *= factor
            confidence *= 0.5
            beats_s = ev.beats_at(bpm)
            break
    return Tempo(bpm=round(bpm, 2), confidence=round(confidence, 3), beats_s=beats_s)


# --- private helpers ---------------------------------------------------------------------------


def bpm_grid() -> np.ndarray:
    """The candidate tempi, 96 per octave from MIN_BPM to MAX_BPM."""
    n = int(np.ceil(np.log2(MAX_BPM / MIN_BPM) * _GRID_STEPS_PER_OCTAVE)) + 1
    return MIN_BPM * 2.0 ** (np.arange(n) / _GRID_STEPS_PER_OCTAVE)


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or len(x) == 0:
        return x
    kernel = np.ones(n) / n
    return np.convolve(np.pad(x, (n // 2, n - 1 - n // 2), mode="edge"), kernel, mode="valid")


def _mean_acf(novelty: np.ndarray, win: int) -> np.ndarray:
    """Average over the song of the normalised autocorrelations of Hann-windowed, mean-removed
    ``win``-frame windows (hop ``win / 8``); all zeros when nothing moves."""
    if len(novelty) == 0 or not np.any(novelty > 0):
        return np.zeros(win)
    padded = np.pad(novelty, (win // 2, win - win // 2), mode="constant")
    frames = librosa.util.frame(padded, frame_length=win, hop_length=max(1, win // 8))
    frames = frames - frames.mean(axis=0, keepdims=True)
    acfs = librosa.autocorrelate(frames * np.hanning(win)[:, None], axis=0)
    energy = acfs[0]
    keep = energy > 1e-9 * max(float(energy.max()), 1e-30)
    if not np.any(keep):
        return np.zeros(win)
    return (acfs[:, keep] / energy[keep]).mean(axis=1)


def _interp(acf: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """ACF at fractional lags; the max of the two neighbours blurs quantisation (0 beyond range)."""
    out = np.zeros_like(lags)
    ok = lags < len(acf) - 2
    lo = np.floor(lags[ok]).astype(int)
    out[ok] = np.maximum(acf[lo], acf[lo + 1])
    return out


def _comb_salience(acf: np.ndarray, frame_rate: float, grid: np.ndarray) -> np.ndarray:
    lags = 60.0 * frame_rate / grid
    sal = np.zeros_like(grid)
    for k, w in _COMB:
        sal += w * _interp(acf, lags * k)
    return np.maximum(sal, 0.0)


def _refine_bpm(acf: np.ndarray, frame_rate: float, bpm: float) -> float:
    """Sharpen a grid tempo with the ACF peaks at 1…4 beat periods (parabolic interpolation)."""
    period = 60.0 * frame_rate / bpm
    estimates, weights = [], []
    for k in (1, 2, 3, 4):
        centre = k * period
        lo, hi = int(np.floor(centre * 0.97)), int(np.ceil(centre * 1.03))
        if lo < 1 or hi >= len(acf) - 1:
            break
        j = lo + int(np.argmax(acf[lo : hi + 1]))
        if j in (lo, hi) or acf[j] <= 0:
            continue
        a, b, c = acf[j - 1 : j + 2]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        estimates.append((j + float(np.clip(shift, -0.5, 0.5))) / k)
        weights.append(float(acf[j]) * k)
    if not estimates:
        return bpm
    refined = 60.0 * frame_rate / float(np.average(estimates, weights=weights))
    return refined if abs(np.log2(refined / bpm)) < 0.05 else bpm


def _strength(novelty: np.ndarray, frame_rate: float, times: np.ndarray) -> float:
    idx = np.round(times * frame_rate).astype(int)
    idx = idx[(idx >= 0) & (idx < len(novelty))]
    if len(idx) == 0:
        return 0.0
    window = np.stack([novelty[np.clip(idx + d, 0, len(novelty) - 1)] for d in (-1, 0, 1)])
    return float(window.max(axis=0).mean())


def _subdivision_ratio(
    novelty: np.ndarray, frame_rate: float, beats_s: list[float], fractions: tuple[float, ...]
) -> float:
    """Mean novelty peak at the given fractions of each inter-beat interval, over that on beats."""
    beats = np.asarray(beats_s)
    if len(beats) < 6:
        return 0.0
    on = _strength(novelty, frame_rate, beats)
    if on <= 0:
        return 0.0
    between = [_strength(novelty, frame_rate, beats[:-1] + f * np.diff(beats)) for f in fractions]
    return min(between) / on


def _confidence(
    acf: np.ndarray, frame_rate: float, grid: np.ndarray, score: np.ndarray, i: int, duration_s: float
) -> float:
    """Periodicity at the chosen period × how clearly it beats its metrical relatives."""
    bpm = float(grid[i])
    comb = float(np.mean(_interp(acf, 60.0 * frame_rate / bpm * np.arange(1, 5))))
    periodic = np.clip(comb / 0.4, 0.0, 1.0)  # 0.4: clearly rhythmic music
    rivals = []
    for factor in _RELATIVES:
        if MIN_BPM <= bpm * factor <= MAX_BPM:
            j = int(np.argmin(np.abs(np.log2(grid / (bpm * factor)))))
            rivals.append(float(score[max(0, j - 3) : j + 4].max()))
    margin = 1.0 - max(rivals) / float(score[i]) if rivals else 1.0
    unambiguous = np.clip(margin / 0.3, 0.0, 1.0) ** 0.5
    enough_beats = np.clip(duration_s * bpm / 60.0 / 16.0, 0.0, 1.0)  # 16 beats to be sure
    return float(periodic * unambiguous * enough_beats)


def _track_beats(novelty: np.ndarray, frame_rate: float, bpm: float, duration_s: float) -> list[float]:
    """Beat times by Viterbi decoding of a bar-pointer style HMM near ``bpm``.

    The state space is madmom's beat state space (Krebs, Böck & Widmer 2015): one chain of
    positions per beat interval, intervals within ±15 % of ``bpm``; tempo may change only at a
    beat, with probability ``exp(-λ |ratio - 1|)``; beat states (the first 1/16 of a period)
    emit the normalised onset novelty. Each decoded beat is moved to the novelty peak in its
    beat-state region.
    """
    top = float(np.percentile(novelty, 99)) if len(novelty) else 0.0
    if len(novelty) < 8 or top <= 0:
        return []
    obs = np.clip(novelty / top, 0.0, 1.0) * 0.9 + 0.05
    factor = _DBN_UPSAMPLE
    fps = frame_rate * factor
    grid = np.arange(len(obs) * factor) / factor
    obs_up = np.interp(grid, np.arange(len(obs)), obs)
    lo, hi = 60.0 * fps / (bpm * _DBN_TEMPO_RANGE), 60.0 * fps / (bpm / _DBN_TEMPO_RANGE)
    intervals = np.unique(np.round(np.geomspace(lo, hi, 24)).astype(np.int64))
    intervals = intervals[intervals >= 2]
    if len(intervals) == 0:
        return []
    ratio = intervals[None, :] / intervals[:, None]
    trans = np.exp(-_DBN_TRANSITION_LAMBDA * np.abs(ratio - 1.0))
    trans /= trans.sum(axis=1, keepdims=True)
    log_trans = np.log(np.maximum(trans, 1e-300))
    region = np.maximum(1, intervals // _DBN_OBSERVATION_LAMBDA).astype(np.int64)
    log_beat = np.log(obs_up)
    log_other = np.log((1.0 - obs_up) / (_DBN_OBSERVATION_LAMBDA - 1))
    tempo_path, pos_path = _viterbi(log_beat, log_other, intervals, region, log_trans)
    beats = []
    for b in np.flatnonzero(pos_path == 0).tolist():
        r = int(region[tempo_path[b]])
        lo_i, hi_i = max(0, b - r), min(len(obs_up), b + r + 1)
        beats.append(lo_i + int(np.argmax(obs_up[lo_i:hi_i])))
    times = np.unique(np.asarray(beats)) / fps
    return [round(float(t), 3) for t in times if t <= duration_s]


_DBN_UPSAMPLE = 2
_DBN_TEMPO_RANGE = 1.15
_DBN_TRANSITION_LAMBDA = 100.0
_DBN_OBSERVATION_LAMBDA = 16


@numba.njit(cache=True)
def _viterbi(
    log_beat: np.ndarray,
    log_other: np.ndarray,
    intervals: np.ndarray,
    region: np.ndarray,
    log_trans: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Most likely (interval, position) path of the beat HMM; returns both per frame."""
    n_frames = log_beat.shape[0]
    n = intervals.shape[0]
    width = intervals.max()
    v = np.full((n, width), -np.inf)
    new = np.full((n, width), -np.inf)
    log_init = -np.log(intervals.sum())
    for i in range(n):
        for p in range(intervals[i]):
            v[i, p] = log_init + (log_beat[0] if p < region[i] else log_other[0])
    back = np.zeros((n_frames, n), dtype=np.int32)
    for t in range(1, n_frames):
        ob, oo = log_beat[t], log_other[t]
        for i in range(n):
            for p in range(intervals[i] - 1, 0, -1):
                new[i, p] = v[i, p - 1] + (ob if p < region[i] else oo)
            best, arg = -np.inf, 0
            for j in range(n):
                s = v[j, intervals[j] - 1] + log_trans[j, i]
                if s > best:
                    best, arg = s, j
            new[i, 0] = best + ob
            back[t, i] = arg
        for i in range(n):
            for p in range(intervals[i]):
                v[i, p] = new[i, p]
    best, bi, bp = -np.inf, 0, 0
    for i in range(n):
        for p in range(intervals[i]):
            if v[i, p] > best:
                best, bi, bp = v[i, p], i, p
    tempo_path = np.zeros(n_frames, dtype=np.int32)
    pos_path = np.zeros(n_frames, dtype=np.int32)
    i, p = bi, bp
    for t in range(n_frames - 1, -1, -1):
        tempo_path[t], pos_path[t] = i, p
        if p > 0:
            p -= 1
        else:
            i = back[t, i]
            p = intervals[i] - 1
    return tempo_path, pos_path

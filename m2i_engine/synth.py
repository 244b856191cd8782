"""Small, deterministic music synthesiser: the demo clip, test signals and benchmark songs.

m2i ships no audio; instead it renders songs whose tempo, key, metre and style are known exactly,
so the README's first command works without a file and tests can check analysis against the
truth. Everything is numpy, seeded, and fast (a 30 s song renders in well under a second).

Offers
------
- :class:`SongSpec` / :func:`render_song` — drums, bass, chords and a lead in one of several styles.
- :func:`click_track` — a metronome at a given tempo.
- :func:`chord_progression` — sustained triads in a key, for key-detection tests.
- :func:`demo_song` — the clip ``m2i visualize`` uses when given no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from m2i_engine.tags import PITCH_CLASSES

Style = Literal["house", "dnb", "ballad", "rock", "hiphop", "waltz", "ambient", "funk"]
STYLES: tuple[Style, ...] = ("house", "dnb", "ballad", "rock", "hiphop", "waltz", "ambient", "funk")

# Drum patterns on a 16-step bar (12 steps for 3/4): step indices for kick, snare, closed hat.
_DRUMS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "house": ((0, 4, 8, 12), (4, 12), (2, 6, 10, 14)),
    "dnb": ((0, 10), (4, 12), tuple(range(0, 16, 2))),
    "ballad": ((0,), (8,), ()),
    "rock": ((0, 8, 10), (4, 12), tuple(range(0, 16, 2))),
    "hiphop": ((0, 3, 10), (4, 12), tuple(range(0, 16, 2))),
    "waltz": ((0,), (), (4, 8)),
    "ambient": ((), (), ()),
    "funk": ((0, 3, 7, 10), (4, 12, 15), tuple(range(16))),
}
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Scale degrees (0-based) of each bar's chord root.
_PROGRESSION = {"major": (0, 4, 5, 3), "minor": (0, 5, 2, 6)}


@dataclass(frozen=True)
class SongSpec:
    """What to render. Every musical fact a test may check is a field here."""

    bpm: float = 120.0
    tonic: str = "A"
    mode: Literal["major", "minor"] = "minor"
    style: Style = "house"
    duration_s: float = 20.0
    sr: int = 22_050
    swing: float = 0.0
    seed: int = 0

    @property
    def beats_per_bar(self) -> int:
        return 3 if self.style == "waltz" else 4


def render_song(spec: SongSpec) -> np.ndarray:
    """Render ``spec`` to a mono float32 signal peaking at about -1 dBFS."""
    rng = np.random.default_rng(spec.seed)
    sr, n = spec.sr, round(spec.duration_s * spec.sr)
    out = np.zeros(n + sr, dtype=np.float64)  # one second of tail room, cut at the end
    beat_s = 60.0 / spec.bpm
    steps_per_beat = 4
    bpb = spec.beats_per_bar
    step_s = beat_s / steps_per_beat
    bar_s = beat_s * bpb
    n_bars = int(np.ceil(spec.duration_s / bar_s))
    scale = _MAJOR if spec.mode == "major" else _MINOR
    tonic = PITCH_CLASSES.index(spec.tonic)
    kick_steps, snare_steps, hat_steps = _DRUMS[spec.style]
    steps_in_bar = steps_per_beat * bpb

    kick, snare, hat = _kick(sr), _snare(sr, rng), _hat(sr, rng)
    for bar in range(n_bars):
        bar_t = bar * bar_s
        degree = _PROGRESSION[spec.mode][bar % 4]
        root_pc = tonic + scale[degree]
        triad = [
            root_pc + scale[(degree + k) % 7] - scale[degree] + 12 * ((degree + k) // 7) for k in (0, 2, 4)
        ]
        for step in range(steps_in_bar):
            t = bar_t + step * step_s + (spec.swing * step_s * 0.5 if step % 2 else 0.0)
            vel = 0.9 + 0.1 * rng.random()
            if step in kick_steps:
                _add(out, kick, t, sr, 0.9 * vel)
            if step in snare_steps:
                _add(out, snare, t, sr, 0.55 * vel)
            if step in hat_steps:
                _add(out, hat, t, sr, (0.22 if step % 4 else 0.3) * vel)
        _add_harmony(out, spec, triad, root_pc, bar_t, beat_s, bpb, rng)

    out = out[:n]
    fade = min(n // 4, int(0.02 * sr))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * (0.89 / peak)).astype(np.float32)


def click_track(bpm: float, duration_s: float, sr: int = 22_050, *, accent_every: int = 4) -> np.ndarray:
    """A metronome: 1 kHz clicks on each beat, accented (2 kHz) on every ``accent_every``-th."""
    n = round(duration_s * sr)
    out = np.zeros(n + sr, dtype=np.float64)
    t = np.arange(int(0.03 * sr)) / sr
    env = np.exp(-t * 150.0)
    for i, onset in enumerate(np.arange(0.0, duration_s, 60.0 / bpm)):
        f = 2000.0 if i % accent_every == 0 else 1000.0
        _add(out, np.sin(2 * np.pi * f * t) * env, float(onset), sr, 0.8)
    return out[:n].astype(np.float32)


def chord_progression(
    tonic: str, mode: Literal["major", "minor"], *, duration_s: float = 8.0, sr: int = 22_050, seed: int = 0
) -> np.ndarray:
    """Sustained diatonic triads (i/I–iv/IV–V–i/I cadence) with a bass note: key-detection material."""
    rng = np.random.default_rng(seed)
    scale = _MAJOR if mode == "major" else _MINOR
    tonic_pc = PITCH_CLASSES.index(tonic)
    degrees = (0, 3, 4, 0)
    out = np.zeros(round(duration_s * sr) + sr, dtype=np.float64)
    seg = duration_s / len(degrees)
    for i, d in enumerate(degrees):
        pcs = [scale[(d + k) % 7] + 12 * ((d + k) // 7) for k in (0, 2, 4)]
        if d == 4:  # harmonic minor: raise the leading tone, as real minor-key cadences do
            pcs = [p + 1 if (p % 12) == 10 and mode == "minor" else p for p in pcs]
        for p in pcs:
            _add(out, _tone(sr, 60 + tonic_pc + p, seg, rng, harmonics=6, decay=0.6), i * seg, sr, 0.25)
        _add(out, _tone(sr, 48 + tonic_pc + scale[d], seg, rng, harmonics=4, decay=0.6), i * seg, sr, 0.3)
    out = out[: round(duration_s * sr)]
    return (out / (np.max(np.abs(out)) or 1.0) * 0.8).astype(np.float32)


def demo_song(sr: int = 22_050) -> np.ndarray:
    """The built-in demo: 20 s of minor-key house at 124 BPM."""
    return render_song(
        SongSpec(bpm=124.0, tonic="A", mode="minor", style="house", duration_s=20.0, sr=sr, seed=7)
    )


# --- private helpers ---------------------------------------------------------------------------


def _add(out: np.ndarray, sound: np.ndarray, t_s: float, sr: int, gain: float) -> None:
    i = round(t_s * sr)
    if i >= len(out) or i < 0:
        return
    m = min(len(sound), len(out) - i)
    out[i : i + m] += gain * sound[:m]


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _kick(sr: int) -> np.ndarray:
    t = np.arange(int(0.35 * sr)) / sr
    freq = 45.0 + 110.0 * np.exp(-t * 30.0)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) * np.exp(-t * 9.0) + 0.3 * np.exp(-t * 300.0)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.22 * sr)) / sr
    noise = rng.standard_normal(len(t))
    noise = np.diff(noise, prepend=0.0)  # brighter noise
    return 0.6 * noise * np.exp(-t * 22.0) + 0.5 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t * 30.0)


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.06 * sr)) / sr
    noise = np.diff(rng.standard_normal(len(t) + 1), n=1)
    return noise * np.exp(-t * 70.0) * 0.5


def _tone(
    sr: int,
    midi: float,
    dur_s: float,
    rng: np.random.Generator,
    *,
    harmonics: int = 5,
    decay: float = 2.0,
    detune_cents: float = 4.0,
) -> np.ndarray:
    t = np.arange(int(dur_s * sr)) / sr
    f0 = _midi_hz(midi) * 2.0 ** (rng.uniform(-detune_cents, detune_cents) / 1200.0)
    wave = np.zeros_like(t)
    for h in range(1, harmonics + 1):
        if f0 * h < sr / 2.2:
            wave += np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h
    attack = np.minimum(1.0, t / 0.01)
    release = np.minimum(1.0, (t[-1] - t) / 0.05) if len(t) else t
    return wave * attack * release * np.exp(-t * decay)


def _add_harmony(
    out: np.ndarray,
    spec: SongSpec,
    triad: list[int],
    root_pc: int,
    bar_t: float,
    beat_s: float,
    bpb: int,
    rng: np.random.Generator,
) -> None:
    sr = spec.sr
    base = 57 + PITCH_CLASSES.index("C") - 9  # MIDI 48 = C3
    bar_s = beat_s * bpb
    if spec.style in ("ambient", "ballad"):
        for p in triad:  # long pad chord per bar
            _add(out, _tone(sr, base + 12 + p, bar_s * 1.1, rng, harmonics=4, decay=0.8), bar_t, sr, 0.16)
    else:
        for beat in range(bpb):  # stabbed chords on the off-beats
            t = bar_t + beat * beat_s + beat_s / 2
            for p in triad:
                _add(out, _tone(sr, base + 12 + p, beat_s * 0.4, rng, harmonics=5, decay=6.0), t, sr, 0.08)
    # bass: root on each beat (ambient: one long note)
    if spec.style == "ambient":
        _add(out, _tone(sr, base - 12 + root_pc % 12, bar_s, rng, harmonics=3, decay=0.5), bar_t, sr, 0.3)
    else:
        for beat in range(bpb):
            _add(
                out,
                _tone(sr, base - 12 + root_pc % 12, beat_s * 0.8, rng, harmonics=6, decay=4.0),
                bar_t + beat * beat_s,
                sr,
                0.32,
            )
    # lead: an arpeggio of the triad on eighth notes (ballad: quarter notes)
    sub = 1 if spec.style in ("ballad", "ambient") else 2
    for i in range(bpb * sub):
        p = triad[i % 3] + (12 if (i // 3) % 2 else 0)
        _add(
            out,
            _tone(sr, base + 24 + p, beat_s / sub * 0.9, rng, harmonics=3, decay=5.0),
            bar_t + i * beat_s / sub,
            sr,
            0.07,
        )

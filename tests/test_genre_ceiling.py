"""The genre ceiling study's parts: grouped bootstrap intervals, the set-label MLP, the signal descriptors,
the ensemble vote and the scoring of allowed sets (no data needed: toy inputs and the synthetic demo song)."""

from __future__ import annotations

import numpy as np
import pytest

from training.common import bootstrap_ci

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def test_bootstrap_interval_holds_the_mean_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    hits = rng.random(400) < 0.7
    lo, hi = bootstrap_ci(hits)
    assert 0.0 <= lo < hits.mean() < hi <= 1.0
    # about ±1.96 · sqrt(p(1-p)/n) = ±4.5 points for 400 independent songs
    assert 0.06 < hi - lo < 0.12
    assert bootstrap_ci(hits) == (lo, hi)
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))


def test_resampling_artists_widens_the_interval_when_an_artists_songs_agree() -> None:
    # 40 artists of 10 songs each; an artist's songs are all right or all wrong
    artist_right = np.random.default_rng(1).random(40) < 0.7
    hits = np.repeat(artist_right, 10)
    groups = np.repeat(np.arange(40), 10)
    song_lo, song_hi = bootstrap_ci(hits)
    art_lo, art_hi = bootstrap_ci(hits, groups)
    # 40 independent draws, not 400: the interval is about sqrt(10) ≈ 3 times as wide
    assert (art_hi - art_lo) > 2.5 * (song_hi - song_lo)


def test_set_label_mlp_learns_classes_and_puts_a_set_rows_mass_inside_its_set() -> None:
    from training.genre_ceiling import SetMLP

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 16)) * 3
    y = np.repeat(np.arange(4), 60)
    x = centres[y] + rng.normal(size=(len(y), 16))
    allowed = np.eye(4, dtype=bool)[y]
    # songs of class 3 are only known to be "2 or 3", as a Pop/Rock clip is "pop, rock or metal"
    allowed[y == 3, 2] = True
    model = SetMLP(hidden=32, steps=200, seeds=1).fit(x, allowed, np.ones(len(y)))
    p = model.predict_proba(centres[:3] + rng.normal(size=(3, 16)) * 0.1)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert list(p.argmax(1)) == [0, 1, 2]
    q = model.predict_proba(centres[3:] + 0.0)
    assert q[0, 2] + q[0, 3] > 0.9


def test_geometric_mean_is_a_normalised_vote() -> None:
    from training.genre_ceiling import geometric_mean

    a = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    flat = np.full_like(a, 1 / 3)
    g = geometric_mean(a, flat)
    assert np.allclose(g.sum(1), 1.0)
    assert np.array_equal(g.argmax(1), a.argmax(1))
    # two experts that disagree: the one that is surer wins
    b = np.array([[0.4, 0.5, 0.1], [0.1, 0.1, 0.8]])
    assert geometric_mean(a, b)[0].argmax() == 0


def test_signal_descriptors_hear_the_demo_songs_beat() -> None:
    from m2i_engine.analysis.features import compute_features
    from m2i_engine.synth import demo_song
    from training.genre_ceiling import LAGS_S, signal_descriptors

    d = signal_descriptors(compute_features(y=demo_song(), sr=22_050))
    assert d.shape == (159,) and np.all(np.isfinite(d))
    # the broadband onset autocorrelation follows MFCCs (60), contrast (14) and 11 scalars
    acf = d[85 : 85 + len(LAGS_S)]
    band = (LAGS_S > 0.3) & (LAGS_S < 0.7)
    beat = 60.0 / 124.0
    best = LAGS_S[band][np.argmax(acf[band])]
    assert abs(best - beat) / beat < 0.1


def test_scores_count_an_answer_inside_the_allowed_set_as_right() -> None:
    from training import train_genre as tg
    from training.genre_ceiling import score_row

    n = 6
    allowed = np.zeros((n, tg.N_CLASSES), bool)
    allowed[np.arange(n), np.arange(n)] = True
    allowed[5, 7] = True  # a set-labelled song: class 5 or 7
    pool = tg.Pool(
        collection=np.array(["mer4q"] * n),
        label=np.arange(n),
        group=np.array(["a", "a", "b", "b", "c", "c"]),
        pop_rock=np.zeros(n, bool),
        allowed=allowed,
        no_fit=np.zeros(n, bool),
        patches={},
        local=np.arange(n),
    )
    probs = np.eye(tg.N_CLASSES)[[0, 1, 9, 3, 9, 7]]
    out = score_row(pool, {"mer4q_artists": np.arange(n)}, {"mer4q_artists": probs})
    assert out["mer4q_artists"]["acc"] == pytest.approx(4 / 6)
    lo, hi = out["mer4q_artists"]["ci"]
    assert lo <= 4 / 6 <= hi
    with pytest.raises(ValueError):
        pool.add_song_features("too_short", np.zeros((n - 1, 3)))
    assert pool.add_song_features("x", np.ones((n, 3))) == ("x",)
    assert pool.song_x(np.array([0, 2]), ("x",)).shape == (2, 3)

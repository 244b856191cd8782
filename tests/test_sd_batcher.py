"""The micro-batcher: concurrent requests share one pipeline call and get their own images back.

Batched images must equal the unbatched ones (same seeds) within float tolerance; requests that can't
share a call (another size) are run apart; a blocking caller (the engine's worker threads) batches
too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

import numpy as np

from m2i_engine.imaging.sd.backend import SDBackend
from m2i_engine.imaging.sd.batcher import SDBatcher
from m2i_engine.imaging.sd.factory import load_sd_backend
from tests.test_sd_tiny import make_request, pixels, tiny_sd_dir, tiny_settings, torch_threads  # noqa: F401

#: long enough for four requests to arrive on a loaded 2-core machine; a full batch leaves at once
WINDOW_MS = 1000.0
GENRES = ("jazz", "metal", "classical", "electronic")


@pytest.fixture(scope="module")
def backend(tiny_sd_dir: Path) -> SDBackend:  # noqa: F811
    b = load_sd_backend(tiny_settings(tiny_sd_dir, max_batch=8), batching=False)
    assert isinstance(b, SDBackend)
    return b


@pytest.fixture(scope="module")
def solo(backend: SDBackend) -> list[np.ndarray]:
    """Each of the four songs generated alone (the reference)."""
    return [
        pixels(backend.generate(make_request(seed=100 + i, genre=g))[0].image) for i, g in enumerate(GENRES)
    ]


@pytest.fixture
def batcher(backend: SDBackend) -> Iterator[SDBatcher]:
    with SDBatcher(backend, max_batch=4, window_ms=WINDOW_MS) as b:
        yield b


async def test_four_concurrent_requests_make_one_pipeline_call(
    backend: SDBackend, batcher: SDBatcher, solo: list[np.ndarray]
) -> None:
    calls = backend.calls
    results = await asyncio.gather(
        *(batcher.agenerate(make_request(seed=100 + i, genre=g)) for i, g in enumerate(GENRES))
    )
    assert backend.calls - calls == 1
    assert batcher.stats.batch_sizes == [4] and batcher.stats.requests == 4
    for (image,), want in zip(results, solo, strict=True):
        got = pixels(image.image)
        assert np.abs(got - want).max() <= 2.0 and np.abs(got - want).mean() < 0.1
    assert [r[0].seed for r in results] == [100, 101, 102, 103]


async def test_requests_that_cannot_share_a_call_run_apart(backend: SDBackend, batcher: SDBatcher) -> None:
    requests = [
        make_request(seed=1),
        make_request(seed=2, width=64, height=48),
        make_request(seed=3),
        make_request(seed=4, width=64, height=48),
    ]
    results = await asyncio.gather(*(batcher.agenerate(r) for r in requests))
    assert sorted(batcher.stats.batch_sizes) == [2, 2]
    assert [r[0].image.size for r in results] == [(64, 64), (64, 48), (64, 64), (64, 48)]


def test_blocking_callers_from_threads_are_batched(batcher: SDBatcher, solo: list[np.ndarray]) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda ig: batcher.generate(make_request(seed=100 + ig[0], genre=ig[1])), enumerate(GENRES)
            )
        )
    assert batcher.stats.images == 4 and batcher.stats.pipeline_batches <= 2
    for (image,), want in zip(results, solo, strict=True):
        assert np.abs(pixels(image.image) - want).max() <= 2.0


async def test_multi_image_requests_fill_batches_up_to_the_limit(batcher: SDBatcher) -> None:
    a, b = await asyncio.gather(
        batcher.agenerate(make_request(seed=10, num_images=3)),
        batcher.agenerate(make_request(seed=20, num_images=2)),
    )
    assert [im.seed for im in a] == [10, 11, 12] and [im.seed for im in b] == [20, 21]
    assert sorted(batcher.stats.batch_sizes) == [2, 3]


def test_closed_batcher_refuses_work(backend: SDBackend) -> None:
    b = SDBatcher(backend, max_batch=2, window_ms=5)
    b.close()
    b.close()  # idempotent
    with pytest.raises(RuntimeError):
        b.generate(make_request())

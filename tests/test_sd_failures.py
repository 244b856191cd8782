"""The GPU's failures, injected at the boundary by real modules of a real (tiny) pipeline.

Out of memory comes from a UNet forward hook that raises ``torch.OutOfMemoryError`` when a call needs
more than a memory budget (so smaller batches and images really do fit), or the first N times; NaN
and black pictures come from UNet / VAE-decoder hooks that poison their output. The backend must fall
back (smaller batch → smaller image → clear error; another seed → clear error), never crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

import numpy as np
import torch

from m2i_engine.imaging.sd import SDBadOutputError, SDOutOfMemoryError, load_sd_backend
from m2i_engine.imaging.sd.backend import NAN_SEED_STEP, SDBackend
from m2i_engine.imaging.sd.batcher import SDBatcher
from m2i_engine.imaging.sd.failures import is_oom
from tests.test_sd_tiny import make_request, pixels, tiny_sd_dir, tiny_settings, torch_threads  # noqa: F401


class MemoryBudget:
    """UNet pre-hook: 'allocates' the latent batch and raises OOM above ``budget`` elements, or for
    the first ``fail_first`` calls. Records the (batch, height, width) of every call."""

    def __init__(self, budget: int | None = None, fail_first: int = 0) -> None:
        self.budget = budget
        self.fail_first = fail_first
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        sample = args[0]
        self.calls.append((sample.shape[0], sample.shape[2], sample.shape[3]))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if self.budget is not None and sample.numel() > self.budget:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory: {sample.numel()} > {self.budget}")


class Poison:
    """Forward hook that replaces the output of its module for the first ``times`` calls: with NaN
    (``rows`` of the batch, default all) or with a constant (a black picture from the VAE)."""

    def __init__(self, times: int, *, value: float = float("nan"), rows: list[int] | None = None) -> None:
        self.times = times
        self.value = value
        self.rows = rows

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if self.times <= 0:
            return output
        self.times -= 1
        if isinstance(output, tuple):
            tensor = output[0]
        else:
            tensor = output.sample if hasattr(output, "sample") else output
        poisoned = tensor.clone()
        if self.rows is None:
            poisoned.fill_(self.value)
        else:
            poisoned[self.rows] = self.value
        if isinstance(output, tuple):
            return (poisoned, *output[1:])
        if hasattr(output, "sample"):
            output.sample = poisoned
            return output
        return poisoned


@pytest.fixture
def backend(tiny_sd_dir: Path) -> Iterator[SDBackend]:  # noqa: F811
    b = load_sd_backend(tiny_settings(tiny_sd_dir, max_batch=4, min_side_px=32), batching=False)
    assert isinstance(b, SDBackend)
    yield b


def _hooked(module: torch.nn.Module, hook: Any, *, pre: bool = False) -> Any:
    return module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)


def test_is_oom_recognises_allocator_errors() -> None:
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_oom_lowers_the_batch_and_keeps_every_image(backend: SDBackend) -> None:
    request = make_request(seed=21, num_images=4)
    expected = [pixels(im.image) for im in backend.generate(request)]
    # CFG doubles the UNet batch: budget = two images' latents at full size (2 × 2 × 4 × 32 × 32)
    budget = MemoryBudget(budget=2 * 2 * 4 * 32 * 32)
    handle = _hooked(backend.pipeline.unet, budget, pre=True)
    try:
        images = backend.generate(request)
    finally:
        handle.remove()
    assert [c[0] for c in budget.calls[:2]] == [8, 4]  # batch 4 failed, batch 2 fits
    assert [im.seed for im in images] == [21, 22, 23, 24]
    for got, want in zip(images, expected, strict=True):
        assert got.image.size == (64, 64) and "oom_fallback_size" not in got.meta
        assert np.abs(pixels(got.image) - want).max() <= 2.0


def test_oom_at_batch_one_lowers_the_size(backend: SDBackend) -> None:
    budget = MemoryBudget(budget=2 * 4 * 16 * 16)  # only a 32×32 picture (16² latents) fits
    handle = _hooked(backend.pipeline.unet, budget, pre=True)
    try:
        image = backend.generate(make_request(seed=4))[0]
    finally:
        handle.remove()
    assert image.image.size == (64, 64)  # resized back to what was asked
    assert image.meta["oom_fallback_size"] == [32, 32]
    assert [c[1] for c in budget.calls] == [32, 24, 16, 16]


def test_oom_the_first_times_then_fits(backend: SDBackend) -> None:
    budget = MemoryBudget(fail_first=1)
    handle = _hooked(backend.pipeline.unet, budget, pre=True)
    try:
        images = backend.generate(make_request(seed=9, num_images=2))
    finally:
        handle.remove()
    assert len(images) == 2 and budget.calls[0][0] == 4 and budget.calls[1][0] == 2


def test_oom_everywhere_is_a_clear_error(backend: SDBackend) -> None:
    handle = _hooked(backend.pipeline.unet, MemoryBudget(budget=0), pre=True)
    try:
        with pytest.raises(SDOutOfMemoryError) as err:
            backend.generate(make_request())
    finally:
        handle.remove()
    assert err.value.code == "sd_out_of_memory" and "memory" in err.value.message


def test_oom_reaches_every_waiting_request_through_the_batcher(backend: SDBackend) -> None:
    handle = _hooked(backend.pipeline.unet, MemoryBudget(budget=0), pre=True)
    try:
        with SDBatcher(backend, max_batch=4, window_ms=50) as batcher:
            futures = [batcher._enqueue(backend.prepare(make_request(seed=s))) for s in (1, 2)]
            for fut in futures:
                with pytest.raises(SDOutOfMemoryError):
                    fut.result(timeout=60)
    finally:
        handle.remove()


def test_nan_latents_retry_once_with_another_seed(backend: SDBackend) -> None:
    request = make_request(seed=30)
    handle = _hooked(backend.pipeline.unet, Poison(times=1))
    try:
        image = backend.generate(request)[0]
    finally:
        handle.remove()
    assert image.seed == 30 and image.meta["retry_seed"] == 30 + NAN_SEED_STEP
    assert np.isfinite(pixels(image.image)).all()
    same = backend.generate(make_request(seed=30 + NAN_SEED_STEP))[0]  # the retry is reproducible
    assert np.array_equal(pixels(same.image), pixels(image.image))


def test_only_the_broken_image_of_a_batch_is_redone(backend: SDBackend) -> None:
    request = make_request(seed=40, num_images=2)
    expected = [pixels(im.image) for im in backend.generate(request)]
    handle = _hooked(backend.pipeline.unet, Poison(times=1, rows=[0]))  # image 0's unconditional row
    try:
        first, second = backend.generate(request)
    finally:
        handle.remove()
    assert first.meta["retry_seed"] == 40 + NAN_SEED_STEP and "retry_seed" not in second.meta
    assert np.abs(pixels(second.image) - expected[1]).max() <= 2.0


def test_black_decode_is_retried_then_a_clear_error(backend: SDBackend) -> None:
    handle = _hooked(backend.pipeline.vae.decoder, Poison(times=1, value=-1.0))
    try:
        image = backend.generate(make_request(seed=50))[0]
    finally:
        handle.remove()
    assert image.meta["retry_seed"] == 50 + NAN_SEED_STEP and pixels(image.image).max() > 0
    handle = _hooked(backend.pipeline.unet, Poison(times=10**6))
    try:
        with pytest.raises(SDBadOutputError) as err:
            backend.generate(make_request(seed=51))
    finally:
        handle.remove()
    assert err.value.code == "sd_bad_output"

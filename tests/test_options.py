"""User options: validation, sizes, and the CLI flags generated from them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from m2i_engine.errors import InvalidOptionError
from m2i_engine.options import MAX_SEED, Aspect, VisualizeOptions, check_video_options


@pytest.mark.parametrize("aspect", list(Aspect))
def test_aspect_sizes_keep_ratio_and_multiple_of_8(aspect: Aspect) -> None:
    w, h = aspect.size(1024)
    rw, rh = (int(x) for x in aspect.value.split(":"))
    assert max(w, h) == 1024
    assert w % 8 == 0 and h % 8 == 0
    assert abs(w / h - rw / rh) < 0.02


@pytest.mark.parametrize(
    "bad",
    [
        {"seed": -1},
        {"seed": MAX_SEED + 1},
        {"size": 10_000},
        {"num_images": 0},
        {"style": "nope"},
        {"aspect": "7:3"},
        {"prompt": "x" * 401},
        {"unknown": 1},
    ],
)
def test_bad_options_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        VisualizeOptions(**bad)  # type: ignore[arg-type]


def test_blank_text_becomes_none() -> None:
    assert VisualizeOptions(prompt="   \n ").prompt is None


def test_a_video_is_one_picture_checked_without_loading_the_video_code() -> None:
    check_video_options(VisualizeOptions())
    with pytest.raises(InvalidOptionError, match="leave out --num-images 2") as e:
        check_video_options(VisualizeOptions(num_images=2))
    assert e.value.code == "invalid_option"
    # pure option checking, for the HTTP API and the queue's front end: no PyAV, no numpy behind it
    code = "import sys, m2i_engine.options; print(sorted({'av', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""The music video's frames in the encoder's planes (``Yuv420``): the same pixels FFmpeg's own RGB →
yuv420p conversion gives, crops that stay 4:2:0, and a beat flash that looks like the RGB one it replaced.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from m2i_engine.imaging.video.video import FLASH_GAIN, FLASH_OFFSET, _flash_luts
from m2i_engine.imaging.video.writer import Yuv420

av = pytest.importorskip("av")

#: a full-height beat's flash (``_flash_luts`` takes the level in 32nds)
FULL = 32


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """A yuv420p frame's Y, U and V planes, without the rows' padding."""
    w, h = frame.width, frame.height
    sides = ((w, h), (w // 2, h // 2), (w // 2, h // 2))
    return [
        np.frombuffer(p, np.uint8).reshape(ph, p.line_size)[:, :pw].copy()
        for p, (pw, ph) in zip(frame.planes, sides, strict=True)
    ]


def rgb_flash(image: Image.Image, level: int) -> Image.Image:
    """The beat flash as the video drew it on RGB frames before it composed in planes (commit ffa1fdf's
    ``_flash_lut``): each channel times ``1 + gain``, plus an offset, clipped at 255."""
    a = level / 32.0
    v = np.arange(256, dtype=float)
    lut = np.clip(np.round(v * (1.0 + FLASH_GAIN * a) + FLASH_OFFSET * a), 0, 255).astype(int).tolist()
    return image.point(lut * 3)


def psnr(a: Image.Image, b: Image.Image) -> float:
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(10 * np.log10(255.0**2 / max(float(np.mean(d**2)), 1e-12)))


#: bright, saturated colours and the near-white tints a flash pushes into the clip at 255
BRIGHT = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 128, 0),
    (255, 200, 40),
    (255, 255, 200),
    (255, 230, 230),
    (230, 240, 255),
    (250, 250, 250),
)
PATCH = 32


def bright_frame() -> Image.Image:
    """Flat patches of :data:`BRIGHT` (4 across, 3 down, on even edges), a band of fully saturated hues
    at full value below them."""
    w = 4 * PATCH
    img = np.zeros((3 * PATCH + PATCH, w, 3), np.uint8)
    for i, c in enumerate(BRIGHT):
        r, q = divmod(i, 4)
        img[r * PATCH : (r + 1) * PATCH, q * PATCH : (q + 1) * PATCH] = c
    hue = np.linspace(0.0, 6.0, w, endpoint=False)
    band = np.clip(np.stack([abs(hue - 3) - 1, 2 - abs(hue - 2), 2 - abs(hue - 4)], axis=-1), 0, 1)
    img[3 * PATCH :] = np.round(band * 255).astype(np.uint8)[None]
    return Image.fromarray(img)


def random_rgb(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_planes_are_ffmpegs_own_conversion() -> None:
    for img in (random_rgb(64, 48), bright_frame(), random_rgb(10, 6, seed=1).convert("L")):
        ours = planes(Yuv420.from_rgb(img).video_frame())
        ffmpeg = planes(av.VideoFrame.from_image(img.convert("RGB")).reformat(format="yuv420p"))
        for got, want in zip(ours, ffmpeg, strict=True):
            assert got.shape == want.shape
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_a_crop_at_odd_corners_stays_4_2_0_and_shows_its_region() -> None:
    w, h = 16, 12
    y = np.arange(w * h, dtype=np.uint8).reshape(h, w)
    uv = (np.arange(w // 2 * h, dtype=np.uint8).reshape(h, w // 2) * 3).astype(np.uint8)
    pic = Yuv420(Image.fromarray(y), Image.fromarray(uv))
    left, top, right, bottom = 1, 3, 12, 10  # 11 × 7: trimmed to 10 × 6
    frame = pic.video_frame((left, top, right, bottom))
    assert (frame.width, frame.height) == (10, 6)
    got_y, got_u, got_v = planes(frame)
    np.testing.assert_array_equal(got_y, y[top : top + 6, left : left + 10])
    # the chroma from the half-pixel below the odd corner: columns 0..4, rows 1..3 of each plane
    np.testing.assert_array_equal(got_u, uv[1:4, 0:5])
    np.testing.assert_array_equal(got_v, uv[h // 2 + 1 : h // 2 + 4, 0:5])
    whole = pic.video_frame()
    assert (whole.width, whole.height) == (w, h)
    np.testing.assert_array_equal(planes(whole)[0], y)


@pytest.mark.parametrize("size", [(5, 4), (4, 5), (7, 9)])
def test_odd_sides_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="even sides"):
        Yuv420.from_rgb(Image.new("RGB", size, (200, 30, 30)))


@pytest.mark.parametrize("level", [FULL // 2, FULL])
def test_the_flash_looks_like_the_rgb_flash_on_a_bright_saturated_frame(level: int) -> None:
    img = bright_frame()
    rgb = Yuv420.from_rgb(rgb_flash(img, level)).video_frame().to_image()
    yuv = Yuv420.from_rgb(img).point(*_flash_luts(level)).video_frame().to_image()
    assert psnr(yuv, rgb) >= 35.0
    # inside the patches (away from the edges 4:2:0 chroma straddles) it is the RGB flash to within
    # rounding: no over-saturated tint where RGB clipped toward white
    a, b = np.asarray(yuv, int), np.asarray(rgb, int)
    for i, colour in enumerate(BRIGHT):
        r, q = divmod(i, 4)
        inside = (slice(r * PATCH + 2, (r + 1) * PATCH - 2), slice(q * PATCH + 2, (q + 1) * PATCH - 2))
        assert np.abs(a[inside] - b[inside]).max() <= 3, (colour, a[inside][0, 0], b[inside][0, 0])


def test_the_flash_brightens_and_a_weaker_beat_less() -> None:
    img = bright_frame().convert("L").convert("RGB")  # greys: luma alone
    base = Yuv420.from_rgb(img)
    lum = [np.asarray(base.point(*_flash_luts(k)).y, float).mean() for k in (0, FULL // 2, FULL)]
    assert lum[0] == pytest.approx(np.asarray(base.y, float).mean(), abs=0.5)
    assert lum[0] < lum[1] < lum[2]

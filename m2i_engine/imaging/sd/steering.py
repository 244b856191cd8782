"""Music in more than words: the built-in renderer's picture of the song steers Stable Diffusion.

The prompt carries genre, mood and tempo as words; the renderer already turns the same tags into a
composition (motif from genre, rhythm of shapes from beats, density from energy) and a palette (hue from
key, temperature from mood). This module hands those to diffusion in three ways, each a setting in
:class:`~m2i_engine.config.sd.SteeringSettings`:

- ``init="composition"``: the render is the img2img init at ``init_strength`` — layout and colours;
- ``init="palette"``: a heavily blurred render is the init — colours and where they sit, no shapes;
- ``palette_transfer``: the finished image's OKLab mean/spread is pulled toward the render's.

Offers :class:`MusicGuide` (what the renderer contributes to one image), :class:`MusicSteering`
(renders the guides for a request; finishes images) and :func:`transfer_colours`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from m2i_engine.config.sd import SteeringSettings
from m2i_engine.imaging.base import ImageBackend, ImageRequest

log = logging.getLogger(__name__)

#: blur radius of the palette init, as a fraction of the longer side: keeps colour fields, drops shapes
PALETTE_BLUR = 0.12
#: colour statistics are measured on a copy this small (fast, and enough for a mean and a spread)
STATS_SIDE_PX = 96


@dataclass(frozen=True)
class MusicGuide:
    """What the renderer contributes to one image: an init picture, a colour reference, the palette."""

    init_image: Image.Image | None = None
    reference: Image.Image | None = None
    palette: tuple[str, ...] = ()
    #: why steering was skipped, when it was (shown in the image's meta)
    note: str | None = None


class MusicSteering:
    """Renders the song with the built-in renderer (any :class:`ImageBackend`) to guide diffusion."""

    def __init__(self, renderer: ImageBackend | None) -> None:
        self.renderer = renderer

    def guides(
        self, request: ImageRequest, *, width: int, height: int, settings: SteeringSettings
    ) -> list[MusicGuide]:
        """One guide per image of ``request`` (image *i* renders with seed ``request.seed + i``) at the
        generated size; empty guides when steering is off or the renderer fails."""
        wants_render = settings.init != "none" or settings.palette_transfer > 0
        if not wants_render or self.renderer is None:
            return [MusicGuide() for _ in range(request.num_images)]
        try:
            renders = self.renderer.generate(dataclasses.replace(request, width=width, height=height))
        except Exception as exc:  # the renderer is a guide, never a reason to fail the picture
            log.warning("music steering skipped: renderer failed: %s", exc)
            note = f"renderer failed: {type(exc).__name__}"
            return [MusicGuide(note=note) for _ in range(request.num_images)]
        out = []
        for render in renders:
            image = render.image.convert("RGB")
            raw = render.meta.get("palette", ())
            palette = tuple(str(c) for c in raw) if isinstance(raw, list | tuple) else ()
            out.append(
                MusicGuide(init_image=_init_from(image, settings.init), reference=image, palette=palette)
            )
        return out

    @staticmethod
    def finish(image: Image.Image, guide: MusicGuide, settings: SteeringSettings) -> Image.Image:
        """Apply the post-hoc part of the steering (palette transfer) to a finished image."""
        if settings.palette_transfer <= 0 or guide.reference is None:
            return image
        return transfer_colours(image, guide.reference, amount=settings.palette_transfer)


def _init_from(render: Image.Image, mode: str) -> Image.Image | None:
    if mode == "composition":
        return render
    if mode == "palette":
        radius = max(1.0, PALETTE_BLUR * max(render.size))
        return render.filter(ImageFilter.GaussianBlur(radius))
    return None


def transfer_colours(image: Image.Image, reference: Image.Image, *, amount: float = 1.0) -> Image.Image:
    """Move ``image``'s per-channel OKLab mean and spread toward ``reference``'s (Reinhard et al. 2001,
    in a perceptual space); ``amount`` 0 returns the image, 1 the full transfer."""
    if amount <= 0:
        return image
    src = _to_oklab(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    ref_small = reference.convert("RGB").resize((STATS_SIDE_PX, STATS_SIDE_PX), Image.Resampling.BILINEAR)
    ref = _to_oklab(np.asarray(ref_small, dtype=np.float32) / 255.0)
    src_small = _to_oklab(
        np.asarray(
            image.convert("RGB").resize((STATS_SIDE_PX, STATS_SIDE_PX), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
        / 255.0
    )
    mu_s, sd_s = src_small.reshape(-1, 3).mean(0), src_small.reshape(-1, 3).std(0) + 1e-4
    mu_r, sd_r = ref.reshape(-1, 3).mean(0), ref.reshape(-1, 3).std(0) + 1e-4
    moved = (src - mu_s) / sd_s * sd_r + mu_r
    out = src + min(amount, 1.0) * (moved - src)
    rgb = np.clip(_from_oklab(out), 0.0, 1.0)
    return Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8), mode="RGB")


# --- OKLab (Björn Ottosson, 2020) ----------------------------------------------------------------

_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ],
    dtype=np.float32,
)
_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ],
    dtype=np.float32,
)
_M1_INV = np.linalg.inv(_M1).astype(np.float32)
_M2_INV = np.linalg.inv(_M2).astype(np.float32)


def _to_oklab(srgb: np.ndarray) -> np.ndarray:
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    lms = np.cbrt(lin @ _M1.T)
    return lms @ _M2.T


def _from_oklab(lab: np.ndarray) -> np.ndarray:
    lms = (lab @ _M2_INV.T) ** 3
    lin = np.clip(lms @ _M1_INV.T, 0.0, None)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)

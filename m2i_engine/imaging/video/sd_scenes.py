"""Stable Diffusion scenes for a video: one keyframe per section label, its beat poses by latent
interpolation, all diffused once and then blended per frame exactly like the renderer's scenes.

Diffusing every frame of a minute at 30 fps would be 1800 pipeline calls; a :class:`~.scenes.Scene`
needs ``2 × beats per bar`` pictures per label instead (8 in 4/4), so a whole clip is a few dozen images
and the beat clock does the rest (:mod:`.timeline` eases from one pose to the next on every beat):

- the *keyframe* is the section's text-to-image picture: noise ``z_a`` seeded from the song's seed and
  the label, and :func:`~m2i_engine.prompt.section_prompt` (the song's prompt plus the section's name
  and energy words);
- *rest* pose ``i`` starts from ``cos φ_i · z_a + sin φ_i · z_b`` with ``φ_i = A sin(2π i / n)``: a
  closed path through noise space (a mix of two unit Gaussians by cos/sin stays a unit Gaussian, so every
  pose is as sharp as the keyframe) that returns to the keyframe on each downbeat; ``A`` grows with the
  section's energy, so loud sections move further;
- *hit* pose ``i`` is its rest pose turned towards a third noise ``z_c`` (further on the downbeat) with
  the prompt embedding moved towards the section's prompt at full energy.

Runs under the backend's pipeline lock with its LoRAs and scheduler, like the loops' SD path.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from m2i_engine.imaging.animate.diffusion import diffusion, plain_key
from m2i_engine.imaging.base import ImageRequest
from m2i_engine.imaging.sd.backend import SDBackend
from m2i_engine.imaging.video.scenes import SEED_STEP, Scene, SceneDrawer
from m2i_engine.prompt import section_prompt
from m2i_engine.tags import SongSection

#: how far (radians in noise space) the rest poses swing from the keyframe at zero and at full energy
SWING_MIN, SWING_MAX = 0.2, 0.55
#: how far a hit pose turns from its rest pose on a downbeat and on another beat
HIT_DOWNBEAT, HIT_BEAT = 0.45, 0.25
#: how far a hit pose's prompt embedding moves towards the full-energy prompt
HIT_PROMPT = 0.6
#: seed offsets of the flow and hit noises from the keyframe's
FLOW_SEED, HIT_SEED = 101, 202


def pose_latents(
    z_a: torch.Tensor, z_b: torch.Tensor, z_c: torch.Tensor, *, beats_per_bar: int, energy: float
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The starting latents of the rest and hit poses for each beat of the bar (rest 0 is ``z_a``)."""
    swing = SWING_MIN + (SWING_MAX - SWING_MIN) * float(np.clip(energy, 0.0, 1.0))
    rest, hit = [], []
    for i in range(beats_per_bar):
        phi = swing * math.sin(2 * math.pi * i / beats_per_bar)
        r = math.cos(phi) * z_a + math.sin(phi) * z_b
        psi = HIT_DOWNBEAT if i == 0 else HIT_BEAT
        rest.append(r)
        hit.append(math.cos(psi) * r + math.sin(psi) * z_c)
    return rest, hit


def sd_scene_drawer(backend: SDBackend, request: ImageRequest, *, beats_per_bar: int) -> SceneDrawer:
    """A :class:`~.scenes.SceneCache` drawer whose scenes Stable Diffusion paints at the model's size,
    resized to ``request``'s (the video's) size."""
    key = plain_key(backend, request)

    def draw(section: SongSection, label_index: int) -> Scene:
        seed = (request.seed + SEED_STEP * label_index) & 0xFFFFFFFF
        prompts = [
            section_prompt(request.prompt, section),
            section_prompt(request.prompt, section, energy=1.0),
        ]
        with diffusion(backend, key, prompts) as diff:
            z_a, z_b, z_c = (diff.noise(s) for s in (seed, seed + FLOW_SEED, seed + HIT_SEED))
            rest, hit = pose_latents(z_a, z_b, z_c, beats_per_bar=beats_per_bar, energy=section.energy)
            mixes = [(0, 0.0)] * len(rest) + [(0, HIT_PROMPT)] * len(hit)
            images = diff.images([*rest, *hit], mixes, seed=seed, width=request.width, height=request.height)
        return Scene.from_rgb(section.label, images[:beats_per_bar], images[beats_per_bar:])

    return draw

"""The global seeded noise of a result, generated one latent frame at a time.

Every latent frame ``g`` of a result's noise tensor is drawn from its own generator seeded by
``(seed, g)``, so any worker can build any chunk's slice on its own and two overlapping chunks get
bit-identical noise for the frames they share, with no tensor shipped between processes.
"""

from __future__ import annotations

import numpy as np
import torch


def _frame_seed(seed: int, latent_index: int) -> int:
    # SeedSequence mixes the pair well; neighbouring frames get unrelated streams.
    return int(np.random.SeedSequence([seed, latent_index]).generate_state(1, np.uint64)[0])


def latent_noise(seed: int, latent_start: int, latent_frames: int, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """Slice ``[latent_start, latent_start + latent_frames)`` of the result's global noise.

    Returns float32 ``[1, C, latent_frames, h, w]`` for ``frame_shape = (C, h, w)``.
    """
    channels, height, width = frame_shape
    frames = []
    for g in range(latent_start, latent_start + latent_frames):
        generator = torch.Generator(device="cpu").manual_seed(_frame_seed(seed, g))
        frames.append(torch.randn((channels, height, width), generator=generator, dtype=torch.float32))
    return torch.stack(frames, dim=1).unsqueeze(0)

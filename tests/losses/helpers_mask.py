"""Random inputs shared by the mask-loss tests (float64, seeded)."""

from __future__ import annotations

import torch


def random_maps(seed, *shape, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def consistency_inputs(seed, batch=3, copies=4, channels=5, height=4, width=3):
    f_holistic = random_maps(seed, batch, channels, height, width)
    f_occluded = random_maps(seed + 1, copies * batch, channels, height, width)
    m_occluded = random_maps(seed + 2, copies * batch, 1, height, width)
    return f_holistic, f_occluded, m_occluded


def complement_inputs(seed, batch=4, channels=5, height=4, width=3):
    maps = [random_maps(seed + k, batch, channels, height, width) for k in range(5)]
    is_half = torch.tensor([True, False, True, False])[:batch]
    return (*maps, is_half)


def holistic_masks(seed, batch=3, height=4, width=3):
    # Away from 0, so that the mean is well inside the floor.
    return 0.1 + random_maps(seed, batch, 1, height, width)

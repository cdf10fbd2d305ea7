"""Small OAMN configurations and hand-written band geometry shared by the model tests."""

from __future__ import annotations

import torch

from examples.oamn.model import OAMN

#: A fast model: ResNet-18 cut after layer2 at 64x32 (f is 128 x 8 x 4; RGA-S needs a smaller
#: down ratio at 32 positions).
SMALL = {
    "backbone": "resnet18",
    "split_after": "layer2",
    "input_size": (64, 32),
    "mask_down_ratio": 4,
}
HEIGHT, WIDTH = SMALL["input_size"]

# Occlusion type -> (rows, cols) of its band, written out by hand (types 1-4 half top, bottom,
# left, right; 5-8 quarter), for the 64x32 images and the 8x4 feature maps.
ALL = slice(None)
IMAGE_BANDS = {
    1: (slice(0, 32), ALL),
    2: (slice(32, 64), ALL),
    3: (ALL, slice(0, 16)),
    4: (ALL, slice(16, 32)),
    5: (slice(0, 16), ALL),
    6: (slice(48, 64), ALL),
    7: (ALL, slice(0, 8)),
    8: (ALL, slice(24, 32)),
}
FEATURE_BANDS = {
    1: (slice(0, 4), ALL),
    2: (slice(4, 8), ALL),
    3: (ALL, slice(0, 2)),
    4: (ALL, slice(2, 4)),
    5: (slice(0, 2), ALL),
    6: (slice(6, 8), ALL),
    7: (ALL, slice(0, 1)),
    8: (ALL, slice(3, 4)),
}


def small_model(seed: int = 0, **overrides: object) -> OAMN:
    """The SMALL model (with overrides), the same weights for the same seed."""
    torch.manual_seed(seed)
    return OAMN(7, **{**SMALL, **overrides})


def images(count: int, seed: int = 1, size: tuple[int, int] = (HEIGHT, WIDTH)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, *size, generator=generator)


def trained_statistics(model: OAMN) -> OAMN:
    """Give every BatchNorm non-trivial running statistics (a few training-mode passes), so
    eval-mode results differ from the identity initialisation."""
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(images(6, seed=100 + seed, size=model.input_size))
    return model.eval()

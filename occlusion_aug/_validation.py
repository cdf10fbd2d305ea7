"""Argument checks shared by the public functions of this package."""

from __future__ import annotations

import torch
from torch import Tensor


def check_images(images: Tensor, name: str = "images") -> tuple[int, int, int, int]:
    """Raise a TypeError/ValueError naming ``name`` unless it is a floating or uint8 (B, C, H, W)
    tensor."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise TypeError(
            f"{name} must be a floating or uint8 tensor, got {images.dtype}; convert with "
            f"{name}.float()"
        )
    return tuple(images.shape)

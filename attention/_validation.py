"""Argument checks shared by the layers of this package."""

from __future__ import annotations

import torch
from torch import Tensor


def check_positive_int(value: object, name: str) -> int:
    """Raise unless ``value`` is an int >= 1 (bools excluded)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def check_spatial_size(spatial_size: object) -> tuple[int, int]:
    """Raise unless ``spatial_size`` is an ``(H, W)`` pair of positive ints."""
    if not isinstance(spatial_size, tuple | list) or len(spatial_size) != 2:
        raise TypeError(
            f"spatial_size must be the (H, W) pair of the feature maps, got {spatial_size!r}"
        )
    height, width = (check_positive_int(side, "spatial_size") for side in spatial_size)
    return height, width


def check_features(
    features: Tensor,
    name: str,
    in_channels: int,
    spatial_size: tuple[int, int] | None,
    parameter: Tensor,
) -> None:
    """Raise unless ``features`` is a non-empty ``(B, in_channels, *spatial_size)`` floating tensor
    (any ``H, W`` for ``spatial_size=None``) on ``parameter``'s device, of ``parameter``'s dtype
    unless autocast is on for that device."""
    if not isinstance(features, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {features.dtype}")
    batch, channels, height, width = features.shape
    if channels != in_channels:
        raise ValueError(
            f"{name} has {channels} channels, but the layer was built with in_channels="
            f"{in_channels}"
        )
    if spatial_size is not None and (height, width) != spatial_size:
        raise ValueError(
            f"{name} has spatial size (H, W) = {(height, width)}, but the layer was built for "
            f"spatial_size={spatial_size}: the relations between the H*W positions are "
            f"channels of its weights, so build it with spatial_size={(height, width)} or "
            f"resize the features to {spatial_size}"
        )
    if batch == 0:
        raise ValueError(f"{name} is an empty batch (B = 0)")
    if features.device != parameter.device:
        raise ValueError(
            f"{name} is on {features.device} but the layer's parameters are on "
            f"{parameter.device}; move the layer with .to({name}.device)"
        )
    if features.dtype != parameter.dtype and not torch.is_autocast_enabled(features.device.type):
        raise TypeError(
            f"{name} is {features.dtype} but the layer's parameters are {parameter.dtype}; "
            f"convert the layer with .to({name}.dtype) or run it under torch.autocast"
        )

"""Bad input gets a TypeError/ValueError that names the argument."""

from __future__ import annotations

import pytest
import torch

from oamn.occlusion_aug import OcclusionAugmentation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"locations": ("top", "middle")}, ValueError, r"unknown locations \['middle'\]"),
        ({"locations": "top"}, TypeError, "locations must be a sequence of names"),
        ({"locations": ()}, ValueError, "locations must be non-empty"),
        ({"locations": ("top", "top")}, ValueError, "without repeats"),
        ({"areas": (0.5, 1.0)}, ValueError, r"areas must each be in \(0, 1\)"),
        ({"areas": (0.0,)}, ValueError, r"areas must each be in \(0, 1\)"),
        ({"areas": (-0.25,)}, ValueError, r"areas must each be in \(0, 1\)"),
        ({"areas": ()}, ValueError, "areas must be non-empty"),
        ({"area_probs": (0.7, 0.7)}, ValueError, "area_probs must be non-negative and sum to 1"),
        ({"area_probs": (1.2, -0.2)}, ValueError, "area_probs must be non-negative"),
        ({"area_probs": (1.0,)}, ValueError, "area_probs must have one entry per area"),
        ({"patch_area": (0.2, 0.02)}, ValueError, "patch_area must satisfy 0 < low <= high"),
        ({"patch_area": (0.1, 1.5)}, ValueError, r"patch_area must satisfy .* <= 1\.0"),
        ({"patch_area": (0.1,)}, ValueError, "patch_area must be a .low, high. pair"),
        ({"patch_ratio": (0.0, 3.3)}, ValueError, "patch_ratio must satisfy 0 < low"),
        ({"include_holistic": 1}, TypeError, "include_holistic must be a bool"),
    ],
)
def test_bad_configuration(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        OcclusionAugmentation(**kwargs)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([[1.0]], TypeError, "images must be a torch.Tensor"),
        (torch.rand(3, 32, 16), ValueError, r"images must have shape \(B, C, H, W\)"),
        (torch.zeros(2, 3, 32, 16, dtype=torch.int32), TypeError, "floating or uint8 tensor"),
        (torch.zeros(2, 3, 32, 16, dtype=torch.int64), TypeError, "images must be a floating"),
        (torch.zeros(2, 3, 32, 16, dtype=torch.bool), TypeError, "images must be a floating"),
        (torch.rand(0, 3, 32, 16), ValueError, "empty batch"),
        (torch.rand(1, 3, 32, 16), ValueError, "at least 2 images.*pass occluders="),
        (torch.rand(2, 3, 1, 16), ValueError, r"area 0\.25 of a 1-pixel image height"),
        (torch.rand(2, 3, 32, 1), ValueError, "rounds to an empty band"),
    ],
)
def test_bad_images(images, error, match) -> None:
    with pytest.raises(error, match=match):
        OcclusionAugmentation()(images)


def test_bad_generator() -> None:
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        OcclusionAugmentation()(torch.rand(2, 3, 8, 4), generator=0)


@pytest.mark.parametrize(
    ("occluders", "error", "match"),
    [
        (torch.rand(4, 1, 8, 8), ValueError, "occluders have 1 channels but images have 3"),
        (torch.rand(4, 3, 8), ValueError, r"occluders must have shape \(N, C, h, w\)"),
        (torch.rand(0, 3, 8, 8), ValueError, r"occluders must have shape \(N, C, h, w\)"),
        (torch.rand(4, 3, 8, 8).double(), TypeError, r"occluders\.to\(torch\.float32\)"),
        ("bank", TypeError, "occluders must be a torch.Tensor"),
    ],
)
def test_bad_occluders(occluders, error, match) -> None:
    with pytest.raises(error, match=match):
        OcclusionAugmentation()(torch.rand(2, 3, 16, 8), occluders=occluders)


def test_replayed_params_must_fit_the_batch() -> None:
    aug = OcclusionAugmentation()
    params = aug(torch.rand(4, 3, 16, 8)).params
    with pytest.raises(ValueError, match="drawn for a batch of 4 images, but images holds 6"):
        aug(torch.rand(6, 3, 16, 8), params=params)
    with pytest.raises(ValueError, match=r"drawn for sources of size \(16, 8\), got \(32, 16\)"):
        aug(torch.rand(4, 3, 32, 16), params=params)
    with pytest.raises(ValueError, match="drawn without occluders but are replayed with them"):
        aug(torch.rand(4, 3, 16, 8), params=params, occluders=torch.rand(4, 3, 16, 8))
    forced_half = OcclusionAugmentation(areas=(0.5,))(torch.rand(4, 3, 16, 8)).params
    with pytest.raises(ValueError, match=r"areas \[0\.5\] that are not in areas=\(0\.25,\)"):
        OcclusionAugmentation(areas=(0.25,))(torch.rand(4, 3, 16, 8), params=forced_half)
    with pytest.raises(TypeError, match="params must be OcclusionParams"):
        aug(torch.rand(4, 3, 16, 8), params={"area": 0.5})


def test_replayed_occluder_params_must_fit_the_bank() -> None:
    aug = OcclusionAugmentation()
    params = aug(torch.rand(2, 3, 16, 8), occluders=torch.rand(5, 3, 8, 8)).params
    with pytest.raises(ValueError, match="drawn with occluders but are replayed without them"):
        aug(torch.rand(2, 3, 16, 8), params=params)
    with pytest.raises(ValueError, match="drawn for 5 occluders, got 7"):
        aug(torch.rand(2, 3, 16, 8), params=params, occluders=torch.rand(7, 3, 8, 8))

"""Bad configurations and inputs get a TypeError/ValueError that names the argument."""

from __future__ import annotations

import pytest
import torch

from oamn.attention import RGA, RGASpatial


def test_another_feature_size_is_an_error_stating_both_sizes() -> None:
    layer = RGASpatial(64, (16, 8))
    with pytest.raises(ValueError, match=r"spatial size \(H, W\) = \(8, 4\), but the layer was "):
        layer(torch.randn(2, 64, 8, 4))
    with pytest.raises(ValueError, match=r"built for spatial_size=\(16, 8\)"):
        layer(torch.randn(2, 64, 8, 16))  # same H*W, transposed: still refused


@pytest.mark.parametrize(
    ("f", "error", "match"),
    [
        ([[1.0]], TypeError, r"f must be a torch\.Tensor, got list"),
        (
            torch.randn(64, 16, 8),
            ValueError,
            r"f must have shape \(B, C, H, W\), got \(64, 16, 8\)",
        ),
        (torch.ones(2, 64, 16, 8, dtype=torch.int64), TypeError, "f must be a floating tensor"),
        (torch.randn(2, 32, 16, 8), ValueError, "f has 32 channels, but .* in_channels=64"),
        (torch.randn(0, 64, 16, 8), ValueError, r"f is an empty batch \(B = 0\)"),
        (
            torch.randn(2, 64, 16, 8, dtype=torch.float64),
            TypeError,
            r"f is torch\.float64 but the layer.s parameters are torch\.float32; .*\.to\(f",
        ),
    ],
)
def test_bad_features(f: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        RGASpatial(64, (16, 8))(f)


def test_full_layer_names_its_argument_x() -> None:
    with pytest.raises(ValueError, match="x has 3 channels"):
        RGA(64, (8, 8))(torch.randn(2, 3, 8, 8))


def test_features_on_another_device_are_an_error() -> None:
    layer = RGASpatial(64, (16, 8)).to("meta")
    with pytest.raises(ValueError, match=r"f is on cpu but the layer's parameters are on meta"):
        layer(torch.randn(2, 64, 16, 8))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_channels": 64.0}, TypeError, "in_channels must be an int, got float"),
        ({"in_channels": 0}, ValueError, "in_channels must be at least 1, got 0"),
        ({"spatial_size": 128}, TypeError, r"spatial_size must be the \(H, W\) pair"),
        ({"spatial_size": (16, 8, 1)}, TypeError, r"spatial_size must be the \(H, W\) pair"),
        ({"spatial_size": (16, 0)}, ValueError, "spatial_size must be at least 1, got 0"),
        ({"channel_reduction": True}, TypeError, "channel_reduction must be an int, got bool"),
        ({"spatial_reduction": 0}, ValueError, "spatial_reduction must be at least 1"),
        ({"spatial_reduction": 8.0}, TypeError, "spatial_reduction must be an int, got float"),
        ({"down_ratio": "8"}, TypeError, "down_ratio must be an int, got str"),
        (
            {"channel_reduction": 128},
            ValueError,
            r"^channel_reduction=128 leaves no channels for in_channels=64 channels \(64 // 128 = "
            r"0\): use channel_reduction<=64$",
        ),
        (
            {"spatial_size": (2, 2), "spatial_reduction": 8},
            ValueError,
            r"^spatial_reduction=8 leaves no channels for H\*W=4 positions \(4 // 8 = 0\): use "
            r"spatial_reduction<=4$",
        ),
        (  # both set: either one is the fix
            {"spatial_size": (8, 4), "spatial_reduction": 8, "down_ratio": 8},
            ValueError,
            r"^spatial_reduction=8 leaves 4 relation channels over H\*W=32 positions, too few for "
            r"down_ratio=8 \(the spatial scorer needs 7\): use spatial_reduction<=4 \(or "
            r"down_ratio<=5\)$",
        ),
        (  # both set, and no spatial_reduction reaches 7 relations over 4 positions
            {"spatial_size": (2, 2), "spatial_reduction": 2, "down_ratio": 8},
            ValueError,
            r"^spatial_reduction=2 leaves 2 relation channels over H\*W=4 positions, too few for "
            r"down_ratio=8 \(the spatial scorer needs 7\): use down_ratio<=3 \(no "
            r"spatial_reduction leaves 7 of 4\)$",
        ),
        (  # only down_ratio set: the automatic spatial_reduction is already 1
            {"spatial_size": (2, 2), "down_ratio": 8},
            ValueError,
            r"^down_ratio=8 leaves no hidden channels in the spatial scorer: H\*W=4 positions give "
            r"at most 4 relation channels \(spatial_reduction=1\) and down_ratio=8 needs 7; use "
            r"down_ratio<=5$",
        ),
        ({"down_ratio": -1}, ValueError, "down_ratio must be at least 1, got -1"),
    ],
)
def test_bad_spatial_configuration(kwargs: dict, error: type, match: str) -> None:
    arguments = {"in_channels": 64, "spatial_size": (16, 8), **kwargs}
    with pytest.raises(error, match=match):
        RGASpatial(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"use_channel": 1}, TypeError, "use_channel must be a bool, got 1"),
        (
            {"use_spatial": False, "use_channel": False},
            ValueError,
            "use_spatial and use_channel are both False",
        ),
        (
            {"in_channels": 16, "channel_reduction": 8, "down_ratio": 8},
            ValueError,
            r"^channel_reduction=8 leaves 2 relation channels over in_channels=16 channels, too "
            r"few for down_ratio=8 \(the channel scorer needs 7\): use channel_reduction<=2 "
            r"\(or down_ratio<=3\)$",
        ),
        (
            {"in_channels": 4, "down_ratio": 8},
            ValueError,
            r"^down_ratio=8 leaves no hidden channels in the channel scorer: in_channels=4 "
            r"channels give at most 4 relation channels \(channel_reduction=1\) and "
            r"down_ratio=8 needs 7; use down_ratio<=5$",
        ),
    ],
)
def test_bad_full_configuration(kwargs: dict, error: type, match: str) -> None:
    arguments = {"in_channels": 64, "spatial_size": (16, 8), **kwargs}
    with pytest.raises(error, match=match):
        RGA(**arguments)

"""The torchvision backbones cut into E^I and E^II at each stage."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from examples.oamn.model import (
    BACKBONE_SPECS,
    BACKBONES,
    CLASSIFIER_PREFIXES,
    STAGES,
    build_torchvision_model,
    split_backbone,
)

# backbone -> output channels of layer1..layer4, from torchvision's architectures.
CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "mobilenet_v2": (24, 32, 96, 1280),
}
STRIDES = {2: (4, 8, 16, 32), 1: (4, 8, 16, 16)}


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("last_stride", [1, 2])
@pytest.mark.parametrize("split_after", STAGES)
def test_split_shapes_channels_and_stride(
    backbone: str, split_after: str, last_stride: int
) -> None:
    split = split_backbone(build_torchvision_model(backbone), backbone, split_after, last_stride)
    stage = STAGES.index(split_after)
    assert split.low_channels == CHANNELS[backbone][stage]
    assert split.high_channels == CHANNELS[backbone][-1]
    assert split.stride == STRIDES[last_stride][stage]
    # An odd size: every strided layer rounds up.
    x = torch.randn(2, 3, 70, 38)
    with torch.no_grad():
        f = split.low.eval()(x)
        out = split.high.eval()(f)
    assert f.shape == (2, split.low_channels, *split.feature_size((70, 38)))
    final = STRIDES[last_stride][-1]
    assert out.shape == (2, split.high_channels, -(-70 // final), -(-38 // final))
    assert (len(split.high) == 0) == (split_after == "layer4")


def test_resnet50_and_resnet34_channels() -> None:
    for backbone in ("resnet34", "resnet50"):
        split = split_backbone(build_torchvision_model(backbone), backbone)
        assert (split.low_channels, split.high_channels) == CHANNELS[backbone][2:]
        assert split.stride == 16


def test_mobilenet_split_at_stride_16_is_features_0_to_13() -> None:
    model = build_torchvision_model("mobilenet_v2")
    split = split_backbone(model, "mobilenet_v2")
    assert [name for name, _ in split.low.named_children()] == [str(i) for i in range(14)]
    assert [name for name, _ in split.high.named_children()] == [str(i) for i in range(14, 19)]
    # The encoders share torchvision's modules (weights loaded before the split are kept).
    assert split.low[13] is model.features[13]
    assert split.high[-1][0].out_channels == 1280


def test_last_stride_one_changes_only_layer4() -> None:
    model = build_torchvision_model("resnet50")
    before = {n: m.stride for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    split_backbone(model, "resnet50", last_stride=1)
    after = {n: m.stride for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == ["layer4.0.conv2", "layer4.0.downsample.0"]
    assert all(after[n] == (1, 1) for n in changed)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_torchvision_models_are_randomly_initialised(backbone: str) -> None:
    # Pretrained weights (a download) would be the same whatever the seed.
    first = next(p for p in build_torchvision_model(backbone).parameters() if p.ndim == 4)
    second = next(p for p in build_torchvision_model(backbone).parameters() if p.ndim == 4)
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "vgg16"}, r"backbone must be one of"),
        ({"split_after": "layer5"}, r"split_after must be one of"),
        ({"last_stride": 3}, r"last_stride must be 1 or 2"),
    ],
)
def test_split_errors(kwargs: dict, match: str) -> None:
    arguments = {"model": build_torchvision_model("resnet18"), "name": "resnet18", **kwargs}
    with pytest.raises(ValueError, match=match):
        split_backbone(**arguments)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_spec_describes_its_torchvision_model(backbone: str) -> None:
    """The stem and stages of a spec, run in order, are the classification model's trunk: its
    strides and channels are the spec's, and only the ImageNet head (and ResNet's avgpool) is
    left out."""
    spec = BACKBONE_SPECS[backbone]
    model = build_torchvision_model(backbone).eval()
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        for path in spec.stem:
            x = model.get_submodule(path)(x)
        assert x.shape[2:] == (64 // spec.stem_stride, 32 // spec.stem_stride)
        stride = spec.stem_stride
        for paths, factor, channels in zip(
            spec.stages, spec.stage_strides, spec.channels, strict=True
        ):
            for path in paths:
                x = model.get_submodule(path)(x)
            stride *= factor
            assert x.shape[1:] == (channels, 64 // stride, 32 // stride), paths
    used = {path for paths in (spec.stem, *spec.stages) for path in paths}
    weights = {key for key in model.state_dict() if not key.startswith(f"{spec.classifier}.")}
    assert {key for key in weights if not key.startswith(tuple(f"{p}." for p in used))} == set()
    assert f"{spec.classifier}." in CLASSIFIER_PREFIXES


def test_a_spec_must_name_four_stages_of_unique_modules() -> None:
    resnet = BACKBONE_SPECS["resnet18"]
    with pytest.raises(ValueError, match=r"'resnet18': channels needs one entry per stage"):
        dataclasses.replace(resnet, channels=(64, 128, 256))
    with pytest.raises(ValueError, match=r"the last stage must downsample by 2"):
        dataclasses.replace(resnet, stage_strides=(1, 2, 2, 1))
    with pytest.raises(ValueError, match=r"must be unique, got \['conv1', .*'conv1'"):
        dataclasses.replace(resnet, stages=(("layer1",), ("layer2",), ("layer3",), ("conv1",)))

"""Torchvision backbones split into OAMN's two encoders: E^I before the mask, E^II after it.

Every backbone is read as a stem followed by four stages named ``layer1``..``layer4`` (torchvision's
own names for ResNets; for MobileNetV2 the runs of ``features`` between its stride changes):

=============  ==========================  ==========  ===========================================
backbone       stem (stride)               stage       modules, output channels, total stride
=============  ==========================  ==========  ===========================================
resnet18/34    conv1 bn1 relu maxpool (4)  layer1..4   64 / 128 / 256 / 512 ch, 4 / 8 / 16 / 32
resnet50       conv1 bn1 relu maxpool (4)  layer1..4   256 / 512 / 1024 / 2048 ch, 4 / 8 / 16 / 32
mobilenet_v2   features[0:2] (2)           layer1      features[2:4], 24 ch, 4
                                           layer2      features[4:7], 32 ch, 8
                                           layer3      features[7:14], 96 ch, 16
                                           layer4      features[14:19], 1280 ch (the last 1x1
                                                       conv included), 32
=============  ==========================  ==========  ===========================================

``last_stride=1`` removes the downsampling of ``layer4`` (stride 16 instead of 32, the usual ReID
trick; the paper keeps 2). Splitting after ``layer4`` leaves E^II empty (an identity).

Under CPU autocast the strided depthwise convolutions (MobileNetV2's four stride-2 3x3 ones)
compute in float32: oneDNN's bfloat16 kernel of their backward pass is about 3x slower
than its float32 one on the CPU (torch 2.14), which made a bf16 MobileNetV2 step slower than a
float32 one. The modules stay ``nn.Conv2d`` with the same parameters and state-dict keys.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torchvision
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "STAGES",
    "BackboneSplit",
    "Float32Conv2d",
    "build_torchvision_model",
    "split_backbone",
]

#: Supported backbone names (torchvision constructors).
BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")

#: Stage names, in order; ``split_after`` takes one of them.
STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")

# MobileNetV2 ``features`` index ranges of the stem and the four stages (see the module table).
_MOBILENET_PARTS = {
    "stem": range(2),
    "layer1": range(2, 4),
    "layer2": range(4, 7),
    "layer3": range(7, 14),
    "layer4": range(14, 19),
}

# Stride of the stem and stride factor of each stage before ``last_stride`` applies to layer4.
_STEM_STRIDE = {"resnet18": 4, "resnet34": 4, "resnet50": 4, "mobilenet_v2": 2}
_STAGE_STRIDE = {
    "resnet": {"layer1": 1, "layer2": 2, "layer3": 2},
    "mobilenet_v2": {"layer1": 2, "layer2": 2, "layer3": 2},
}


@dataclass(frozen=True)
class BackboneSplit:
    r"""A backbone cut into OAMN's two encoders.

    Attributes:
        low: E^I, ``(N, 3, H, W)`` images to ``(N, low_channels, ceil(H / stride), ceil(W /
            stride))`` features ``f``.
        high: E^II, ``f``-shaped features to ``(N, high_channels, h', w')`` maps (an empty
            ``nn.Sequential``, i.e. the identity, after ``layer4``).
        low_channels: ``C``, channels of ``f`` (the mask's and the grader's input).
        high_channels: ``D``, channels of E^II's output (the embedding size).
        stride: E^I's total stride: ``f`` is ``ceil(H / stride) x ceil(W / stride)``.
    """

    low: nn.Sequential
    high: nn.Sequential
    low_channels: int
    high_channels: int
    stride: int

    def feature_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of ``f`` for ``(H, W)`` images (every strided layer rounds up)."""
        height, width = input_size
        return math.ceil(height / self.stride), math.ceil(width / self.stride)


def build_torchvision_model(name: str) -> nn.Module:
    r"""A randomly initialised torchvision ImageNet model, built without any download.

    Always calls the constructor with ``weights=None``: nothing is fetched. Load ImageNet
    weights (a local file, or a torchvision weight enum, cached or downloaded) with
    :func:`~examples.oamn.model.load_backbone_weights`.

    Args:
        name: one of :data:`BACKBONES`.

    Returns:
        The full classification model (``torchvision.models.<name>(weights=None)``).

    Example:
        >>> model = build_torchvision_model("resnet18")
        >>> type(model).__name__, model.fc.out_features
        ('ResNet', 1000)
    """
    _check_backbone(name)
    return getattr(torchvision.models, name)(weights=None)


def split_backbone(
    model: nn.Module, name: str, split_after: str = "layer3", last_stride: int = 2
) -> BackboneSplit:
    r"""Cut a torchvision model into E^I (stem up to ``split_after``) and E^II (the rest).

    The classification head (ResNet ``avgpool``/``fc``, MobileNetV2 ``classifier``) is dropped.
    The encoders share the modules of ``model`` (no copy), so weights loaded into ``model`` before
    the split are the encoders' weights. Module names inside the encoders are torchvision's
    (``conv1``, ``layer1``... for ResNets; the ``features`` indices ``0``..``18`` for
    MobileNetV2). ``last_stride=1`` changes ``model`` in place: the stride-2 convolutions of
    ``layer4`` get stride 1.

    Args:
        model: a model from :func:`build_torchvision_model` for the same ``name``.
        name: one of :data:`BACKBONES`.
        split_after: one of :data:`STAGES`; E^I ends with that stage.
        last_stride: 2 (torchvision's, the paper's) or 1 (layer4 keeps the resolution).

    Returns:
        The :class:`BackboneSplit`.

    Example:
        >>> split = split_backbone(build_torchvision_model("resnet50"), "resnet50")
        >>> split.low_channels, split.high_channels, split.stride
        (1024, 2048, 16)
        >>> split.feature_size((256, 128))
        (16, 8)
        >>> split = split_backbone(build_torchvision_model("mobilenet_v2"), "mobilenet_v2",
        ...                        last_stride=1)
        >>> split.low_channels, split.high_channels, split.stride, len(split.high)
        (96, 1280, 16, 5)
    """
    _check_backbone(name)
    if split_after not in STAGES:
        raise ValueError(f"split_after must be one of {STAGES}, got {split_after!r}")
    if last_stride not in (1, 2) or isinstance(last_stride, bool):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
    stem, stages = _parts(model, name)
    if last_stride == 1:
        _remove_downsampling(stages["layer4"])
    split = STAGES.index(split_after) + 1
    low = nn.Sequential(OrderedDict(stem + [m for stage in STAGES[:split] for m in stages[stage]]))
    high = nn.Sequential(OrderedDict(m for stage in STAGES[split:] for m in stages[stage]))
    for conv in model.modules():
        if _strided_depthwise(conv):
            conv.__class__ = Float32Conv2d
    family = "mobilenet_v2" if name == "mobilenet_v2" else "resnet"
    factors = {**_STAGE_STRIDE[family], "layer4": last_stride}
    stride = _STEM_STRIDE[name] * math.prod(factors[stage] for stage in STAGES[:split])
    return BackboneSplit(
        low=low,
        high=high,
        low_channels=_output_channels(low),
        high_channels=_output_channels(high) if len(high) else _output_channels(low),
        stride=stride,
    )


class Float32Conv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that computes in float32 under CPU autocast (a float32 output); on
    other devices and outside autocast it is ``nn.Conv2d``. See the module docstring for why."""

    def forward(self, input: Tensor) -> Tensor:
        if input.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
            return super().forward(input)
        with torch.autocast(input.device.type, enabled=False):
            return super().forward(input.float())


def _strided_depthwise(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.groups > 1
        and module.groups == module.in_channels
        and max(module.stride) > 1
    )


def _check_backbone(name: object) -> None:
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")


def _parts(
    model: nn.Module, name: str
) -> tuple[list[tuple[str, nn.Module]], dict[str, list[tuple[str, nn.Module]]]]:
    """``(stem, stages)`` as lists of ``(torchvision name, module)`` pairs."""
    if name == "mobilenet_v2":
        features = model.features
        named = {
            part: [(str(i), features[i]) for i in indices]
            for part, indices in _MOBILENET_PARTS.items()
        }
        stem = named.pop("stem")
        return stem, named
    stem = [(part, getattr(model, part)) for part in ("conv1", "bn1", "relu", "maxpool")]
    return stem, {stage: [(stage, getattr(model, stage))] for stage in STAGES}


def _remove_downsampling(stage: list[tuple[str, nn.Module]]) -> None:
    # Only the first block of layer4 downsamples (its main and shortcut paths alike), so setting
    # every stride-2 convolution of the stage to stride 1 keeps both paths aligned.
    for _, module in stage:
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
                conv.stride = (1, 1)


def _output_channels(encoder: nn.Sequential) -> int:
    # Every block of these backbones ends with a BatchNorm2d on its output (the last block of a
    # ResNet stage has no shortcut BatchNorm after it).
    norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features

"""Torchvision backbones split into OAMN's two encoders: E^I before the mask, E^II after it.

Every backbone is read as a stem followed by four stages named ``layer1``..``layer4`` (torchvision's
own names for ResNets; for MobileNetV2 the runs of ``features`` between its stride changes). One
:class:`BackboneSpec` per backbone, in :data:`BACKBONE_SPECS`, says which modules those are, and
their strides and channels:

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

A backbone is added by one entry of :data:`BACKBONE_SPECS`; the choices of ``--backbone``, the
ImageNet head keys that weight loading ignores and the split all follow from it.

``last_stride=1`` removes the downsampling of ``layer4`` (stride 16 instead of 32, the usual ReID
trick; the paper keeps 2): every stride-2 convolution of the stage gets stride 1, which is right
for these backbones, where only the first block of a stage downsamples. Splitting after
``layer4`` leaves E^II empty (an identity).

Under CPU autocast the strided depthwise convolutions (MobileNetV2's four stride-2 3x3 ones,
:attr:`BackboneSpec.float32_depthwise`) compute in float32: oneDNN's bfloat16 kernel of their
backward pass is about 3x slower than its float32 one on the CPU (torch 2.14), which made a bf16
MobileNetV2 step slower than a float32 one. The modules stay ``nn.Conv2d`` with the same
parameters and state-dict keys.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType

import torch
import torchvision
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "BACKBONE_SPECS",
    "STAGES",
    "BackboneSpec",
    "BackboneSplit",
    "Float32Conv2d",
    "build_torchvision_model",
    "split_backbone",
]

#: Stage names, in order; ``split_after`` takes one of them.
STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")


def _module_name(path: str) -> str:
    """The name of the module at ``path`` inside an encoder: the last part of the path."""
    return path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class BackboneSpec:
    r"""How one torchvision ImageNet model splits into a stem and the four :data:`STAGES`.

    Attributes:
        name: the torchvision constructor, ``torchvision.models.<name>``; it also names the
            ImageNet weight enum (``torchvision.models.get_model_weights(name)``).
        stem: dotted paths (as ``model.get_submodule`` takes them) of the stem's modules.
        stages: the paths of each stage's modules, one tuple per name of :data:`STAGES`. In the
            encoders a module is named by the last part of its path (``features.3`` is ``3``), so
            the state-dict keys are torchvision's without the parent's prefix.
        stem_stride: total stride of the stem.
        stage_strides: stride factor of each stage in torchvision's model; ``last_stride``
            replaces the last one (2 here).
        channels: output channels of each stage.
        classifier: the attribute of the ImageNet classification head, which the split drops and
            weight loading ignores (keys starting with ``classifier + "."``).
        float32_depthwise: make the strided depthwise convolutions :class:`Float32Conv2d` (see the
            module docstring).

    Example:
        >>> spec = BACKBONE_SPECS["mobilenet_v2"]
        >>> spec.stages[0], spec.channels, spec.stem_stride
        (('features.2', 'features.3'), (24, 32, 96, 1280), 2)
    """

    name: str
    stem: tuple[str, ...]
    stages: tuple[tuple[str, ...], ...]
    stem_stride: int
    stage_strides: tuple[int, ...]
    channels: tuple[int, ...]
    classifier: str
    float32_depthwise: bool = False

    def __post_init__(self) -> None:
        for field_name in ("stages", "stage_strides", "channels"):
            if len(getattr(self, field_name)) != len(STAGES):
                raise ValueError(
                    f"BackboneSpec {self.name!r}: {field_name} needs one entry per stage of "
                    f"{STAGES}, got {getattr(self, field_name)!r}"
                )
        if self.stage_strides[-1] != 2:
            raise ValueError(
                f"BackboneSpec {self.name!r}: the last stage must downsample by 2 (last_stride "
                f"2 is torchvision's), got stage_strides={self.stage_strides!r}"
            )
        names = [_module_name(path) for path in (*self.stem, *chain.from_iterable(self.stages))]
        if len(set(names)) != len(names):
            raise ValueError(
                f"BackboneSpec {self.name!r}: the last parts of the module paths name the "
                f"encoders' modules and must be unique, got {names}"
            )


def _resnet(name: str, channels: tuple[int, ...]) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        stem=("conv1", "bn1", "relu", "maxpool"),
        stages=tuple((stage,) for stage in STAGES),
        stem_stride=4,
        stage_strides=(1, 2, 2, 2),
        channels=channels,
        classifier="fc",
    )


def _features(start: int, stop: int) -> tuple[str, ...]:
    return tuple(f"features.{index}" for index in range(start, stop))


#: The supported backbones by torchvision constructor name (read-only).
BACKBONE_SPECS: Mapping[str, BackboneSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _resnet("resnet18", (64, 128, 256, 512)),
            _resnet("resnet34", (64, 128, 256, 512)),
            _resnet("resnet50", (256, 512, 1024, 2048)),
            BackboneSpec(
                name="mobilenet_v2",
                stem=_features(0, 2),
                stages=(_features(2, 4), _features(4, 7), _features(7, 14), _features(14, 19)),
                stem_stride=2,
                stage_strides=(2, 2, 2, 2),
                channels=(24, 32, 96, 1280),
                classifier="classifier",
                float32_depthwise=True,
            ),
        )
    }
)

#: Supported backbone names (torchvision constructors), the keys of :data:`BACKBONE_SPECS`.
BACKBONES: tuple[str, ...] = tuple(BACKBONE_SPECS)


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
    return getattr(torchvision.models, _spec(name).name)(weights=None)


def split_backbone(
    model: nn.Module, name: str, split_after: str = "layer3", last_stride: int = 2
) -> BackboneSplit:
    r"""Cut a torchvision model into E^I (stem up to ``split_after``) and E^II (the rest).

    The classification head (ResNet ``avgpool``/``fc``, MobileNetV2 ``classifier``) is dropped.
    The encoders share the modules of ``model`` (no copy), so weights loaded into ``model`` before
    the split are the encoders' weights. Module names inside the encoders are torchvision's
    (``conv1``, ``layer1``... for ResNets; the ``features`` indices ``0``..``18`` for
    MobileNetV2; see :attr:`BackboneSpec.stages`). ``last_stride=1`` changes ``model`` in place:
    the stride-2 convolutions of ``layer4`` get stride 1.

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
    spec = _spec(name)
    if split_after not in STAGES:
        raise ValueError(f"split_after must be one of {STAGES}, got {split_after!r}")
    if last_stride not in (1, 2) or isinstance(last_stride, bool):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
    stages = [[(_module_name(p), model.get_submodule(p)) for p in paths] for paths in spec.stages]
    if last_stride == 1:
        _remove_downsampling(stages[-1])
    split = STAGES.index(split_after) + 1
    stem = [(_module_name(path), model.get_submodule(path)) for path in spec.stem]
    low = nn.Sequential(OrderedDict([*stem, *chain.from_iterable(stages[:split])]))
    high = nn.Sequential(OrderedDict(chain.from_iterable(stages[split:])))
    if spec.float32_depthwise:  # after _remove_downsampling: layer4's convs may be unstrided now
        for conv in (*low.modules(), *high.modules()):
            if _strided_depthwise(conv):
                conv.__class__ = Float32Conv2d
    factors = (*spec.stage_strides[:-1], last_stride)
    return BackboneSplit(
        low=low,
        high=high,
        low_channels=spec.channels[split - 1],
        high_channels=spec.channels[-1],
        stride=spec.stem_stride * math.prod(factors[:split]),
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


def _spec(name: object) -> BackboneSpec:
    if not isinstance(name, str) or name not in BACKBONE_SPECS:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
    return BACKBONE_SPECS[name]


def _remove_downsampling(stage: list[tuple[str, nn.Module]]) -> None:
    # Only the first block of the stage downsamples (a ResNet's main and shortcut paths alike),
    # so setting every stride-2 convolution of the stage to stride 1 keeps both paths aligned.
    for _, module in stage:
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
                conv.stride = (1, 1)

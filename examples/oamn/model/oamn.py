"""The OAMN network (Chen et al., ICCV 2021): E^I, the mask, the grader, E^II and the head."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from oamn.attention import AttentionMask, RGASpatial
from oamn.reid_eval import occlusion_bank

from .backbones import build_torchvision_model, split_backbone
from .grader import FEATURE_GRADERS, build_grader
from .weights import load_backbone_weights, resolve_backbone_weights

__all__ = ["OAMN", "POOLINGS", "OAMNOutput"]

#: Global pooling of E^II's output: the paper's max pooling, or average pooling.
POOLINGS: tuple[str, ...] = ("max", "avg")

_HEAD_INIT_STD = 0.001


@dataclass
class OAMNOutput:
    r"""What :meth:`OAMN.forward` returns for ``N`` images (every field keeps the graph).

    Attributes:
        f: ``(N, C, h, w)`` E^I features.
        m: ``(N, 1, h, w)`` attention mask, values in ``(0, 1)`` (all ones without a mask).
        g: ``(N, C, h, w)`` attentive features ``m * f`` (``f`` itself without a mask).
        pooled: ``(N, D)`` globally pooled E^II(g): the triplet feature ``h``, un-normalised.
        embedding: ``(N, D)`` BN-neck output; L2-normalised, it is the test feature.
        logits: ``(N, num_classes)`` identity logits.
        grader_scores: ``(N, K)`` softmax occlusion scores, computed from ``g.detach()``
            (``f.detach()`` for the ``"feature_profiles"`` grader; see
            :mod:`examples.oamn.model.grader`); float32, under autocast too. ``K = 4`` (head
            ``"locations"``: columns top, bottom, left, right, ``oamn.losses``' order) or
            ``K = 9`` (head ``"types"``: none and the 8 occlusion types).
        grader_logits: ``(N, K)`` the logits of ``grader_scores``.
    """

    f: Tensor
    m: Tensor
    g: Tensor
    pooled: Tensor
    embedding: Tensor
    logits: Tensor
    grader_scores: Tensor
    grader_logits: Tensor


class OAMN(nn.Module):
    r"""Occlusion-aware mask network: a torchvision backbone split around an RGA-S mask.

    ``f = E^I(x)``, ``m = RGASpatial(f)``, ``g = m * f`` (paper §3.2); the head pools ``E^II(g)``
    (max or average) into ``h`` (``pooled``, the triplet feature), then ``BatchNorm1d`` (the
    ``embedding``, the test feature once L2-normalised) -> ReLU -> Dropout -> ``Linear`` (the
    identity ``logits``). The grader scores the occlusion from a summary of ``f.detach()`` (or
    ``g.detach()``) -> ``BatchNorm1d`` -> ``Linear(., K)`` -> softmax (``K = 4``: columns top,
    bottom, left, right; ``K = 9``: none and the 8 types, ``grader_head="types"``), so no
    gradient of the grader reaches the encoder (docs/METHOD.md §4); the summary is scale-free row
    and column profiles of ``f`` (``grader="feature_profiles"``, the default) or of ``g``
    (``"profiles"``; ``"profiles_mlp"`` adds a hidden layer), or the authors' global average pool
    of ``g`` (``"pooled"``); see :mod:`examples.oamn.model.grader`.

    The defaults are :class:`~examples.oamn.config.TrainConfig`'s (the paper's recipe with the
    occlusion-awareness remedies of docs/AWARENESS.md): the model of
    ``TrainConfig(**RECIPES["paper"])`` differs by ``grader="pooled"`` (the authors' grader)
    and ``detach_mask_input=False`` (the paper's routing).

    New layers: the BatchNorms start at weight 1 and bias 0, the two ``Linear`` layers (grader
    and classifier) at weights ``N(0, 0.001^2)`` and bias 0 (the usual ReID classifier
    initialisation: near-uniform softmax outputs at the start). The backbone is torchvision's
    random initialisation unless ``weights`` is given; the mask module is ``oamn.attention``'s.

    Args:
        num_classes: number of training identities (``>= 1``).
        backbone: one of :data:`~examples.oamn.model.BACKBONES` (the keys of
            :data:`~examples.oamn.model.BACKBONE_SPECS`: ResNet-18/34/50, MobileNetV2).
        split_after: the stage that ends E^I: ``"layer1"``..``"layer4"`` (see
            :mod:`examples.oamn.model.backbones`; MobileNetV2's ``"layer3"`` is stride 16, 96
            channels). After ``"layer4"`` E^II is the identity.
        last_stride: 2 (the paper) or 1: the stride of ``layer4``.
        input_size: ``(H, W)`` of the images. The mask module relates the fixed ``h*w`` positions
            of ``f`` and the profile graders read them, so a model with either accepts only that
            size.
        weights: ImageNet weights of ``backbone`` (the ``fc`` or ``classifier`` keys are
            ignored): a path to a local torchvision state dict; a torchvision weight enum member
            of the backbone (``torchvision.models.ResNet50_Weights.IMAGENET1K_V2``); or its name
            (``"IMAGENET1K_V2"``, ``"DEFAULT"``, ``"ResNet50_Weights.IMAGENET1K_V2"``), read from
            the torch hub cache or downloaded into it by torchvision (an existing file of that
            name wins; see :func:`~examples.oamn.model.resolve_backbone_weights`). ``None``: a
            random initialisation.
        pooling: ``"max"`` (the paper) or ``"avg"``.
        dropout: dropout probability before the classifier, in ``[0, 1)``.
        use_mask: ``False`` builds the baseline: no mask parameters, ``m`` all ones, ``g = f``.
        detach_mask_input: feed the mask ``f.detach()`` (the default; the authors' code,
            ``routing="official"``: the encoder learns only through ``g = m * f``) instead of
            ``f`` (``False``: the paper). No effect without a mask.
        mask_spatial_reduction: RGA-S's ``spatial_reduction`` (relations embedded to
            ``h*w // mask_spatial_reduction`` channels); ``None`` (default): automatic, the
            paper's 8 where it fits, smaller for small feature maps (the rule of
            :class:`~oamn.attention.RGASpatial`; 4 for an 8x4 ``f``).
        mask_down_ratio: RGA-S's ``down_ratio``; ``None`` (default): automatic, 8 unless even
            ``mask_spatial_reduction=1`` leaves too few relations. Given values are kept; ones
            that leave the mask no channel raise a ``ValueError`` with values that work.
        grader: ``"feature_profiles"`` (the default: profiles of ``f``, blind to the mask),
            ``"profiles"``, ``"profiles_mlp"`` or ``"pooled"`` (the authors', which a collapsed
            mask blinds); see :mod:`examples.oamn.model.grader`. The profile graders read
            positions, so a model with one accepts only ``input_size`` images, mask or not.
        grader_head: ``"locations"`` (the paper's 4 columns, read by eq. 8) or ``"types"`` (9
            columns: none and the 8 occlusion types, read by their argmax).

    Attributes:
        encoder_low: E^I (``nn.Sequential`` of torchvision modules).
        encoder_high: E^II (empty after ``layer4``).
        mask: ``AttentionMask(RGASpatial(C, (h, w)))``, or ``None`` without a mask.
        grader: ``Sequential(summary, BatchNorm1d, Linear(., K))`` applied to ``f.detach()``
            or ``g.detach()`` (:func:`~examples.oamn.model.grader.build_grader`).
        neck: ``BatchNorm1d(D)``.
        classifier: ``Linear(D, num_classes)``.
        mask_channels: ``C``, channels of ``f``.
        feature_dim: ``D``, size of ``pooled`` and ``embedding``.
        feature_size: ``(h, w)`` of ``f`` for ``input_size`` images.

    Example:
        >>> model = OAMN(10, backbone="resnet18", split_after="layer2", input_size=(128, 64))
        >>> model.mask_channels, model.feature_dim, model.feature_size
        (128, 512, (16, 8))
        >>> out = model(torch.randn(4, 3, 128, 64))
        >>> out.m.shape, out.logits.shape, out.grader_scores.shape
        (torch.Size([4, 1, 16, 8]), torch.Size([4, 10]), torch.Size([4, 4]))
        >>> features, scores = model.eval().extract(torch.randn(2, 3, 128, 64))
        >>> features.norm(dim=1)
        tensor([1.0000, 1.0000])
        >>> model.gallery_bank(torch.randn(2, 3, 128, 64), strategy="feature").shape
        torch.Size([9, 2, 512])
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        split_after: str = "layer3",
        last_stride: int = 2,
        input_size: tuple[int, int] = (256, 128),
        weights: str | os.PathLike[str] | WeightsEnum | None = None,
        pooling: str = "max",
        dropout: float = 0.5,
        use_mask: bool = True,
        detach_mask_input: bool = True,
        mask_spatial_reduction: int | None = None,
        mask_down_ratio: int | None = None,
        grader: str = "feature_profiles",
        grader_head: str = "locations",
    ) -> None:
        super().__init__()
        _check_arguments(num_classes, input_size, pooling, dropout, use_mask)
        network = build_torchvision_model(backbone)
        if weights is not None:
            load_backbone_weights(network, resolve_backbone_weights(backbone, weights))
        split = split_backbone(network, backbone, split_after, last_stride)
        self.encoder_low = split.low
        self.encoder_high = split.high
        self.mask_channels = split.low_channels
        self.feature_dim = split.high_channels
        self.input_size = (input_size[0], input_size[1])
        self.feature_size = split.feature_size(self.input_size)
        self.pooling = pooling
        self.mask = (
            self._build_mask(
                split_after,
                split.stride,
                detach_mask_input,
                mask_spatial_reduction,
                mask_down_ratio,
            )
            if use_mask
            else None
        )
        self.grader = build_grader(grader, self.mask_channels, self.feature_size, grader_head)
        self.grader_reads_positions = grader != "pooled"
        self.grader_reads_features = grader in FEATURE_GRADERS
        self.neck = nn.BatchNorm1d(self.feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        for linear in (self.grader[-1], self.classifier):
            nn.init.normal_(linear.weight, std=_HEAD_INIT_STD)
            nn.init.zeros_(linear.bias)

    def _build_mask(
        self,
        split_after: str,
        stride: int,
        detach_input: bool,
        spatial_reduction: int | None,
        down_ratio: int | None,
    ) -> AttentionMask:
        try:
            attention = RGASpatial(
                self.mask_channels,
                self.feature_size,
                spatial_reduction=spatial_reduction,
                down_ratio=down_ratio,
            )
        except (TypeError, ValueError) as error:
            # Only given values can fail (None always chooses working ones); RGASpatial names
            # its own arguments, so say which of ours they are.
            raise type(error)(
                f"input_size={self.input_size} gives a {self.feature_size} feature map after "
                f"{split_after} (stride {stride}), and the mask module's RGA-S cannot use "
                f"mask_spatial_reduction={spatial_reduction}, mask_down_ratio={down_ratio} "
                f"(its spatial_reduction and down_ratio) there: {error}. Leave them None to "
                f"choose values that work"
            ) from error
        return AttentionMask(attention, detach_input=detach_input)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, feature_size={self.feature_size}, "
            f"pooling={self.pooling!r}"
        )

    def forward(self, images: Tensor) -> OAMNOutput:
        r"""Run the whole network (training or evaluation mode).

        Args:
            images: ``(N, 3, H, W)`` floating normalised images, ``(H, W) = input_size`` when the
                model has a mask; on the model's device.

        Returns:
            The :class:`OAMNOutput`.
        """
        f = self._encode(images)
        if self.mask is None:
            g, m = f, f.new_ones((f.shape[0], 1, *f.shape[2:]))
        else:
            g, m = self.mask(f)
        pooled = self._pool(self.encoder_high(g))
        embedding = self.neck(pooled)
        logits = self.classifier(self.dropout(F.relu(embedding)))
        grader_logits = self._grader_logits(f, g)
        scores = grader_logits.float().softmax(dim=1)
        return OAMNOutput(f, m, g, pooled, embedding, logits, scores, grader_logits)

    @torch.inference_mode()
    def extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        r"""Test features and occlusion scores (call ``model.eval()`` first).

        Args:
            images: as for :meth:`forward`.

        Returns:
            ``(features, grader_scores)``: ``(N, D)`` L2-normalised embeddings and the ``(N, K)``
            softmax scores (columns top, bottom, left, right), as inference tensors.
        """
        self._check_eval("extract")
        f = self._encode(images)
        g = f if self.mask is None else self.mask(f)[0]
        return F.normalize(self._embed(g), dim=1), self._grader_logits(f, g).float().softmax(1)

    @torch.inference_mode()
    def gallery_bank(
        self, images: Tensor, strategy: str = "mask_swap", image_fill: float | Tensor = 0.0
    ) -> Tensor:
        r"""Features of images under each of the 9 occlusion types (docs/METHOD.md §5).

        Type ``t`` (0 none, 1-4 half top/bottom/left/right, 5-8 quarter) gets, by ``strategy``
        (see ``oamn.reid_eval.occlusion_bank``): ``normalize(embed(f * m_t))``, the clean features
        weighted by the mask of an occluded version, image-level (``"mask_swap"``, the authors':
        the band filled with ``image_fill``, 9 E^I passes) or feature-level (``"feature"``: the
        band of ``f`` zeroed, one E^I pass); or ``normalize(embed(occlude(m * f, t, 0)))``, the
        band removed from the attentive features (``"band"``, one E^I pass). The types run one
        after another on the whole batch: the peak memory is about one :meth:`extract` of
        ``images`` plus ``f`` and the result. Row 0 equals :meth:`extract`'s features exactly.
        Without a mask the swap strategies give every row the unoccluded feature. Call
        ``model.eval()`` first.

        Args:
            images: as for :meth:`forward`.
            strategy: ``"mask_swap"``, ``"feature"`` or ``"band"``.
            image_fill: the band's value for ``"mask_swap"``: a number or a ``(3,)`` tensor, e.g.
                ``-mean / std`` (black in normalised images).

        Returns:
            ``(9, N, D)`` L2-normalised features, an inference tensor.
        """
        self._check_eval("gallery_bank")
        attend = None if self.mask is None else self.mask.attention
        return occlusion_bank(images, self._encode, attend, self._embed, strategy, image_fill)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        r"""The parameters by learning-rate group, each parameter exactly once.

        Returns:
            ``{"backbone": E^I and E^II, "mask": the mask module (empty without one), "head":
            grader, neck and classifier}`` (the paper's lr multipliers are 0.1 / 0.1 / 1).
        """
        groups = {
            "backbone": [self.encoder_low, self.encoder_high],
            "mask": [] if self.mask is None else [self.mask],
            "head": [self.grader, self.neck, self.classifier],
        }
        return {
            name: [p for module in modules for p in module.parameters()]
            for name, modules in groups.items()
        }

    def _encode(self, images: Tensor) -> Tensor:
        self._check_images(images)
        return self.encoder_low(images)

    def _embed(self, g: Tensor) -> Tensor:
        return self.neck(self._pool(self.encoder_high(g)))

    def _pool(self, features: Tensor) -> Tensor:
        if self.pooling == "max":
            return features.amax(dim=(2, 3))
        return features.mean(dim=(2, 3))

    def _grader_logits(self, f: Tensor, g: Tensor) -> Tensor:
        # Callers take the softmax in float32 under autocast too: 8 mantissa bits would round
        # scores near 0 and 1, which the grader loss and the occlusion-type thresholds read.
        return self.grader((f if self.grader_reads_features else g).detach())

    def _check_images(self, images: Tensor) -> None:
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating (normalised), got {images.dtype}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch (N = 0)")
        weight = self.classifier.weight
        if images.device != weight.device:
            raise ValueError(
                f"images are on {images.device} but the model is on {weight.device}; move one "
                f"of them"
            )
        if images.dtype != weight.dtype and not torch.is_autocast_enabled(images.device.type):
            raise TypeError(
                f"images are {images.dtype} but the model is {weight.dtype}; convert one of "
                f"them or run under torch.autocast"
            )
        size = tuple(images.shape[2:])
        if size != self.input_size and (self.mask is not None or self.grader_reads_positions):
            part = "mask module relates" if self.mask is not None else "grader reads profiles of"
            raise ValueError(
                f"images are {size[0]}x{size[1]} (H x W) but this OAMN was built with "
                f"input_size={self.input_size}: its {part} the fixed {self.feature_size} "
                f"positions of E^I's features. Resize the images to {self.input_size} or build "
                f"the model with input_size={size}"
            )

    def _check_eval(self, method: str) -> None:
        if self.training:
            raise RuntimeError(
                f"{method}() gives test features from the BatchNorm running statistics: call "
                f"model.eval() first"
            )


def _check_arguments(
    num_classes: object,
    input_size: object,
    pooling: object,
    dropout: object,
    use_mask: object,
) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if (
        not isinstance(input_size, tuple | list)
        or len(input_size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_size)
    ):
        raise ValueError(f"input_size must be an (H, W) pair of positive ints, got {input_size!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if not isinstance(dropout, float | int) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if not isinstance(use_mask, bool):
        raise TypeError(f"use_mask must be a bool, got {use_mask!r}")

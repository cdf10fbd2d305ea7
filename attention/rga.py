"""RGA layers: relation-aware global attention (Zhang et al., CVPR 2020), as used by OAMN §3.2."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ._validation import check_features, check_positive_int, check_spatial_size
from .relation import embedding_weight, relation_branch, relation_logits

__all__ = ["RGA", "RGASpatial"]


class _RelationAwareAttention(nn.Module):
    """The branches of the authors' ``RGA_Module``, with their parameter names and layout.

    The spatial branch relates the ``H*W`` positions through ``C``-channel embeddings; the
    channel branch relates the ``C`` channels through ``H*W``-channel embeddings (the feature
    map read as ``(B, H*W, C, 1)``). Each gives the logits of a sigmoid attention map.
    """

    def __init__(
        self,
        in_channels: int,
        spatial_size: tuple[int, int],
        use_spatial: bool = True,
        use_channel: bool = True,
        channel_reduction: int = 8,
        spatial_reduction: int = 8,
        down_ratio: int = 8,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.spatial_size = check_spatial_size(spatial_size)
        for name, flag in (("use_spatial", use_spatial), ("use_channel", use_channel)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if not (use_spatial or use_channel):
            raise ValueError("use_spatial and use_channel are both False: enable at least one")
        self.use_spatial = use_spatial
        self.use_channel = use_channel
        self.channel_reduction = check_positive_int("channel_reduction", channel_reduction)
        self.spatial_reduction = check_positive_int("spatial_reduction", spatial_reduction)
        self.down_ratio = check_positive_int("down_ratio", down_ratio)
        channels, positions = self.in_channels, self.spatial_size[0] * self.spatial_size[1]
        _check_widths(channels, positions, self.channel_reduction, self.spatial_reduction)
        # Per branch: (used, F input features, P attended positions, F and P reductions); the
        # channel branch relates the C channels through their H*W values.
        branches = {
            "spatial": (use_spatial, channels, positions, channel_reduction, spatial_reduction),
            "channel": (use_channel, positions, channels, spatial_reduction, channel_reduction),
        }
        # Registration order and names follow RGA_Module, so its state dicts load strictly.
        for suffix, (used, features, attended, feature_reduction, reduction) in branches.items():
            if used:
                _check_scorer_width(attended // reduction, suffix, down_ratio)
                branch = relation_branch(
                    features, attended, feature_reduction, reduction, down_ratio
                )
                for role, module in branch.items():
                    self.add_module(f"{role}_{suffix}", module)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, spatial_size={self.spatial_size}, "
            f"use_spatial={self.use_spatial}, use_channel={self.use_channel}, "
            f"channel_reduction={self.channel_reduction}, "
            f"spatial_reduction={self.spatial_reduction}, down_ratio={self.down_ratio}"
        )

    def _check(self, features: Tensor, name: str) -> None:
        parameter = next(self.parameters())
        check_features(features, name, self.in_channels, self.spatial_size, parameter)

    def _spatial_logits(self, x: Tensor) -> Tensor:
        """``(B, 1, H, W)`` logits of the spatial map of ``x`` ``(B, C, H, W)``."""
        weight = embedding_weight(self.theta_spatial, self.phi_spatial, self.gx_spatial)
        # One (3C' x C) @ (C x B*H*W) GEMM: faster on CPU, forward and backward, than the
        # 1x1 convolution or B per-sample products, at the price of transposing x once.
        embedded = weight @ rearrange(x, "b c h w -> c (b h w)")
        embedded = rearrange(embedded, "e (b h w) -> b e h w", b=x.shape[0], h=x.shape[2])
        return relation_logits(
            embedded,
            self.theta_spatial,
            self.phi_spatial,
            self.gx_spatial,
            self.gg_spatial,
            self.W_spatial,
        )

    def _channel_logits(self, x: Tensor) -> Tensor:
        """``(B, C, 1, 1)`` logits of the channel map of ``x`` ``(B, C, H, W)``."""
        weight = embedding_weight(self.theta_channel, self.phi_channel, self.gx_channel)
        # The channel branch reads x as (B, H*W, C, 1); as rows of (B*C, H*W) it is one GEMM
        # over the contiguous x.
        embedded = rearrange(x, "b c h w -> b c (h w)") @ weight.T
        logits = relation_logits(
            rearrange(embedded, "b c e -> b e c 1"),
            self.theta_channel,
            self.phi_channel,
            self.gx_channel,
            self.gg_channel,
            self.W_channel,
        )
        return rearrange(logits, "b 1 c 1 -> b c 1 1")


class RGASpatial(_RelationAwareAttention):
    r"""RGA-S: the relation-aware *spatial* attention map, OAMN's attention-guided mask module.

    For features ``f`` with ``N = H*W`` positions, embeddings ``theta, phi, g`` (1x1 conv
    ``C -> C/8`` + BN + ReLU) give the relations ``R[i, j] = theta_i . phi_j``. Each position's
    relations in both orientations (``2N`` values) are embedded to ``N/8`` channels, joined with
    the channel mean of ``g``, and scored by ``conv -> BN -> ReLU -> conv -> BN -> sigmoid``. The
    relation matrix is never built (see :mod:`oamn.attention.relation`); the result equals the
    authors' ``RGA_Module(C, H*W, use_channel=False)``, whose output is ``m * f``.

    Parameter names and shapes are the authors' (``theta_spatial``, ``phi_spatial``,
    ``gx_spatial``, ``gg_spatial``, ``W_spatial``), so their state dicts load with
    ``strict=True``. At ``C = 1024`` and ``(16, 8)`` the layer has 398,154 parameters.
    BatchNorm makes the map depend on the batch in training mode; call ``.eval()`` to use the
    running statistics.

    Args:
        in_channels: ``C``.
        spatial_size: ``(H, W)`` of the features it will see. It is fixed: the relations to the
            ``H*W`` positions are channels of the weights, and any other size raises a
            ``ValueError``.
        channel_reduction: embeddings have ``C // channel_reduction`` channels.
        spatial_reduction: the relations are embedded to ``H*W // spatial_reduction`` channels.
        down_ratio: the scorer's hidden layer has ``(1 + H*W // spatial_reduction) //
            down_ratio`` channels.

    Shape:
        - f: ``(B, C, H, W)`` floating, the layer's dtype and device (or any floating dtype
          under ``torch.autocast``), ``B >= 1``.
        - output: the attention map ``m``, ``(B, 1, H, W)``, values in ``(0, 1)`` (a sigmoid;
          saturated logits may round to 0 or 1, sooner in bfloat16/float16).

    Example:
        >>> layer = RGASpatial(1024, (16, 8))
        >>> sum(p.numel() for p in layer.parameters())
        398154
        >>> m = layer(torch.randn(4, 1024, 16, 8))
        >>> m.shape, bool(((m > 0) & (m < 1)).all())
        (torch.Size([4, 1, 16, 8]), True)
    """

    def __init__(
        self,
        in_channels: int,
        spatial_size: tuple[int, int],
        channel_reduction: int = 8,
        spatial_reduction: int = 8,
        down_ratio: int = 8,
    ) -> None:
        super().__init__(
            in_channels,
            spatial_size,
            use_spatial=True,
            use_channel=False,
            channel_reduction=channel_reduction,
            spatial_reduction=spatial_reduction,
            down_ratio=down_ratio,
        )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, spatial_size={self.spatial_size}, "
            f"channel_reduction={self.channel_reduction}, "
            f"spatial_reduction={self.spatial_reduction}, down_ratio={self.down_ratio}"
        )

    def forward(self, f: Tensor) -> Tensor:
        self._check(f, "f")
        return torch.sigmoid(self._spatial_logits(f))


class RGA(_RelationAwareAttention):
    r"""The full relation-aware global attention layer: spatial, then channel attention.

    A drop-in equivalent of the authors' ``RGA_Module(C, H*W, use_spatial, use_channel,
    cha_ratio=channel_reduction, spa_ratio=spatial_reduction, down_ratio)``: same parameter
    names and shapes (state dicts load with ``strict=True``), same output. The spatial branch is
    :class:`RGASpatial`'s; the channel branch is the same construction with positions and
    channels swapped (the ``C`` channels are related through embeddings of their ``H*W``
    values) and scores a ``(B, C, 1, 1)`` sigmoid map, applied to the spatially attended
    features. No ``C x C`` or ``N x N`` relation matrix is built.

    Args:
        in_channels: ``C``.
        spatial_size: ``(H, W)`` of the features it will see (fixed, as for
            :class:`RGASpatial`).
        use_spatial: apply the spatial map ``(B, 1, H, W)``.
        use_channel: apply the channel map ``(B, C, 1, 1)`` (after the spatial one).
        channel_reduction: the spatial branch's embeddings have ``C // channel_reduction``
            channels; the channel branch embeds its relations to as many.
        spatial_reduction: the channel branch's embeddings have ``H*W // spatial_reduction``
            channels; the spatial branch embeds its relations to as many.
        down_ratio: the scorers' hidden width divisor.

    Shape:
        - x: ``(B, C, H, W)`` floating, the layer's dtype and device (or any floating dtype
          under ``torch.autocast``), ``B >= 1``.
        - output: ``(B, C, H, W)``, ``x`` times the attention map(s).

    Example:
        >>> layer = RGA(64, (8, 8))
        >>> sorted({name.split(".")[0] for name in layer.state_dict()})[:5]
        ['W_channel', 'W_spatial', 'gg_channel', 'gg_spatial', 'gx_channel']
        >>> layer(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, "x")
        if self.use_spatial:
            x = torch.sigmoid(self._spatial_logits(x)) * x
        if self.use_channel:
            x = torch.sigmoid(self._channel_logits(x)) * x
        return x


def _check_widths(
    channels: int, positions: int, channel_reduction: int, spatial_reduction: int
) -> None:
    if channels // channel_reduction < 1:
        raise ValueError(
            f"channel_reduction={channel_reduction} leaves no embedding channels for "
            f"in_channels={channels}; use a channel_reduction of at most {channels}"
        )
    if positions // spatial_reduction < 1:
        raise ValueError(
            f"spatial_reduction={spatial_reduction} leaves no relation channels for "
            f"H*W={positions} positions; use a spatial_reduction of at most {positions}"
        )


def _check_scorer_width(relation_width: int, branch: str, down_ratio: int) -> None:
    if (1 + relation_width) // down_ratio < 1:
        raise ValueError(
            f"down_ratio={down_ratio} leaves no hidden channels in the {branch} scorer "
            f"(1 + {relation_width} inputs); use a down_ratio of at most {1 + relation_width}"
        )

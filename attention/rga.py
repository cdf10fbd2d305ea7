"""RGA layers: relation-aware global attention (Zhang et al., CVPR 2020), as used by OAMN §3.2."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

from ._reductions import Reduction, resolve_reductions
from ._validation import check_features, check_positive_int, check_spatial_size
from .relation import embedding_weight, relation_branch, relation_logits

__all__ = ["RGA", "RGASpatial"]

#: The size attributes that a lazy layer's placeholder modules hold at a nominal size.
_SIZE_ATTRIBUTES = ("in_channels", "out_channels", "num_features")


class _RelationAwareAttention(nn.Module):
    """The branches of the authors' ``RGA_Module``, with their parameter names and layout.

    The spatial branch relates the ``H*W`` positions through ``C``-channel embeddings; the
    channel branch relates the ``C`` channels through ``H*W``-channel embeddings (the feature
    map read as ``(B, H*W, C, 1)``). Each gives the logits of a sigmoid attention map.
    """

    def __init__(
        self,
        in_channels: int,
        spatial_size: tuple[int, int] | None = None,
        use_spatial: bool = True,
        use_channel: bool = True,
        channel_reduction: int | None = None,
        spatial_reduction: int | None = None,
        down_ratio: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        for name, flag in (("use_spatial", use_spatial), ("use_channel", use_channel)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if not (use_spatial or use_channel):
            raise ValueError("use_spatial and use_channel are both False: enable at least one")
        self.use_spatial = use_spatial
        self.use_channel = use_channel
        for name, value in (
            ("channel_reduction", channel_reduction),
            ("spatial_reduction", spatial_reduction),
            ("down_ratio", down_ratio),
        ):
            if value is not None:
                check_positive_int(value, name)
        # What was asked; the attributes of the same names hold the values used once built.
        self._given = (channel_reduction, spatial_reduction, down_ratio)
        self.channel_reduction, self.spatial_reduction, self.down_ratio = self._given
        self.spatial_size: tuple[int, int] | None = None
        if spatial_size is None:
            self._register_placeholders()
        else:
            for name, module in self._branches(check_spatial_size(spatial_size)).items():
                self.add_module(name, module)

    def _branches(self, spatial_size: tuple[int, int]) -> dict[str, nn.Module]:
        """The modules for ``(H, W)`` feature maps, named and ordered as in ``RGA_Module``;
        resolves the reductions and records ``spatial_size``."""
        channel_reduction, spatial_reduction, down_ratio = self._given
        channels, positions = self.in_channels, spatial_size[0] * spatial_size[1]
        self.channel_reduction, self.spatial_reduction, self.down_ratio = resolve_reductions(
            Reduction(
                "channel_reduction",
                channel_reduction,
                channels,
                "in_channels=",
                "channels",
                self.use_channel,
            ),
            Reduction(
                "spatial_reduction",
                spatial_reduction,
                positions,
                "H*W=",
                "positions",
                self.use_spatial,
            ),
            down_ratio=down_ratio,
        )
        self.spatial_size = spatial_size
        reductions = (self.channel_reduction, self.spatial_reduction, self.down_ratio)
        return self._relation_modules(channels, positions, *reductions)

    def _relation_modules(
        self,
        channels: int,
        positions: int,
        channel_reduction: int,
        spatial_reduction: int,
        down_ratio: int,
    ) -> dict[str, nn.Module]:
        # Per branch: (used, F input features, P attended positions, F and P reductions); the
        # channel branch relates the C channels through their H*W values.
        branches = {
            "spatial": (
                self.use_spatial,
                channels,
                positions,
                channel_reduction,
                spatial_reduction,
            ),
            "channel": (
                self.use_channel,
                positions,
                channels,
                spatial_reduction,
                channel_reduction,
            ),
        }
        modules = {}
        for suffix, (used, features, attended, feature_reduction, reduction) in branches.items():
            if used:
                branch = relation_branch(
                    features, attended, feature_reduction, reduction, down_ratio
                )
                modules.update({f"{role}_{suffix}": module for role, module in branch.items()})
        return modules

    def _register_placeholders(self) -> None:
        """Lazy layout: the modules of a 1-position map with every parameter uninitialised, so
        that ``.to()``, ``parameters()`` and an optimizer built before the first call work as
        with torch's ``Lazy*`` modules; the first input gives the real sizes."""
        with torch.random.fork_rng(devices=[]):  # the first call draws the weights, as eagerly
            modules = self._relation_modules(self.in_channels, 1, 1, 1, 1)
        for name, module in modules.items():
            for path, parameter in list(module.named_parameters()):
                owner, _, leaf = path.rpartition(".")
                uninitialized = UninitializedParameter(parameter.requires_grad)
                setattr(module.get_submodule(owner), leaf, uninitialized)
            self.add_module(name, module)

    def _materialize(self, spatial_size: tuple[int, int]) -> None:
        """Resize the placeholder modules in place for ``(H, W)`` maps. Their parameters take
        the weights an eager layer would draw (the same objects, so an optimizer holding them
        keeps training them), their sizes and BatchNorm buffers follow; their train/eval mode,
        class (e.g. ``SyncBatchNorm``), settings and hooks stay as the user left them."""
        # Outside inference mode: the weights must stay trainable after a first call there.
        with torch.inference_mode(False), torch.no_grad():
            for name, built in self._branches(spatial_size).items():
                placeholder = self.get_submodule(name)
                for kept, fresh in zip(placeholder.modules(), built.modules(), strict=True):
                    for attribute in _SIZE_ATTRIBUTES:
                        if hasattr(fresh, attribute):
                            setattr(kept, attribute, getattr(fresh, attribute))
                    for key, value in fresh.named_parameters(recurse=False):
                        kept._parameters[key].materialize(value.shape)
                        kept._parameters[key].copy_(value)
                    for key, value in fresh.named_buffers(recurse=False):
                        old = kept._buffers[key]
                        kept._buffers[key] = value.to(device=old.device, dtype=old.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, spatial_size={self.spatial_size}, "
            f"use_spatial={self.use_spatial}, use_channel={self.use_channel}, "
            f"channel_reduction={self.channel_reduction}, "
            f"spatial_reduction={self.spatial_reduction}, down_ratio={self.down_ratio}"
        )

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        self._refuse_unbuilt("saving")
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        # A state dict without this layer's keys (a backbone's weights, strict=False) loads.
        if any(key.startswith(prefix) for key in state_dict):
            self._refuse_unbuilt("loading")
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _refuse_unbuilt(self, action: str) -> None:
        if self.spatial_size is None:
            raise RuntimeError(
                f"{type(self).__name__} was built without spatial_size, so its weights take "
                "their shapes from its first input: call it once on a feature map (e.g. "
                f"layer(torch.zeros(1, C, H, W))) or build it with spatial_size=(H, W) before "
                f"{action} a state dict"
            )

    def __repr__(self) -> str:
        if self.spatial_size is None:  # the placeholder modules' sizes mean nothing yet
            return f"{type(self).__name__}({self.extra_repr()}; built at the first input)"
        return super().__repr__()

    def _check_and_build(self, features: Tensor, name: str) -> None:
        """Check ``features`` (argument ``name``); a lazy layer's first input builds it."""
        parameter = next(self.parameters())
        check_features(features, name, self.in_channels, self.spatial_size, parameter)
        if self.spatial_size is None:
            self._materialize(tuple(features.shape[-2:]))

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

    The three reductions are the paper's 8 by default where they fit, so that small feature
    maps work without tuning; a value given is used as it is, and one that leaves no channel
    somewhere raises a ``ValueError`` that names it and a value that works. ``None`` chooses:

    - a reduction of a count ``N`` (``C`` for ``channel_reduction``, ``H*W`` for
      ``spatial_reduction``) whose ``N // r`` relation channels feed a scorer: the largest
      ``r <= 8`` that leaves ``(1 + N // r) // d >= 1`` hidden channel, where ``d`` is
      ``down_ratio`` if given and 8 otherwise, i.e. ``r = max(1, min(8, N // max(d - 1,
      1)))``; 1 if none does;
    - any other reduction (here ``channel_reduction``: embeddings only): ``min(8, N)``;
    - ``down_ratio``, given the reductions: the largest ``d <= 8`` that leaves every scorer a
      hidden channel, ``min(8, 1 + K)`` over the scorers' relation widths ``K``.

    So ``down_ratio`` stays 8 and ``spatial_reduction`` shrinks first; it falls below 8 only
    when even ``spatial_reduction=1`` leaves fewer than 7 relations (``H*W < 7``). Wherever the
    paper's 8, 8, 8 work (``H*W >= 56``, ``C >= 8``), these are the values chosen, so state dicts
    of the authors' default layer load unchanged. The values used are the attributes
    ``channel_reduction``, ``spatial_reduction`` and ``down_ratio`` (and are in ``repr``); the
    README tabulates them for common feature maps.

    Args:
        in_channels: ``C``.
        spatial_size: ``(H, W)`` of the features it will see. It is fixed: the relations to the
            ``H*W`` positions are channels of the weights, and any other size raises a
            ``ValueError``. ``None`` (default): taken from the first input, as torch's ``Lazy*``
            modules do: until then the parameters are ``UninitializedParameter`` and the
            reductions ``None``. ``.to(device, dtype)``, ``.eval()``, ``SyncBatchNorm``
            conversion and an optimizer built before that call hold (the optimizer keeps the
            same parameters); saving or loading this layer's state, a memory-format ``.to()``,
            weight initialisation over ``modules()`` and ``DistributedDataParallel`` need that
            call first. Its weights are those an eager layer built then would draw.
        channel_reduction: embeddings have ``C // channel_reduction`` channels (``None``:
            ``min(8, C)``).
        spatial_reduction: the relations are embedded to ``K = H*W // spatial_reduction``
            channels (``None``: automatic, above).
        down_ratio: the scorer's hidden layer has ``(1 + K) // down_ratio`` channels
            (``None``: automatic, above).

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
        >>> small = RGASpatial(1024, (8, 4))  # 32 positions: the paper's 8 would leave 4
        >>> small.spatial_reduction, small.down_ratio
        (4, 8)
        >>> tiny = RGASpatial(1024, (2, 2))  # 4 relations even at spatial_reduction=1
        >>> tiny.spatial_reduction, tiny.down_ratio
        (1, 5)
        >>> lazy = RGASpatial(1024)  # spatial_size from the first input
        >>> lazy(torch.randn(2, 1024, 24, 12)).shape, lazy.spatial_size
        (torch.Size([2, 1, 24, 12]), (24, 12))
    """

    def __init__(
        self,
        in_channels: int,
        spatial_size: tuple[int, int] | None = None,
        channel_reduction: int | None = None,
        spatial_reduction: int | None = None,
        down_ratio: int | None = None,
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
        self._check_and_build(f, "f")
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
            :class:`RGASpatial`; ``None``: taken from the first input, as there).
        use_spatial: apply the spatial map ``(B, 1, H, W)``.
        use_channel: apply the channel map ``(B, C, 1, 1)`` (after the spatial one).
        channel_reduction: the spatial branch's embeddings have ``C // channel_reduction``
            channels; the channel branch embeds its relations to as many.
        spatial_reduction: the channel branch's embeddings have ``H*W // spatial_reduction``
            channels; the spatial branch embeds its relations to as many.
        down_ratio: the scorers' hidden width divisor.

        Each of the three is automatic when ``None`` (the default), by :class:`RGASpatial`'s
        rule with both scorers: a reduction whose relations a scorer reads (``channel_reduction``
        with ``use_channel``, ``spatial_reduction`` with ``use_spatial``) shrinks from 8 until
        that scorer keeps a hidden channel at ``down_ratio`` (8 unless given), any other is
        ``min(8, N)``, and ``down_ratio`` is then the largest ``<= 8`` that suits both scorers.

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
        >>> small = RGA(16, (8, 4))  # the channel scorer reads C // 2 = 8 relations
        >>> small.channel_reduction, small.spatial_reduction, small.down_ratio
        (2, 4, 8)
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_and_build(x, "x")
        if self.use_spatial:
            x = torch.sigmoid(self._spatial_logits(x)) * x
        if self.use_channel:
            x = torch.sigmoid(self._channel_logits(x)) * x
        return x

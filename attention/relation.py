"""Relation-aware global attention logits (RGA, Zhang et al. CVPR 2020) without relation matrices.

RGA scores each of ``P`` positions from its pairwise relations to all others. With embeddings
``theta, phi`` of shape ``(B, F', P)`` the relation matrix is ``R[i, j] = theta_i . phi_j``
(``P x P``); both orientations, ``R^T`` and ``R``, are stacked as ``2P`` channels and a 1x1
convolution ``[W_in | W_out]`` (``K x 2P``, no bias) maps them to ``K`` channels:

    joint[k, p] = sum_a W_in[k, a] R[p, a] + sum_a W_out[k, a] R[a, p]
                = theta_p . (sum_a W_in[k, a] phi_a) + phi_p . (sum_a W_out[k, a] theta_a).

So ``joint = (phi W_in^T)^T theta + (theta W_out^T)^T phi``: four ``F' x P x K`` products per
sample instead of the ``P x P x F'`` relation matrix and its ``2P``-channel convolution. For the
spatial branch at ``1024 x 16 x 8`` that saves the relation tensors; for the channel branch
(``P = C = 1024``) it replaces 18 G multiply-adds per 64 samples (the relations and their
``2C``-channel convolution) by 0.5 G.

The layout follows the authors' ``RGA_Module``: every embedding is ``Sequential(Conv2d(1x1,
bias=False), BatchNorm2d, ReLU)`` and the scorer is ``Sequential(Conv2d, BatchNorm2d, ReLU,
Conv2d, BatchNorm2d(1))``, so their state dicts load unchanged. The BatchNorm and ReLU modules are
called as they are; only the 1x1 convolutions are evaluated here in another (equivalent) way:
the three embeddings of an input in one product (see :func:`embedding_weight`), ``gg``'s as
above, and the scorer's first one on its two inputs without concatenating them.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

__all__ = ["embedding_weight", "relation_branch", "relation_logits"]


def relation_branch(
    features: int, positions: int, feature_reduction: int, position_reduction: int, down_ratio: int
) -> dict[str, nn.Sequential]:
    r"""The five modules of one RGA branch, keyed by the authors' role names.

    Args:
        features: ``F``, channels of the embeddings' input (``C`` for the spatial branch, ``H*W``
            for the channel branch).
        positions: ``P``, the positions attended over (``H*W`` spatial, ``C`` channel).
        feature_reduction: ``F' = F // feature_reduction``.
        position_reduction: ``K = P // position_reduction``.
        down_ratio: the scorer's hidden width is ``(1 + K) // down_ratio``.

    Returns:
        ``{"gx", "gg", "W", "theta", "phi"}`` (the authors' registration order), where
        ``gx, theta, phi = Sequential(Conv2d(F -> F', 1x1, no bias), BatchNorm2d, ReLU)``,
        ``gg = Sequential(Conv2d(2P -> K), BatchNorm2d, ReLU)`` and ``W = Sequential(Conv2d(1 + K
        -> (1 + K) // down_ratio), BatchNorm2d, ReLU, Conv2d(-> 1), BatchNorm2d(1))``.
    """
    reduced = features // feature_reduction
    relation_width = positions // position_reduction
    return {
        "gx": _embedding(features, reduced),
        "gg": _embedding(2 * positions, relation_width),
        "W": _scorer(1 + relation_width, down_ratio),
        "theta": _embedding(features, reduced),
        "phi": _embedding(features, reduced),
    }


def embedding_weight(theta: nn.Sequential, phi: nn.Sequential, gx: nn.Sequential) -> Tensor:
    """``(3F', F)``: the three embeddings' 1x1 kernels stacked, to read the input in one GEMM."""
    return torch.cat([theta[0].weight, phi[0].weight, gx[0].weight]).flatten(1)


def _embedding(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _scorer(in_channels: int, down_ratio: int) -> nn.Sequential:
    hidden = in_channels // down_ratio
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, 1, kernel_size=1, bias=False),
        nn.BatchNorm2d(1),
    )


def relation_logits(
    embedded: Tensor,
    theta: nn.Sequential,
    phi: nn.Sequential,
    gx: nn.Sequential,
    gg: nn.Sequential,
    scorer: nn.Sequential,
) -> Tensor:
    r"""Attention logits of ``P`` positions from their 1x1-convolved embeddings.

    Args:
        embedded: ``(B, 3F', *positions)``, the outputs of the 1x1 convolutions of ``theta``,
            ``phi`` and ``gx`` (in that order along dim 1) before their BatchNorm and ReLU.
        theta, phi, gx: the embeddings ``Sequential(Conv2d, BatchNorm2d, ReLU)``, ``F -> F'``.
        gg: the relation embedding ``Sequential(Conv2d(2P -> K), BatchNorm2d, ReLU)``; the
            first ``P`` input channels see ``R^T`` (``R[p, a]`` at channel ``a``, position
            ``p``), the last ``P`` see ``R``, as in the authors' code.
        scorer: ``Sequential(Conv2d(1 + K -> h), BatchNorm2d, ReLU, Conv2d(h -> 1),
            BatchNorm2d(1))``.

    Returns:
        ``(B, 1, *positions)`` logits, ``embedded``'s dtype and device.
    """
    sizes = [module[0].out_channels for module in (theta, phi, gx)]
    theta_pre, phi_pre, gx_pre = embedded.split(sizes, dim=1)
    theta_x = rearrange(_activate(theta, theta_pre), "b e ... -> b e (...)")
    phi_x = rearrange(_activate(phi, phi_pre), "b e ... -> b e (...)")
    g_x = _activate(gx, gx_pre).mean(dim=1, keepdim=True)
    w_in, w_out = rearrange(gg[0].weight, "k (two p) 1 1 -> two p k", two=2)
    # joint = (phi W_in^T)^T theta + (theta W_out^T)^T phi, see the module docstring
    joint = torch.baddbmm(
        torch.bmm((theta_x @ w_out).transpose(1, 2), phi_x),
        (phi_x @ w_in).transpose(1, 2),
        theta_x,
    )
    joint = gg[2](gg[1](joint.unflatten(2, g_x.shape[2:])))
    # scorer[0] on cat([g_x, joint]) without building the (1 + K)-channel concatenation
    w_mean, w_joint = scorer[0].weight.flatten(1).split([1, joint.shape[1]], dim=1)
    hidden = w_joint @ joint.flatten(2) + w_mean * g_x.flatten(2)
    return scorer[1:](hidden.unflatten(2, g_x.shape[2:]))


def _activate(embedding: nn.Sequential, convolved: Tensor) -> Tensor:
    """The embedding's BatchNorm and ReLU modules on its 1x1 convolution's output."""
    # On CPU, BatchNorm is 2-4x slower on a strided view than on a contiguous copy of it.
    return embedding[2](embedding[1](convolved.contiguous()))

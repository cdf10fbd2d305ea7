"""OAMN's attention-guided mask module: an attention map and the features it weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AttentionMask"]


class AttentionMask(nn.Module):
    r"""Wrap an attention-map layer to return the attentive features ``g = m * f`` and ``m``.

    OAMN (§3.2) computes ``m = M(f)`` and ``g = m ⊙ f``. The paper lets gradients reach the
    encoder through both ``g = m * f`` and ``M``; the authors' code feeds the mask net
    ``f.detach()``, so the encoder is trained only through the product (``detach_input=True``).

    Args:
        attention: a module mapping ``f`` ``(B, C, H, W)`` to a map ``m`` that broadcasts to
            ``f``'s shape with ``B`` rows, e.g. :class:`~oamn.attention.RGASpatial` (``(B, 1, H,
            W)``).
        detach_input: feed the attention ``f.detach()`` (the authors' code) instead of ``f``
            (the paper, default).

    Shape:
        - f: ``(B, C, H, W)``, as ``attention`` accepts it.
        - output: ``(g, m)``: ``g`` of ``f``'s shape (``m * f``, dtype by type promotion), and
          ``m`` as returned by ``attention``.

    Example:
        >>> from oamn.attention import RGASpatial
        >>> mask = AttentionMask(RGASpatial(64, (8, 8)), detach_input=True)
        >>> f = torch.randn(2, 64, 8, 8, requires_grad=True)
        >>> g, m = mask(f)
        >>> g.shape, m.shape
        (torch.Size([2, 64, 8, 8]), torch.Size([2, 1, 8, 8]))
        >>> torch.equal(g, m * f)
        True
    """

    def __init__(self, attention: nn.Module, detach_input: bool = False) -> None:
        super().__init__()
        if not isinstance(attention, nn.Module):
            raise TypeError(f"attention must be an nn.Module, got {type(attention).__name__}")
        if not isinstance(detach_input, bool):
            raise TypeError(f"detach_input must be a bool, got {detach_input!r}")
        self.attention = attention
        self.detach_input = detach_input

    def extra_repr(self) -> str:
        return f"detach_input={self.detach_input}"

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(f, Tensor):
            raise TypeError(f"f must be a torch.Tensor, got {type(f).__name__}")
        m = self.attention(f.detach() if self.detach_input else f)
        if not isinstance(m, Tensor) or not _broadcasts_to(m.shape, f.shape):
            shape = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(
                f"attention returned {shape}, which does not broadcast to f's shape "
                f"{tuple(f.shape)} with the same batch; wrap a layer that returns a map such "
                f"as RGASpatial's (B, 1, H, W)"
            )
        return m * f, m


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    if len(shape) != len(target) or shape[0] != target[0]:
        return False
    return all(size in (1, full) for size, full in zip(shape, target, strict=True))

"""Random parameters of the occlusion augmentation, drawn apart from their application."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CORNERS", "OcclusionParams", "draw_occlusion_params"]

#: Corner names, indexed by their code: bit 0 set = right side, bit 1 set = bottom side.
CORNERS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class OcclusionParams:
    r"""Everything the occlusion augmentation draws for a batch of ``B`` images.

    All tensors are ``(B,)`` and live on the CPU. Passing these back as ``params=`` reproduces an
    output bit for bit.

    Attributes:
        source_index: int64, the row of the patch source (a row of the batch other than the image
            itself, or a row of the ``occluders`` tensor).
        corner: int64 in ``0..3``, see :data:`CORNERS`.
        patch_scale: float64 ``epsilon``, the patch area as a fraction of the source image area.
        patch_ratio: float64 ``r``, the patch's height / width ratio.
        patch_height: int64, ``clamp(round(sqrt(epsilon * h * w * r)), 1, h)`` source pixels.
        patch_width: int64, ``clamp(round(sqrt(epsilon * h * w / r)), 1, w)`` source pixels.
        area: float32, the band area of the image's occluded copies (shared by all of them).
        source_size: ``(h, w)`` of the source images.
        from_occluders: whether the patches come from an ``occluders`` tensor.
        num_sources: number of rows the patches were drawn from.
    """

    source_index: Tensor
    corner: Tensor
    patch_scale: Tensor
    patch_ratio: Tensor
    patch_height: Tensor
    patch_width: Tensor
    area: Tensor
    source_size: tuple[int, int]
    from_occluders: bool
    num_sources: int

    @property
    def batch_size(self) -> int:
        """Number of input images ``B`` the parameters were drawn for."""
        return self.source_index.numel()

    @property
    def patch_top(self) -> Tensor:
        """``(B,)`` int64 first source row of each patch."""
        return torch.where(self.corner >= 2, self.source_size[0] - self.patch_height, 0)

    @property
    def patch_left(self) -> Tensor:
        """``(B,)`` int64 first source column of each patch."""
        return torch.where(self.corner % 2 == 1, self.source_size[1] - self.patch_width, 0)


def draw_occlusion_params(
    batch_size: int,
    source_size: tuple[int, int],
    areas: tuple[float, ...],
    area_probs: Tensor,
    patch_area: tuple[float, float],
    patch_ratio: tuple[float, float],
    num_occluders: int | None = None,
    generator: torch.Generator | None = None,
) -> OcclusionParams:
    r"""Draw the parameters of one augmentation call (paper §3.1).

    Without occluders, each image takes its patch from another row of the batch, uniformly among
    the ``B - 1`` others; with ``num_occluders`` rows of occluders, uniformly among those. The
    corner is uniform among the four; ``epsilon ~ U(patch_area)`` and ``r ~ U(patch_ratio)``;
    the band area is drawn from ``areas`` with probabilities ``area_probs``.

    Args:
        batch_size: ``B``, at least 2 without occluders, else at least 1.
        source_size: ``(h, w)`` of the source images.
        areas: the band areas to draw from.
        area_probs: ``(len(areas),)`` float probabilities.
        patch_area: ``(low, high)`` range of ``epsilon``.
        patch_ratio: ``(low, high)`` range of ``r``.
        num_occluders: number of occluder images, or ``None`` to take patches from the batch.
        generator: the source of randomness; its device is used for drawing (default: the
            global CPU generator). The result is moved to the CPU.

    Returns:
        The drawn :class:`OcclusionParams`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> p = draw_occlusion_params(4, (256, 128), (0.5, 0.25), torch.tensor([0.5, 0.5]),
        ...                           (0.02, 0.2), (0.3, 3.3), generator=g)
        >>> bool((p.source_index != torch.arange(4)).all())
        True
    """
    device = generator.device if generator is not None else torch.device("cpu")
    draw = {"generator": generator, "device": device}
    if num_occluders is None:
        # A uniform offset in 1..B-1 picks any other row with equal probability, never its own.
        offset = torch.randint(1, batch_size, (batch_size,), **draw)
        source_index = (torch.arange(batch_size, device=device) + offset) % batch_size
        num_sources = batch_size
    else:
        source_index = torch.randint(num_occluders, (batch_size,), **draw)
        num_sources = num_occluders
    corner = torch.randint(len(CORNERS), (batch_size,), **draw)
    scale = _uniform(patch_area, batch_size, draw)
    ratio = _uniform(patch_ratio, batch_size, draw)
    area_index = torch.multinomial(
        area_probs.to(device, torch.float64), batch_size, replacement=True, generator=generator
    )
    src_h, src_w = source_size
    patch_area_px = scale * (src_h * src_w)
    patch_height = _round_half_up(torch.sqrt(patch_area_px * ratio)).clamp(1, src_h)
    patch_width = _round_half_up(torch.sqrt(patch_area_px / ratio)).clamp(1, src_w)
    area = torch.tensor(areas, dtype=torch.float32, device=device)[area_index]
    cpu = torch.device("cpu")
    return OcclusionParams(
        source_index=source_index.to(cpu),
        corner=corner.to(cpu),
        patch_scale=scale.to(cpu),
        patch_ratio=ratio.to(cpu),
        patch_height=patch_height.to(cpu),
        patch_width=patch_width.to(cpu),
        area=area.to(cpu),
        source_size=(src_h, src_w),
        from_occluders=num_occluders is not None,
        num_sources=num_sources,
    )


def _uniform(bounds: tuple[float, float], n: int, draw: dict) -> Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, dtype=torch.float64, **draw)


def _round_half_up(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).to(torch.int64)

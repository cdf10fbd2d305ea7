r"""Mask supervision by the augmentation's known occluders: the mask should be the visibility.

OAMN's mask losses (eq. 2-3) shape the mask only indirectly, and a mask computed from features
whose receptive field covers the whole map can lower them without marking the occluder. The
augmentation knows exactly which pixels it occluded, so the mask can be told: at each position
of the ``h x w`` feature map, the target is the visible fraction of that cell,
``1 - mean(occluded pixels of the cell)``, and the loss is the binary cross-entropy between the
mask and that target. Holistic views (nothing occluded) have the target 1 everywhere.
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctests use it)
import torch.nn.functional as F
from torch import Tensor, nn

from ._precision import float32_under_autocast
from ._validation import check_finite, check_float_tensor

__all__ = ["MaskVisibilityLoss", "mask_visibility_loss", "visibility_target"]


def visibility_target(occluded: Tensor, size: tuple[int, int]) -> Tensor:
    r"""The visible fraction of each cell of an ``h x w`` grid over the images.

    Args:
        occluded: ``(N, 1, H, W)`` bool (or floating in ``[0, 1]``), the occluded pixels.
        size: ``(h, w)`` of the feature map; with ``H, W`` multiples of ``h, w`` each cell is
            exactly ``H/h x W/w`` pixels (otherwise ``adaptive_avg_pool2d``'s overlapping
            cells).

    Returns:
        ``(N, 1, h, w)`` float32 target in ``[0, 1]``: ``1 - mean`` of each cell's pixels.

    Example:
        >>> occluded = torch.zeros(1, 1, 8, 4, dtype=torch.bool)
        >>> occluded[..., 6:, :] = True  # the bottom quarter
        >>> visibility_target(occluded, (2, 2))[0, 0]
        tensor([[1.0000, 1.0000],
                [0.5000, 0.5000]])
    """
    if not isinstance(occluded, Tensor) or occluded.ndim != 4 or occluded.shape[1] != 1:
        got = tuple(occluded.shape) if isinstance(occluded, Tensor) else type(occluded).__name__
        raise ValueError(f"occluded must have shape (N, 1, H, W), got {got}")
    return 1.0 - F.adaptive_avg_pool2d(occluded.float(), size)


@float32_under_autocast
def mask_visibility_loss(m: Tensor, occluded: Tensor) -> Tensor:
    r"""Binary cross-entropy between the attention mask and each cell's visible fraction.

    ``mean_{n, y, x} BCE(m[n, 0, y, x], v[n, 0, y, x])`` with ``v = visibility_target(occluded,
    (h, w))``. Its minimum over ``m`` is at ``m = v``: 1 where nothing is occluded, 0 on fully
    occluded cells.

    Args:
        m: ``(N, 1, h, w)`` floating masks, values in ``[0, 1]`` (a sigmoid's output).
        occluded: ``(N, 1, H, W)`` bool occluded pixels of the same ``N`` images, e.g.
            ``oamn.occlusion_aug``'s ``OcclusionBatch.occluded``, on ``m``'s device.

    Returns:
        ``()`` loss in ``m``'s dtype (float32 under autocast).

    Raises:
        ValueError: mismatched shapes, values of ``m`` outside ``[0, 1]``, NaN or inf.

    Example:
        >>> occluded = torch.zeros(2, 1, 4, 2, dtype=torch.bool)
        >>> occluded[1, :, 2:] = True  # the second image's bottom half
        >>> target = visibility_target(occluded, (2, 1))
        >>> mask_visibility_loss(target.clamp(0.01, 0.99), occluded)  # near the minimum
        tensor(0.0101)
    """
    check_float_tensor(m, "m", "(N, 1, h, w)", ndim=4)
    if m.shape[1] != 1:
        raise ValueError(f"m must have shape (N, 1, h, w), got {tuple(m.shape)}")
    target = visibility_target(occluded, tuple(m.shape[2:]))
    if occluded.shape[0] != m.shape[0]:
        raise ValueError(
            f"occluded has {occluded.shape[0]} images but m has {m.shape[0]}; pass the occluded "
            "pixels of the images the masks were computed on"
        )
    if occluded.device != m.device:
        raise ValueError(f"occluded is on {occluded.device} but m on {m.device}")
    check_finite(m=m)
    if bool(((m < 0) | (m > 1)).any()):
        raise ValueError("m must hold values in [0, 1] (a sigmoid's output), got values outside")
    return F.binary_cross_entropy(m, target.to(m.dtype))


class MaskVisibilityLoss(nn.Module):
    r"""Module form of :func:`mask_visibility_loss`.

    Example:
        >>> loss = MaskVisibilityLoss()
        >>> loss(torch.full((1, 1, 2, 1), 0.5), torch.zeros(1, 1, 4, 2, dtype=torch.bool))
        tensor(0.6931)
    """

    def forward(self, m: Tensor, occluded: Tensor) -> Tensor:
        """The binary cross-entropy of each mask cell against its visible fraction.

        Args:
            m: ``(N, 1, h, w)`` attention masks in ``[0, 1]`` (a sigmoid's output).
            occluded: ``(N, 1, H, W)`` bool, ``True`` on occluded pixels
                (``OcclusionBatch.occluded``) at image resolution, on ``m``'s device.

        Returns:
            The ``()`` mean loss over the ``N * h * w`` cells in ``m``'s dtype (float32 under
            autocast), ``>= 0``.
        """
        return mask_visibility_loss(m, occluded)

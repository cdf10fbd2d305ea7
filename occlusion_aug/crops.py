"""Batched resize of one rectangular crop per image to a common size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_images

__all__ = ["resize_crops"]


def resize_crops(
    images: Tensor,
    top: Tensor,
    left: Tensor,
    height: Tensor,
    width: Tensor,
    size: tuple[int, int],
) -> Tensor:
    r"""Crop a different rectangle out of each image and resize all crops to one size.

    Each output equals ``F.interpolate(images[i:i+1, :, t:t+h, l:l+w], size, mode="bilinear",
    align_corners=False)`` (no antialiasing, edges replicated inside the crop), but the whole
    batch is resampled at once and only the output pixels are computed.

    Args:
        images: ``(N, C, H, W)`` floating source images, any device. float16 and bfloat16 are
            resampled in float32 and returned in their own dtype.
        top: ``(N,)`` integer first row of each crop (the four box tensors are read on the CPU).
        left: ``(N,)`` integer first column of each crop.
        height: ``(N,)`` integer crop heights, ``>= 1``, ``top + height <= H``.
        width: ``(N,)`` integer crop widths, ``>= 1``, ``left + width <= W``.
        size: ``(out_h, out_w)`` output size, both ``>= 1``.

    Returns:
        ``(N, C, out_h, out_w)`` tensor of ``images``' dtype and device.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> one = torch.ones(1, dtype=torch.long)
        >>> resize_crops(x, one, one, 2 * one, 2 * one, (2, 4))[0, 0]
        tensor([[ 5.0000,  5.2500,  5.7500,  6.0000],
                [ 9.0000,  9.2500,  9.7500, 10.0000]])
    """
    num, _, src_h, src_w = check_images(images)
    boxes = {"top": top, "left": left, "height": height, "width": width}
    for name, value in boxes.items():
        if not isinstance(value, Tensor) or value.shape != (num,):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"top/left/height/width must each have shape ({num},); {name} is {shape}"
            )
    out_h, out_w = size
    # The coordinates are tiny: computing them on the CPU in float64 saves a dozen kernel launches
    # on an accelerator and works on backends without float64.
    geometry = torch.stack(list(boxes.values())).to("cpu", torch.float64)
    top, left, height, width = geometry[:, :, None]
    reduced_precision = images.dtype in (torch.float16, torch.bfloat16)
    compute_dtype = torch.float32 if reduced_precision else images.dtype
    rows = _source_coordinates(top, height, out_h, src_h).to(images.device, compute_dtype)
    cols = _source_coordinates(left, width, out_w, src_w).to(images.device, compute_dtype)
    grid = torch.stack(torch.broadcast_tensors(cols[:, None, :], rows[:, :, None]), dim=-1)
    resized = F.grid_sample(
        images.to(compute_dtype),
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return resized.to(images.dtype)


def _source_coordinates(start: Tensor, extent: Tensor, out_len: int, src_len: int) -> Tensor:
    """Normalised grid coordinates of ``out_len`` samples spread over each crop extent."""
    centres = torch.arange(out_len, dtype=torch.float64) + 0.5
    # F.interpolate(align_corners=False): sample at (j + 1/2) * scale - 1/2, clamped to the crop,
    # which is what keeps neighbouring source pixels outside the crop out of the result.
    inside = (centres * extent / out_len - 0.5).clamp(min=0.0)
    pixel = start + torch.minimum(inside, extent - 1)
    return (2.0 * pixel + 1.0) / src_len - 1.0

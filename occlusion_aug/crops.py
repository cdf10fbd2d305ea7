"""Batched resize of one rectangular crop per image to a common size."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_images

__all__ = ["resize_crops"]


def resize_crops(
    images: Tensor,
    top: Tensor | Sequence[int],
    left: Tensor | Sequence[int],
    height: Tensor | Sequence[int],
    width: Tensor | Sequence[int],
    size: tuple[int, int],
) -> Tensor:
    r"""Crop a different rectangle out of each image and resize all crops to one size.

    Each output equals ``F.interpolate(images[i:i+1, :, t:t+h, l:l+w], size, mode="bilinear",
    align_corners=False)`` (no antialiasing, edges replicated inside the crop), but the whole
    batch is resampled at once and only the output pixels are computed.

    Args:
        images: ``(N, C, H, W)`` floating or uint8 source images, any device. float16, bfloat16
            and uint8 are resampled in float32 and returned in their own dtype; uint8 results are
            rounded half to even (``torch.round``), so they equal
            ``resize_crops(images.float(), ...).round().byte()``. Bilinear weights are convex, so
            the rounded values stay in ``0..255``.
        top: ``(N,)`` integers (a tensor, list or tuple), the first row of each crop (the four box
            arguments are read on the CPU).
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
        boxes[name] = value = torch.as_tensor(value)
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"top/left/height/width must hold integers; {name} is {value.dtype}")
        if value.shape != (num,):
            raise ValueError(
                f"top/left/height/width must each have shape ({num},); {name} is "
                f"{tuple(value.shape)}"
            )
    out_h, out_w = size
    # The coordinates are tiny: computing them on the CPU in float64 saves a dozen kernel launches
    # on an accelerator and works on backends without float64.
    geometry = torch.stack(list(boxes.values())).to("cpu", torch.float64)
    top, left, height, width = geometry[:, :, None]
    full_precision = images.dtype in (torch.float32, torch.float64)
    compute_dtype = images.dtype if full_precision else torch.float32
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
    if not images.is_floating_point():
        resized = resized.round()
    return resized.to(images.dtype)


def _source_coordinates(start: Tensor, extent: Tensor, out_len: int, src_len: int) -> Tensor:
    """Normalised grid coordinates of ``out_len`` samples spread over each crop extent."""
    centres = torch.arange(out_len, dtype=torch.float64) + 0.5
    # F.interpolate(align_corners=False): sample at (j + 1/2) * scale - 1/2, clamped to the crop,
    # which is what keeps neighbouring source pixels outside the crop out of the result.
    inside = (centres * extent / out_len - 0.5).clamp(min=0.0)
    pixel = start + torch.minimum(inside, extent - 1)
    return (2.0 * pixel + 1.0) / src_len - 1.0

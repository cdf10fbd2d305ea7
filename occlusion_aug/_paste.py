"""Pasting resized corner patches into bands: the core of both occlusion augmentations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .bands import band_mask, band_slices, band_thickness
from .crops import resize_crops
from .params import OcclusionParams

# Top/bottom bands span the full width and left/right bands the full height, so the two bands of
# one orientation and area have the same size and can share one resampled patch.
_ORIENTATIONS = ((1, 2), (3, 4))


def memory_format_of(images: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a channels-last batch, else ``torch.contiguous_format``."""
    # A tensor with C == 1 or H == W == 1 is both; plain NCHW is then the unsurprising answer.
    if images.is_contiguous() or not images.is_contiguous(memory_format=torch.channels_last):
        return torch.contiguous_format
    return torch.channels_last


def paste_bands(
    canvases: Mapping[int, Tensor],
    sources: Tensor,
    params: OcclusionParams,
    areas: Sequence[float],
) -> None:
    r"""Write each image's resized corner patch into its band at every location, in place.

    Args:
        canvases: location code -> ``(B, C, H, W)`` tensor receiving the bands of that location
            (several codes may share one tensor).
        sources: ``(N, C, h, w)`` images the patches are cut from, per ``params``.
        params: the drawn parameters of the ``B`` images (on the CPU).
        areas: the areas ``params.area`` is drawn from.
    """
    batch, _, height, width = next(iter(canvases.values())).shape
    device = next(iter(canvases.values())).device
    for area in areas:
        members = torch.nonzero(params.area == area).squeeze(1)
        if members.numel() == 0:
            continue
        spans = dict.fromkeys(canvases, slice(0, members.numel()))
        crops = sources.index_select(0, params.source_index[members].to(sources.device))
        geometry = (
            params.patch_top[members],
            params.patch_left[members],
            params.patch_height[members],
            params.patch_width[members],
        )
        for codes in _ORIENTATIONS:
            codes = [code for code in codes if code in canvases]
            if not codes:
                continue
            group = slice(spans[codes[0]].start, spans[codes[-1]].stop)
            if group.start == group.stop:
                continue
            band_rows, band_cols = band_slices(codes[0], area, height, width)
            size = (len(range(height)[band_rows]), len(range(width)[band_cols]))
            patches = resize_crops(crops[group], *(g[group] for g in geometry), size=size)
            for code in codes:
                span = spans[code]
                targets = members[span]
                if targets.numel() == 0:
                    continue
                # Plain slicing when every image gets this band avoids a scattered index_put.
                rows = slice(None) if targets.numel() == batch else targets.to(device)
                band = band_slices(code, area, height, width)
                in_group = slice(span.start - group.start, span.stop - group.start)
                canvases[code][(rows, slice(None), *band)] = patches[in_group]


def paste_single_bands(
    output: Tensor, sources: Tensor, params: OcclusionParams, location: Tensor
) -> None:
    r"""Write image ``i``'s resized corner patch into its one band at ``location[i]``, in place.

    The same pixels as :func:`paste_bands` with one band per image, in one batched pass
    whatever the mix of locations and areas: each image's band pixels, in raster order, get
    their bilinear source coordinates (the crop resized as ``F.interpolate(align_corners=False)``
    samples it); one ``grid_sample`` over the batch's sources reads them all, and one
    ``masked_scatter_`` writes them into the bands. About a dozen kernels, none per
    (location, area) group.

    Args:
        output: ``(B, C, H, W)`` tensor receiving the bands (a copy of ``sources`` in
            :class:`~oamn.occlusion_aug.RandomBandOcclusion`).
        sources: ``(B, C, H, W)`` images the patches are cut from, per ``params``.
        params: the drawn parameters of the ``B`` images (on the CPU).
        location: ``(B,)`` int64 CPU location codes, 0 for no band.
    """
    _, _, height, width = output.shape
    device = output.device
    area = params.area.to(torch.float32)
    rows, cols = band_thickness(area, height), band_thickness(area, width)
    horizontal, vertical = (location == 1) | (location == 2), (location == 3) | (location == 4)
    band_height = torch.where(horizontal, rows, torch.where(vertical, height, 0))
    band_width = torch.where(vertical, cols, torch.where(horizontal, width, 0))
    counts = band_height * band_width
    longest = int(counts.max())
    if longest == 0:
        return
    full_precision = output.dtype in (torch.float32, torch.float64)
    compute_dtype = output.dtype if full_precision else torch.float32
    # Per image and band line (column): the normalised source row (column) it samples.
    row_table = _sample_coordinates(params.patch_top, params.patch_height, band_height, height)
    col_table = _sample_coordinates(params.patch_left, params.patch_width, band_width, width)
    # Pixel p of image i's band is at line p // band_width[i], column p % band_width[i].
    pixel = torch.arange(longest, device=device)[None]
    widths = band_width.clamp_min(1).to(device)[:, None]
    line = torch.div(pixel, widths, rounding_mode="floor").clamp_max(row_table.shape[1] - 1)
    column = pixel - line * widths
    grid = torch.stack(
        [
            col_table.to(device, compute_dtype).gather(1, column.clamp_max(col_table.shape[1] - 1)),
            row_table.to(device, compute_dtype).gather(1, line),
        ],
        dim=-1,
    )
    crops = sources.index_select(0, params.source_index.to(device)).to(compute_dtype)
    sampled = F.grid_sample(
        crops, grid[:, None], mode="bilinear", padding_mode="border", align_corners=False
    )[:, :, 0]  # (B, C, longest); past counts[i]: padding
    if not output.is_floating_point():
        sampled = sampled.round()
    valid = pixel < counts.to(device)[:, None]
    # Raster order in (image, channel, band pixel): the order masked_scatter_ fills the bands.
    values = sampled.to(output.dtype)[valid[:, None].expand_as(sampled)]
    band_area = torch.where(location > 0, area, 0.0)  # rows the gate skips: no band
    bands = band_mask(location.to(device), band_area.to(device), height, width)
    output.masked_scatter_(bands.expand_as(output), values)


def _sample_coordinates(
    start: Tensor, extent: Tensor, band_length: Tensor, source_length: int
) -> Tensor:
    """``(B, L)`` normalised ``grid_sample`` coordinates of the ``L`` lines of each band (``L``
    the longest band; beyond an image's own band, repeats of its last line), sampling each
    crop ``[start, start + extent)`` of a ``source_length``-line image as ``F.interpolate``
    does (float64, on the CPU)."""
    longest = max(int(band_length.max()), 1)
    lines = torch.arange(longest, dtype=torch.float64)[None]
    lengths = band_length.clamp_min(1).to(torch.float64)[:, None]
    extent = extent.to(torch.float64)[:, None]
    # F.interpolate(align_corners=False): sample at (j + 1/2) * extent / length - 1/2, clamped
    # to the crop, which keeps the neighbouring source pixels outside the crop out of it.
    centres = torch.minimum(lines, lengths - 1) + 0.5
    inside = (centres * extent / lengths - 0.5).clamp(min=0.0)
    pixel = start[:, None] + torch.minimum(inside, extent - 1)
    return (2.0 * pixel + 1.0) / source_length - 1.0

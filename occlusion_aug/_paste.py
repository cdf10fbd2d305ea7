"""Pasting resized corner patches into bands: the core of both occlusion augmentations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .bands import band_slices
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
    location: Tensor | None = None,
) -> None:
    r"""Write each image's resized corner patch into its bands, in place.

    Args:
        canvases: location code -> ``(B, C, H, W)`` tensor receiving the bands of that location
            (several codes may share one tensor).
        sources: ``(N, C, h, w)`` images the patches are cut from, per ``params``.
        params: the drawn parameters of the ``B`` images (on the CPU).
        areas: the areas ``params.area`` is drawn from.
        location: ``None`` gives every image a band at every location of ``canvases`` (the 5-view
            expansion); a ``(B,)`` int64 CPU tensor gives image ``i`` one band, at
            ``location[i]``, which must be a key of ``canvases`` or 0 (no band).
    """
    batch, _, height, width = next(iter(canvases.values())).shape
    device = next(iter(canvases.values())).device
    for area in areas:
        members = torch.nonzero(params.area == area).squeeze(1)
        if members.numel() == 0:
            continue
        if location is None:
            spans = dict.fromkeys(canvases, slice(0, members.numel()))
        else:
            # Sorted by location, each location's (and each orientation's) members form one
            # contiguous slice of a single selection of crops: no copy per group.
            members = members[torch.argsort(location[members], stable=True)]
            ends = torch.bincount(location[members], minlength=5).cumsum(0).tolist()
            spans = {code: slice(ends[code - 1], ends[code]) for code in canvases}
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

"""Occlusion bands: the shared (location, area) convention and its pixel geometry.

Convention (shared by every package of this project, see README.md; defined here, the other
packages keep their own copies as they import none of the others):

* location (:data:`LOCATIONS`): ``0`` none, ``1`` top, ``2`` bottom, ``3`` left, ``4`` right;
* area (:data:`AREAS`): ``0`` (none), ``0.25`` (quarter) or ``0.5`` (half) of the image, as a
  band that spans the whole other side;
* occlusion type (:data:`OCCLUSION_TYPES`): ``0`` none, ``1``-``4`` half
  top/bottom/left/right, ``5``-``8`` quarter top/bottom/left/right.

>>> OCCLUSION_TYPES[6], location_and_area([6])
('quarter_bottom', (tensor([2]), tensor([0.2500])))

Rounding. A band of area ``a`` along a side of ``L`` pixels (rows for top/bottom, columns for
left/right) holds the lines whose *centre* lies in the closed interval ``[0, a*L]`` (top/left) or
``[L - a*L, L]`` (bottom/right). It is therefore ``floor(a*L + 1/2)`` lines thick on both sides,
so a top band and a bottom band of the same area have the same size. For ``L = 256`` and
``a = 1/2`` that is rows ``[0, 128)`` / ``[128, 256)``; on a 16x8 feature map, quarter bands are
4 rows or 2 columns. With an odd ``L``, the two half bands share the middle line (their union is
the whole image); a quarter band of a side shorter than 2 lines is empty.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import torch
from torch import Tensor

from ._validation import check_images

__all__ = [
    "AREAS",
    "AREA_NAMES",
    "BAND_LOCATIONS",
    "LOCATIONS",
    "NUM_OCCLUSION_TYPES",
    "OCCLUSION_TYPES",
    "band_mask",
    "band_slices",
    "band_thickness",
    "location_and_area",
    "occlude",
    "occlusion_type",
]

#: Location names, indexed by their location code.
LOCATIONS: tuple[str, ...] = ("none", "top", "bottom", "left", "right")

#: The locations a band may take (codes ``1..4``), in code order: the augmentations' default
#: locations and output order, and the order of the occlusion grader's 4 score columns.
BAND_LOCATIONS: tuple[str, ...] = LOCATIONS[1:]

#: The band areas, in type order: half (types ``1..4``), quarter (types ``5..8``); the
#: augmentations' default areas.
AREAS: tuple[float, ...] = (0.5, 0.25)

#: The names of :data:`AREAS`, in the same order.
AREA_NAMES: tuple[str, ...] = ("half", "quarter")

#: Occlusion type names, indexed by type: ``"none"``, then ``"<area>_<location>"`` for each area
#: of :data:`AREAS` and each location of :data:`BAND_LOCATIONS` (``"half_top"``, ...,
#: ``"quarter_right"``).
OCCLUSION_TYPES: tuple[str, ...] = (
    "none",
    *(f"{area}_{location}" for area in AREA_NAMES for location in BAND_LOCATIONS),
)

#: Number of occlusion types: none, 4 half and 4 quarter bands.
NUM_OCCLUSION_TYPES = len(OCCLUSION_TYPES)


def band_thickness(area: Tensor | float | Sequence[float], length: int) -> Tensor:
    r"""Number of lines of a band covering ``area`` of a side ``length`` lines long.

    Args:
        area: any shape (a tensor, number, list or tuple), values in ``[0, 1]``.
        length: the side's length in pixels (rows for top/bottom, columns for left/right).

    Returns:
        int64 tensor of ``area``'s shape and device: ``floor(area * length + 1/2)``.

    Example:
        >>> band_thickness(torch.tensor([0.5, 0.25, 0.0]), 7)
        tensor([4, 2, 0])
    """
    area = torch.as_tensor(area, dtype=torch.float64)
    return torch.floor(area * length + 0.5).to(torch.int64)


def band_mask(
    location: Tensor | Sequence[int],
    area: Tensor | Sequence[float],
    height: int,
    width: int,
) -> Tensor:
    r"""Boolean masks of the occluded band of each (location, area) pair.

    Works at any resolution, so the same call masks a 256x128 image or a 16x8 feature map
    (see the module docstring for the rounding).

    Args:
        location: ``(N,)`` integer location codes in ``0..4`` (0 none, 1 top, 2 bottom, 3 left,
            4 right). The masks are created on its device.
        area: ``(N,)`` band areas in ``[0, 1]``; ``0`` gives an empty mask. Location ``0`` must
            have area ``0``.
        height: mask height ``H >= 1``.
        width: mask width ``W >= 1``.

    Returns:
        ``(N, 1, H, W)`` bool tensor, ``True`` inside the band.

    Example:
        >>> band_mask([1, 4], [0.5, 0.25], 4, 4)[:, 0].long()
        tensor([[[1, 1, 1, 1],
                 [1, 1, 1, 1],
                 [0, 0, 0, 0],
                 [0, 0, 0, 0]],
        <BLANKLINE>
                [[0, 0, 0, 1],
                 [0, 0, 0, 1],
                 [0, 0, 0, 1],
                 [0, 0, 0, 1]]])
    """
    location, area = _check_location_area(location, area)
    for name, size in (("height", height), ("width", width)):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{name} must be a positive int, got {size!r}")
    device = location.device
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_band = band_thickness(area, height)[:, None]
    col_band = band_thickness(area, width)[:, None]
    loc = location[:, None]
    # Each (N, H) / (N, W) line mask is True where that location's band covers the line.
    in_rows = ((loc == 1) & (rows < row_band)) | ((loc == 2) & (rows >= height - row_band))
    in_cols = ((loc == 3) & (cols < col_band)) | ((loc == 4) & (cols >= width - col_band))
    return (in_rows[:, :, None] | in_cols[:, None, :]).unsqueeze(1)


def band_slices(location: int, area: float, height: int, width: int) -> tuple[slice, slice]:
    r"""The band of one (location, area) pair as ``(rows, columns)`` slices of an image.

    The same band as :func:`band_mask`, in a form that indexes without a mask: for a whole batch
    sharing one (location, area), ``images[..., rows, cols]`` is the band.

    Args:
        location: location code in ``0..4``; ``0`` gives an empty band.
        area: band area in ``[0, 1]``.
        height: image height ``H``.
        width: image width ``W``.

    Returns:
        ``(rows, cols)`` slices; the side the band spans is ``slice(None)``.

    Example:
        >>> band_slices(2, 0.25, 256, 128)
        (slice(192, 256, None), slice(None, None, None))
    """
    # Plain Python arithmetic: both augmentations look bands up several times per call, on the
    # CPU, where a dozen small tensor operations would cost more than the look-up itself. The
    # area is rounded to float32 first, as it is stored in the augmentations' parameters, so the
    # lines are those band_thickness and band_mask give for the stored areas.
    area = struct.unpack("f", struct.pack("f", float(area)))[0]
    rows, cols = (math.floor(area * n + 0.5) for n in (height, width))
    full = slice(None)
    return {
        0: (slice(0, 0), full),
        1: (slice(0, rows), full),
        2: (slice(height - rows, height), full),
        3: (full, slice(0, cols)),
        4: (full, slice(width - cols, width)),
    }[location]


def occlude(
    images: Tensor,
    location: Tensor | Sequence[int],
    area: Tensor | Sequence[float],
    fill: float | Tensor = 0.0,
) -> Tensor:
    r"""Fill the occlusion band of each image with a constant (test-time "black box" occlusion).

    Args:
        images: ``(N, C, H, W)`` floating or uint8 images, or feature maps, any device.
        location: ``(N,)`` location codes (see :func:`band_mask`).
        area: ``(N,)`` band areas in ``[0, 1]``.
        fill: the value written into the band: a number, or a ``(C,)`` tensor, list or tuple
            (one per channel, e.g. the normalisation mean); integers in ``0..255`` for uint8.

    Returns:
        A new ``(N, C, H, W)`` tensor of ``images``' dtype and device; outside the bands it equals
        ``images``.

    Example:
        >>> x = torch.ones(1, 1, 4, 2)
        >>> occlude(x, [2], [0.25], fill=-1.0)[0, 0]
        tensor([[ 1.,  1.],
                [ 1.,  1.],
                [ 1.,  1.],
                [-1., -1.]])
    """
    check_images(images)
    location = torch.as_tensor(location, device=images.device)
    if location.ndim != 1 or location.numel() != images.shape[0]:
        raise ValueError(
            f"location must have shape ({images.shape[0]},), one per image, "
            f"got {tuple(location.shape)}"
        )
    mask = band_mask(location, area, images.shape[2], images.shape[3])
    fill = torch.as_tensor(fill, device=images.device)
    if not images.is_floating_point() and not bool(
        ((fill == fill.round()) & (fill >= 0) & (fill <= 255)).all()
    ):
        raise ValueError(f"fill must hold integers in 0..255 for uint8 images, got {fill}")
    fill = fill.to(images.dtype)
    if fill.ndim == 1:
        if fill.numel() != images.shape[1]:
            raise ValueError(
                f"fill must be a number or have shape ({images.shape[1]},), one value per "
                f"channel, got {tuple(fill.shape)}"
            )
        fill = fill.view(1, -1, 1, 1)
    elif fill.ndim != 0:
        raise ValueError(f"fill must be a number or a (C,) tensor, got shape {tuple(fill.shape)}")
    return torch.where(mask, fill, images)


def occlusion_type(location: Tensor | Sequence[int], area: Tensor | Sequence[float]) -> Tensor:
    r"""Occlusion type index of each (location, area) pair, per the shared convention.

    Args:
        location: ``(N,)`` integer location codes in ``0..4`` (a tensor, list or tuple).
        area: ``(N,)`` areas: ``0`` with location 0, else ``0.5`` or ``0.25``.

    Returns:
        ``(N,)`` int64: ``0`` none, ``1``-``4`` half top/bottom/left/right, ``5``-``8`` quarter.

    Example:
        >>> occlusion_type(torch.tensor([0, 1, 4, 3]), torch.tensor([0.0, 0.5, 0.25, 0.25]))
        tensor([0, 1, 8, 7])
    """
    location, area = _check_location_area(location, area)
    half, quarter = AREAS
    is_half = area == half
    is_quarter = area == quarter
    bad = (location > 0) & ~(is_half | is_quarter)
    if bool(bad.any()):
        raise ValueError(
            f"occlusion types are defined for areas {half} and {quarter} only, got area "
            f"{area[bad][0].item()} at location {int(location[bad][0])}"
        )
    return torch.where(location == 0, 0, location + 4 * is_quarter.to(torch.int64))


def location_and_area(occlusion_type: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
    r"""Inverse of :func:`occlusion_type`.

    Args:
        occlusion_type: ``(N,)`` integer type indices in ``0..8`` (a tensor, list or tuple).

    Returns:
        ``(location, area)``: ``(N,)`` int64 codes in ``0..4`` and ``(N,)`` float32 areas.

    Example:
        >>> location_and_area(torch.tensor([0, 2, 7]))
        (tensor([0, 2, 3]), tensor([0.0000, 0.5000, 0.2500]))
    """
    types = torch.as_tensor(occlusion_type)
    if types.is_floating_point() or types.is_complex() or types.dtype == torch.bool:
        raise TypeError(f"occlusion_type must be an integer tensor, got {types.dtype}")
    if types.numel() and (int(types.min()) < 0 or int(types.max()) >= NUM_OCCLUSION_TYPES):
        raise ValueError(f"occlusion_type values must be in 0..{NUM_OCCLUSION_TYPES - 1}")
    types = types.to(torch.int64)
    location = torch.where(types == 0, 0, (types - 1) % 4 + 1)
    half, quarter = AREAS
    area = torch.where(types == 0, 0.0, torch.where(types <= 4, half, quarter))
    return location, area.to(torch.float32)


def _check_location_area(
    location: Tensor | Sequence[int], area: Tensor | Sequence[float]
) -> tuple[Tensor, Tensor]:
    location = torch.as_tensor(location)
    area = torch.as_tensor(area, device=location.device)
    if location.is_floating_point() or location.is_complex() or location.dtype == torch.bool:
        raise TypeError(f"location must hold integer codes 0..4, got dtype {location.dtype}")
    if not area.is_floating_point():
        area = area.to(torch.float32)
    if location.ndim != 1 or area.shape != location.shape:
        raise ValueError(
            "location and area must be 1-D and of the same length, got shapes "
            f"{tuple(location.shape)} and {tuple(area.shape)}"
        )
    if location.numel():
        if int(location.min()) < 0 or int(location.max()) > 4:
            raise ValueError(
                "location codes must be in 0..4 (0 none, 1 top, 2 bottom, 3 left, 4 right)"
            )
        if not bool(((area >= 0) & (area <= 1)).all()):
            raise ValueError("area values must be in [0, 1] (and not NaN)")
        if bool(((location == 0) & (area != 0)).any()):
            raise ValueError("location 0 (none) must come with area 0")
    return location.to(torch.int64), area

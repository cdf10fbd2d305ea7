r"""Object-like occluders: another image in a shape of partial extent, any depth, ragged edge.

The paper's bands span a whole side with a straight edge at exactly 1/4 or 1/2 of it, filled
with a corner patch of another image (mostly background texture). Real occluders are parked
cars and boards over part of the lower body, tree trunks down one edge, other pedestrians in
front: objects, of any depth, rarely the full width. :class:`ObjectOcclusion` draws such
shapes and labels each with the nearest of the 8 band types, so the grader and the grouped
losses read them exactly as they read bands.

Geometry, per image, shared by its copies at every location (as the band area is):

* ``depth`` ``d ~ U(depth)``: how far the occluder reaches from the side, as a fraction of the
  perpendicular length (rows for top/bottom, columns for left/right);
* ``extent`` ``e ~ U(extent)`` of the side's length, starting at ``o ~ U(0, 1 - e)``;
* a ragged inner edge: the depth at position ``a`` along the side (pixel centres,
  ``a = (i + 1/2) / n``) is ``d * (1 + roughness * s(a))`` with
  ``s(a) = sum_k w_k sin(2 pi k a + phi_k)``, ``k = 1..3``, ``phi_k ~ U(0, 2 pi)``,
  ``w ~ U(-1, 1)^3`` divided by ``sum |w|`` (so ``|s| <= 1``);
* a pixel with along-coordinate ``a`` and depth-coordinate ``t`` (its centre's distance from the
  side, as a fraction) is occluded when ``o <= a <= o + e`` and ``t < d * (1 + roughness s(a))``.

The occluder's content comes from a source image (another image of the batch, of another group
when ``groups`` is given, e.g. another identity: a pedestrian in front; or a row of
``occluders``), by ``content``:

* ``"scaled"``: the *whole* source, resized bilinearly (aspect not kept, upright) onto the
  occluder's bounding box ``[o, o + e]`` along the side by ``[0, r]`` deep,
  ``r = min(1, d (1 + roughness))``;
* ``"unscaled"``: the source at the image's own scale, shifted so that the part a person in
  front would show comes in from the side: for left and right occluders the source's central
  ``r``-wide strip of columns (its pedestrian's body), rows unchanged; for bottom occluders the
  source's top ``r`` of rows (a head and torso in front), for top occluders its bottom ``r``,
  columns unchanged. Pedestrian crops of one dataset share a scale, so the occluder looks like
  another person beside or in front of the target, not a squeezed one.

Label: location of the side; area 1/2 when ``d >= half_from`` (3/8 by default: the nearer of the
quarter and half bands), else 1/4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._options import check_locations, check_range
from ._paste import memory_format_of
from ._validation import check_images
from .augmentation import OcclusionBatch, check_occluders
from .bands import BAND_LOCATIONS, LOCATIONS

__all__ = ["CONTENTS", "ObjectOcclusion", "ObjectOcclusionParams"]

#: How a source image fills an occluder: resized onto its box, or at the image's own scale.
CONTENTS: tuple[str, ...] = ("scaled", "unscaled")

_HARMONICS = 3


@dataclass(frozen=True)
class ObjectOcclusionParams:
    r"""Everything :class:`ObjectOcclusion` draws for ``B`` images (CPU tensors).

    Attributes:
        source_index: ``(B,)`` int64 row of the image (or occluder) that fills the occluder.
        depth: ``(B,)`` float64 ``d``, the occluder's mean depth as a fraction of the side.
        extent: ``(B,)`` float64 ``e``, its length along the side, as a fraction.
        offset: ``(B,)`` float64 ``o``, where along the side it starts.
        edge_weight: ``(B, 3)`` float64 ``w / sum |w|`` of the ragged edge.
        edge_phase: ``(B, 3)`` float64 ``phi``.
        area: ``(B,)`` float32 label, 0.5 or 0.25.
        from_occluders: whether ``source_index`` indexes an ``occluders`` tensor.
        num_sources: rows the sources were drawn from.
    """

    source_index: Tensor
    depth: Tensor
    extent: Tensor
    offset: Tensor
    edge_weight: Tensor
    edge_phase: Tensor
    area: Tensor
    from_occluders: bool
    num_sources: int

    @property
    def batch_size(self) -> int:
        """Number of input images ``B``."""
        return self.source_index.numel()


class ObjectOcclusion(nn.Module):
    r"""Occlude each image by an object-like shape at each side: OAMN's views with real-looking
    occluders (see the module docstring for the geometry).

    A drop-in for :class:`~oamn.occlusion_aug.OcclusionAugmentation`: the same
    :class:`~oamn.occlusion_aug.OcclusionBatch` (holistic views first, then one block per
    location, view-major, labels of the nearest band type), plus ``occluded``, the exact
    pixel mask of each view's occluder.

    Args:
        locations: sides to produce, a non-empty subset of ``("top", "bottom", "left",
            "right")``, in output order.
        depth: ``(low, high)`` range of the depth ``d``, in ``(0, 1)``.
        extent: ``(low, high)`` range of the extent ``e``, in ``(0, 1]``.
        roughness: relative amplitude of the ragged edge, in ``[0, 1)``; 0 gives a straight edge.
        content: ``"scaled"`` or ``"unscaled"``, see the module docstring.
        half_from: depths from this value on are labelled half bands, the others quarter bands.
        include_holistic: put the unmodified images first in the output.

    Shape:
        - images: ``(B, C, H, W)`` floating, any device and memory format; ``B >= 2`` unless
          ``occluders`` given.
        - occluders: ``(N, C, h, w)``, same dtype and device, any ``h x w``.
        - groups: ``(B,)`` integer labels; sources are drawn among rows of another group.
        - output: :class:`OcclusionBatch`, ``(V*B, C, H, W)`` images of the input's dtype,
          device and memory format, ``occluded`` ``(V*B, 1, H, W)`` bool.

    Example:
        >>> aug = ObjectOcclusion()
        >>> pids = torch.tensor([3, 3, 7, 7])
        >>> out = aug(torch.rand(4, 3, 64, 32), groups=pids,
        ...           generator=torch.Generator().manual_seed(0))
        >>> out.images.shape, out.occluded.shape, out.location[::4].tolist()
        (torch.Size([20, 3, 64, 32]), torch.Size([20, 1, 64, 32]), [0, 1, 2, 3, 4])
        >>> bool((pids[out.params.source_index] != pids).all())  # another identity occludes
        True
    """

    def __init__(
        self,
        locations: Sequence[str] = BAND_LOCATIONS,
        depth: tuple[float, float] = (0.2, 0.6),
        extent: tuple[float, float] = (0.5, 1.0),
        roughness: float = 0.2,
        content: str = "scaled",
        half_from: float = 0.375,
        include_holistic: bool = True,
    ) -> None:
        super().__init__()
        self.locations = check_locations(locations)
        self.depth = check_range("depth", depth, upper=1.0)
        if self.depth[1] >= 1.0:
            raise ValueError(
                f"depth must stay below 1 (a whole image is no occluder), got {depth!r}"
            )
        self.extent = check_range("extent", extent, upper=1.0)
        if not isinstance(roughness, (int, float)) or not 0.0 <= roughness < 1.0:
            raise ValueError(f"roughness must be a number in [0, 1), got {roughness!r}")
        if not isinstance(half_from, (int, float)) or not 0.0 < half_from < 1.0:
            raise ValueError(f"half_from must be a number in (0, 1), got {half_from!r}")
        if not isinstance(include_holistic, bool):
            raise TypeError(f"include_holistic must be a bool, got {include_holistic!r}")
        if content not in CONTENTS:
            raise ValueError(f"content must be one of {CONTENTS}, got {content!r}")
        self.content = content
        self.roughness = float(roughness)
        self.half_from = float(half_from)
        self.include_holistic = include_holistic

    @property
    def num_views(self) -> int:
        """Number of output views ``V`` per input image."""
        return len(self.locations) + int(self.include_holistic)

    def extra_repr(self) -> str:
        return (
            f"locations={self.locations}, depth={self.depth}, extent={self.extent}, "
            f"roughness={self.roughness}, content={self.content!r}, half_from={self.half_from}, "
            f"include_holistic={self.include_holistic}"
        )

    def generate_parameters(
        self,
        batch_size: int,
        num_occluders: int | None = None,
        groups: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ObjectOcclusionParams:
        r"""Draw the parameters of ``batch_size`` images (see the module docstring).

        Args:
            batch_size: ``B``.
            num_occluders: rows of ``occluders``, or ``None`` to fill from the batch.
            groups: ``(B,)`` labels; without occluders, each source is drawn uniformly among
                the rows of another group (default: among the other rows).
            generator: a CPU generator (default: the global one).
        """
        draw = {"generator": generator, "dtype": torch.float64}
        if num_occluders is not None:
            source_index = torch.randint(num_occluders, (batch_size,), generator=generator)
        else:
            allowed = ~torch.eye(batch_size, dtype=torch.bool)
            if groups is not None:
                groups = groups.cpu()
                allowed = groups[:, None] != groups[None, :]
            if not bool(allowed.any(dim=1).all()):
                raise ValueError(
                    "every image needs another row to take its occluder from, but some group "
                    "fills the whole batch (or B = 1); pass occluders= or mix groups"
                )
            # The largest of i.i.d. uniform keys over the allowed rows is uniform among them.
            keys = torch.rand(batch_size, batch_size, **draw).masked_fill(~allowed, -1.0)
            source_index = keys.argmax(dim=1)
        depth = _uniform(self.depth, batch_size, draw)
        extent = _uniform(self.extent, batch_size, draw)
        offset = (1.0 - extent) * torch.rand(batch_size, **draw)
        weight = 2.0 * torch.rand(batch_size, _HARMONICS, **draw) - 1.0
        weight = weight / weight.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
        phase = 2.0 * math.pi * torch.rand(batch_size, _HARMONICS, **draw)
        return ObjectOcclusionParams(
            source_index=source_index,
            depth=depth,
            extent=extent,
            offset=offset,
            edge_weight=weight,
            edge_phase=phase,
            area=torch.where(depth >= self.half_from, 0.5, 0.25).to(torch.float32),
            from_occluders=num_occluders is not None,
            num_sources=batch_size if num_occluders is None else num_occluders,
        )

    def forward(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        params: ObjectOcclusionParams | None = None,
        occluders: Tensor | None = None,
        groups: Tensor | None = None,
    ) -> OcclusionBatch:
        r"""Make the holistic and occluded views of ``images``.

        Args:
            images: ``(B, C, H, W)`` floating images, any device.
            generator: source of randomness for new parameters (ignored when ``params`` given).
            params: parameters of an earlier call to replay.
            occluders: optional ``(N, C, h, w)`` images to fill the occluders with.
            groups: optional ``(B,)`` labels (identities): occluders come from another group.

        Returns:
            The :class:`OcclusionBatch`, with ``occluder_shapes`` set.
        """
        batch, channels, height, width = check_images(images)
        if not images.is_floating_point():
            raise TypeError(f"images must be floating, got {images.dtype}; use images.float()")
        if batch == 0:
            raise ValueError("images is an empty batch (B = 0)")
        if occluders is not None:
            check_occluders(occluders, images)
        elif batch < 2:
            raise ValueError("images must hold at least 2 images, or pass occluders=")
        if groups is not None and (
            not isinstance(groups, Tensor) or groups.shape != (batch,) or groups.is_floating_point()
        ):
            raise ValueError(f"groups must be a ({batch},) integer tensor, one label per image")
        num_occluders = None if occluders is None else occluders.shape[0]
        if params is None:
            params = self.generate_parameters(batch, num_occluders, groups, generator)
        elif params.batch_size != batch or params.from_occluders != (occluders is not None):
            raise ValueError(
                f"params were drawn for {params.batch_size} images "
                f"{'with' if params.from_occluders else 'without'} occluders; draw new ones"
            )
        sources = (images if occluders is None else occluders).index_select(
            0, params.source_index.to(images.device)
        )
        flat = torch.empty(
            (self.num_views * batch, channels, height, width),
            dtype=images.dtype,
            device=images.device,
            memory_format=memory_format_of(images),
        )
        occluded = torch.zeros(
            (self.num_views * batch, 1, height, width), dtype=torch.bool, device=images.device
        )
        views = flat.view(self.num_views, batch, channels, height, width)
        masks = occluded.view(self.num_views, batch, 1, height, width)
        if self.include_holistic:
            views[0].copy_(images)
        codes = tuple(LOCATIONS.index(name) for name in self.locations)
        for v, code in enumerate(codes, start=int(self.include_holistic)):
            shape, grid = _occluder_geometry(
                code, params, height, width, self.roughness, self.content, images.device
            )
            grid = grid.to(images.dtype)
            filled = F.grid_sample(
                sources, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
            views[v].copy_(torch.where(shape, filled, images))
            masks[v].copy_(shape)
        location = (0,) * self.include_holistic + codes
        holistic_area = [torch.zeros(batch)] * self.include_holistic
        area = torch.cat(holistic_area + [params.area] * len(codes))
        return OcclusionBatch(
            images=flat,
            location=torch.tensor(location).repeat_interleave(batch).to(images.device),
            area=area.to(images.device),
            sample_index=torch.arange(batch).repeat(self.num_views).to(images.device),
            params=params,
            occluder_shapes=occluded,
        )


def _occluder_geometry(
    code: int,
    params: ObjectOcclusionParams,
    height: int,
    width: int,
    roughness: float,
    content: str,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """``(B, 1, H, W)`` bool shapes at location ``code`` and the ``(B, H, W, 2)`` float32
    sampling grid that maps each occluder's bounding box onto its whole source image, computed
    on ``device``."""
    batch = params.batch_size
    fields = ("depth", "offset", "extent", "edge_weight", "edge_phase")
    p = {name: getattr(params, name).to(device, torch.float32) for name in fields}
    positions = {"dtype": torch.float32, "device": device}
    rows = ((torch.arange(height, **positions) + 0.5) / height).view(1, -1, 1)
    cols = ((torch.arange(width, **positions) + 0.5) / width).view(1, 1, -1)
    horizontal = code in (1, 2)  # top and bottom occluders run along the width
    along, across = (cols, rows) if horizontal else (rows, cols)
    from_start = code in (1, 3)  # top and left occluders grow from coordinate 0
    depth_coord = across if from_start else 1.0 - across
    # The ragged edge and the extent, per position along the side: (B, H, 1) or (B, 1, W).
    harmonics = torch.arange(1, _HARMONICS + 1, **positions).view(1, 1, 1, -1)
    weight, phase = (p[name].view(batch, 1, 1, _HARMONICS) for name in fields[3:])
    wave = (weight * torch.sin(2 * math.pi * harmonics * along.unsqueeze(-1) + phase)).sum(-1)
    depth, offset, extent = (p[name].view(batch, 1, 1) for name in ("depth", "offset", "extent"))
    edge = depth * (1.0 + roughness * wave)
    inside = (along >= offset) & (along <= offset + extent)
    shape = inside & (depth_coord < edge)
    # The bounding box, in image fractions: along [o, o + e], across [0, reach] from the side.
    reach = (depth * (1.0 + roughness)).clamp(max=1.0)
    box_start = 0.0 if from_start else 1.0 - reach
    if content == "scaled":
        along_unit = (along - offset) / extent
        across_unit = (across - box_start) / reach
    else:
        # Unscaled: along the side the rows or columns stay; across, the box shows the source's
        # central strip (left, right) or its top (bottom occluders) or bottom (top occluders).
        along_unit = along
        source_start = {1: 1.0 - reach, 2: 0.0, 3: 0.5 - reach / 2, 4: 0.5 - reach / 2}[code]
        across_unit = across - box_start + source_start
    unit_x, unit_y = (along_unit, across_unit) if horizontal else (across_unit, along_unit)
    grid = torch.stack(torch.broadcast_tensors(2.0 * unit_x - 1.0, 2.0 * unit_y - 1.0), dim=-1)
    return shape.unsqueeze(1), grid


def _uniform(bounds: tuple[float, float], n: int, draw: dict) -> Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, **draw)

"""OAMN occlusion augmentation (paper §3.1): aligned, labelled occluded copies of a batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._options import BandOptions, BandOptionsAttributes
from ._paste import memory_format_of, paste_bands
from ._validation import check_images
from .bands import AREAS, BAND_LOCATIONS, band_mask, occlusion_type
from .params import OcclusionParams

__all__ = ["OcclusionAugmentation", "OcclusionBatch"]


@dataclass(frozen=True)
class OcclusionBatch:
    r"""The output of :class:`OcclusionAugmentation` for ``B`` input images and ``V`` views.

    Attributes:
        images: ``(V*B, C, H, W)``, the input's dtype and device, in *view-major* blocks of ``B``:
            the holistic images first (when included), then one block per location in the
            augmentation's ``locations`` order. Row ``v*B + i`` is a view of input row ``i``.
        location: ``(V*B,)`` int64 location codes (0 none, 1 top, 2 bottom, 3 left, 4 right).
        area: ``(V*B,)`` float32 band areas (0 for holistic rows).
        sample_index: ``(V*B,)`` int64, the input row each output row was made from.
        params: the drawn parameters (:class:`~oamn.occlusion_aug.OcclusionParams`, or
            :class:`~oamn.occlusion_aug.ObjectOcclusionParams`); pass them back as ``params=``
            to reproduce ``images`` bit for bit.
        occluder_shapes: ``(V*B, 1, H, W)`` bool shapes drawn by an augmentation whose
            occluders are not the labelled bands (:class:`~oamn.occlusion_aug.ObjectOcclusion`),
            or ``None``: the occluded pixels are then the bands of the labels (see
            :attr:`occluded`).
    """

    images: Tensor
    location: Tensor
    area: Tensor
    sample_index: Tensor
    params: Any
    occluder_shapes: Tensor | None = None

    @property
    def occluded(self) -> Tensor:
        """``(V*B, 1, H, W)`` bool, ``True`` on each view's occluded pixels (the band, or the
        object's shape; all ``False`` on holistic rows). Bands are computed on each access,
        so a training step that never reads them pays nothing."""
        if self.occluder_shapes is not None:
            return self.occluder_shapes
        return band_mask(self.location, self.area, *self.images.shape[2:])

    @property
    def num_views(self) -> int:
        """Number of views ``V`` (blocks of ``B`` rows)."""
        return self.images.shape[0] // self.params.batch_size

    @property
    def occlusion_type(self) -> Tensor:
        """``(V*B,)`` int64 occlusion types (0 none, 1-4 half, 5-8 quarter; areas 1/2, 1/4 only)."""
        return occlusion_type(self.location, self.area)


class OcclusionAugmentation(BandOptionsAttributes, nn.Module):
    r"""Paste corner patches as top/bottom/left/right bands: OAMN's occlusion augmentation.

    For every input image, a rectangular patch is cut from a corner of *another* image of the
    batch (or of ``occluders``), resized (bilinear, aspect not kept) to fill a band spanning the
    whole other side, and pasted at each location, giving one occluded copy per location. The
    patch and the band area are drawn once per input image and shared by all its copies, and the
    copies stay pixel-aligned with the holistic image (the premise of OAMN's mask losses).

    The patch has area ``epsilon * h * w`` of its ``h x w`` source, ``epsilon ~ U(patch_area)``,
    and height/width ratio ``r ~ U(patch_ratio)``: ``p_h = round(sqrt(epsilon*h*w*r))`` and
    ``p_w = round(sqrt(epsilon*h*w/r))`` (half up), clamped to the source. Band geometry and
    rounding are those of :func:`~oamn.occlusion_aug.band_mask`.

    The batch is processed at once on its own device; the only Python loop is over the
    (area, band orientation) cases, at most ``2 * len(areas)``.

    Put it *last* in a pipeline, after every per-image transform: it returns an
    :class:`OcclusionBatch`, not a tensor, with ``V`` rows per input image, so the identity and
    camera labels must be expanded to match (``labels = pids[out.sample_index]``). A later
    torchvision ``v2`` transform would pass the :class:`OcclusionBatch` through untouched,
    silently; ``nn.Sequential`` and kornia's containers fail at the next module instead. For a
    single occluded view inside an augmentation pipeline, use
    :class:`~oamn.occlusion_aug.RandomBandOcclusion`.

    ``torch.compile`` runs it, but not as one graph (``fullgraph=True`` fails): the images of
    each area form a group whose size depends on the drawn areas (``torch.nonzero``), and
    replayed parameters are validated by reading their values.

    Args:
        locations: the band locations to produce, a non-empty subset of
            ``("top", "bottom", "left", "right")``, in output order.
        areas: the band areas to draw from, each in ``(0, 1)``.
        area_probs: probability of each area (default: uniform). Must sum to 1.
        patch_area: ``(low, high)``, range of ``epsilon`` in ``(0, 1]``.
        patch_ratio: ``(low, high)``, range of ``r``, positive.
        include_holistic: put the unmodified images first in the output.

    Shape:
        - images: ``(B, C, H, W)``, floating or uint8, any device and memory format; ``B >= 2``
          unless ``occluders`` given. Values are not clamped (any range, e.g. normalised).
        - occluders: ``(N, C, h, w)``, same dtype and device as ``images``, any ``h x w``.
        - output: :class:`OcclusionBatch` with ``(V*B, C, H, W)`` images of the input's dtype,
          device and memory format (a ``torch.channels_last`` batch gives channels_last views),
          ``V = len(locations) + include_holistic``. uint8 patches are resampled in float32
          and rounded half to even: the output equals the float result on ``images.float()``,
          rounded.

    Example:
        >>> aug = OcclusionAugmentation()
        >>> pids = torch.tensor([3, 3, 7, 7, 9, 9, 4, 4])  # identity labels of the 8 images
        >>> out = aug(torch.rand(8, 3, 256, 128), generator=torch.Generator().manual_seed(0))
        >>> out.images.shape, out.location[::8].tolist()
        (torch.Size([40, 3, 256, 128]), [0, 1, 2, 3, 4])
        >>> labels = pids[out.sample_index]  # one label per output row
        >>> labels[::8].tolist(), labels[:8].tolist() == pids.tolist()
        ([3, 3, 3, 3, 3], True)
        >>> again = aug(torch.rand(8, 3, 256, 128), params=out.params)  # same patches and areas
    """

    def __init__(
        self,
        locations: Sequence[str] = BAND_LOCATIONS,
        areas: Sequence[float] = AREAS,
        area_probs: Sequence[float] | None = None,
        patch_area: tuple[float, float] = (0.02, 0.2),
        patch_ratio: tuple[float, float] = (0.3, 3.3),
        include_holistic: bool = True,
    ) -> None:
        super().__init__()
        self.options = BandOptions.checked(locations, areas, area_probs, patch_area, patch_ratio)
        if not isinstance(include_holistic, bool):
            raise TypeError(f"include_holistic must be a bool, got {include_holistic!r}")
        self.include_holistic = include_holistic

    @property
    def num_views(self) -> int:
        """Number of output views ``V`` per input image."""
        return len(self.locations) + int(self.include_holistic)

    def extra_repr(self) -> str:
        return f"{self.options}, include_holistic={self.include_holistic}"

    def generate_parameters(
        self,
        batch_size: int,
        source_size: tuple[int, int],
        num_occluders: int | None = None,
        generator: torch.Generator | None = None,
    ) -> OcclusionParams:
        r"""Draw the parameters for a batch of ``batch_size`` images.

        Args:
            batch_size: number of input images ``B``.
            source_size: ``(h, w)`` of the images patches are cut from (the batch's own size, or
                the occluders').
            num_occluders: number of occluder images, or ``None`` to cut patches from the batch.
            generator: source of randomness (default: the global CPU generator).

        Returns:
            :class:`~oamn.occlusion_aug.OcclusionParams` on the CPU.
        """
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return self.options.draw(batch_size, source_size, num_occluders, generator)

    def forward(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        params: OcclusionParams | None = None,
        occluders: Tensor | None = None,
    ) -> OcclusionBatch:
        r"""Make the holistic and occluded views of ``images``.

        Args:
            images: ``(B, C, H, W)`` floating or uint8 images, any device.
            generator: source of randomness for new parameters (ignored when ``params`` given).
            params: parameters of an earlier call to replay instead of drawing new ones.
            occluders: optional ``(N, C, h, w)`` images to cut the patches from instead of the
                batch itself.

        Returns:
            The :class:`OcclusionBatch`.
        """
        batch, _, height, width = check_images(images)
        if batch == 0:
            raise ValueError("images is an empty batch (B = 0)")
        if occluders is not None:
            check_occluders(occluders, images)
            sources = occluders
        else:
            if batch < 2:
                raise ValueError(
                    "images must hold at least 2 images, since each patch is cut from another "
                    "image of the batch; pass occluders= to augment a single image"
                )
            sources = images
        num_occluders = None if occluders is None else occluders.shape[0]
        source_size = (sources.shape[2], sources.shape[3])
        self.options.check_bands(height, width)
        if params is None:
            params = self.generate_parameters(batch, source_size, num_occluders, generator)
        else:
            self._check_params(params, batch, source_size, num_occluders)
        return OcclusionBatch(
            images=self._paste(images, sources, params),
            params=params,
            **self._labels(params, images.device),
        )

    def _paste(self, images: Tensor, sources: Tensor, params: OcclusionParams) -> Tensor:
        batch, channels, height, width = images.shape
        # Allocated flat in the input's memory format: splitting the batch dimension into
        # (V, B) keeps channels_last strides, so the views and the output share its layout.
        flat = torch.empty(
            (self.num_views * batch, channels, height, width),
            dtype=images.dtype,
            device=images.device,
            memory_format=memory_format_of(images),
        )
        views = flat.view(self.num_views, batch, channels, height, width)
        views.copy_(images.expand_as(views))
        canvases = {
            code: views[i + self.include_holistic]
            for i, code in enumerate(self.options.location_codes)
        }
        paste_bands(canvases, sources, params, self.areas)
        return flat

    def _labels(self, params: OcclusionParams, device: torch.device) -> dict[str, Tensor]:
        batch = params.batch_size
        codes = (0,) * self.include_holistic + self.options.location_codes
        holistic_area = [torch.zeros(batch, dtype=torch.float32)] * self.include_holistic
        area = torch.cat(holistic_area + [params.area] * len(self.locations))
        return {
            "location": torch.tensor(codes).repeat_interleave(batch).to(device),
            "area": area.to(device),
            "sample_index": torch.arange(batch).repeat(self.num_views).to(device),
        }

    def _check_params(
        self,
        params: OcclusionParams,
        batch: int,
        source_size: tuple[int, int],
        num_occluders: int | None,
    ) -> None:
        if not isinstance(params, OcclusionParams):
            raise TypeError(f"params must be OcclusionParams, got {type(params).__name__}")
        if params.batch_size != batch:
            raise ValueError(
                f"params were drawn for a batch of {params.batch_size} images, but images holds "
                f"{batch}; draw new params for this batch"
            )
        if params.from_occluders != (num_occluders is not None):
            drawn, given = ("with", "without") if params.from_occluders else ("without", "with")
            raise ValueError(f"params were drawn {drawn} occluders but are replayed {given} them")
        if num_occluders is not None and params.num_sources != num_occluders:
            raise ValueError(
                f"params were drawn for {params.num_sources} occluders, got {num_occluders}"
            )
        if params.source_size != source_size:
            raise ValueError(
                f"params were drawn for sources of size {params.source_size}, got {source_size}"
            )
        unknown = self.options.unknown_areas(params.area)
        if unknown:
            raise ValueError(f"params hold areas {unknown} that are not in areas={self.areas}")


def check_occluders(occluders: Tensor, images: Tensor) -> None:
    if not isinstance(occluders, Tensor):
        raise TypeError(f"occluders must be a torch.Tensor, got {type(occluders).__name__}")
    if occluders.ndim != 4 or occluders.shape[0] == 0 or min(occluders.shape[2:]) == 0:
        raise ValueError(
            "occluders must have shape (N, C, h, w) with N, h, w >= 1, "
            f"got {tuple(occluders.shape)}"
        )
    if occluders.shape[1] != images.shape[1]:
        raise ValueError(
            f"occluders have {occluders.shape[1]} channels but images have {images.shape[1]}"
        )
    if occluders.dtype != images.dtype:
        raise TypeError(
            f"occluders are {occluders.dtype} but images are {images.dtype}; "
            f"convert with occluders.to({images.dtype})"
        )
    if occluders.device != images.device:
        raise ValueError(
            f"occluders are on {occluders.device} but images on {images.device}; "
            "move them with occluders.to(images.device)"
        )

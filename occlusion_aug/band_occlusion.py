"""Single-view band occlusion as a kornia augmentation, for ordinary augmentation pipelines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from torch import Tensor

from ._options import BandOptions, BandOptionsAttributes
from ._paste import paste_bands
from ._validation import check_images
from .bands import AREAS, BAND_LOCATIONS, band_mask
from .params import CORNERS, OcclusionParams

__all__ = ["RandomBandOcclusion"]

_INTEGER_PARAMS = ("location", "source_index", "corner", "patch_height", "patch_width")
_FLOAT_PARAMS = ("area", "patch_scale", "patch_ratio")


class RandomBandOcclusion(BandOptionsAttributes, IntensityAugmentationBase2D):
    r"""Paste a corner patch of another image as one top/bottom/left/right band, kornia style.

    The single-view counterpart of :class:`~oamn.occlusion_aug.OcclusionAugmentation`: each
    image gets *one* band, at a location drawn uniformly from ``locations`` and an area drawn
    from ``areas``, filled with a corner patch of another image of the batch resized (bilinear,
    aspect not kept) to the band. Patch and band follow the 5-view augmentation exactly (same
    parameter drawing, same band rounding, see :func:`~oamn.occlusion_aug.band_mask`). A batch
    of one image takes the patch from itself. Use it where a plain augmentation is wanted (one
    output per input, e.g. inside :class:`kornia.augmentation.AugmentationSequential`); OAMN's
    training needs the aligned views of :class:`~oamn.occlusion_aug.OcclusionAugmentation`.

    Inside :class:`kornia.augmentation.AugmentationSequential`, a ``mask`` data key is erased
    as kornia's :class:`~kornia.augmentation.RandomErasing` erases it: set to ``0`` inside each
    pasted band (the pixels now show another image), whatever its dtype (float, bool, integer
    labels). Boxes and keypoints come back
    unchanged, as :class:`~kornia.augmentation.RandomErasing` leaves them.

    Parameters are drawn on the CPU from torch's global generator (seed with
    ``torch.manual_seed``), as kornia does. The last draw is kept in ``_params``, a dict of
    ``(B,)`` CPU tensors: ``location`` (int64 codes 1 top, 2 bottom, 3 left, 4 right), ``area``
    (float32), ``source_index`` (int64, the batch row the patch is cut from), ``corner`` (int64,
    see :data:`~oamn.occlusion_aug.CORNERS`), ``patch_height`` / ``patch_width`` (int64 source
    pixels), ``patch_scale`` / ``patch_ratio`` (float64 ``epsilon`` and ``r``), plus kornia's
    ``batch_prob`` and ``forward_input_shape``. ``aug(x, params=aug._params)`` reproduces an
    output bit for bit; replayed params are checked against the batch and the configuration.

    With ``same_on_batch=True``, location, area, corner and patch size are shared by the batch;
    each image still takes its patch from another image. With ``p < 1``, only the rows that
    kornia's gate selects (``_params["batch_prob"]``) are occluded; the others come back as they
    were, and their drawn parameters go unused.

    The batch is processed at once on its own device; the only Python loop is over the
    (location, area) groups, at most ``4 * len(areas)``.

    ``torch.compile`` runs it, but not as one graph (``fullgraph=True`` fails; kornia's base
    class is not the cause): each (location, area) group's size depends on the drawn values
    (``torch.nonzero``), and the band sizes and replayed parameters are checked by reading
    tensor values as Python numbers.

    Args:
        locations: the band locations to draw from, a non-empty subset of
            ``("top", "bottom", "left", "right")``.
        areas: the band areas to draw from, each in ``(0, 1)``.
        area_probs: probability of each area (default: uniform). Must sum to 1.
        patch_area: ``(low, high)``, range of the patch's fraction of its source's area, in
            ``(0, 1]``.
        patch_ratio: ``(low, high)``, range of the patch's height / width ratio, positive.
        same_on_batch: share location, area, corner and patch size across the batch.
        p: probability of occluding each image.
        keepdim: give a ``(C, H, W)`` input a ``(C, H, W)`` output.

    Shape:
        - input: ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``, floating or uint8, any device and
          memory format; ``B >= 1``. Values are not clamped (any range, e.g. normalised).
        - output: ``(B, C, H, W)`` (or the input's shape with ``keepdim=True``), the input's
          dtype, device and memory format. uint8 patches are resampled in float32 and rounded
          half to even, so the output equals the float result on ``input.float()``, rounded.

    Example:
        >>> import kornia.augmentation as K
        >>> _ = torch.manual_seed(0)
        >>> aug = RandomBandOcclusion(p=1.0)
        >>> pipeline = K.AugmentationSequential(K.RandomHorizontalFlip(), aug)
        >>> images = torch.rand(8, 3, 256, 128)
        >>> pipeline(images).shape
        torch.Size([8, 3, 256, 128])
        >>> aug._params["location"].shape, aug._params["area"].dtype
        (torch.Size([8]), torch.float32)
        >>> bool((aug(images, params=aug._params) == aug(images, params=aug._params)).all())
        True
    """

    def __init__(
        self,
        locations: Sequence[str] = BAND_LOCATIONS,
        areas: Sequence[float] = AREAS,
        area_probs: Sequence[float] | None = None,
        patch_area: tuple[float, float] = (0.02, 0.2),
        patch_ratio: tuple[float, float] = (0.3, 3.3),
        same_on_batch: bool = False,
        p: float = 0.5,
        keepdim: bool = False,
    ) -> None:
        super().__init__(p=p, same_on_batch=same_on_batch, keepdim=keepdim)
        self.options = BandOptions.checked(locations, areas, area_probs, patch_area, patch_ratio)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.options}, p={self.p}, "
            f"same_on_batch={self.same_on_batch}, keepdim={self.keepdim})"
        )

    def __unpack_input__(self, input: Tensor) -> Tensor:
        # kornia reads input.shape before any check; name the argument instead.
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        return input

    def transform_tensor(
        self, input: Tensor, *, shape: Tensor | None = None, match_channel: bool = True
    ) -> Tensor:
        """Promote ``(H, W)`` and ``(C, H, W)`` images to ``(B, C, H, W)``, uint8 included."""
        if shape is not None:
            # Masks and other data keys of AugmentationSequential: kornia's own handling.
            return super().transform_tensor(input, shape=shape, match_channel=match_channel)
        if input.ndim in (2, 3):
            input = input[(None,) * (4 - input.ndim)]
        self.validate_tensor(input)
        return input

    # kornia keeps each call's input alive for its lazily built (identity) transformation matrix
    # unless the method is marked as reading only shape, dtype and device, as this one does.
    transform_tensor._kornia_input_metadata_only = transform_tensor  # type: ignore[attr-defined]

    def validate_tensor(self, input: Tensor) -> None:
        """Raise unless ``input`` is a non-empty floating or uint8 ``(B, C, H, W)`` batch whose
        bands are at least one pixel thick."""
        batch, _, height, width = check_images(input, "input")
        if batch == 0:
            raise ValueError("input is an empty batch (B = 0)")
        self.options.check_bands(height, width)

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, Tensor]:
        """Draw the parameters of a batch of shape ``batch_shape = (B, C, H, W)`` (on the CPU)."""
        batch, _, height, width = batch_shape
        # A lone image has no other image to take a patch from, so it is its own source.
        drawn = self.options.draw(batch, (height, width), 1 if batch == 1 else None, None)
        location_index = torch.randint(len(self.options.location_codes), (batch,))
        params = {
            "location": torch.tensor(self.options.location_codes)[location_index],
            "area": drawn.area,
            "source_index": drawn.source_index,
            "corner": drawn.corner,
            "patch_scale": drawn.patch_scale,
            "patch_ratio": drawn.patch_ratio,
            "patch_height": drawn.patch_height,
            "patch_width": drawn.patch_width,
        }
        if self.same_on_batch:
            shared = {key: value[:1].repeat(batch) for key, value in params.items()}
            params = {**shared, "source_index": drawn.source_index}
        return params

    def apply_transform(
        self,
        input: Tensor,
        params: dict[str, Tensor],
        flags: dict[str, Any],
        transform: Tensor | None = None,
    ) -> Tensor:
        batch, _, height, width = input.shape
        occlusion = self._occlusion_params(params, batch, height, width)
        output = input.clone()  # keeps the input's memory format
        canvases = dict.fromkeys(self.options.location_codes, output)
        paste_bands(canvases, input, occlusion, self.areas, location=self._gated_location(params))
        return output

    def apply_transform_mask(
        self,
        input: Tensor,
        params: dict[str, Tensor],
        flags: dict[str, Any],
        transform: Tensor | None = None,
    ) -> Tensor:
        """Set a ``(B, C, H, W)`` mask to ``0`` inside each image's band, as kornia's
        ``RandomErasing`` erases its rectangle in a mask."""
        # The images' call has checked params, and AugmentationSequential the mask's size;
        # band_mask checks the locations and areas it is given.
        location = self._gated_location(params)
        area = torch.where(location == 0, 0.0, params["area"].to("cpu", torch.float32))
        band = band_mask(location.to(input.device), area.to(input.device), *input.shape[-2:])
        return input.masked_fill(band, 0)

    def _gated_location(self, params: dict[str, Tensor]) -> Tensor:
        """``(B,)`` CPU location codes, 0 for the rows that kornia's gate leaves untouched."""
        location = params["location"].to("cpu", torch.int64)
        if not (self.p == 1.0 and self.p_batch == 1.0):
            # kornia gives the rows its gate skips their input back: paste nothing into them.
            location = torch.where(params["batch_prob"].cpu() > 0.5, location, 0)
        return location

    def _occlusion_params(
        self, params: dict[str, Tensor], batch: int, height: int, width: int
    ) -> OcclusionParams:
        missing = [key for key in (*_INTEGER_PARAMS, *_FLOAT_PARAMS) if key not in params]
        if missing:
            raise ValueError(
                f"params lack {missing}; replay the params of a call of this augmentation "
                "(aug._params)"
            )
        values = {}
        for key in (*_INTEGER_PARAMS, *_FLOAT_PARAMS):
            value = params[key]
            if not isinstance(value, Tensor) or value.shape != (batch,):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"params['{key}'] must have shape ({batch},), one value per image, got "
                    f"{shape}; draw new params for this batch"
                )
            dtype = torch.int64 if key in _INTEGER_PARAMS else value.dtype
            values[key] = value.to("cpu", dtype)
        codes = torch.tensor(self.options.location_codes)
        outside = {
            "location": (
                ~torch.isin(values["location"], codes),
                f"the codes of locations={self.locations}",
            ),
            "source_index": (
                (values["source_index"] < 0) | (values["source_index"] >= batch),
                f"0..{batch - 1} (rows of the batch)",
            ),
            "corner": (
                (values["corner"] < 0) | (values["corner"] >= len(CORNERS)),
                f"0..{len(CORNERS) - 1}",
            ),
            "patch_height": (
                (values["patch_height"] < 1) | (values["patch_height"] > height),
                f"1..{height} (the image height)",
            ),
            "patch_width": (
                (values["patch_width"] < 1) | (values["patch_width"] > width),
                f"1..{width} (the image width)",
            ),
        }
        for key, (bad, description) in outside.items():
            if bool(bad.any()):
                unknown = values[key][bad].unique().tolist()
                raise ValueError(f"params['{key}'] holds {unknown}, outside {description}")
        unknown_areas = self.options.unknown_areas(values["area"])
        if unknown_areas:
            raise ValueError(f"params['area'] holds {unknown_areas}, outside areas={self.areas}")
        return OcclusionParams(
            source_index=values["source_index"],
            corner=values["corner"],
            patch_scale=values["patch_scale"],
            patch_ratio=values["patch_ratio"],
            patch_height=values["patch_height"],
            patch_width=values["patch_width"],
            area=values["area"].to(torch.float32),
            source_size=(height, width),
            from_occluders=False,
            num_sources=batch,
        )

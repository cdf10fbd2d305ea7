"""The options both occlusion augmentations share: band locations and areas, patch shape."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .bands import BAND_LOCATIONS, LOCATIONS, band_slices
from .params import OcclusionParams, draw_occlusion_params


@dataclass(frozen=True)
class BandOptions:
    """Checked options of an occlusion augmentation (see :class:`OcclusionAugmentation`)."""

    locations: tuple[str, ...]
    areas: tuple[float, ...]
    area_probs: tuple[float, ...]
    patch_area: tuple[float, float]
    patch_ratio: tuple[float, float]

    @classmethod
    def checked(
        cls,
        locations: Sequence[str],
        areas: Sequence[float],
        area_probs: Sequence[float] | None,
        patch_area: tuple[float, float],
        patch_ratio: tuple[float, float],
    ) -> BandOptions:
        """The options, or a TypeError/ValueError naming the first bad one."""
        areas = _check_areas(areas)
        return cls(
            locations=check_locations(locations),
            areas=areas,
            area_probs=_check_area_probs(area_probs, len(areas)),
            patch_area=check_range("patch_area", patch_area, upper=1.0),
            patch_ratio=check_range("patch_ratio", patch_ratio, upper=None),
        )

    @functools.cached_property
    def location_codes(self) -> tuple[int, ...]:
        """The location codes of ``locations``, in their order."""
        return tuple(LOCATIONS.index(name) for name in self.locations)

    def draw(
        self,
        batch_size: int,
        source_size: tuple[int, int],
        num_occluders: int | None,
        generator: torch.Generator | None,
    ) -> OcclusionParams:
        """Patch and area parameters of ``batch_size`` images, see :func:`draw_occlusion_params`."""
        return draw_occlusion_params(
            batch_size,
            source_size,
            self.areas,
            torch.tensor(self.area_probs, dtype=torch.float64),
            self.patch_area,
            self.patch_ratio,
            num_occluders=num_occluders,
            generator=generator,
        )

    def check_bands(self, height: int, width: int) -> None:
        """Raise a ValueError if an area rounds to an empty band on ``height x width`` images."""
        for area in self.areas:
            top_rows, _ = band_slices(1, area, height, width)
            _, left_cols = band_slices(3, area, height, width)
            for side, length, lines in (("height", height, top_rows), ("width", width, left_cols)):
                if lines.stop == 0:
                    raise ValueError(
                        f"area {area} of a {length}-pixel image {side} rounds to an empty band; "
                        "use larger images or larger areas"
                    )

    def unknown_areas(self, area: Tensor) -> list[float]:
        """The values of ``area`` not in ``areas``, compared in float32 as they are drawn."""
        area = area.to(torch.float32)
        known = torch.tensor(self.areas, dtype=torch.float32)
        return sorted(set(area[~torch.isin(area, known)].tolist()))

    def __str__(self) -> str:
        return (
            f"locations={self.locations}, areas={self.areas}, area_probs={self.area_probs}, "
            f"patch_area={self.patch_area}, patch_ratio={self.patch_ratio}"
        )


class BandOptionsAttributes:
    """``locations`` and ``areas`` of an augmentation configured by a :class:`BandOptions`."""

    options: BandOptions

    @property
    def locations(self) -> tuple[str, ...]:
        """The band locations, as names, in the order their codes are used."""
        return self.options.locations

    @property
    def areas(self) -> tuple[float, ...]:
        """The band areas drawn from."""
        return self.options.areas


def check_locations(locations: Sequence[str]) -> tuple[str, ...]:
    if isinstance(locations, str):
        raise TypeError(f"locations must be a sequence of names, got the string {locations!r}")
    locations = tuple(locations)
    valid = BAND_LOCATIONS
    unknown = [name for name in locations if name not in valid]
    if unknown:
        raise ValueError(f"unknown locations {unknown}; choose from {valid}")
    if not locations or len(set(locations)) != len(locations):
        raise ValueError(f"locations must be non-empty and without repeats, got {locations}")
    return locations


def _check_areas(areas: Sequence[float]) -> tuple[float, ...]:
    areas = tuple(float(a) for a in areas)
    if not areas or len(set(areas)) != len(areas):
        raise ValueError(f"areas must be non-empty and without repeats, got {areas}")
    if not all(0.0 < a < 1.0 for a in areas):
        raise ValueError(f"areas must each be in (0, 1), got {areas}")
    return areas


def _check_area_probs(area_probs: Sequence[float] | None, num_areas: int) -> tuple[float, ...]:
    if area_probs is None:
        return (1.0 / num_areas,) * num_areas
    probs = tuple(float(p) for p in area_probs)
    if len(probs) != num_areas:
        raise ValueError(f"area_probs must have one entry per area ({num_areas}), got {probs}")
    if not all(p >= 0.0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"area_probs must be non-negative and sum to 1, got {probs}")
    return probs


def check_range(name: str, bounds: tuple[float, float], upper: float | None) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {bounds!r}") from None
    if not (0.0 < low <= high) or (upper is not None and high > upper):
        limit = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must satisfy 0 < low <= high{limit}, got {bounds!r}")
    return low, high

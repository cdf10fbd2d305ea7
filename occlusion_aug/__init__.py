"""Batched OAMN occlusion augmentation on tensors, on any device.

Corner patches of other images pasted as top/bottom/left/right half/quarter bands, with labels,
and the band geometry shared with test-time occlusion (see README.md for the convention).
"""

from .bands import (
    LOCATIONS,
    NUM_OCCLUSION_TYPES,
    band_mask,
    band_thickness,
    location_and_area,
    occlude,
    occlusion_type,
)

__all__ = [
    "LOCATIONS",
    "NUM_OCCLUSION_TYPES",
    "band_mask",
    "band_thickness",
    "location_and_area",
    "occlude",
    "occlusion_type",
]

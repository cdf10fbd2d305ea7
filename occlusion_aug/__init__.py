"""Batched OAMN occlusion augmentation on tensors, on any device.

Corner patches of other images pasted as top/bottom/left/right half/quarter bands: the 5-view
OAMN expansion with labels and a single-view kornia augmentation; object-like occluders (another
image in a shape of partial extent, continuous depth and ragged edge) labelled with the nearest
band type; and the occlusion convention every package shares (:data:`LOCATIONS`,
:data:`AREAS`, :data:`OCCLUSION_TYPES`; see README.md) with its band geometry, the same for
training and test-time occlusion.
"""

from .augmentation import OcclusionAugmentation, OcclusionBatch
from .band_occlusion import RandomBandOcclusion
from .bands import (
    AREA_NAMES,
    AREAS,
    BAND_LOCATIONS,
    LOCATIONS,
    NUM_OCCLUSION_TYPES,
    OCCLUSION_TYPES,
    band_mask,
    band_slices,
    band_thickness,
    location_and_area,
    occlude,
    occlusion_type,
)
from .crops import resize_crops
from .objects import ObjectOcclusion, ObjectOcclusionParams
from .params import CORNERS, OcclusionParams, draw_occlusion_params

__all__ = [
    "AREAS",
    "AREA_NAMES",
    "BAND_LOCATIONS",
    "CORNERS",
    "LOCATIONS",
    "NUM_OCCLUSION_TYPES",
    "OCCLUSION_TYPES",
    "ObjectOcclusion",
    "ObjectOcclusionParams",
    "OcclusionAugmentation",
    "OcclusionBatch",
    "OcclusionParams",
    "RandomBandOcclusion",
    "band_mask",
    "band_slices",
    "band_thickness",
    "draw_occlusion_params",
    "location_and_area",
    "occlude",
    "occlusion_type",
    "resize_crops",
]

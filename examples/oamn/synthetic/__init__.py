"""A synthetic occluded-pedestrian ReID benchmark in the Market-1501 layout, from a seed.

Procedurally drawn people whose identity lives in several body regions, seen by cameras with
their own backgrounds and illumination; a holistic training set and gallery, and queries hidden
by textured occluders over a quarter to a half of the image. See
:func:`generate_synthetic_reid`; ``python -m examples.oamn.synthetic ROOT --sheet
sheet.png`` from the repository root generates it and draws a contact sheet.
"""

from .dataset import COMPLETE_MARKER, FOLDERS, GENERATOR_VERSION, MANIFEST, generate_synthetic_reid
from .occluders import OCCLUDER_KINDS
from .preview import contact_sheet

__all__ = [
    "COMPLETE_MARKER",
    "FOLDERS",
    "GENERATOR_VERSION",
    "MANIFEST",
    "OCCLUDER_KINDS",
    "contact_sheet",
    "generate_synthetic_reid",
]

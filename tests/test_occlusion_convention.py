"""Every copy of the occlusion convention agrees with ``oamn.occlusion_aug``'s.

``oamn.occlusion_aug`` defines the convention (:data:`LOCATIONS`, :data:`BAND_LOCATIONS`,
:data:`AREAS`, :data:`OCCLUSION_TYPES` and the band geometry of ``band_mask``). The other
packages import none of the others, so each keeps its own copy of the part it needs; the
pipeline in ``examples/`` imports the convention instead. Adding a location or an area means
editing every copy checked here, and this file then says which one was missed.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

from examples.oamn.awareness import HALF_FRACTION
from examples.oamn.config import TrainConfig
from examples.oamn.model import GRADER_HEADS
from examples.oamn.occluder_labels import LABELS, label_to_type
from examples.oamn.synthetic import generate_synthetic_reid
from oamn import occlusion_aug as convention
from oamn.attention import OcclusionGrader
from oamn.attention import grader as attention_grader
from oamn.losses import grader as losses_grader
from oamn.losses import grader_targets, mask_complement_loss
from oamn.occlusion_aug import (
    ObjectOcclusion,
    OcclusionAugmentation,
    RandomBandOcclusion,
    band_mask,
    location_and_area,
)
from oamn.reid_eval import NUM_OCCLUSION_TYPES as REID_NUM_OCCLUSION_TYPES
from oamn.reid_eval import (
    SCORE_LOCATIONS,
    band_of_type,
    predict_occlusion_type,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONVENTION_NAMES = ("LOCATIONS", "BAND_LOCATIONS", "AREAS", "AREA_NAMES", "OCCLUSION_TYPES")
#: Every type's (location, area), type 0 first.
TYPE_LOCATIONS, TYPE_AREAS = location_and_area(torch.arange(convention.NUM_OCCLUSION_TYPES))


# oamn.occlusion_aug: its augmentations' defaults and output order.


@pytest.mark.parametrize("augmentation", [OcclusionAugmentation, RandomBandOcclusion])
def test_band_augmentations_default_to_every_location_and_area(augmentation) -> None:
    parameters = inspect.signature(augmentation).parameters
    assert tuple(parameters["locations"].default) == convention.BAND_LOCATIONS
    assert tuple(parameters["areas"].default) == convention.AREAS


def test_object_occlusion_defaults_to_every_location_and_the_midpoint_of_the_areas() -> None:
    occlusion = ObjectOcclusion()
    assert occlusion.locations == convention.BAND_LOCATIONS
    assert occlusion.half_from == sum(convention.AREAS) / len(convention.AREAS) == HALF_FRACTION


def test_the_augmentations_blocks_follow_the_location_codes() -> None:
    out = OcclusionAugmentation()(torch.rand(2, 3, 16, 8), generator=torch.Generator())
    assert out.location[::2].tolist() == list(range(len(convention.LOCATIONS)))


# oamn.reid_eval: its type count, score columns, eq. 8 and the bank's bands.


def test_reid_eval_counts_the_types_and_orders_the_score_columns_alike() -> None:
    assert REID_NUM_OCCLUSION_TYPES == convention.NUM_OCCLUSION_TYPES
    assert SCORE_LOCATIONS == convention.BAND_LOCATIONS
    assert predict_occlusion_type(torch.eye(convention.NUM_OCCLUSION_TYPES)).tolist() == list(
        range(convention.NUM_OCCLUSION_TYPES)
    )


@pytest.mark.parametrize("targets_convention", ["paper", "distribution"])
def test_eq8_reads_each_types_grader_targets_as_that_type(targets_convention: str) -> None:
    """``oamn.losses``' targets of each type, as scores, are read back by ``oamn.reid_eval``
    (paper eq. 8, thresholds 0.5 and 0.75) as that type: both number the columns and the areas
    alike."""
    targets = grader_targets(TYPE_LOCATIONS, TYPE_AREAS, targets_convention)
    assert predict_occlusion_type(targets).tolist() == list(range(convention.NUM_OCCLUSION_TYPES))


@pytest.mark.parametrize("size", [(8, 4), (16, 8), (7, 3), (1, 1), (256, 128)])
def test_the_banks_bands_are_the_augmentations_bands(size: tuple[int, int]) -> None:
    expected = band_mask(TYPE_LOCATIONS, TYPE_AREAS, *size)
    got = torch.cat([band_of_type(t, *size) for t in range(convention.NUM_OCCLUSION_TYPES)])
    assert torch.equal(got, expected)


# oamn.losses: the grader's columns and areas, and L_mask2's argument order.


def test_grader_loss_puts_each_location_in_its_column() -> None:
    codes = torch.arange(1, len(convention.LOCATIONS))
    half = torch.full((len(codes),), convention.AREAS[0])
    assert torch.equal(grader_targets(codes, half), torch.eye(len(convention.BAND_LOCATIONS)))
    # Private copies: the area check and the column count have no public form to compare.
    assert len(convention.BAND_LOCATIONS) == losses_grader._NUM_LOCATIONS
    assert sorted(losses_grader._AREAS) == sorted((0.0, *convention.AREAS))


def test_mask_complement_loss_takes_the_copies_in_location_order() -> None:
    names = list(inspect.signature(mask_complement_loss).parameters)[1:5]
    assert names == [f"g_{location}" for location in convention.BAND_LOCATIONS]


# oamn.attention: the grader's two heads and the column orders it documents.


def test_attention_grader_has_a_head_per_location_and_per_type() -> None:
    for outputs in (len(convention.BAND_LOCATIONS), convention.NUM_OCCLUSION_TYPES):
        assert OcclusionGrader(4, summary="pooled", num_outputs=outputs)[-1].out_features == outputs
    with pytest.raises(ValueError, match="num_outputs"):
        OcclusionGrader(4, summary="pooled", num_outputs=convention.NUM_OCCLUSION_TYPES - 1)
    # The logits carry no names: the module docstring is where the grader states its orders.
    doc = " ".join(attention_grader.__doc__.split())
    assert f"columns {', '.join(convention.BAND_LOCATIONS)}" in doc
    assert f"1-4 {convention.AREA_NAMES[0]} {'/'.join(convention.BAND_LOCATIONS)}" in doc


# examples/: the pipeline imports the convention and writes none of it out again.


def test_the_pipeline_uses_the_convention_objects() -> None:
    config = TrainConfig()
    assert config.occlusion_locations is convention.BAND_LOCATIONS
    assert config.occlusion_areas == convention.AREAS  # rebuilt as floats on construction
    assert {
        "locations": len(convention.BAND_LOCATIONS),
        "types": convention.NUM_OCCLUSION_TYPES,
    } == GRADER_HEADS
    assert inspect.signature(generate_synthetic_reid).parameters["locations"].default is (
        convention.BAND_LOCATIONS
    )
    named = [label for label in LABELS if label not in ("none", "unclear")]
    assert [convention.OCCLUSION_TYPES[label_to_type(label)] for label in named] == [
        "_".join(reversed(label.split("_"))) for label in named
    ]
    assert sorted(label_to_type(label) for label in named) == list(
        range(1, convention.NUM_OCCLUSION_TYPES)
    )


def test_no_pipeline_module_restates_the_convention() -> None:
    defines = re.compile(rf"^\s*({'|'.join(CONVENTION_NAMES)})\s*(:[^=]*)?=", re.MULTILINE)
    written_out = re.compile(
        r'"top", "bottom", "left", "right"|"none", "top"|"half", "quarter"|\(0\.5, 0\.25\)'
    )
    offenders = [
        f"{path.relative_to(EXAMPLES.parent)}: {match.group(0).strip()}"
        for path in sorted(EXAMPLES.rglob("*.py"))
        for pattern in (defines, written_out)
        for match in pattern.finditer(path.read_text())
    ]
    assert not offenders, "import these from oamn.occlusion_aug:\n" + "\n".join(offenders)

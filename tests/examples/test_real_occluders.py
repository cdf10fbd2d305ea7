"""The pipeline's parts for real occluders: 9-way targets, mask supervision, the labelled set."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from examples.oamn.config import TrainConfig
from examples.oamn.objective import OAMNObjective
from examples.oamn.occluder_labels import (
    LABELLED_OCCLUDERS,
    LABELS,
    agreement,
    label_to_type,
    labelled_grader_report,
    read_labels,
)
from examples.oamn.step import build_augmentation
from oamn.losses import mask_visibility_loss
from oamn.occlusion_aug import ObjectOcclusion, OcclusionAugmentation


def _output(rows: int, types: int = 9, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    out = SimpleNamespace(
        f=torch.rand(rows, 8, 4, 2, generator=g),
        m=torch.rand(rows, 1, 4, 2, generator=g),
        pooled=torch.rand(rows, 16, generator=g),
        logits=torch.rand(rows, 3, generator=g),
        grader_logits=torch.randn(rows, types, generator=g),
    )
    out.g = out.m * out.f
    out.grader_scores = out.grader_logits.softmax(1)
    return out


def test_nine_way_score_is_the_cross_entropy_of_each_views_type():
    pids = torch.tensor([0, 0, 1, 1])
    views = OcclusionAugmentation()(torch.rand(4, 3, 16, 8), generator=torch.Generator())
    out = _output(20)
    result = OAMNObjective(grader_head="types")(out, pids, views)
    targets = torch.tensor([0] * 4 + [0] * 16)  # holistic rows: type 0 ("none")
    targets[4:] = views.occlusion_type[4:]
    assert views.occlusion_type[:4].tolist() == [0, 0, 0, 0]
    assert set(targets[4:8].tolist()) <= {1, 5}
    assert set(targets[16:].tolist()) <= {4, 8}
    torch.testing.assert_close(
        result.components["score"], F.cross_entropy(out.grader_logits, targets)
    )


def test_visibility_term_and_no_complement_loss_for_object_occluders():
    pids = torch.tensor([0, 0, 1, 1])
    views = ObjectOcclusion()(torch.rand(4, 3, 16, 8), groups=pids)
    out = _output(20)
    result = OAMNObjective(grader_head="types", lambda_visibility=2.0)(out, pids, views)
    assert "mask2" not in result.components
    assert "mask1" in result.components
    torch.testing.assert_close(
        result.components["visibility"], mask_visibility_loss(out.m, views.occluded)
    )
    bands = OcclusionAugmentation()(torch.rand(4, 3, 16, 8))
    assert "visibility" not in OAMNObjective()(_output(20, 4), pids, bands).components


def test_configuration_builds_the_augmentation_and_refuses_a_maskless_supervision():
    assert isinstance(build_augmentation(TrainConfig(occluders="objects")), ObjectOcclusion)
    assert isinstance(build_augmentation(TrainConfig()), OcclusionAugmentation)
    assert (
        build_augmentation(TrainConfig(occlusion=False, loss_mask=False, loss_score=False)) is None
    )
    with pytest.raises(ValueError, match="--lambda-visibility"):
        TrainConfig(lambda_visibility=1.0, mask_module=False, loss_mask=False)


def test_labelled_report_by_hand():
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "x.jpg"]
    labels = {
        "a.jpg": "bottom_half", "b.jpg": "bottom_quarter", "c.jpg": "left_half",
        "d.jpg": "right_quarter", "e.jpg": "none", "f.jpg": "unclear",
    }  # fmt: skip
    # predicted types: a bottom half (exact), b bottom half (side right), c none (wrong),
    # d right quarter (exact), e none (right), f anything (ignored), x unlabelled.
    predicted = torch.tensor([2, 2, 0, 8, 0, 1, 3])
    scores = F.one_hot(predicted, 9).float()
    report = labelled_grader_report(names, scores, labels)
    assert report["labelled"] == 6
    assert report["sided"] == 4
    assert report["location_accuracy"] == 0.75
    assert report["type_accuracy"] == 0.5
    assert report["none_rate"] == 0.25
    assert report["none_accuracy"] == 1.0
    assert report["constant_bottom"] == 0.5
    assert report["side_recall"]["left"] == {"count": 1, "recall": 0.0}
    assert report["side_recall"]["bottom"] == {"count": 2, "recall": 1.0}
    assert report["side_recall"]["top"] == {"count": 0, "recall": None}
    low, high = report["location_accuracy_ci95"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    assert labelled_grader_report(["x.jpg"], scores[:1], labels) is None


def test_agreement_and_label_types():
    first = {"a": "bottom_half", "b": "left_half", "c": "none", "d": "unclear"}
    second = {"a": "bottom_quarter", "b": "left_half", "c": "right_half", "e": "none"}
    result = agreement(first, second)
    assert result["images"] == 3
    assert result["both_sided"] == 2
    assert result["exact"] == pytest.approx(100 / 3)
    assert result["side"] == pytest.approx(200 / 3)
    assert result["side_when_both_sided"] == 100.0
    assert [label_to_type(x) for x in LABELS] == [1, 2, 3, 4, 5, 6, 7, 8, 0, None]


def test_read_labels_refuses_unknown_labels_and_repeats(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("image,label\na.jpg,bottom\n")
    with pytest.raises(ValueError, match="line 2"):
        read_labels(path)
    path.write_text("image,label\na.jpg,none\na.jpg,none\n")
    with pytest.raises(ValueError, match="twice"):
        read_labels(path)


def test_the_shipped_labels_are_valid_and_large_enough():
    labels = read_labels(LABELLED_OCCLUDERS)
    assert len(labels) >= 400
    second = read_labels(LABELLED_OCCLUDERS.with_name("occluded_duke_dev_queries_second.csv"))
    assert len(second) >= 100
    assert set(second) <= set(labels)
    with open(LABELLED_OCCLUDERS, newline="") as handle:
        names = [row["image"] for row in csv.DictReader(handle)]
    assert all(name.endswith(".jpg") and name[:4].isdigit() for name in names)

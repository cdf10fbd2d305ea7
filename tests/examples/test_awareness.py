"""awareness: mask and grader statistics against known occlusions, by hand and on stand-ins."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from examples.oamn.awareness import (
    HALF_FRACTION,
    augmented_awareness,
    awareness_report,
    collect_masks,
    grader_statistics,
    mask_band_statistics,
    nearest_types,
    query_awareness,
    synthetic_query_occlusions,
)
from examples.oamn.comparison import QUICK_SYNTHETIC
from examples.oamn.data import ReIDItem, load_dataset
from examples.oamn.evaluation_settings import EvaluationSettings
from examples.oamn.synthetic import generate_synthetic_reid
from oamn.occlusion_aug import LOCATIONS, OCCLUSION_TYPES

NAMES = OCCLUSION_TYPES
HEIGHT, WIDTH = 16, 8
NONE_ROW = {"band_mean": None, "visible_mean": None, "band_to_visible": None}


# ----------------------------------------------------------------------------- stand-in models


class BandModel(nn.Module):
    """A model that knows the augmentation's bands exactly.

    Every input image is one constant (a different one per image), so in the augmentation's
    view-major batch (the ``B`` holistic images first, then one block of ``B`` per location)
    a view's band is where it differs from its holistic image: the mask is ``1 - band`` at the
    input resolution. The grader scores put 0.8 (half band) or 0.6 (quarter) on the band's
    location, or, with ``mix_up``, the other area's score; 0.25 everywhere without a band.
    """

    def __init__(self, mix_up: bool = False) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.mix_up = mix_up
        #: (batch size, training, inference mode) of every forward call.
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, images: Tensor) -> SimpleNamespace:
        self.calls.append((len(images), self.training, torch.is_inference_mode_enabled()))
        holistic = images[: len(images) // 5].repeat(5, 1, 1, 1)
        visible = torch.isclose(images, holistic, atol=1e-4).all(1, keepdim=True)
        band = ~visible[:, 0]
        edges = torch.stack(
            [band[:, 0].all(1), band[:, -1].all(1), band[:, :, 0].all(1), band[:, :, -1].all(1)],
            dim=1,
        )
        half = band.float().mean((1, 2)) > 0.375
        score = torch.where(half != self.mix_up, 0.8, 0.6)[:, None]
        scores = torch.where(edges, score, (1 - score) / 3)
        scores = torch.where(edges.any(1, keepdim=True), scores, torch.full_like(scores, 0.25))
        return SimpleNamespace(m=visible.float(), grader_scores=scores)


class MeanModel(nn.Module):
    """Any-batch stand-in: a pooled sigmoid mask and uniform grader scores (type "none")."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.modes: list[bool] = []

    def forward(self, images: Tensor) -> SimpleNamespace:
        self.modes.append(self.training)
        masks = F.avg_pool2d(images[:, :1], 4).sigmoid()
        return SimpleNamespace(m=masks, grader_scores=torch.full((len(images), 4), 0.25))


def constant_batches(*sizes: int) -> list[tuple[Tensor]]:
    """Batches of constant ``(3, HEIGHT, WIDTH)`` images, a different constant per image."""
    batches, value = [], 0
    for size in sizes:
        values = 0.1 * torch.arange(value + 1, value + size + 1, dtype=torch.float32)
        batches.append((values.view(-1, 1, 1, 1).expand(size, 3, HEIGHT, WIDTH).clone(),))
        value += size
    return batches


def type_counts(report: dict) -> dict[str, int]:
    return {name: row["count"] for name, row in report["mask"]["types"].items()}


# ----------------------------------------------------------------------- mask_band_statistics


def test_mask_band_statistics_by_hand() -> None:
    masks = torch.empty(4, 1, 4, 4)
    masks[0] = 0.8  # no occlusion
    masks[1] = 0.6
    masks[1, :, :2] = 0.2  # half top: rows 0-1
    masks[2] = 0.6
    masks[2, :, :, 0] = 0.0  # quarter left: column 0
    masks[3] = 0.8
    masks[3, :, :2] = 0.4  # top, 0.45 of the side: nearest half, rows 0-1 (round(1.8))
    location = torch.tensor([0, 1, 3, 1])
    area = torch.tensor([0.0, 0.5, 0.25, 0.45])
    stats = mask_band_statistics(masks, location, area)
    # Types without images are left out; the rest in type order.
    assert list(stats["types"]) == ["none", "half_top", "quarter_left"]
    assert stats["types"]["none"] == {"count": 1, "mask_mean": 0.8, **NONE_ROW}
    # Means over the images of their band and visible means, and the ratio of those means
    # (not the mean of the ratios, (1/3 + 1/2) / 2).
    assert stats["types"]["half_top"] == {
        "count": 2,
        "mask_mean": 0.5,  # (0.4 + 0.6) / 2
        "band_mean": 0.3,  # (0.2 + 0.4) / 2
        "visible_mean": 0.7,  # (0.6 + 0.8) / 2
        "band_to_visible": round(0.3 / 0.7, 4),
    }
    assert stats["types"]["quarter_left"] == {
        "count": 1,
        "mask_mean": 0.45,  # 12 of 16 at 0.6
        "band_mean": 0.0,
        "visible_mean": 0.6,
        "band_to_visible": 0.0,
    }
    # "occluded" pools the three occluded images, whatever their type.
    assert stats["occluded"] == {
        "count": 3,
        "mask_mean": round((0.4 + 0.45 + 0.6) / 3, 4),
        "band_mean": 0.2,  # (0.2 + 0 + 0.4) / 3
        "visible_mean": round((0.6 + 0.6 + 0.8) / 3, 4),
        "band_to_visible": 0.3,  # 0.2 / (2 / 3)
    }
    assert stats["all"] == {"count": 4, "mask_mean": 0.5625, **NONE_ROW}


def test_mask_band_statistics_without_occlusion() -> None:
    location = torch.zeros(2, dtype=torch.int64)
    stats = mask_band_statistics(torch.full((2, 1, 4, 2), 0.5), location, torch.zeros(2))
    assert list(stats["types"]) == ["none"]
    assert "occluded" not in stats
    assert stats["all"] == {"count": 2, "mask_mean": 0.5, **NONE_ROW}


# -------------------------------------------------------------------------- grader_statistics


def test_grader_statistics_by_hand() -> None:
    true = torch.tensor([0, 0, 1, 1, 5, 3, 8])
    predicted = torch.tensor([0, 2, 1, 0, 1, 7, 8])
    stats = grader_statistics(predicted, true)
    expected = [[0] * 9 for _ in range(9)]  # rows true, columns predicted
    for t, p in zip(true.tolist(), predicted.tolist(), strict=True):
        expected[t][p] += 1
    assert stats["confusion"] == expected
    assert (stats["confusion"][0][2], stats["confusion"][5][1], stats["confusion"][3][7]) == (
        1,
        1,
        1,
    )
    assert stats["types"] == list(NAMES)
    assert (stats["count"], stats["occluded_count"]) == (7, 5)
    # Occluded: 1 -> 1 right; 1 -> none wrong location; quarter top -> half top and half left
    # -> quarter left right location, wrong type; 8 -> 8 right: 4 / 5 locations, 2 / 5 types.
    assert stats["location_accuracy"] == 0.8
    assert stats["type_accuracy"] == 0.4
    assert stats["none_accuracy"] == 0.5  # one of the two unoccluded images graded "none"


def test_grader_statistics_without_occluded_or_unoccluded_images() -> None:
    unoccluded = grader_statistics(torch.tensor([0, 3, 0]), torch.tensor([0, 0, 0]))
    assert unoccluded["occluded_count"] == 0
    assert unoccluded["location_accuracy"] is None
    assert unoccluded["type_accuracy"] is None
    assert unoccluded["none_accuracy"] == round(2 / 3, 4)
    occluded = grader_statistics(torch.tensor([4]), torch.tensor([8]))
    assert occluded["none_accuracy"] is None
    assert (occluded["location_accuracy"], occluded["type_accuracy"]) == (1.0, 0.0)


# ------------------------------------------------------------------------------ nearest_types


def test_nearest_types_at_the_three_eighths_boundary() -> None:
    assert HALF_FRACTION == 0.375
    location = torch.tensor([0, 1, 1, 2, 4, 3, 0, 2])
    fraction = torch.tensor([0.0, 0.375, 0.3749, 0.5, 0.25, 0.4, 0.45, 0.3])
    assert nearest_types(location, fraction).tolist() == [0, 1, 5, 2, 8, 3, 0, 6]
    assert nearest_types(location, fraction).dtype == torch.int64


# ----------------------------------------------------------------- synthetic_query_occlusions


def write_manifest(root: Path, queries: list[dict], generator: str = "examples.oamn.synthetic"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"generator": generator, "queries": queries}))


def query_item(root: Path, name: str) -> ReIDItem:
    return ReIDItem(root / "query" / name, 1, 1)


def test_synthetic_query_occlusions_match_by_file_name(tmp_path) -> None:
    queries = [
        {"file": "a.jpg", "location": "top", "fraction": 0.3},
        {"file": "b.jpg", "location": "right", "fraction": 0.45},
        {"file": "c.jpg", "location": "bottom", "fraction": 0.25},
    ]
    write_manifest(tmp_path, queries)
    items = [query_item(tmp_path, name) for name in ("c.jpg", "a.jpg", "b.jpg")]
    location, fraction = synthetic_query_occlusions(tmp_path, items)
    assert location.tolist() == [2, 1, 4]  # in the items' order, not the manifest's
    assert location.dtype == torch.int64
    assert fraction.dtype == torch.float32
    torch.testing.assert_close(fraction, torch.tensor([0.25, 0.3, 0.45]))
    with pytest.raises(ValueError, match=r"no occluder for 1 queries \(first: d\.jpg\)"):
        synthetic_query_occlusions(tmp_path, [*items, query_item(tmp_path, "d.jpg")])


def test_synthetic_query_occlusions_of_other_folders(tmp_path) -> None:
    items = [query_item(tmp_path, "a.jpg")]
    assert synthetic_query_occlusions(tmp_path / "no_manifest", items) is None
    queries = [{"file": "a.jpg", "location": "top", "fraction": 0.3}]
    write_manifest(tmp_path / "other", queries, generator="someone.else")
    assert synthetic_query_occlusions(tmp_path / "other", items) is None
    (tmp_path / "unnamed").mkdir()
    (tmp_path / "unnamed" / "manifest.json").write_text(json.dumps({"queries": queries}))
    assert synthetic_query_occlusions(tmp_path / "unnamed", items) is None


# ---------------------------------------------------------------------------- query_awareness


def test_query_awareness_uses_the_occluders_band_and_nearest_type() -> None:
    masks = torch.ones(2, 1, 16, 4)
    masks[0, :, :5] = 0.0  # top, 0.3 of 16 rows: 5 rows (a quarter band would be 4)
    masks[1, :, :, 2:] = 0.5  # right, half: 2 of 4 columns
    stats = query_awareness(
        masks, torch.tensor([5, 8]), torch.tensor([1, 4]), torch.tensor([0.3, 0.5])
    )
    assert stats["mask"]["types"]["quarter_top"] == {
        "count": 1,
        "mask_mean": 0.6875,  # 11 of 16 rows
        "band_mean": 0.0,
        "visible_mean": 1.0,
        "band_to_visible": 0.0,
    }
    assert stats["mask"]["types"]["half_right"]["band_to_visible"] == 0.5
    assert stats["mask"]["types"]["half_right"]["mask_mean"] == 0.75
    grader = stats["grader"]
    assert grader["confusion"][5][5] == 1  # quarter top, graded quarter top
    assert grader["confusion"][4][8] == 1  # half right, graded quarter right
    assert (grader["location_accuracy"], grader["type_accuracy"]) == (1.0, 0.5)
    assert grader["none_accuracy"] is None


# ------------------------------------------------------------------------ augmented_awareness


def test_augmented_awareness_of_a_mask_that_drops_the_band() -> None:
    model = BandModel()
    report = augmented_awareness(model, constant_batches(4, 4), "cpu", seed=0, progress=False)
    assert (report["images"], report["seed"]) == (8, 0)
    mask = report["mask"]
    counts = type_counts(report)
    assert counts["none"] == 8
    assert sum(counts.values()) == 5 * 8  # the images and their four copies
    # Each image's four copies share its band area: as many half bands at every location.
    for location in ("top", "bottom", "left", "right"):
        assert counts.get(f"half_{location}", 0) + counts.get(f"quarter_{location}", 0) == 8
        assert counts.get(f"half_{location}", 0) == counts.get("half_top", 0)
    assert 0 < counts.get("half_top", 0) < 8  # both areas drawn (seed 0)
    assert mask["types"]["none"] == {"count": 8, "mask_mean": 1.0, **NONE_ROW}
    for name, row in mask["types"].items():
        if name != "none":
            kept = 0.5 if name.startswith("half") else 0.75
            assert row == {
                "count": counts[name],
                "mask_mean": kept,
                "band_mean": 0.0,
                "visible_mean": 1.0,
                "band_to_visible": 0.0,
            }, name
    assert mask["occluded"]["count"] == 32
    assert mask["occluded"]["band_to_visible"] == 0.0
    assert mask["all"]["count"] == 40
    # The grader reads the true type of every view: a diagonal confusion matrix.
    grader = report["grader"]
    assert grader["confusion"] == [
        [counts.get(NAMES[t], 0) if p == t else 0 for p in range(9)] for t in range(9)
    ]
    assert (grader["count"], grader["occluded_count"]) == (40, 32)
    assert grader["location_accuracy"] == grader["type_accuracy"] == 1.0
    assert grader["none_accuracy"] == 1.0


def test_augmented_awareness_of_a_grader_that_mixes_up_the_areas() -> None:
    report = augmented_awareness(
        BandModel(mix_up=True), constant_batches(4, 4), "cpu", seed=0, progress=False
    )
    grader, counts = report["grader"], type_counts(report)
    assert grader["location_accuracy"] == 1.0
    assert grader["type_accuracy"] == 0.0
    assert grader["none_accuracy"] == 1.0
    for location in range(1, 5):  # half <-> quarter at the same location
        assert grader["confusion"][location][location + 4] == counts.get(NAMES[location], 0)
        assert grader["confusion"][location + 4][location] == counts.get(NAMES[location + 4], 0)


def test_augmented_awareness_is_deterministic_under_its_seed() -> None:
    batches = constant_batches(4, 4)
    reports = [
        augmented_awareness(BandModel(), batches, "cpu", seed=seed, progress=False)
        for seed in (3, 3, 1)
    ]
    assert reports[0] == reports[1]
    assert reports[0]["seed"] == 3
    assert reports[2]["seed"] == 1
    # Another seed draws other band areas.
    assert type_counts(reports[0]) != type_counts(reports[2])


@pytest.mark.parametrize(("max_images", "calls"), [(None, [20, 20, 20]), (6, [20, 10]), (4, [20])])
def test_augmented_awareness_stops_at_max_images(max_images, calls) -> None:
    model = BandModel()
    report = augmented_awareness(
        model, constant_batches(4, 4, 4), "cpu", max_images=max_images, progress=False
    )
    assert [size for size, _, _ in model.calls] == calls
    images = sum(calls) // 5
    assert report["images"] == images
    assert report["mask"]["all"]["count"] == report["grader"]["count"] == 5 * images


def test_augmented_awareness_carries_a_lone_image_to_the_next_batch() -> None:
    model = BandModel()
    report = augmented_awareness(model, constant_batches(1, 2, 4, 1), "cpu", progress=False)
    # 1 waits and joins the 2; the 4 go alone; the lone last image is left out.
    assert [size for size, _, _ in model.calls] == [15, 20]
    assert report["images"] == 7


def test_augmented_awareness_needs_two_images() -> None:
    with pytest.raises(ValueError, match="needs at least 2 images"):
        augmented_awareness(BandModel(), constant_batches(1), "cpu", progress=False)


@pytest.mark.parametrize("training", [True, False])
def test_augmented_awareness_restores_the_model_mode(training) -> None:
    model = BandModel().train(training)
    augmented_awareness(model, constant_batches(4), "cpu", progress=False)
    assert model.training is training
    assert model.calls == [(20, False, True)]  # eval mode, under inference_mode


def test_collect_masks_in_loader_order() -> None:
    model = MeanModel().train()
    batches = [(torch.randn(3, 3, HEIGHT, WIDTH),), (torch.randn(2, 3, HEIGHT, WIDTH),)]
    masks = collect_masks(model, batches, "cpu", progress=False)
    images = torch.cat([batch[0] for batch in batches])
    torch.testing.assert_close(masks, F.avg_pool2d(images[:, :1], 4).sigmoid())
    assert model.modes == [False, False]
    assert model.training


# --------------------------------------------------------------------------- awareness_report


@pytest.fixture(scope="module")
def quick_synthetic(tmp_path_factory) -> Path:
    """The demo's --quick synthetic benchmark, at 64 x 32."""
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_reid(root, height=64, width=32, **QUICK_SYNTHETIC)


def test_awareness_report_on_the_synthetic_benchmark(quick_synthetic) -> None:
    dataset = load_dataset("market1501", quick_synthetic)
    queries = dataset.query
    count = len(queries)
    scores = torch.tensor([[0.9, 0.05, 0.03, 0.02]]).expand(count, 4)  # all graded half top
    size = {"height": 64, "width": 32, "device": "cpu"}
    settings = EvaluationSettings(batch_size=4, workers=0, progress=False)
    model = MeanModel()
    report, true_types = awareness_report(
        model, queries, scores, quick_synthetic, **size, settings=settings
    )
    assert list(report) == ["augmented", "synthetic_queries"]
    assert report["augmented"]["images"] == count
    assert report["augmented"]["seed"] == 0
    # The true types: each query's manifest occluder, half from 3/8 of the side on.
    manifest = json.loads((quick_synthetic / "manifest.json").read_text())
    by_file = {query["file"]: query for query in manifest["queries"]}
    occluders = [by_file[item.path.name] for item in queries]
    location = torch.tensor([LOCATIONS.index(query["location"]) for query in occluders])
    fraction = torch.tensor([query["fraction"] for query in occluders])
    assert true_types.tolist() == nearest_types(location, fraction).tolist()
    expected = [
        LOCATIONS.index(q["location"]) + (0 if q["fraction"] >= 0.375 else 4) for q in occluders
    ]
    assert true_types.tolist() == expected
    # The real occluders' statistics: every query occluded, every one graded half top.
    real = report["synthetic_queries"]
    assert real["mask"]["all"]["count"] == real["mask"]["occluded"]["count"] == count
    assert real["grader"]["occluded_count"] == count
    assert [row[1] for row in real["grader"]["confusion"]] == torch.bincount(
        true_types, minlength=9
    ).tolist()
    assert real["grader"]["type_accuracy"] == round(float((true_types == 1).float().mean()), 4)
    assert real["grader"]["location_accuracy"] == round(float((location == 1).float().mean()), 4)
    # Without the dataset folder (e.g. held-out training identities): no true types.
    report, true_types = awareness_report(model, queries, scores, None, **size, settings=settings)
    assert list(report) == ["augmented"]
    assert true_types is None

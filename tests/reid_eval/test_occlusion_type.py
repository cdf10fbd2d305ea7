"""predict_occlusion_type: paper eq. 8 and the README's type convention."""

from __future__ import annotations

import pytest
import torch

from oamn.reid_eval import SCORE_LOCATIONS, predict_occlusion_type
from tests.conftest import DEVICES

# README convention: half bands are types 1-4, quarter bands 5-8, in the order top, bottom,
# left, right; the grader's score columns use the same order.
HALF = {"top": 1, "bottom": 2, "left": 3, "right": 4}
QUARTER = {"top": 5, "bottom": 6, "left": 7, "right": 8}


@pytest.mark.parametrize("column", range(4))
def test_each_location_and_area(column: int) -> None:
    location = SCORE_LOCATIONS[column]
    scores = torch.full((3, 4), 0.01)
    scores[:, column] = torch.tensor([0.9, 0.6, 0.3])
    expected = [HALF[location], QUARTER[location], 0]
    assert predict_occlusion_type(scores).tolist() == expected


@pytest.mark.parametrize(
    ("score", "paper", "official"),
    [
        (0.4999, 0, 0),
        (0.5, 5, 0),  # paper: 0.5 <= s < 0.75 is a quarter; official: s <= 0.5 is none
        (0.5001, 5, 5),
        (0.7499, 5, 5),
        (0.75, 1, 5),  # paper: s >= 0.75 is a half; official: s <= 0.75 is a quarter
        (0.7501, 1, 1),
        (1.0, 1, 1),
    ],
)
def test_boundaries(score: float, paper: int, official: int) -> None:
    scores = torch.tensor([[score, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert predict_occlusion_type(scores).item() == paper
    assert predict_occlusion_type(scores, boundary="official").item() == official


def test_ties_pick_the_first_location() -> None:
    scores = torch.tensor([[0.1, 0.45, 0.45, 0.0], [0.0, 0.0, 0.5, 0.5], [0.8, 0.8, 0.8, 0.8]])
    assert predict_occlusion_type(scores).tolist() == [0, QUARTER["left"], HALF["top"]]


def test_custom_thresholds() -> None:
    scores = torch.tensor([[0.0, 0.35, 0.0, 0.0], [0.0, 0.0, 0.0, 0.65]])
    assert predict_occlusion_type(scores, thresholds=(0.3, 0.6)).tolist() == [6, 4]
    # Equal thresholds leave no room for a quarter band.
    assert predict_occlusion_type(scores, thresholds=(0.35, 0.35)).tolist() == [2, 4]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_dtypes_devices_and_numpy(device: str, dtype: torch.dtype) -> None:
    scores = torch.softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * 3, 1)
    expected = predict_occlusion_type(scores.numpy())
    got = predict_occlusion_type(scores.to(device, dtype))
    assert got.dtype == torch.int64
    assert got.device.type == device
    if dtype != torch.float16:  # half precision may move a score across a threshold
        assert torch.equal(got.cpu(), expected)
    assert predict_occlusion_type(torch.empty(0, 4, device=device, dtype=dtype)).shape == (0,)

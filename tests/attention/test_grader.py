"""OcclusionGrader: layouts, heads, errors, and use on a model that is not the pipeline's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oamn.attention import GlobalAveragePool, OcclusionGrader, ScaleFreeProfiles


def test_layers_and_output_widths():
    grader = OcclusionGrader(16, (8, 4), "profiles", num_outputs=9)
    assert isinstance(grader[0], ScaleFreeProfiles)
    assert grader[1].num_features == 16 * 12
    assert grader[-1].out_features == 9
    pooled = OcclusionGrader(16, summary="pooled", num_outputs=4, hidden=32)
    assert isinstance(pooled[0], GlobalAveragePool)
    assert [type(layer) for layer in pooled[1:]] == [nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.Linear]
    assert pooled(torch.randn(3, 16, 5, 5)).shape == (3, 4)


def test_state_dict_keys_are_those_of_the_plain_sequential():
    grader = OcclusionGrader(8, (4, 2))
    plain = nn.Sequential(ScaleFreeProfiles(), nn.BatchNorm1d(48), nn.Linear(48, 4))
    assert list(grader.state_dict()) == list(plain.state_dict())
    grader.load_state_dict(plain.state_dict())
    x = torch.randn(5, 8, 4, 2)
    assert torch.equal(grader.eval()(x), plain.eval()(x))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_outputs": 5}, "num_outputs must be 4"),
        ({"summary": "max"}, "summary must be one of"),
        ({"feature_size": None}, "needs feature_size"),
        ({"hidden": 0}, "hidden must be at least 1"),
    ],
)
def test_errors(kwargs, match):
    arguments = {"channels": 8, "feature_size": (4, 2), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        OcclusionGrader(**arguments)


def test_nine_way_head_learns_the_band_of_a_user_model():
    """A torchvision-style model of one's own: a conv stem as E^I, the grader on its map."""
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    grader = OcclusionGrader(8, (8, 4), num_outputs=9)
    optimizer = torch.optim.Adam(grader.parameters(), lr=0.05)
    images = torch.rand(36, 3, 32, 16)
    types = torch.arange(36) % 9
    bands = torch.zeros(36, 1, 32, 16, dtype=torch.bool)
    for t in range(1, 9):
        location, quarter = (t - 1) % 4, t > 4
        depth = 8 if quarter else 16
        region = [
            (slice(0, depth), slice(None)),
            (slice(32 - depth, 32), slice(None)),
            (slice(None), slice(0, depth // 2)),
            (slice(None), slice(16 - depth // 2, 16)),
        ][location]
        bands[types == t, 0, region[0], region[1]] = True
    occluded = torch.where(bands, torch.zeros(()), images)
    with torch.no_grad():
        f = stem(occluded)
    for _ in range(60):
        loss = F.cross_entropy(grader(f), types)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    grader.eval()
    accuracy = float((grader(f).argmax(1) == types).float().mean())
    assert accuracy > 0.9, accuracy

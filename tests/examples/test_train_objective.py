"""The OAMN objective against direct calls of the losses package, on small random tensors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.oamn.config import TrainConfig
from examples.oamn.objective import OAMNObjective
from oamn.losses import (
    batch_hard_triplet_loss,
    grader_loss,
    grouped_triplet_loss,
    mask_complement_loss,
    mask_consistency_loss,
)
from oamn.occlusion_aug import OcclusionAugmentation

PIDS = torch.tensor([0, 0, 1, 1, 2, 2])
# Weights that differ from each other, so a term weighted by the wrong lambda shows.
WEIGHTS = {
    "lambda_mask": 2.0,
    "lambda_triplet": 0.3,
    "lambda_id": 1.7,
    "lambda_score": 0.9,
    "mask_alpha1": 0.6,
    "mask_alpha2": 1.4,
}


class TinyOAMN(nn.Module):
    """E^I, mask, head and grader wired as OAMN wires them, at toy size."""

    def __init__(self, detach_mask_input: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.mask = nn.Conv2d(6, 1, 1)
        self.classifier = nn.Linear(6, 3)
        self.grader = nn.Linear(6, 4)
        self.detach_mask_input = detach_mask_input

    def forward(self, images: torch.Tensor) -> SimpleNamespace:
        f = self.encoder(images)
        m = torch.sigmoid(self.mask(f.detach() if self.detach_mask_input else f))
        g = m * f
        pooled = g.amax((2, 3))
        scores = self.grader(g.detach().mean((2, 3))).softmax(1)
        return SimpleNamespace(
            f=f, m=m, g=g, pooled=pooled, logits=self.classifier(pooled), grader_scores=scores
        )


def _views(locations=("top", "bottom", "left", "right"), areas=(0.5, 0.25), seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(len(PIDS), 3, 16, 8, generator=generator)
    augmentation = OcclusionAugmentation(locations=locations, areas=areas)
    return augmentation(images, generator=generator)


def _forward(views, seed=0, detach_mask_input=False):
    torch.manual_seed(seed)
    model = TinyOAMN(detach_mask_input)
    return model, model(views.images)


@pytest.mark.parametrize("mask_loss_scale", ["paper", "invariant"])
def test_components_equal_the_losses_package(mask_loss_scale: str) -> None:
    views = _views()
    _, out = _forward(views)
    objective = OAMNObjective(**WEIGHTS, mask_loss_scale=mask_loss_scale)
    result = objective(out, PIDS, views)
    labels, batch = PIDS.repeat(5), len(PIDS)
    g = [out.g[v * batch : (v + 1) * batch] for v in range(5)]
    is_half = views.area[batch : 2 * batch] == 0.5
    invariant = mask_loss_scale == "invariant"
    m_holistic = out.m[:batch] if invariant else None
    expected = {
        "id": F.cross_entropy(out.logits, labels),
        "triplet": grouped_triplet_loss(out.pooled, labels, views.location, margin=0.5),
        "mask1": mask_consistency_loss(
            out.f[:batch], out.f[batch:], out.m[batch:], normalize=invariant
        ),
        "mask2": mask_complement_loss(*g, is_half, m_holistic=m_holistic),
        "score": grader_loss(out.grader_scores, views.location, views.area),
    }
    assert set(result.components) == {*expected, "loss"}
    for name, value in expected.items():
        torch.testing.assert_close(result.components[name], value.detach(), rtol=0, atol=0)
    total = (
        2.0 * (0.6 * expected["mask1"] + 1.4 * expected["mask2"])
        + 0.3 * expected["triplet"]
        + 1.7 * expected["id"]
        + 0.9 * expected["score"]
    )
    torch.testing.assert_close(result.loss, total, rtol=1e-6, atol=0)
    assert result.loss.requires_grad
    assert not any(value.requires_grad for value in result.components.values())


@pytest.mark.parametrize(
    ("switch", "terms"),
    [
        ("loss_mask", {"mask1": 2.0 * 0.6, "mask2": 2.0 * 1.4}),
        ("loss_triplet", {"triplet": 0.3}),
        ("loss_id", {"id": 1.7}),
        ("loss_score", {"score": 0.9}),
    ],
)
def test_switching_a_term_off_removes_exactly_it(switch, terms) -> None:
    views = _views()
    _, out = _forward(views)
    full = OAMNObjective(**WEIGHTS)(out, PIDS, views)
    reduced = OAMNObjective(**WEIGHTS, **{switch: False})(out, PIDS, views)
    assert set(full.components) - set(reduced.components) == set(terms)
    removed = sum(weight * full.components[name] for name, weight in terms.items())
    torch.testing.assert_close(reduced.loss, full.loss - removed, rtol=1e-6, atol=1e-7)


def test_plain_triplet_mines_across_locations() -> None:
    views = _views()
    _, out = _forward(views)
    result = OAMNObjective(grouped_triplet=False)(out, PIDS, views)
    expected = batch_hard_triplet_loss(out.pooled, PIDS.repeat(5), margin=0.5)
    torch.testing.assert_close(result.components["triplet"], expected.detach(), rtol=0, atol=0)
    grouped = OAMNObjective()(out, PIDS, views).components["triplet"]
    assert not torch.equal(grouped, result.components["triplet"])


def test_baseline_batch_is_the_holistic_images_only() -> None:
    images = _views().images[: len(PIDS)]
    _, out = _forward(SimpleNamespace(images=images))
    result = OAMNObjective(**WEIGHTS)(out, PIDS)
    assert set(result.components) == {"id", "triplet", "loss"}
    expected = 1.7 * F.cross_entropy(out.logits, PIDS) + 0.3 * batch_hard_triplet_loss(
        out.pooled, PIDS, margin=0.5
    )
    torch.testing.assert_close(result.loss, expected, rtol=1e-6, atol=0)


def test_location_subset_keeps_only_the_complete_pair() -> None:
    views = _views(locations=("top", "bottom"))
    _, out = _forward(views)
    result = OAMNObjective(mask_loss_scale="paper")(out, PIDS, views)
    batch = len(PIDS)
    g, g_top, g_bottom = (out.g[v * batch : (v + 1) * batch] for v in range(3))
    half = views.area[batch : 2 * batch] == 0.5
    residual = (g_top + g_bottom - g)[half]
    expected = residual.square().sum() / g.numel()  # "mean": / (B * C * H * W)
    torch.testing.assert_close(result.components["mask2"], expected.detach(), rtol=1e-6, atol=0)


def test_an_incomplete_pair_adds_nothing_to_mask2() -> None:
    """Top without bottom: L_mask2 is the left/right term alone (no ``g_top - g`` residual)."""
    views = _views(locations=("top", "left", "right"))
    _, out = _forward(views)
    result = OAMNObjective(mask_loss_scale="paper")(out, PIDS, views)
    batch = len(PIDS)
    g, _, g_left, g_right = (out.g[v * batch : (v + 1) * batch] for v in range(4))
    half = views.area[batch : 2 * batch] == 0.5
    expected = (g_left + g_right - g)[half].square().sum() / g.numel()
    torch.testing.assert_close(result.components["mask2"], expected.detach(), rtol=1e-6, atol=0)


def test_location_set_without_a_pair_has_no_mask2() -> None:
    views = _views(locations=("top", "left"))
    _, out = _forward(views)
    result = OAMNObjective()(out, PIDS, views)
    assert "mask2" not in result.components
    assert "mask1" in result.components


def _mask_gradients(routing: str) -> dict[str, torch.Tensor | None]:
    views = _views()
    model, out = _forward(views, detach_mask_input=routing == "official")
    only_mask = {"loss_triplet": False, "loss_id": False, "loss_score": False}
    objective = OAMNObjective(routing=routing, **only_mask)
    objective(out, PIDS, views).loss.backward()
    return {"encoder": model.encoder.weight.grad, "mask": model.mask.weight.grad}


def test_official_routing_keeps_mask_loss_gradients_out_of_the_encoder() -> None:
    official = _mask_gradients("official")
    assert official["encoder"] is None  # no path at all from L_mask to E^I
    assert torch.count_nonzero(official["mask"]) > 0
    paper = _mask_gradients("paper")
    assert torch.count_nonzero(paper["encoder"]) > 0
    # The mask module's own gradient is the same: only the encoder side is cut.
    torch.testing.assert_close(official["mask"], paper["mask"], rtol=0, atol=0)


def test_routing_changes_gradients_not_values() -> None:
    views = _views()
    _, out = _forward(views)
    paper = OAMNObjective()(out, PIDS, views)
    official = OAMNObjective(routing="official")(out, PIDS, views)
    for name, value in paper.components.items():
        torch.testing.assert_close(official.components[name], value, rtol=0, atol=0)


def test_score_loss_reaches_only_the_grader() -> None:
    views = _views()
    model, out = _forward(views)
    only_score = {"loss_triplet": False, "loss_id": False, "loss_mask": False}
    OAMNObjective(**only_score)(out, PIDS, views).loss.backward()
    assert torch.count_nonzero(model.grader.weight.grad) > 0
    assert model.encoder.weight.grad is None
    assert model.mask.weight.grad is None


def test_low_precision_outputs_are_promoted() -> None:
    views = _views()
    _, out = _forward(views)
    half = SimpleNamespace(**{k: v.detach().bfloat16() for k, v in vars(out).items()})
    result = OAMNObjective()(half, PIDS, views)
    assert result.loss.dtype == torch.float32
    assert torch.isfinite(result.loss)


def test_from_config_copies_the_same_named_fields() -> None:
    config = TrainConfig(lambda_mask=3.0, routing="official", grouped_triplet=False)
    objective = OAMNObjective.from_config(config)
    assert (objective.lambda_mask, objective.routing, objective.grouped_triplet) == (
        3.0,
        "official",
        False,
    )
    assert OAMNObjective.from_config(TrainConfig()) == OAMNObjective()


def test_bad_layouts() -> None:
    views = _views()
    _, out = _forward(views)
    objective = OAMNObjective()
    with pytest.raises(ValueError, match="without views the batch must be the 6 holistic images"):
        objective(out, PIDS)
    with pytest.raises(ValueError, match=r"views were made from 6 images into 30 rows, but pids"):
        objective(out, PIDS[:4], views)
    occluded_only = OcclusionAugmentation(include_holistic=False)(torch.rand(6, 3, 16, 8))
    _, out = _forward(occluded_only)
    with pytest.raises(ValueError, match="the views lack the holistic images"):
        objective(out, PIDS, occluded_only)
    with pytest.raises(ValueError, match=r"pids must be a non-empty \(B,\) tensor"):
        objective(out, PIDS[:0], views)
    with pytest.raises(ValueError, match="routing must be one of"):
        OAMNObjective(routing="two-step")

"""Learning-rate schedule and optimiser groups against hand-written values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from examples.oamn.config import TrainConfig
from examples.oamn.schedule import (
    base_learning_rate,
    build_optimizer,
    group_learning_rates,
    set_learning_rates,
)

# The default schedule, epoch by epoch (docs/METHOD.md §7): warm-up to 0.1 over 10 epochs,
# then 0.1, 1e-3 from epoch 17, 1e-4 from epoch 24.
DEFAULT_RATES = [0.01 * (e + 1) for e in range(10)] + [0.1] * 7 + [1e-3] * 7 + [1e-4] * 6


def test_default_schedule_by_hand() -> None:
    config = TrainConfig()
    rates = [
        base_learning_rate(
            e, config.lr, config.warmup_epochs, config.lr_steps, config.lr_step_values
        )
        for e in range(config.epochs)
    ]
    assert rates == pytest.approx(DEFAULT_RATES, rel=1e-12)


def test_group_multipliers() -> None:
    config = TrainConfig(lr_mult_backbone=0.1, lr_mult_mask=0.5, lr_mult_head=2.0)
    assert group_learning_rates(config, 4) == pytest.approx(
        {"backbone": 0.005, "mask": 0.025, "head": 0.1}
    )
    assert group_learning_rates(config, 20) == pytest.approx(
        {"backbone": 1e-4, "mask": 5e-4, "head": 2e-3}
    )


def test_no_warmup_and_a_step_inside_the_warmup() -> None:
    assert base_learning_rate(0, 0.1, 0) == 0.1
    assert base_learning_rate(3, 0.1, 10, (2,), (0.5,)) == 0.5
    assert base_learning_rate(1, 0.1, 10, (2,), (0.5,)) == pytest.approx(0.02)


def test_negative_epoch() -> None:
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        base_learning_rate(-1, 0.1, 10)


def _groups() -> dict[str, list[nn.Parameter]]:
    return {name: [nn.Parameter(torch.zeros(2))] for name in ("backbone", "mask", "head")}


def test_optimizer_groups_follow_the_schedule() -> None:
    config = TrainConfig()
    optimizer = build_optimizer(_groups(), config)
    assert [g["name"] for g in optimizer.param_groups] == ["backbone", "mask", "head"]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 1e-3, 1e-2])
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    assert set_learning_rates(optimizer, config, 17) == pytest.approx(1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-4, 1e-4, 1e-3])


def test_empty_mask_group_is_left_out() -> None:
    groups = _groups() | {"mask": []}
    optimizer = build_optimizer(groups, TrainConfig())
    assert [g["name"] for g in optimizer.param_groups] == ["backbone", "head"]


def test_wrong_group_names() -> None:
    with pytest.raises(ValueError, match="parameter_groups must have the keys"):
        build_optimizer({"all": [nn.Parameter(torch.zeros(1))]}, TrainConfig())

"""The optimiser and its per-epoch learning rates (docs/METHOD.md §7).

SGD with Nesterov momentum over three parameter groups, ``backbone``, ``mask`` and ``head``
(the model's :meth:`~examples.oamn.model.OAMN.parameter_groups`), whose learning rates are the
base rate times a multiplier (0.1, 0.1, 1 in the paper). The base rate is set once per epoch:

* warm-up, epochs ``e < warmup_epochs``: ``lr * (e + 1) / warmup_epochs`` (linear, reaching
  ``lr`` at the last warm-up epoch; the authors' code started at 0 and reached only 7.2e-4, a
  bug this does not reproduce);
* then ``lr`` until the first of ``lr_steps``, and ``lr_step_values[i]`` from epoch
  ``lr_steps[i]`` on. The paper: 0.1, then 1e-3 from epoch 17 and 1e-4 from epoch 24.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import TrainConfig

__all__ = [
    "GROUP_NAMES",
    "base_learning_rate",
    "build_optimizer",
    "group_learning_rates",
    "set_learning_rates",
]

#: The optimiser's parameter groups, in order; group ``name``'s multiplier is ``lr_mult_{name}``.
GROUP_NAMES = ("backbone", "mask", "head")


def base_learning_rate(
    epoch: int,
    lr: float,
    warmup_epochs: int,
    steps: Sequence[int] = (),
    step_values: Sequence[float] = (),
) -> float:
    """The base learning rate of an epoch (0-based), before the group multipliers.

    A step inside the warm-up wins over it (the warm-up only applies before the first step).

    Example:
        >>> [base_learning_rate(e, 0.1, 10, (17, 24), (1e-3, 1e-4)) for e in (0, 4, 9, 16, 17, 29)]
        [0.01, 0.05, 0.1, 0.1, 0.001, 0.0001]
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    passed = [value for step, value in zip(steps, step_values, strict=True) if epoch >= step]
    if passed:
        return passed[-1]
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    return lr


def group_learning_rates(config: TrainConfig, epoch: int) -> dict[str, float]:
    """The learning rate of each parameter group at ``epoch``: base rate x multiplier.

    Example:
        >>> group_learning_rates(TrainConfig(), 12)
        {'backbone': 0.01, 'mask': 0.01, 'head': 0.1}
    """
    base = _configured_base_rate(config, epoch)
    return {name: base * getattr(config, f"lr_mult_{name}") for name in GROUP_NAMES}


def build_optimizer(
    parameter_groups: dict[str, list[nn.Parameter]], config: TrainConfig
) -> torch.optim.SGD:
    """SGD over the named parameter groups, at epoch 0's learning rates.

    Args:
        parameter_groups: ``{"backbone": [...], "mask": [...], "head": [...]}``, as
            :meth:`~examples.oamn.model.OAMN.parameter_groups` returns; ``mask`` may be empty
            (no mask module).
        config: momentum, Nesterov, weight decay and the schedule.

    Returns:
        ``torch.optim.SGD`` whose ``param_groups`` carry a ``"name"`` key.
    """
    if set(parameter_groups) != set(GROUP_NAMES):
        raise ValueError(
            f"parameter_groups must have the keys {GROUP_NAMES}, got {tuple(parameter_groups)}"
        )
    rates = group_learning_rates(config, 0)
    groups = [
        {"name": name, "params": list(parameter_groups[name]), "lr": rates[name]}
        for name in GROUP_NAMES
        if parameter_groups[name]
    ]
    return torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


def set_learning_rates(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> float:
    """Set each named group's learning rate for ``epoch``; returns the base rate (for logs)."""
    rates = group_learning_rates(config, epoch)
    for group in optimizer.param_groups:
        group["lr"] = rates[group["name"]]
    return _configured_base_rate(config, epoch)


def _configured_base_rate(config: TrainConfig, epoch: int) -> float:
    return base_learning_rate(
        epoch, config.lr, config.warmup_epochs, config.lr_steps, config.lr_step_values
    )

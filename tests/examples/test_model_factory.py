"""The model of a training configuration: OAMN's arguments, defaults and option names."""

from __future__ import annotations

import inspect

import pytest

from examples.oamn.config import TrainConfig
from examples.oamn.model import OAMN
from examples.oamn.model_factory import build_model, model_arguments


def test_oamn_defaults_are_the_training_defaults() -> None:
    """``OAMN(n)`` is the model of ``TrainConfig()``: every argument's default agrees."""
    parameters = inspect.signature(OAMN).parameters
    arguments = model_arguments(TrainConfig())
    assert set(arguments) == set(parameters) - {"num_classes"}
    assert {name: parameters[name].default for name in arguments} == arguments
    assert (arguments["grader"], arguments["detach_mask_input"]) == ("feature_profiles", True)


def test_routing_sets_the_mask_input_detachment() -> None:
    for routing, detached in (("paper", False), ("official", True)):
        config = TrainConfig(backbone="resnet18", height=64, width=32, routing=routing)
        assert build_model(config, num_classes=2).mask.detach_input is detached


def test_errors_name_the_training_options() -> None:
    config = TrainConfig(backbone="resnet18", height=64, width=32, mask_down_ratio=64)
    with pytest.raises(ValueError, match=r"--height 64 --width 32 .* --mask-down-ratio 64"):
        build_model(config, num_classes=2)

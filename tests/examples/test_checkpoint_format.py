"""Checkpoint formats: a file's ``format`` decides how it is read; older formats are migrated,
newer ones refused, and the digest covers the contents as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from examples.oamn.checkpoint import (
    FORMAT_VERSION,
    checkpoint_digest,
    load_checkpoint,
)
from examples.oamn.config import TrainConfig
from tests.examples.helpers_train import write_checkpoint

CONFIG = TrainConfig(backbone="resnet18", height=64, width=32, weights=None, amp="bf16")


def _stored(tmp_path: Path) -> dict[str, Any]:
    """The dict of a checkpoint file written by this version."""
    path = tmp_path / "written.pt"
    write_checkpoint(path, CONFIG, history=[{"epoch": 1}])
    return torch.load(path, weights_only=True)


def _save(state: dict[str, Any], path: Path, *, digest: bool = True) -> Path:
    if digest:
        state["digest"] = checkpoint_digest(state)
    torch.save(state, path)
    return path


def test_a_file_of_this_version_holds_every_field(tmp_path) -> None:
    state = _stored(tmp_path)
    assert state["format"] == FORMAT_VERSION == 2
    checkpoint = load_checkpoint(_save(state, tmp_path / "new.pt", digest=False))
    assert (checkpoint.format, checkpoint.config, checkpoint.epoch) == (2, CONFIG, 1)
    assert checkpoint.history == [{"epoch": 1}]
    assert checkpoint.torch_threads == torch.get_num_threads()
    assert checkpoint.digest == state["digest"]


def test_a_format_1_file_from_before_the_later_keys_and_settings_is_migrated(tmp_path) -> None:
    state = _stored(tmp_path) | {"format": 1}
    for key in ("scaler", "torch_threads", "train_images", "digest"):
        del state[key]
    for key in ("amp", "grader", "mask_loss_scale"):
        del state["config"][key]
    checkpoint = load_checkpoint(_save(state, tmp_path / "old.pt", digest=False))
    assert checkpoint.format == 1
    # What runs trained with before these settings existed, not today's defaults.
    assert (checkpoint.config.amp, checkpoint.config.grader) == ("none", "pooled")
    assert checkpoint.config.mask_loss_scale == "paper"
    assert (checkpoint.scaler, checkpoint.torch_threads, checkpoint.digest) == (None, None, None)


def test_the_digest_of_a_format_1_file_covers_it_as_written(tmp_path) -> None:
    state = _stored(tmp_path) | {"format": 1}
    del state["config"]["grader"]  # the migration fills it in, after the digest is checked
    path = _save(state, tmp_path / "old.pt")
    assert load_checkpoint(path).config.grader == "pooled"
    state["epoch"] = 2  # changed after the digest was written
    with pytest.raises(ValueError, match=r"old.pt is corrupt: its contents do not match"):
        load_checkpoint(_save(state, path, digest=False))


def test_a_format_2_file_without_a_key_is_refused(tmp_path) -> None:
    state = _stored(tmp_path)
    del state["digest"]  # format 2 files always have one: none means not verifiable
    with pytest.raises(ValueError, match=r"not an OAMN training checkpoint \(missing keys \['d"):
        load_checkpoint(_save(state, tmp_path / "stripped.pt", digest=False))


def test_a_newer_format_is_refused_with_the_fix(tmp_path) -> None:
    path = _save(_stored(tmp_path) | {"format": FORMAT_VERSION + 1}, tmp_path / "newer.pt")
    with pytest.raises(
        ValueError,
        match=rf"newer.pt is of format {FORMAT_VERSION + 1}, newer than the formats 1 to "
        rf"{FORMAT_VERSION} that this version of examples.oamn reads: update examples.oamn",
    ):
        load_checkpoint(path, verify=False)


@pytest.mark.parametrize("version", [0, "2"])
def test_a_format_that_no_version_writes_is_refused(tmp_path, version) -> None:
    path = _save(_stored(tmp_path) | {"format": version}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd.pt is not an OAMN training checkpoint \(format"):
        load_checkpoint(path)


def test_a_configuration_of_another_version_is_named(tmp_path) -> None:
    state = _stored(tmp_path)
    state["config"]["learning_rate"] = 0.1
    with pytest.raises(
        ValueError,
        match=r"bad.pt holds a configuration this version of examples.oamn does not accept: "
        r"unknown configuration keys \['learning_rate'\]",
    ):
        load_checkpoint(_save(state, tmp_path / "bad.pt"))

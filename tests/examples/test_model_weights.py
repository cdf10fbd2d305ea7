"""Backbone weights from a local torchvision state dict: values land, bad files say why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from examples.oamn.model import OAMN, build_torchvision_model, load_backbone_weights

MOBILENET_WEIGHTS = Path(__file__).resolve().parents[3] / "shared/weights/mobilenet_v2_imagenet.pth"


def encoder_state(model: OAMN) -> dict[str, torch.Tensor]:
    """The encoders' tensors under their torchvision names (MobileNetV2 without "features.")."""
    return {
        name.split(".", 1)[1]: value
        for name, value in model.state_dict().items()
        if name.startswith(("encoder_low.", "encoder_high."))
    }


def saved_resnet18(folder: Path, **changes: torch.Tensor | None) -> tuple[Path, dict]:
    torch.manual_seed(123)
    state = build_torchvision_model("resnet18").state_dict()
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    path = folder / "resnet18.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("last_stride", [1, 2])
def test_resnet_weights_land_in_both_encoders(tmp_path: Path, last_stride: int) -> None:
    path, state = saved_resnet18(tmp_path)
    model = OAMN(5, "resnet18", "layer2", last_stride, input_size=(128, 64), weights=path)
    loaded = encoder_state(model)
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, atol=0, rtol=0, msg=key)
    # Not a coincidence of the seed: a random model differs.
    assert not torch.equal(
        OAMN(5, "resnet18", input_size=(256, 128)).encoder_low.conv1.weight, state["conv1.weight"]
    )


def test_classifier_of_another_size_is_ignored(tmp_path: Path) -> None:
    path, state = saved_resnet18(tmp_path, **{"fc.weight": torch.zeros(10, 512), "fc.bias": None})
    model = build_torchvision_model("resnet18")
    load_backbone_weights(model, path)
    torch.testing.assert_close(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_files_without_num_batches_tracked_load(tmp_path: Path) -> None:
    # Old torchvision checkpoints predate the BatchNorm counter.
    state = build_torchvision_model("resnet18").state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    model = build_torchvision_model("resnet18")
    load_backbone_weights(model, tmp_path / "old.pth")
    torch.testing.assert_close(model.bn1.weight, state["bn1.weight"])


def test_missing_file_names_it_and_says_no_network(tmp_path: Path) -> None:
    missing = tmp_path / "resnet50_imagenet.pth"
    with pytest.raises(FileNotFoundError, match=r"resnet50_imagenet\.pth.*No network.*--weights"):
        OAMN(5, weights=missing)


def test_weight_enums_are_refused() -> None:
    with pytest.raises(TypeError, match=r"weights must be a path"):
        OAMN(5, weights=1)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"layer1.0.conv1.weight": None}, r"1 missing key\(s\): layer1\.0\.conv1\.weight"),
        ({"head.weight": torch.ones(2)}, r"1 unexpected key\(s\): head\.weight"),
        (
            {"conv1.weight": torch.ones(64, 3, 3, 3)},
            r"another shape.*conv1\.weight \(64, 3, 3, 3\)",
        ),
    ],
)
def test_mismatched_keys_are_listed(tmp_path: Path, changes: dict, match: str) -> None:
    path, _ = saved_resnet18(tmp_path, **changes)
    with pytest.raises(ValueError, match=match):
        load_backbone_weights(build_torchvision_model("resnet18"), path)


def test_wrong_architecture_lists_a_few_keys(tmp_path: Path) -> None:
    path, _ = saved_resnet18(tmp_path)
    with pytest.raises(ValueError, match=r"missing key\(s\): .* and \d+ more.*same torchvision"):
        load_backbone_weights(build_torchvision_model("mobilenet_v2"), path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"does not hold a state dict"):
        load_backbone_weights(build_torchvision_model("resnet18"), tmp_path / "list.pth")


def test_shared_mobilenet_weights_load() -> None:
    if not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"{MOBILENET_WEIGHTS} is absent (the shared weights folder is missing)")
    state = torch.load(MOBILENET_WEIGHTS, weights_only=True)
    model = OAMN(5, "mobilenet_v2", input_size=(256, 128), weights=MOBILENET_WEIGHTS)
    loaded = encoder_state(model)
    assert {f"features.{k}" for k in loaded} == state.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[f"features.{key}"], atol=0, rtol=0, msg=key)

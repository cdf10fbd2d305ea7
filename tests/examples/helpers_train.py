"""A tiny training configuration shared by the training tests (CPU, seconds per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from examples.oamn.config import TrainConfig


def tiny_config(data_root: Path, output_dir: Path, **overrides: Any) -> TrainConfig:
    """MobileNetV2 at 64x32 (a 4x2 feature map, hence the small RGA-S reductions), 2 ids x 2
    images per batch, 2 steps of 1 epoch, no loader workers, on the CPU."""
    values: dict[str, Any] = {
        "dataset": "market1501",
        "data_root": str(data_root),
        "output_dir": str(output_dir),
        "backbone": "mobilenet_v2",
        "height": 64,
        "width": 32,
        "mask_spatial_reduction": 2,
        "mask_down_ratio": 2,
        "ids_per_batch": 2,
        "instances_per_id": 2,
        "workers": 0,
        "epochs": 1,
        "max_steps_per_epoch": 2,
        "progress": False,
        "device": "cpu",
    }
    return TrainConfig(**(values | overrides))

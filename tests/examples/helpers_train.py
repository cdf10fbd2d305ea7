"""A tiny training configuration shared by the training tests (CPU, seconds per run)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from examples.oamn.checkpoint import checkpoint_bytes
from examples.oamn.config import TrainConfig
from examples.oamn.model_factory import build_model

#: MobileNetV2 at 64x32 (a 4x2 feature map, hence the small RGA-S reductions), 2 ids x 2
#: images per batch, 2 steps of 1 epoch, no loader workers, on the CPU, in float32 (not the
#: default "auto": what the tests expect must not depend on this CPU's bfloat16 instructions).
TINY_SETTINGS: dict[str, Any] = {
    "dataset": "market1501",
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
    "amp": "none",
}


def tiny_config(data_root: Path, output_dir: Path, **overrides: Any) -> TrainConfig:
    """:data:`TINY_SETTINGS` with ``overrides``, training on ``data_root`` into ``output_dir``."""
    paths = {"data_root": str(data_root), "output_dir": str(output_dir)}
    return TrainConfig(**(TINY_SETTINGS | paths | overrides))


def tiny_options(data_root: Path, output_dir: Path, **overrides: Any) -> list[str]:
    """The same settings as :func:`tiny_config`, as ``python -m examples.oamn.train`` options."""
    values = TINY_SETTINGS | {"data_root": data_root, "output_dir": output_dir} | overrides
    options = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            options.append(flag if value else "--no-" + flag[2:])
        else:
            options.append(
                f"{flag}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
            )
    return options


def write_checkpoint(
    path: Path, config: TrainConfig, num_classes: int = 3, history: Sequence[dict[str, Any]] = ()
) -> torch.nn.Module:
    """Write a checkpoint of ``config``'s freshly built model after one epoch (SGD state, no
    random-generator states) to ``path``, and return that model."""
    model = build_model(config, num_classes)
    path.write_bytes(
        checkpoint_bytes(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            epoch=1,
            config=config,
            num_classes=num_classes,
            rng_state={},
            history=list(history),
        )
    )
    return model

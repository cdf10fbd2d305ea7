"""The training command line: one option per :class:`~examples.oamn.config.TrainConfig` field.

The options are generated from the dataclass fields (:mod:`~examples.oamn.dataclass_cli`), so
options and fields cannot drift: field ``ids_per_batch`` is ``--ids-per-batch``, a bool
``occlusion`` is ``--occlusion/--no-occlusion``, a tuple is a comma list (``--lr-steps 17,24``),
an optional value takes ``none``. Values are resolved in this order, later ones winning: the
defaults, the configuration of the checkpoint given by ``--resume`` (but for where to write: its
folder), the paper's or the authors' setting named by ``--recipe``
(:data:`~examples.oamn.config.RECIPES`), the JSON file given by ``--config``, the options given
on the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .config import RECIPES, TrainConfig, read_settings
from .dataclass_cli import add_field_options
from .resume import resumed_settings

__all__ = ["config_from_args", "config_parser"]


def config_parser() -> argparse.ArgumentParser:
    """The command-line parser, one option per :class:`TrainConfig` field plus ``--recipe`` and
    ``--config``.

    Options given on the command line are the only ones set in the parsed namespace (the others
    are absent), so a JSON file or a checkpoint's configuration can fill them.
    """
    parser = argparse.ArgumentParser(
        prog="python -m examples.oamn.train",
        description="Train OAMN (Chen et al., ICCV 2021). Defaults are the paper's recipe with "
        "this project's occlusion-awareness remedies (docs/METHOD.md, section 10); --recipe "
        "paper or --recipe authors trains the paper's or the authors' setting.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        help="the paper's or the authors' mask losses, grader and routing instead of the "
        "defaults' (docs/METHOD.md, section 10); --config and explicit options win over it",
    )
    parser.add_argument("--config", help="JSON file of settings (command-line options win)")
    add_field_options(parser, TrainConfig, aliases={"max_steps_per_epoch": ["--max-steps"]})
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Resolve a configuration from command-line arguments.

    Order (later wins): defaults, ``--resume``'s checkpoint configuration (but for its
    ``output_dir``, ``resume`` and ``overwrite``: the run directory is the checkpoint's
    folder; :func:`~examples.oamn.resume.resumed_settings`), ``--recipe``, ``--config`` JSON,
    explicit options.

    Example:
        >>> config = config_from_args(["--backbone", "resnet18", "--lr-steps", "5,8",
        ...                            "--no-occlusion"])
        >>> config.backbone, config.lr_steps, config.occlusion
        ('resnet18', (5, 8), False)
        >>> config = config_from_args(["--recipe", "authors", "--lambda-mask", "2"])
        >>> config.grader, config.mask_loss_scale, config.lambda_mask
        ('pooled', 'paper', 2.0)
    """
    parser = config_parser()
    given = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    try:
        if given.get("resume"):
            values.update(resumed_settings(given["resume"]))
        values.update(RECIPES.get(given.pop("recipe", None), {}))
        config_file = given.pop("config", None)
        if config_file is not None:
            values.update(read_settings(config_file))
    except (FileNotFoundError, ValueError) as error:  # a file's fault: one line, no usage
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    values.update(given)
    try:
        return TrainConfig.from_dict(values)
    except ValueError as error:
        parser.error(str(error))

"""The training command line: one option per :class:`~examples.oamn.config.TrainConfig` field.

The options are generated from the dataclass fields, so options and fields cannot drift: field
``ids_per_batch`` is ``--ids-per-batch``, a bool ``occlusion`` is ``--occlusion/--no-occlusion``,
a tuple is a comma list (``--lr-steps 17,24``), an optional value takes ``none``. Values are
resolved in this order, later ones winning: the defaults, the configuration of the checkpoint
given by ``--resume`` (but for where to write: its folder), the JSON file given by
``--config``, the options given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint
from .config import TrainConfig, read_settings
from .config_checks import optional_type

__all__ = ["config_from_args", "config_parser"]


def config_parser() -> argparse.ArgumentParser:
    """The command-line parser, one option per :class:`TrainConfig` field plus ``--config``.

    Options given on the command line are the only ones set in the parsed namespace (the others
    are absent), so a JSON file or a checkpoint's configuration can fill them.
    """
    parser = argparse.ArgumentParser(
        prog="python -m examples.oamn.train",
        description="Train OAMN (Chen et al., ICCV 2021). Defaults are the paper's recipe but "
        "for the occlusion-awareness remedies (docs/AWARENESS.md).",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="JSON file of settings (command-line options win)")
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for spec in dataclasses.fields(TrainConfig):
        flags = ["--" + spec.name.replace("_", "-")]
        if spec.name == "max_steps_per_epoch":
            flags.append("--max-steps")
        default = getattr(defaults, spec.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        kwargs: dict[str, Any] = {"help": f"{spec.metadata['help']} (default: {shown})"}
        kind = hints[spec.name]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif spec.metadata["choices"]:
            kwargs["choices"] = spec.metadata["choices"]
        else:
            kwargs["type"] = _parse_function(spec.name, kind)
            kwargs["metavar"] = _metavar(kind)
        parser.add_argument(*flags, dest=spec.name, **kwargs)
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Resolve a configuration from command-line arguments.

    Order (later wins): defaults, ``--resume``'s checkpoint configuration (but for its
    ``output_dir``, ``resume`` and ``overwrite``: the run directory is the checkpoint's
    folder), ``--config`` JSON, explicit options.

    Example:
        >>> config = config_from_args(["--backbone", "resnet18", "--lr-steps", "5,8",
        ...                            "--no-occlusion"])
        >>> config.backbone, config.lr_steps, config.occlusion
        ('resnet18', (5, 8), False)
    """
    parser = config_parser()
    given = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    try:
        if given.get("resume"):
            stored = load_checkpoint(given["resume"], verify=False)["config"]
            # Where to write and what to replace are the user's to say, never a checkpoint's.
            values.update({k: v for k, v in stored.items() if k not in _NOT_RESUMED})
            values["output_dir"] = str(Path(given["resume"]).parent)
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


_NOT_RESUMED = ("output_dir", "resume", "overwrite")


def _parse_function(name: str, kind: Any) -> Any:
    """The argparse ``type=`` callable for a field annotated ``kind``."""
    option = "--" + name.replace("_", "-")
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]

        def parse_list(text: str) -> tuple[Any, ...]:
            parts = [part.strip() for part in text.split(",") if part.strip()]
            try:
                return tuple(item(part) for part in parts)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{option} takes a comma list of {item.__name__}, got {text!r}"
                ) from None

        return parse_list
    if isinstance(kind, types.UnionType):  # ``X | None``: "none" or "" means None
        item = optional_type(kind)

        def parse_optional(text: str) -> Any:
            if text.lower() in ("", "none"):
                return None
            try:
                return item(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{option} takes {item.__name__} or none, got {text!r}"
                ) from None

        return parse_optional
    return kind


def _metavar(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "A,B,..."
    if isinstance(kind, types.UnionType):
        kind = optional_type(kind)
    return "TEXT" if kind is str else kind.__name__.upper()

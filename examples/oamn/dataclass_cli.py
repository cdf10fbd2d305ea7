"""Command-line options generated from a dataclass's fields, so options and fields cannot drift.

The training command (:mod:`~examples.oamn.config_cli`, from
:class:`~examples.oamn.config.TrainConfig`) and the evaluation command
(:mod:`~examples.oamn.evaluate`, from :class:`~examples.oamn.evaluation_settings.
EvaluationSettings`) build their options with :func:`add_field_options`: field
``batch_size`` is ``--batch-size``, a bool ``awareness`` is ``--awareness/--no-awareness``, a
field with choices takes one of them, a tuple is a comma list (``--lr-steps 17,24``), an optional
value takes ``none``. Each field's metadata (:func:`option`) holds its help text and choices, and
may replace the generic parsing (``parse``, ``metavar``, ``const`` for a value that may be left
out, ``shown`` for the default as the help prints it) or keep the field off the command line
(``command_line=False``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "add_field_options",
    "command_line_fields",
    "field_values",
    "is_instance",
    "normalize_fields",
    "option",
    "option_flag",
    "optional_type",
]


def optional_type(kind: Any) -> type:
    """``X`` of an ``X | None`` annotation."""
    (item,) = (arg for arg in typing.get_args(kind) if arg is not types.NoneType)
    return item


def is_instance(value: Any, kind: type) -> bool:
    """``isinstance`` as a field's annotation means it: a float field takes an int (JSON and
    Python write whole floats as ints), and neither number takes a bool."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def normalize_fields(instance: Any) -> None:
    """Bring a dataclass instance's values to the forms their annotations give, in place (frozen
    dataclasses too): lists (from JSON or a caller) become tuples, and whole numbers become
    floats in ``float`` and ``tuple[float, ...]`` fields (JSON writes ``1.0`` as ``1``).

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Settings:
        ...     lr: float = 0.1
        ...     steps: tuple[float, ...] = ()
        >>> settings = Settings(lr=1, steps=[2, 0.5])
        >>> normalize_fields(settings)
        >>> settings.lr, settings.steps
        (1.0, (2.0, 0.5))
    """
    hints = typing.get_type_hints(type(instance))
    for spec in dataclasses.fields(instance):
        value = getattr(instance, spec.name)
        if isinstance(value, list):
            value = tuple(value)
        if hints[spec.name] is float and is_instance(value, int):
            value = float(value)
        if hints[spec.name] == tuple[float, ...] and isinstance(value, tuple):
            value = tuple(float(v) if is_instance(v, int) else v for v in value)
        object.__setattr__(instance, spec.name, value)


def option(
    default: Any,
    help: str,
    choices: Sequence[Any] | None = None,
    *,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    const: Any = None,
    shown: str | None = None,
    command_line: bool = True,
) -> Any:
    """A dataclass field whose metadata says how its command-line option looks.

    Args:
        default: the field's default (an immutable value).
        help: the option's help text; the generated help adds ``(default: ...)``.
        choices: the values allowed, or ``None``.
        parse: the option's ``type=`` callable, in place of the one the annotation gives.
        metavar: the option's value as the usage line shows it.
        const: the value of the option given without a value (``nargs="?"``), or ``None``:
            a value is needed.
        shown: the default as the help prints it, in place of the field's default.
        command_line: ``False`` keeps the field off the command line (a setting that only a
            library call, or the command itself, gives).

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Settings:
        ...     batch_size: int = option(128, "images per forward pass")
        >>> parser = argparse.ArgumentParser(prog="demo")
        >>> add_field_options(parser, Settings, with_defaults=True)
        >>> parser.parse_args(["--batch-size", "4"]).batch_size, parser.parse_args([]).batch_size
        (4, 128)
    """
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices else None,
        "parse": parse,
        "metavar": metavar,
        "const": const,
        "shown": shown,
        "command_line": command_line,
    }
    return dataclasses.field(default=default, metadata=metadata)


def option_flag(name: str) -> str:
    """The command-line option of field ``name``.

    Example:
        >>> option_flag("awareness_seed")
        '--awareness-seed'
    """
    return "--" + name.replace("_", "-")


def command_line_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    """The fields of dataclass ``cls`` that have a command-line option."""
    return tuple(
        spec for spec in dataclasses.fields(cls) if spec.metadata.get("command_line", True)
    )


def add_field_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    aliases: Mapping[str, Iterable[str]] | None = None,
    with_defaults: bool = False,
) -> None:
    """Add one option per command-line field of dataclass ``cls`` to ``parser`` (``dest``: the
    field's name), in field order.

    Args:
        parser: the parser to extend.
        cls: a dataclass whose fields carry :func:`option`'s metadata (at least ``help`` and
            ``choices``) and whose every field has a default.
        aliases: more flags of a field, by field name (e.g. ``{"max_steps_per_epoch":
            ["--max-steps"]}``).
        with_defaults: give each option its field's default; otherwise an absent option gets
            the parser's ``argument_default`` (``argparse.SUPPRESS``: absent from the
            namespace, so that another source may fill it).
    """
    hints = typing.get_type_hints(cls)
    defaults = cls()
    aliases = aliases or {}
    for spec in command_line_fields(cls):
        metadata = spec.metadata
        default = getattr(defaults, spec.name)
        shown = metadata.get("shown") or (
            ",".join(map(str, default)) if isinstance(default, tuple) else default
        )
        kwargs: dict[str, Any] = {"help": f"{metadata['help']} (default: {shown})"}
        if with_defaults:
            kwargs["default"] = default
        kind = hints[spec.name]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif metadata["choices"]:
            kwargs["choices"] = metadata["choices"]
        else:
            kwargs["type"] = metadata.get("parse") or _parse_function(spec.name, kind)
            kwargs["metavar"] = metadata.get("metavar") or _metavar(kind)
        if metadata.get("const") is not None:
            kwargs.update(nargs="?", const=metadata["const"])
        flags = [option_flag(spec.name), *aliases.get(spec.name, ())]
        parser.add_argument(*flags, dest=spec.name, **kwargs)


def field_values(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values ``namespace`` holds for the command-line fields of dataclass ``cls``."""
    given = vars(namespace)
    return {spec.name: given[spec.name] for spec in command_line_fields(cls) if spec.name in given}


def _parse_function(name: str, kind: Any) -> Any:
    """The argparse ``type=`` callable for a field annotated ``kind``."""
    flag = option_flag(name)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]

        def parse_list(text: str) -> tuple[Any, ...]:
            parts = [part.strip() for part in text.split(",") if part.strip()]
            try:
                return tuple(item(part) for part in parts)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{flag} takes a comma list of {item.__name__}, got {text!r}"
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
                    f"{flag} takes {item.__name__} or none, got {text!r}"
                ) from None

        return parse_optional
    return kind


def _metavar(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "A,B,..."
    if isinstance(kind, types.UnionType):
        kind = optional_type(kind)
    return "TEXT" if kind is str else kind.__name__.upper()

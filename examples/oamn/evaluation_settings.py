r"""What an evaluation computes, and how: :class:`EvaluationSettings`, checked on construction.

The settings travel whole to :func:`~examples.oamn.evaluation.evaluation_report` and the
functions it composes (:func:`~examples.oamn.extraction.extract_for_evaluation`,
:func:`~examples.oamn.awareness.awareness_report`); what they run on (the model, its input size,
the images, the dataset folder, the device, the output files) is passed beside them. The
evaluation command's options are generated from the fields
(:func:`~examples.oamn.dataclass_cli.add_field_options`): field ``awareness_seed`` is
``--awareness-seed``, bool ``two_sided`` is ``--two-sided/--no-two-sided``. A few fields have no
option: the command takes ``none_weight`` (and, unless ``--workers`` is given, ``workers``) from
the checkpoint's training configuration (:meth:`EvaluationSettings.for_checkpoint`), and
``metric``, ``max_rank`` and ``thresholds`` keep their defaults there (eq. 8's thresholds, a
50-rank CMC, Euclidean distances of the L2-normalised features).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oamn.reid_eval import AP_KINDS, BANK_STRATEGIES, BOUNDARIES, METRICS, REPORTED_RANKS

from .config import TrainConfig
from .dataclass_cli import (
    command_line_fields,
    is_instance,
    normalize_fields,
    option,
    option_flag,
)
from .precision import AMP_MODES

__all__ = [
    "DEFAULT_RERANK",
    "EvaluationSettings",
    "check_strategies",
    "parse_rerank",
    "parse_strategies",
]


#: ``--rerank`` without a value: the k1, k2, lambda of Zhong et al. (CVPR 2017).
DEFAULT_RERANK: tuple[int, int, float] = (20, 6, 0.3)


def parse_rerank(text: str) -> tuple[int, int, float]:
    """``"20,6,0.3"`` -> ``(20, 6, 0.3)``: k-reciprocal re-ranking's ``k1, k2, lambda_value``.

    Raises:
        argparse.ArgumentTypeError: not three comma-separated numbers, ``k1`` or ``k2`` not an
            integer ``>= 1``, or ``lambda_value`` outside ``[0, 1]``.

    Example:
        >>> parse_rerank("20,6,0.3"), parse_rerank(" 10, 3, 0 ")
        ((20, 6, 0.3), (10, 3, 0.0))
    """
    expected = argparse.ArgumentTypeError(
        f"{text!r}: expected K1,K2,LAMBDA with integers K1, K2 >= 1 and LAMBDA in [0, 1], "
        "e.g. 20,6,0.3"
    )
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3:
        raise expected
    try:
        rerank = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        raise expected from None
    if not _valid_rerank(rerank):
        raise expected
    return rerank


def parse_strategies(text: str) -> tuple[str, ...]:
    """``"mask_swap,feature"`` -> ``("mask_swap", "feature")``; ``"none"`` or ``""`` -> ``()``.

    Raises:
        argparse.ArgumentTypeError: an unknown or repeated name.

    Example:
        >>> parse_strategies("feature, mask_swap"), parse_strategies("none")
        (('feature', 'mask_swap'), ())
    """
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if names == ("none",):
        return ()
    unknown = [name for name in names if name not in BANK_STRATEGIES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown bank strategies {unknown}; choose from {','.join(BANK_STRATEGIES)} "
            "(comma-separated) or 'none'"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"repeated bank strategies in {text!r}")
    return names


def check_strategies(strategies: Sequence[str]) -> None:
    """Raise ``ValueError`` for an unknown (not in :data:`oamn.reid_eval.BANK_STRATEGIES`) or
    repeated bank strategy.

    Example:
        >>> check_strategies(["band", "band"])
        Traceback (most recent call last):
        ...
        ValueError: strategies must not repeat, got ['band', 'band']
    """
    unknown = [s for s in strategies if s not in BANK_STRATEGIES]
    if unknown:
        raise ValueError(f"unknown bank strategies {unknown}; choose from {BANK_STRATEGIES}")
    if len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies must not repeat, got {list(strategies)}")


@dataclass(frozen=True)
class EvaluationSettings:
    r"""Every setting of an evaluation; the defaults are those of ``python -m
    examples.oamn.evaluate``.

    Each field's help (its command-line option's) says what it does. ``workers=None`` is the
    training configuration's number, which :meth:`for_checkpoint` fills in (the loaders read
    ``None`` as 0, the main process: :attr:`loader_workers`). Lists become tuples and whole
    numbers of float fields floats; every value is checked on construction, and a bad one
    raises ``ValueError`` naming the field and its command-line option (``batch_size
    (--batch-size) must be an int >= 1, got 0``).

    Example:
        >>> settings = EvaluationSettings(strategies=["feature"], two_sided=False, workers=0)
        >>> settings.strategies, settings.awareness, settings.amp, settings.thresholds
        (('feature',), True, 'auto', (0.5, 0.75))
        >>> EvaluationSettings(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: batch_size (--batch-size) must be an int >= 1, got 0
    """

    strategies: tuple[str, ...] = option(
        BANK_STRATEGIES,
        "comma-separated gallery-bank strategies of the unified rows, or 'none' for no unification",
        parse=parse_strategies,
        metavar="STRATEGIES",
    )
    two_sided: bool = option(True, "the two-sided unified rows (a query bank per strategy)")
    awareness: bool = option(
        True,
        "the mask and grader awareness measurement (examples.oamn.awareness) and, on the "
        "synthetic benchmark, the true-type rows",
    )
    awareness_seed: int = option(0, "seed of the augmentation bands of the awareness measurement")
    batch_size: int = option(128, "images per forward pass")
    workers: int | None = option(
        None,
        "loader worker processes (0: in the main process; none: the training config's)",
        shown="the training config's",
    )
    amp: str = option(
        "auto",
        "autocast dtype of the forward passes: auto (bf16 where the device has bfloat16 "
        "arithmetic, float32 elsewhere), none (float32), bf16, or fp16 (CUDA only)",
        AMP_MODES,
    )
    ap: str = option(
        "step", "AP formula: step (usual) or trapezoid (the authors' code, lower)", AP_KINDS
    )
    boundary: str = option(
        "paper", "grader thresholds' boundary convention (docs/METHOD.md §4)", BOUNDARIES
    )
    rerank: tuple[int, int, float] | None = option(
        None,
        "add k-reciprocal re-ranked rows (Zhong et al. 2017, oamn.reid_eval.rerank; within each "
        "query's type for the unified rows); the value defaults to 20,6,0.3",
        parse=parse_rerank,
        metavar="K1,K2,LAMBDA",
        const=DEFAULT_RERANK,
        shown="no re-ranking",
    )
    num_figures: int = option(6, "queries shown in the figures")
    progress: bool = option(True, "show the progress bars")
    # No option: the ranking's distance and length, eq. 8's thresholds, the checkpoint's prior
    # shift.
    metric: str = option(
        "euclidean",
        "distance of the rankings (OAMN's features are L2-normalised, so euclidean and cosine "
        "rank alike)",
        METRICS,
        command_line=False,
    )
    max_rank: int = option(
        50, f"length of the reported CMC curve, >= {max(REPORTED_RANKS)}", command_line=False
    )
    thresholds: tuple[float, float] = option(
        (0.5, 0.75), "the grader thresholds (low, high) of paper eq. 8", command_line=False
    )
    none_weight: float = option(
        1.0,
        "a 9-way grader's 'none' probability is multiplied by it and the queries' scores "
        "renormalised before anything reads them (examples.oamn.occluder_labels.reweight_none); "
        "1 leaves them",
        command_line=False,
    )

    def __post_init__(self) -> None:
        normalize_fields(self)
        _check_settings(self)

    @property
    def loader_workers(self) -> int:
        """The loaders' worker processes: ``workers``, or 0 (the main process) where it is
        ``None`` because no training configuration filled it (:meth:`for_checkpoint`)."""
        return 0 if self.workers is None else self.workers

    def for_checkpoint(self, config: TrainConfig) -> EvaluationSettings:
        """These settings for a checkpoint trained under ``config``: its ``workers`` where
        ``workers`` is ``None``, and its ``grader_none_weight`` as ``none_weight`` (chosen on its
        validation identities).

        Example:
            >>> config = TrainConfig(workers=2, grader_none_weight=0.5)
            >>> settings = EvaluationSettings().for_checkpoint(config)
            >>> settings.workers, settings.none_weight, settings.batch_size
            (2, 0.5, 128)
        """
        workers = config.workers if self.workers is None else self.workers
        return dataclasses.replace(self, workers=workers, none_weight=config.grader_none_weight)


def _named(name: str) -> str:
    """A field as the errors name it: with its command-line option where it has one."""
    options = {spec.name for spec in command_line_fields(EvaluationSettings)}
    return f"{name} ({option_flag(name)})" if name in options else name


def _check_settings(settings: EvaluationSettings) -> None:
    """Raise ``ValueError`` naming the field (and its option) for the first bad value."""
    for spec in dataclasses.fields(settings):
        choices, value = spec.metadata["choices"], getattr(settings, spec.name)
        if choices and value not in choices:
            raise ValueError(f"{_named(spec.name)} must be one of {choices}, got {value!r}")
    for name in ("two_sided", "awareness", "progress"):
        if not isinstance(getattr(settings, name), bool):
            raise ValueError(
                f"{_named(name)} must be True or False, got {getattr(settings, name)!r}"
            )
    if not is_instance(settings.awareness_seed, int):
        raise ValueError(
            f"{_named('awareness_seed')} must be an int, got {settings.awareness_seed!r}"
        )
    lowest = {"batch_size": 1, "num_figures": 1, "max_rank": max(REPORTED_RANKS), "workers": 0}
    for name, low in lowest.items():
        value = getattr(settings, name)
        if value is None and name == "workers":  # filled by for_checkpoint
            continue
        if not is_instance(value, int) or value < low:
            raise ValueError(f"{_named(name)} must be an int >= {low}, got {value!r}")
    strategies = settings.strategies
    if not isinstance(strategies, tuple) or not all(isinstance(s, str) for s in strategies):
        raise ValueError(f"{_named('strategies')} must be a list of names, got {strategies!r}")
    try:
        check_strategies(strategies)
    except ValueError as error:
        raise ValueError(f"{_named('strategies')}: {error}") from None
    if settings.rerank is not None and not _valid_rerank(settings.rerank):
        raise ValueError(
            f"{_named('rerank')} must be (k1, k2, lambda) with integers k1, k2 >= 1 and lambda "
            f"in [0, 1], got {settings.rerank!r}"
        )
    _check_numbers(settings)


def _check_numbers(settings: EvaluationSettings) -> None:
    thresholds = settings.thresholds
    pair = isinstance(thresholds, tuple) and len(thresholds) == 2
    if not pair or not all(is_instance(t, float) and math.isfinite(t) for t in thresholds):
        raise ValueError(
            f"{_named('thresholds')} must be a (low, high) pair of finite numbers, "
            f"got {thresholds!r}"
        )
    if thresholds[0] > thresholds[1]:
        raise ValueError(f"{_named('thresholds')} must have low <= high, got {thresholds}")
    weight = settings.none_weight
    if not is_instance(weight, float) or not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"{_named('none_weight')} must be a finite number > 0, got {weight!r}")


def _valid_rerank(rerank: Any) -> bool:
    """Whether ``rerank`` is ``(k1, k2, lambda_value)`` with integers ``k1, k2 >= 1`` and
    ``lambda_value`` in ``[0, 1]``."""
    if not isinstance(rerank, tuple) or len(rerank) != 3:
        return False
    k1, k2, lambda_value = rerank
    neighbours = all(is_instance(k, int) and k >= 1 for k in (k1, k2))
    return neighbours and is_instance(lambda_value, float) and 0 <= lambda_value <= 1

r"""One trained model's whole evaluation: ranking rows and occlusion awareness, as one report.

Composes :mod:`examples.oamn.inference` (features, banks, the metric rows) and
:mod:`examples.oamn.awareness` (mask and grader against known occlusions); the evaluation CLI,
the demo and the awareness study all call :func:`evaluation_report`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch
from torch import nn

from .awareness import awareness_report
from .data import ReIDItem
from .inference import EvaluationFeatures, extract_for_evaluation, metrics_report
from .model import BANK_STRATEGIES

__all__ = ["evaluation_report"]


def evaluation_report(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    data_root: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    device: str | torch.device,
    batch_size: int,
    workers: int,
    strategies: Sequence[str] = BANK_STRATEGIES,
    two_sided: bool = True,
    awareness: bool = True,
    awareness_seed: int = 0,
    amp: str | None = None,
    ap: str = "step",
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
    rerank: tuple[int, int, float] | None = None,
    progress: bool = True,
) -> tuple[dict, EvaluationFeatures]:
    r"""Extract features and banks, measure awareness, and compute every metric row.

    Args:
        model: an OAMN model on ``device``.
        query_items: the query images.
        gallery_items: the gallery images.
        data_root: the dataset folder (a synthetic benchmark's manifest there adds the
            true-type rows and the real-occluder awareness).
        height: input height of the model.
        width: input width.
        device: where the forward passes run.
        batch_size: images per forward pass.
        workers: loader worker processes.
        strategies: bank strategies of the unified rows (empty: no unification).
        two_sided: add the two-sided rows (a query bank per strategy).
        awareness: measure the mask and the grader (:func:`~examples.oamn.awareness.
            awareness_report`); ``False`` also drops the true-type rows.
        awareness_seed: seed of the augmentation bands of the awareness measurement.
        amp: ``None``, ``"none"``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        ap: ``"step"`` or ``"trapezoid"``.
        thresholds: grader thresholds (paper eq. 8).
        boundary: their boundary convention.
        rerank: ``(k1, k2, lambda_value)``: add re-ranked rows, see
            :func:`~examples.oamn.inference.metrics_report`; ``None``: none.
        progress: show progress bars.

    Returns:
        ``(report, features)``: :func:`~examples.oamn.inference.metrics_report`'s dict with
        ``"awareness"`` added (and ``"seconds"["awareness"]``), and the extracted features.
    """
    features = extract_for_evaluation(
        model,
        query_items,
        gallery_items,
        height=height,
        width=width,
        device=device,
        batch_size=batch_size,
        workers=workers,
        strategies=strategies,
        unify=bool(strategies),
        two_sided=two_sided,
        amp=amp,
        progress=progress,
    )
    awareness_part, true_types = None, None
    if awareness:
        started = time.perf_counter()
        awareness_part, true_types = awareness_report(
            model,
            query_items,
            features.query.grader_scores,
            data_root,
            height=height,
            width=width,
            device=device,
            batch_size=batch_size,
            workers=workers,
            seed=awareness_seed,
            thresholds=thresholds,
            boundary=boundary,
            progress=progress,
        )
        features.seconds["awareness"] = time.perf_counter() - started
    report = metrics_report(
        features,
        ap=ap,
        thresholds=thresholds,
        boundary=boundary,
        true_types=true_types,
        rerank=rerank,
    )
    if awareness_part is not None:
        report["awareness"] = awareness_part
    return report, features

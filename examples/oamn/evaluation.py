r"""One trained model's whole evaluation: ranking rows and occlusion awareness, as one report.

:func:`evaluation_report` composes :mod:`examples.oamn.extraction` (features and banks),
:mod:`examples.oamn.awareness` (mask and grader against known occlusions) and
:mod:`examples.oamn.reporting` (the metric rows), as an
:class:`~examples.oamn.evaluation_settings.EvaluationSettings` says; the model, its input size,
the images, the dataset folder and the device are passed beside it. The evaluation CLI, the
demo, the awareness study and the ablation (through :func:`evaluate_model`, the report alone)
all call it. The evaluation CLI writes its result with :func:`write_evaluation`, then its
figures with :func:`write_evaluation_figures`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .awareness import awareness_report
from .config import TrainConfig
from .data import ReIDDataset, ReIDItem
from .evaluation_settings import EvaluationSettings
from .extraction import EvaluationFeatures, extract_for_evaluation
from .occluder_labels import reweight_none
from .reporting import library_versions, metrics_report
from .run_files import make_parent, write_json
from .summary_figures import save_awareness_figure
from .visualize import save_figures

__all__ = ["evaluate_model", "evaluation_report", "write_evaluation", "write_evaluation_figures"]


def evaluation_report(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    data_root: str | os.PathLike[str] | None = None,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    settings: EvaluationSettings,
) -> tuple[dict, EvaluationFeatures]:
    r"""Extract features and banks, measure awareness if asked, and compute every metric row.

    Args:
        model: an OAMN model on ``device``.
        query_items: the query images.
        gallery_items: the gallery images.
        data_root: the dataset folder (with ``settings.awareness``, a synthetic benchmark's
            manifest there adds the true-type rows and the real-occluder awareness), or
            ``None``.
        height: input height of the model.
        width: input width.
        device: where the forward passes run.
        settings: what to compute and how (:class:`~examples.oamn.evaluation_settings.
            EvaluationSettings`): the bank ``strategies`` of the unified rows (empty: no
            unification) and ``two_sided``; ``awareness`` (measure the mask and the grader,
            :func:`~examples.oamn.awareness.awareness_report`; off also drops the true-type
            rows) and ``awareness_seed``; ``metric``, ``max_rank``, ``ap``, ``thresholds``,
            ``boundary`` and ``rerank`` of :func:`~examples.oamn.reporting.metrics_report`;
            ``none_weight`` (a 9-way grader's "none" probability is multiplied by it and the
            queries' scores renormalised before anything reads them,
            :func:`~examples.oamn.occluder_labels.reweight_none`); ``amp``, ``batch_size``,
            ``workers`` and ``progress`` for the forward passes.

    Returns:
        ``(report, features)``: :func:`~examples.oamn.reporting.metrics_report`'s dict (with
        ``awareness``, ``"awareness"`` added and ``"seconds"["awareness"]``), and the features
        of :func:`~examples.oamn.extraction.extract_for_evaluation` it was computed from.

    Raises:
        ValueError: empty item lists, or ``amp`` ``"fp16"`` off CUDA (before any
            extraction); see the functions above for the others.
    """
    size = {"height": height, "width": width, "device": device}
    features = extract_for_evaluation(model, query_items, gallery_items, **size, settings=settings)
    if settings.none_weight != 1:
        scores = reweight_none(features.query.grader_scores, settings.none_weight)
        features = dataclasses.replace(
            features, query=dataclasses.replace(features.query, grader_scores=scores)
        )
    awareness_part, true_types = None, None
    if settings.awareness:
        started = time.perf_counter()
        awareness_part, true_types = awareness_report(
            model, query_items, features.query.grader_scores, data_root, **size, settings=settings
        )
        features.seconds["awareness"] = time.perf_counter() - started
    report = metrics_report(
        features,
        metric=settings.metric,
        max_rank=settings.max_rank,
        ap=settings.ap,
        thresholds=settings.thresholds,
        boundary=settings.boundary,
        true_types=true_types,
        rerank=settings.rerank,
    )
    if awareness_part is not None:
        report["awareness"] = awareness_part
    return report, features


def evaluate_model(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    **context: Any,
) -> dict:
    r"""The report of :func:`evaluation_report` alone (its other arguments, ``context``, by
    keyword), for callers that draw nothing from the features.

    Example (with a trained ``model`` and a loaded ``dataset``)::

        settings = EvaluationSettings(strategies=("mask_swap",), awareness=False, workers=4)
        report = evaluate_model(model, dataset.query, dataset.gallery, height=256, width=128,
                                device="cuda", settings=settings)
        print(report["rows"]["unified_mask_swap"]["mAP"])
    """
    report, _ = evaluation_report(model, query_items, gallery_items, **context)
    return report


def write_evaluation(
    output: str | os.PathLike[str],
    report: dict,
    config: TrainConfig,
    dataset: ReIDDataset,
    *,
    settings: EvaluationSettings,
    dataset_name: str,
    data_root: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    device: torch.device,
    command: str,
) -> dict:
    r"""Write a checkpoint's evaluation as strict JSON, with what it was measured on.

    Args:
        output: the JSON file to write (atomically, :func:`~examples.oamn.run_files.
            write_json`; its folder is created).
        report: the model's :func:`evaluation_report`.
        config: its training configuration (recorded whole).
        dataset: the test dataset the report was computed on.
        settings: the settings the report was computed with; its ``amp``, the autocast mode
            the forward passes ran under (``"auto"`` resolved), is recorded.
        dataset_name: the dataset's name, as recorded.
        data_root: its folder, as recorded.
        checkpoint: the checkpoint's path, as recorded.
        device: where the forward passes ran.
        command: the command line, as recorded.

    Returns:
        What the JSON holds: ``"command"``, ``"checkpoint"``, ``"dataset"`` (name, root, the
        numbers of query and gallery images and identities), ``"device"``, ``"amp"``,
        ``"config"``, ``"versions"`` (:func:`~examples.oamn.reporting.library_versions`) and
        the report's keys (its ``"settings"``: those of the metrics).

    Raises:
        OSError: ``output`` cannot be written (the error names it); ``NotADirectoryError``
            when a file stands where its folder should be.
    """
    result = {
        "command": command,
        "checkpoint": str(checkpoint),
        "dataset": {
            "name": dataset_name,
            "root": str(data_root),
            "num_query": len(dataset.query),
            "num_gallery": len(dataset.gallery),
            "num_query_ids": len({item.pid for item in dataset.query}),
            "num_gallery_ids": len({item.pid for item in dataset.gallery}),
        },
        "device": str(device),
        "amp": settings.amp,
        "config": config.to_dict(),
        "versions": library_versions(),
        **report,
    }
    make_parent(output)
    write_json(output, result)
    return result


def write_evaluation_figures(
    output: str | os.PathLike[str],
    result: dict,
    features: EvaluationFeatures,
    model: nn.Module,
    dataset: ReIDDataset,
    folder: str | os.PathLike[str],
    *,
    device: torch.device,
    num_figures: int = 6,
) -> dict:
    r"""Draw the figures of an evaluation :func:`write_evaluation` wrote, then add their paths
    to its JSON.

    The metrics are written first so that a figure that cannot be written (a full disk) loses
    none of them; each PNG is written atomically.

    Args:
        output: the evaluation's JSON file.
        result: what it holds (:func:`write_evaluation`'s return).
        features: the features its report was computed from.
        model: the checkpoint's model, on ``device`` (for the attention maps).
        dataset: the test dataset.
        folder: the folder of the PNGs (created): ranked lists and attention maps
            (:func:`~examples.oamn.visualize.save_figures`) and, when the report has one,
            the awareness.
        device: where the attention maps' forward passes run.
        num_figures: queries shown (their occlusion types with the report's grader
            thresholds and boundary convention).

    Returns:
        ``result`` with ``"figures"``, the paths written.

    Raises:
        OSError: a figure (or the JSON) cannot be written; the error names the file, and the
            JSON keeps the metrics.
    """
    folder = Path(folder)
    paths = save_figures(
        model,
        features,
        dataset.query,
        dataset.gallery,
        folder,
        height=result["config"]["height"],
        width=result["config"]["width"],
        device=device,
        num_queries=num_figures,
        thresholds=tuple(result["settings"]["thresholds"]),
        boundary=result["settings"]["boundary"],
    )
    if "awareness" in result:
        paths.append(save_awareness_figure(result["awareness"], folder / "awareness.png"))
    result = {**result, "figures": [str(path) for path in paths]}
    write_json(output, result)
    return result

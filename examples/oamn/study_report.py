"""The study's summary over seeds and its tables (:mod:`examples.oamn.study`).

Per variant, each summary number (:data:`SUMMARY`) and unification gain (:data:`GAINS`) as the
mean, sample standard deviation and count over seeds; a Markdown table of them, and one of the
paired 95 % intervals of the gains over the same queries.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import torch

from oamn.occlusion_aug import BAND_LOCATIONS

from .intervals import paired_difference_interval

__all__ = ["GAINS", "SUMMARY", "format_intervals", "format_markdown", "slim", "summarise"]

#: The summary numbers per run: name -> path of keys into the run's evaluation report.
SUMMARY: dict[str, tuple[str, ...]] = {
    "R1 plain": ("rows", "plain", "R1"),
    "mAP plain": ("rows", "plain", "mAP"),
    "R1 band": ("rows", "unified_band", "R1"),
    "R1 band two-sided": ("rows", "unified_band_two_sided", "R1"),
    "R1 band true types": ("rows", "unified_band_true", "R1"),
    "R1 band two-sided true types": ("rows", "unified_band_two_sided_true", "R1"),
    "R1 band two-sided located": ("rows", "unified_band_two_sided_located", "R1"),
    "mAP band two-sided": ("rows", "unified_band_two_sided", "mAP"),
    "R1 band soft": ("rows", "unified_band_soft", "R1"),
    "R1 band two-sided soft": ("rows", "unified_band_two_sided_soft", "R1"),
    "R1 feature": ("rows", "unified_feature", "R1"),
    "R1 mask swap": ("rows", "unified_mask_swap", "R1"),
    "mask mean": ("awareness", "augmented", "mask", "all", "mask_mean"),
    "band/visible (augmented)": (
        "awareness",
        "augmented",
        "mask",
        "occluded",
        "band_to_visible",
    ),
    "band/visible (real occluders)": (
        "awareness",
        "synthetic_queries",
        "mask",
        "occluded",
        "band_to_visible",
    ),
    "grader location (augmented)": ("awareness", "augmented", "grader", "location_accuracy"),
    "grader argmax location (augmented)": (
        "awareness",
        "augmented",
        "grader",
        "argmax_location_accuracy",
    ),
    "grader type (augmented)": ("awareness", "augmented", "grader", "type_accuracy"),
    "grader none (augmented)": ("awareness", "augmented", "grader", "none_accuracy"),
    "grader location (real occluders)": (
        "awareness",
        "synthetic_queries",
        "grader",
        "location_accuracy",
    ),
    "grader argmax location (real occluders)": (
        "awareness",
        "synthetic_queries",
        "grader",
        "argmax_location_accuracy",
    ),
    "grader type (real occluders)": (
        "awareness",
        "synthetic_queries",
        "grader",
        "type_accuracy",
    ),
    "labelled: typed none": ("awareness", "labelled_real_occluders", "none_rate"),
    "labelled: location": ("awareness", "labelled_real_occluders", "location_accuracy"),
    "labelled: exact type": ("awareness", "labelled_real_occluders", "type_accuracy"),
    **{
        f"labelled: {side} recall": (
            "awareness",
            "labelled_real_occluders",
            "side_recall",
            side,
            "recall",
        )
        for side in BAND_LOCATIONS
    },
    "labelled: constant bottom": ("awareness", "labelled_real_occluders", "constant_bottom"),
    "labelled none read as none": ("awareness", "labelled_real_occluders", "none_accuracy"),
    "val band/visible": ("validation", "augmented", "mask", "occluded", "band_to_visible"),
    "val grader location": ("validation", "augmented", "grader", "location_accuracy"),
    "val grader type": ("validation", "augmented", "grader", "type_accuracy"),
    "val holistic read as none": ("validation", "augmented", "grader", "none_accuracy"),
    "val labelled: typed none": ("validation", "labelled_real_occluders", "none_rate"),
    "val labelled: location": ("validation", "labelled_real_occluders", "location_accuracy"),
    "val labelled none read as none": (
        "validation",
        "labelled_real_occluders",
        "none_accuracy",
    ),
    "val mAP": ("validation", "val_mAP"),
}


#: Unification gains per run: name -> the unified row whose R1 is compared with the plain row's.
GAINS: dict[str, str] = {
    "gain band": "unified_band",
    "gain band two-sided": "unified_band_two_sided",
    "gain band true types": "unified_band_true",
    "gain band two-sided true types": "unified_band_two_sided_true",
    "gain band two-sided located": "unified_band_two_sided_located",
    "gain band soft": "unified_band_soft",
    "gain band two-sided soft": "unified_band_two_sided_soft",
    "gain feature": "unified_feature",
    "gain mask swap": "unified_mask_swap",
}


def summarise(runs: Mapping[str, Mapping[str, dict]]) -> dict[str, dict[str, dict]]:
    r"""Per variant and summary number (:data:`SUMMARY`, then the R1 gains of :data:`GAINS`,
    computed per seed): mean, sample sd, count and the values over seeds.

    Example:
        >>> runs = {"v": {"0": {"rows": {"plain": {"R1": 0.5}}},
        ...               "1": {"rows": {"plain": {"R1": 0.7}}}}}
        >>> summarise(runs)["v"]["R1 plain"]
        {'mean': 0.6, 'sd': 0.1414, 'n': 2, 'values': [0.5, 0.7]}
    """
    summary = {}
    for variant, seeds in runs.items():
        reports = list(seeds.values())
        columns = {
            name: [_lookup(report, path) for report in reports] for name, path in SUMMARY.items()
        }
        columns["queries typed none"] = [_typed_none(report) for report in reports]
        for name, row in GAINS.items():
            columns[name] = [_gain(report, row) for report in reports]
        numbers = {}
        for name, column in columns.items():
            values = [value for value in column if value is not None]
            if values:
                numbers[name] = _statistics(values)
        summary[variant] = numbers
    return summary


def _gain(report: dict, row: str) -> float | None:
    """R1 of ``row`` minus R1 without unification, or ``None`` if either is missing."""
    unified, plain = _lookup(report, ("rows", row, "R1")), _lookup(report, ("rows", "plain", "R1"))
    return None if unified is None or plain is None else unified - plain


def _typed_none(report: dict) -> float | None:
    """The share of the queries whose predicted type is "none"."""
    count, total = _lookup(report, ("query_types", "none")), _lookup(report, ("num_query",))
    return None if count is None or not total else count / total


def _statistics(values: list[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "n": len(values),
        "values": [round(v, 4) for v in values],
    }


def format_markdown(summary: Mapping[str, Mapping[str, dict]]) -> str:
    """The summary as a markdown table: one row per number, one column per variant (mean ± sd;
    R1, mAP and accuracies in %).

    Example:
        >>> print(format_markdown({"v": {"R1 plain": {"mean": 0.6, "sd": 0.1, "n": 2}}}))
        | number | v |
        |---|---|
        | R1 plain | 60.0 ± 10.0 (2) |
    """
    variants = list(summary)
    every = (*SUMMARY, "queries typed none", *GAINS)
    names = [name for name in every if any(name in summary[v] for v in variants)]
    lines = ["| number | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for name in names:
        # Ratios as they are (3 decimals); R1, mAP, accuracies and gains in % (1 decimal).
        ratio = "band/visible" in name or name == "mask mean"
        cells = [_cell(summary[variant].get(name), ratio) for variant in variants]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_intervals(runs: Mapping[str, Mapping[str, dict]]) -> str:
    r"""Each run's rows with 95 % bootstrap intervals over the queries, as a markdown table.

    Per run (variant and seed) and row: R1 and mAP with their intervals, and the R1 gain over
    the run's own row without unification and over the baseline's (same seed), each a paired
    bootstrap over the same queries (:func:`~examples.oamn.intervals.paired_difference_interval`).
    Rows without per-query ranks are left out.

    Example:
        >>> row = {"name": "no unification", "R1": 0.5, "mAP": 0.4, "R1_ci95": [0.3, 0.7],
        ...        "mAP_ci95": [0.2, 0.6], "first_match": [1, 2, 1, 3]}
        >>> print(format_intervals({"v": {"0": {"rows": {"plain": row}}}}).splitlines()[2])
        | v | 0 | no unification | 50.0 [30.0, 70.0] | 40.0 [20.0, 60.0] | - | - |
    """
    lines = [
        "| variant | seed | row | R1 [95 % CI] | mAP [95 % CI] | R1 gain over no unification "
        "| R1 gain over the baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, seeds in runs.items():
        for seed, report in seeds.items():
            rows = report.get("rows", {})
            plain = _hits(rows.get("plain"))
            baseline = _hits(runs.get("baseline", {}).get(seed, {}).get("rows", {}).get("plain"))
            for key, row in rows.items():
                hits = _hits(row)
                if hits is None:
                    continue
                over_plain = _paired(plain, hits) if key != "plain" else "-"
                over_baseline = _paired(baseline, hits) if variant != "baseline" else "-"
                lines.append(
                    f"| {variant} | {seed} | {row['name']} | {_with_interval(row, 'R1')} | "
                    f"{_with_interval(row, 'mAP')} | {over_plain} | {over_baseline} |"
                )
    return "\n".join(lines)


def _hits(row: dict | None) -> torch.Tensor | None:
    """Rank-1 hits (0/1) of the valid queries of a row, or ``None`` without per-query ranks."""
    if row is None or "first_match" not in row:
        return None
    first = torch.tensor(row["first_match"])
    return (first[first > 0] == 1).double()


def _paired(first: torch.Tensor | None, second: torch.Tensor) -> str:
    if first is None or first.shape != second.shape:
        return "-"
    gain, low, high = paired_difference_interval(first, second)
    return f"{100 * gain:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _with_interval(row: dict, metric: str) -> str:
    low, high = row[f"{metric}_ci95"]
    return f"{100 * row[metric]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _cell(entry: dict | None, ratio: bool) -> str:
    if entry is None:
        return "-"
    scale, digits = (1, 3) if ratio else (100, 1)
    sd = "" if entry["sd"] is None else f" ± {scale * entry['sd']:.{digits}f}"
    return f"{scale * entry['mean']:.{digits}f}{sd} ({entry['n']})"


def slim(report: dict) -> dict:
    """``report`` without its per-query lists (``first_match``, ``ap``) and CMC curves."""
    rows = {
        key: {k: v for k, v in row.items() if k not in ("first_match", "ap", "cmc")}
        for key, row in report.get("rows", {}).items()
    }
    return {**report, "rows": rows}


def _lookup(report: dict, path: tuple[str, ...]) -> float | None:
    value: Any = report
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)

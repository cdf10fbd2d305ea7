r"""Hand-labelled real occluders of Occluded-DukeMTMC queries: sample, tiles, labels, agreement.

The grader is trained on the augmentation's pasted occluders; this module gives it a test on
*real* ones. A fixed random sample of query images is shown to people in tiles, each labelled
by looking with the occluder's side and depth (the protocol is in ``docs/REAL_OCCLUDERS.md``),
and the labels are kept as a CSV of file names (``image,label``; no pixels) in
``examples/oamn/labels/``. Every real-data evaluation scores the grader on them
(:mod:`~examples.oamn.awareness`).

Labels: ``{top,bottom,left,right}_{half,quarter}`` (the 8 occlusion types of
``oamn.occlusion_aug``; half when the occluder reaches 3/8 of the side or more), ``none`` (no
occluder seen) and ``unclear`` (the target is ambiguous, or the occluder is in the middle).

Commands (from the repository root)::

    python -m examples.oamn.occluder_labels tiles --data-root ../shared/data/occluded_duke_dev \
        --count 448 --output runs/labelling/first
    python -m examples.oamn.occluder_labels tiles --data-root ../shared/data/occluded_duke_dev \
        --count 448 --subset 128 --output runs/labelling/second
    python -m examples.oamn.occluder_labels agreement FIRST.csv SECOND.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from oamn.occlusion_aug import AREA_NAMES, BAND_LOCATIONS, LOCATIONS, OCCLUSION_TYPES
from oamn.reid_eval import predict_occlusion_type

from .intervals import bootstrap_interval

__all__ = [
    "LABELLED_OCCLUDERS",
    "LABELLED_VALIDATION",
    "LABELS",
    "LABEL_FILES",
    "agreement",
    "label_to_type",
    "read_labels",
    "render_tiles",
    "sample_queries",
]

#: Every label a person may give: the 8 occlusion types, ``none`` and ``unclear``.
LABELS: tuple[str, ...] = (
    *(f"{side}_{depth}" for depth in AREA_NAMES for side in BAND_LOCATIONS),
    "none",
    "unclear",
)
#: The labelled set shipped with the repository (first labelling of 448 dev queries).
LABELLED_OCCLUDERS = Path(__file__).parent / "labels" / "occluded_duke_dev_queries.csv"
#: Labelled images of the validation identities (``--val-ids 50``, seed 0, of the dev train
#: split): the set that settings are chosen on.
LABELLED_VALIDATION = LABELLED_OCCLUDERS.with_name("occluded_duke_dev_validation.csv")
#: Every labelled set an evaluation scores the grader on (file names do not overlap).
LABEL_FILES = (LABELLED_OCCLUDERS, LABELLED_VALIDATION)

_CELL = (100, 200)  # width, height of one image in a tile
_MARGIN = 10  # room for the depth ticks around each image
_CAPTION = 14
_COLUMNS = 8
_ROWS = 4
# Depth ticks from each side; 3/8 (the half/quarter boundary) and 5/8 are drawn in red.
_TICKS = ((0.25, "white"), (0.375, "red"), (0.5, "white"), (0.625, "red"), (0.75, "white"))


def sample_queries(query_dir: str | Path, count: int, seed: int = 0) -> list[str]:
    """A fixed random sample of ``count`` query file names (sorted names, shuffled by ``seed``)."""
    names = sorted(p.name for p in Path(query_dir).iterdir() if p.suffix.lower() == ".jpg")
    if count > len(names):
        raise ValueError(f"count={count} but {query_dir} holds only {len(names)} .jpg images")
    random.Random(seed).shuffle(names)
    return names[:count]


def render_tiles(
    names: Sequence[str], query_dir: str | Path, output: str | Path, first_number: int = 0
) -> list[Path]:
    """Draw ``names`` in tiles of 32 (8 x 4), numbered from ``first_number``, with depth ticks.

    Each image is resized to 100 x 200 and framed by ticks at 1/4, 3/8, 1/2, 5/8 and 3/4 of its
    height (left and right edges) and width (top and bottom edges); the red ones mark 3/8 from
    either side, the half/quarter boundary. Writes ``tile_KK.png`` and ``tile_KK.txt`` (the
    numbers and file names) into ``output`` and returns the PNG paths.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    per_tile = _COLUMNS * _ROWS
    cell_w, cell_h = _CELL[0] + 2 * _MARGIN, _CELL[1] + 2 * _MARGIN + _CAPTION
    paths = []
    for tile, start in enumerate(range(0, len(names), per_tile)):
        chunk = names[start : start + per_tile]
        canvas = Image.new("RGB", (cell_w * _COLUMNS, cell_h * _ROWS), "gray")
        draw = ImageDraw.Draw(canvas)
        for k, name in enumerate(chunk):
            x0 = (k % _COLUMNS) * cell_w + _MARGIN
            y0 = (k // _COLUMNS) * cell_h + _MARGIN + _CAPTION
            with Image.open(Path(query_dir) / name) as image:
                canvas.paste(image.convert("RGB").resize(_CELL, Image.BILINEAR), (x0, y0))
            draw.text((x0, y0 - _CAPTION - 2), str(first_number + start + k), fill="yellow")
            width, height = _CELL
            for fraction, colour in _TICKS:
                y, x = y0 + round(fraction * height), x0 + round(fraction * width)
                draw.line([(x0 - _MARGIN, y), (x0 - 1, y)], fill=colour)
                draw.line([(x0 + width, y), (x0 + width + _MARGIN - 1, y)], fill=colour)
                draw.line([(x, y0 - _MARGIN + 4), (x, y0 - 1)], fill=colour)
                draw.line([(x, y0 + height), (x, y0 + height + _MARGIN - 1)], fill=colour)
        path = output / f"tile_{tile:02d}.png"
        canvas.save(path)
        numbers = range(first_number + start, first_number + start + len(chunk))
        (output / f"tile_{tile:02d}.txt").write_text(
            "".join(f"{n},{name}\n" for n, name in zip(numbers, chunk, strict=True))
        )
        paths.append(path)
    return paths


def read_labels(path: str | Path) -> dict[str, str]:
    """``{image file name: label}`` from a CSV with the header ``image,label``."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or set(rows[0]) != {"image", "label"}:
        raise ValueError(f"{path} must be a CSV with the header 'image,label'")
    labels = {}
    for line, row in enumerate(rows, start=2):
        if row["label"] not in LABELS:
            raise ValueError(f"{path}, line {line}: label {row['label']!r} is not one of {LABELS}")
        if row["image"] in labels:
            raise ValueError(f"{path}, line {line}: {row['image']} is labelled twice")
        labels[row["image"]] = row["label"]
    return labels


def label_to_type(label: str) -> int | None:
    """The occlusion type code of a label (0 none, 1-4 half, 5-8 quarter), ``None`` if unclear.

    Example:
        >>> [label_to_type(x) for x in ("none", "bottom_half", "left_quarter", "unclear")]
        [0, 2, 7, None]
    """
    if label == "unclear":
        return None
    if label == "none":
        return 0
    side, depth = label.split("_")
    return OCCLUSION_TYPES.index(f"{depth}_{side}")


def agreement(first: dict[str, str], second: dict[str, str]) -> dict[str, float | int]:
    """Agreement of two labellings on the images both labelled.

    Returns the number of common images and the share (in %) that agree on the exact label, on
    the side (a side, ``none`` or ``unclear``: the depth ignored) and, among the images both
    give a side, on the side.
    """
    common = sorted(set(first) & set(second))
    if not common:
        raise ValueError("the two labellings share no image")

    def side(label: str) -> str:
        return label.split("_")[0]

    sides = BAND_LOCATIONS
    both_sided = [n for n in common if side(first[n]) in sides and side(second[n]) in sides]
    return {
        "images": len(common),
        "exact": 100.0 * sum(first[n] == second[n] for n in common) / len(common),
        "side": 100.0 * sum(side(first[n]) == side(second[n]) for n in common) / len(common),
        "both_sided": len(both_sided),
        "side_when_both_sided": 100.0
        * sum(side(first[n]) == side(second[n]) for n in both_sided)
        / max(len(both_sided), 1),
    }


def labelled_grader_report(
    names: Sequence[str],
    scores: Tensor,
    labels: dict[str, str],
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
) -> dict | None:
    r"""The grader on the labelled real occluders among ``names``.

    Args:
        names: the file names of the images ``scores`` belong to (e.g. the query images).
        scores: ``(N, 4)`` or ``(N, 9)`` grader scores of those images.
        labels: ``{file name: label}`` (:func:`read_labels`).
        thresholds, boundary: how 4-column scores become types
            (:func:`oamn.reid_eval.predict_occlusion_type`).

    Returns:
        ``None`` when no image is labelled; else, on the images labelled with a side
        (``"sided"`` of them): ``"none_rate"`` (typed "none"), ``"location_accuracy"`` (the
        predicted type's location is the labelled side; "none" is wrong), ``"type_accuracy"``
        (exact type), each with its 95 % bootstrap interval
        (``"<name>_ci95"``), all as fractions in ``[0, 1]``; ``"side_recall"`` (location
        accuracy per labelled side, with its count); ``"constant_bottom"`` (the accuracy of
        always answering "bottom", the majority yardstick); and on the images labelled
        ``none``, their count ``"none_labelled"`` and the share typed "none"
        (``"none_accuracy"``).
    """
    index = [i for i, name in enumerate(names) if name in labels]
    if not index:
        return None
    predicted = predict_occlusion_type(scores[index].float().cpu(), thresholds, boundary)
    given = [labels[names[i]] for i in index]
    true = torch.tensor([label_to_type(x) if x != "unclear" else -1 for x in given])
    sided = true > 0
    predicted_side, true_side = (predicted - 1) % 4 + 1, (true - 1) % 4 + 1
    hits = {
        "none_rate": predicted[sided] == 0,
        "location_accuracy": (predicted[sided] > 0) & (predicted_side[sided] == true_side[sided]),
        "type_accuracy": predicted[sided] == true[sided],
    }
    report: dict = {"labelled": len(index), "sided": int(sided.sum())}
    for name, hit in hits.items():
        report[name] = _share(hit)
        report[f"{name}_ci95"] = [round(x, 4) for x in bootstrap_interval(hit.double())]
    report["side_recall"] = {
        LOCATIONS[side]: {
            "count": int((true_side[sided] == side).sum()),
            "recall": _share(hits["location_accuracy"][true_side[sided] == side]),
        }
        for side in range(1, 5)
    }
    report["constant_bottom"] = _share(true_side[sided] == LOCATIONS.index("bottom"))
    labelled_none = true == 0
    report["none_labelled"] = int(labelled_none.sum())
    report["none_accuracy"] = _share(predicted[labelled_none] == 0)
    return report


def reweight_none(scores: Tensor, weight: float) -> Tensor:
    """9-way type probabilities with "none" weighted by ``weight`` and the rows renormalised
    (a prior shift: the grader's "none" is learnt from training images that are not all
    unoccluded); 4-column scores are returned unchanged.

    Example:
        >>> reweight_none(torch.tensor([[0.6, 0.4] + [0.0] * 7]), 0.5)[0, :2]
        tensor([0.4286, 0.5714])
    """
    if scores.shape[1] != 9 or weight == 1:
        return scores
    weighted = scores.clone()
    weighted[:, 0] *= weight
    return weighted / weighted.sum(dim=1, keepdim=True)


def _share(hits: Tensor) -> float | None:
    return None if hits.numel() == 0 else round(float(hits.double().mean()), 4)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.oamn.occluder_labels")
    commands = parser.add_subparsers(dest="command", required=True)
    tiles = commands.add_parser("tiles", help="draw the sampled queries in numbered tiles")
    tiles.add_argument("--data-root", required=True, help="dataset root holding query/")
    tiles.add_argument("--count", type=int, default=448, help="queries in the labelled sample")
    tiles.add_argument("--seed", type=int, default=0)
    tiles.add_argument(
        "--subset",
        type=int,
        default=None,
        help="draw only this many of the sample, reshuffled (for a second, independent labelling)",
    )
    tiles.add_argument("--output", required=True)
    agree = commands.add_parser("agreement", help="agreement of two label CSVs")
    agree.add_argument("first")
    agree.add_argument("second")
    args = parser.parse_args(argv)
    if args.command == "agreement":
        result = agreement(read_labels(args.first), read_labels(args.second))
        print(
            ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
            )
        )
        return
    query_dir = Path(args.data_root) / "query"
    names = sample_queries(query_dir, args.count, args.seed)
    if args.subset is not None:
        names = sorted(names)
        random.Random(args.seed + 1).shuffle(names)
        names = names[: args.subset]
    for path in render_tiles(names, query_dir, args.output):
        print(path)


if __name__ == "__main__":
    main()

r"""Which training occluders teach a grader to see real ones: graders fitted on a frozen backbone.

The grader reads detached features, so it never shapes the backbone: a grader fitted after
training on the trained E^I sees what a jointly trained one would see at the end. That makes
its training occluders cheap to compare. For each occluder style, this module occludes ``N``
training images (identities outside the validation split), summarises E^I's features as the
model's grader does, fits a fresh 9-way grader (``oamn.attention.OcclusionGrader``'s
BatchNorm and Linear, cross-entropy on the holistic and occluded views), and scores it on
hand-labelled real occluders of the *validation* identities
(:func:`~examples.oamn.occluder_labels.labelled_grader_report`): choices are made there, and
the labelled test queries stay for the final report.

Styles: ``bands`` (the paper's corner patches in half and quarter bands), ``objects``
(``ObjectOcclusion``, whole other images scaled into ragged partial shapes), ``unscaled``
(``ObjectOcclusion(content="unscaled")``: other people at the image's scale), and their
union ``mix``.

Command (one thread; writes a JSON table)::

    python -m examples.oamn.grader_probe --checkpoint RUN/checkpoint_last.pt \
        --data-root ../shared/data/occluded_duke_dev --labels LABELS.csv --output probe.json
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oamn.occlusion_aug import NUM_OCCLUSION_TYPES, ObjectOcclusion, OcclusionAugmentation

from .checkpoint import load_model
from .data import build_test_loader
from .data.layouts import load_dataset
from .occluder_labels import labelled_grader_report, read_labels, reweight_none
from .step import make_views
from .validation import training_split

__all__ = ["STYLES", "main"]

#: Occluder styles compared, by name.
STYLES: dict[str, tuple[nn.Module, ...]] = {
    "bands": (OcclusionAugmentation(),),
    "objects": (ObjectOcclusion(),),
    "unscaled": (ObjectOcclusion(content="unscaled"),),
    "mix": (OcclusionAugmentation(), ObjectOcclusion(), ObjectOcclusion(content="unscaled")),
}


def _summaries(model: nn.Module, images: Tensor) -> Tensor:
    """The grader's input summary (before its BatchNorm) of normalised images."""
    f = model.encoder_low(images)
    g = f if model.mask is None or model.grader_reads_features else model.mask(f)[0]
    return model.grader[0](g).float()


@torch.inference_mode()
def _occluded_summaries(model, loader, augmentations, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features, types = [], []
    for images, pids, *_ in loader:
        for augmentation in augmentations:
            views = make_views(augmentation, images, pids, generator)
            features.append(_summaries(model, views.images))
            types.append(views.occlusion_type)
    return torch.cat(features), torch.cat(types)


def _fit(features: Tensor, types: Tensor, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    width = features.shape[1]
    head = nn.Sequential(nn.BatchNorm1d(width), nn.Linear(width, NUM_OCCLUSION_TYPES))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=5e-4)
    for _ in range(epochs):
        for index in torch.randperm(len(types)).split(256):
            loss = F.cross_entropy(head(features[index]), types[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head.eval()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.oamn.grader_probe")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--dataset", default="occluded_duke")
    parser.add_argument("--labels", required=True, help="labelled validation images (CSV)")
    parser.add_argument("--styles", default=",".join(STYLES))
    parser.add_argument("--images", type=int, default=2000, help="training images occluded")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--none-weights",
        default="1",
        help="comma list of weights of the 'none' probability before renormalising (a prior "
        "shift at test time: below 1, a hesitant grader names an occluded type instead)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    model, config = load_model(args.checkpoint)
    dataset = load_dataset(args.dataset, args.data_root)
    train_rest, val_query, val_gallery = training_split(dataset.train, config)
    train_items = list(train_rest)
    random.Random(args.seed).shuffle(train_items)
    loader = build_test_loader(train_items[: args.images], config.height, config.width, 64, 0)
    labels = read_labels(args.labels)
    labelled = [item for item in (*val_query, *val_gallery) if Path(item.path).name in labels]
    names = [Path(item.path).name for item in labelled]
    with torch.inference_mode():
        clean = torch.cat(
            [
                _summaries(model, images)
                for images, *_ in build_test_loader(labelled, config.height, config.width, 64, 0)
            ]
        )
    results = {}
    for style in args.styles.split(","):
        features, types = _occluded_summaries(model, loader, STYLES[style], args.seed)
        head = _fit(features, types, args.epochs, args.seed)
        with torch.no_grad():
            scores = head(clean).softmax(1)
        for weight in (float(w) for w in args.none_weights.split(",")):
            key = style if weight == 1 else f"{style}, none x {weight}"
            results[key] = labelled_grader_report(names, reweight_none(scores, weight), labels)
            print(key, json.dumps({k: v for k, v in results[key].items() if "ci95" not in k}))
    Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Grouped triplet loss beside 5 separate calls of the ungrouped loss, forward + backward.

    python benchmarks/bench_losses.py [--device cuda] [--repeats 30] [--dim 2048] [--threads 1]

The OAMN batch: 32 identities x 2 images, each with its holistic and 4 occluded copies, gives
320 feature rows in 5 location groups of 64. Each method computes the grouped triplet loss
(margin 0.5, Euclidean) of the same features and back-propagates it:

* ``5 separate calls``: the reference, ``batch_hard_triplet_loss`` on each group's rows
  (selected with a boolean mask), averaged;
* ``grouped_triplet_loss``: the library, all groups in one batched computation;
* ``full-matrix masked``: the design the library does not use, the 320 x 320 distance matrix
  with the same-group mask AND'ed into the mining masks (5x the distance FLOPs).

Methods run interleaved (one call of each per round), and the table gives the median over the
rounds, so that load from other processes affects them alike. The target is a ratio >= 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from oamn.losses import batch_distance_matrix, batch_hard_triplet_loss, grouped_triplet_loss

MARGIN = 0.5


def five_separate_calls(features: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor):
    losses = [
        batch_hard_triplet_loss(features[groups == g], labels[groups == g], margin=MARGIN)
        for g in range(5)
    ]
    return torch.stack(losses).mean()


def full_matrix_masked(features: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor):
    distances = batch_distance_matrix(features)
    same_group = groups[:, None] == groups[None, :]
    same_label = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(features), dtype=torch.bool, device=features.device)
    positives = same_group & same_label & not_self
    negatives = same_group & ~same_label
    hardest_positive = torch.where(positives, distances, -torch.inf).amax(1)
    hardest_negative = torch.where(negatives, distances, torch.inf).amin(1)
    valid = positives.any(1) & negatives.any(1)
    hinge = torch.where(valid, torch.relu(hardest_positive - hardest_negative + MARGIN), 0)
    per_group = hinge.new_zeros(5).index_add(0, groups, hinge)
    anchors = torch.bincount(groups, weights=valid.to(hinge.dtype), minlength=5)
    return (per_group / anchors.clamp_min(1)).sum() / (anchors > 0).sum()


def forward_backward(loss_fn: Callable, features: torch.Tensor, *args: torch.Tensor) -> float:
    leaf = features.detach().requires_grad_(True)
    loss = loss_fn(leaf, *args)
    loss.backward()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=32)
    parser.add_argument("--images-per-identity", type=int, default=2)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    per_group = args.identities * args.images_per_identity
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(5 * per_group, args.dim, generator=generator).to(device)
    labels = torch.arange(args.identities).repeat_interleave(args.images_per_identity)
    labels = labels.repeat(5).to(device)
    groups = torch.arange(5).repeat_interleave(per_group).to(device)

    methods = {
        "5 separate calls of batch_hard_triplet_loss": five_separate_calls,
        "grouped_triplet_loss (one batched call)": grouped_triplet_loss,
        "full-matrix masked (not used)": full_matrix_masked,
    }
    # float32 Gram-matrix distances of 2048-d features carry errors of ~1e-4 relative, whatever
    # the method, so each is checked against the reference computed in float64.
    reference = forward_backward(five_separate_calls, features.double(), labels, groups)
    deviation = 0.0
    for name, fn in methods.items():
        value = forward_backward(fn, features, labels, groups)
        deviation = max(deviation, abs(value - reference) / abs(reference))
        if deviation > 1e-3:
            raise SystemExit(f"{name} gives {value}, the float64 reference {reference}")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in methods.values():  # warm-up
        forward_backward(fn, features, labels, groups)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            sync()
            start = time.perf_counter()
            forward_backward(fn, features, labels, groups)
            sync()
            times[name].append(time.perf_counter() - start)

    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    print(
        f"features {tuple(features.shape)} float32, 5 groups of {per_group} "
        f"({args.identities} ids x {args.images_per_identity}); forward + backward; "
        f"median of {args.repeats} interleaved rounds"
    )
    print(f"every method gives the float64 loss {reference:.6f} to {deviation:.1e} relative\n")
    baseline = statistics.median(next(iter(times.values())))
    print(f"{'method':<46} {'ms/call':>9} {'speed-up':>9}")
    for name, samples in times.items():
        seconds = statistics.median(samples)
        print(f"{name:<46} {seconds * 1e3:9.2f} {baseline / seconds:8.2f}x")


if __name__ == "__main__":
    main()

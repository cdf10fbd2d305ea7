"""The cost of soft occlusion unification beside the plain and the hard (argmax) evaluation.

    python benchmarks/bench_soft_unification.py [--repeats 3] [--threads 1]

Synthetic float32 features at the size of ``../shared/data/occluded_duke_dev``'s test split
(1,853 queries, 15,773 gallery images, 439 query identities, 8 cameras) and of its models'
embedding (MobileNetV2: D = 1280), a 9-type bank on both sides (two-sided unification) and
type probabilities from a softmax of random logits (never exactly 0, so every chunk computes
all 9 distance blocks, the worst case). Each call runs ``--repeats`` times, the three
interleaved; the table gives the median and the range, and the ratio to the plain evaluation
of the same repeat.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from oamn.reid_eval import evaluate_features, evaluate_soft_unified, evaluate_unified

QUERIES, GALLERY, IDENTITIES, CAMERAS, DIM, TYPES = 1853, 15773, 439, 8, 1280, 9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(IDENTITIES, DIM, generator=g)
    q_pids = torch.randint(0, IDENTITIES, (QUERIES,), generator=g)
    g_pids = torch.randint(0, IDENTITIES, (GALLERY,), generator=g)
    q_bank = centres[q_pids] + 1.5 * torch.randn(TYPES, QUERIES, DIM, generator=g)
    g_bank = centres[g_pids] + 1.5 * torch.randn(TYPES, GALLERY, DIM, generator=g)
    labels = (
        q_pids,
        g_pids,
        torch.randint(0, CAMERAS, (QUERIES,), generator=g),
        torch.randint(0, CAMERAS, (GALLERY,), generator=g),
    )
    probs = (3 * torch.randn(QUERIES, TYPES, generator=g)).softmax(dim=1)
    calls = {
        "plain": lambda: evaluate_features(q_bank[0], g_bank[0], *labels),
        "hard, two-sided": lambda: evaluate_unified(q_bank, probs.argmax(1), g_bank, *labels),
        "soft, two-sided": lambda: evaluate_soft_unified(q_bank, probs, g_bank, *labels),
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    print(f"{QUERIES} x {GALLERY}, D = {DIM}, {args.threads} thread(s), {args.repeats} repeats")
    print("| evaluation | median s | range s | / plain (median, range) |")
    print("|---|---|---|---|")
    for name, times in seconds.items():
        ratios = [t / p for t, p in zip(times, seconds["plain"], strict=True)]
        print(
            f"| {name} | {statistics.median(times):.2f} | {min(times):.2f}-{max(times):.2f} | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()

"""Time and peak memory of rerank beside torchreid 0.2.5's re_ranking (the published code).

    python benchmarks/bench_rerank.py [--sizes small,duke] [--repeats 1] [--dim 256] [--threads 1]

Synthetic L2-normalised float32 features (see bench_reid_eval.make_dataset) at Occluded-Duke
size, 2,210 queries x 17,661 gallery images ("duke"), and alike at 1,200 x 4,800 ("small");
Euclidean distances, k1 = 20, k2 = 6, lambda = 0.3. torch runs on --threads threads (default 1,
so that the comparison is of algorithms: the published code is single-threaded numpy).

The published step includes building its three inputs, ``pairwise_distance(q, g)``,
``pairwise_distance(q, q)`` and ``pairwise_distance(g, g)``, as numpy arrays. Each step runs
``--repeats`` times, interleaved; the table gives the median time and the largest growth of
resident memory during one call (see bench_reid_eval.PeakMemory). The results must agree to
1e-4 (max absolute difference) where no neighbour list ends in a tie; when they do not, the
items with a near tie there are counted and both results' mAP compared (either order of tied
neighbours is as right, and numpy's argsort and torch's topk may choose differently).

torchreid is loaded without its package's dependencies: ``pip install --no-deps
torchreid==0.2.5``, then only its file ``torchreid/reid/utils/rerank.py`` is executed (importing
``torchreid`` itself would need torchvision, gdown, and more). Without it only rerank runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from bench_reid_eval import SIZES, DatasetSize, PeakMemory, make_dataset, timed

from oamn.reid_eval import evaluate_rank, pairwise_distance, rerank

BENCH_SIZES = {
    "small": replace(
        SIZES["duke"],
        name="Occluded-Duke-like, smaller",
        num_query=1200,
        num_gallery=4800,
        query_ids=300,
        gallery_only_ids=150,
    ),
    "duke": SIZES["duke"],
}
K1, K2, LAMBDA = 20, 6, 0.3
TOLERANCE = 1e-4
RERANK = "rerank"
PUBLISHED = "torchreid re_ranking + 3 matrices"


def load_published() -> Callable | None:
    """torchreid's ``re_ranking``, from its single file, or None if torchreid is absent."""
    spec = importlib.util.find_spec("torchreid")  # finds the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location, "reid", "utils", "rerank.py")
        if path.is_file():
            module_spec = importlib.util.spec_from_file_location("torchreid_rerank", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module.re_ranking
    return None


def bench(size: DatasetSize, args, published: Callable | None, peak: PeakMemory) -> None:
    cpu = torch.device("cpu")
    q_feats, g_feats, labels = make_dataset(size, args.dim)

    def published_rerank() -> np.ndarray:
        matrices = [pairwise_distance(a, b) for a, b in ((q_feats, g_feats), (q_feats, q_feats))]
        matrices.append(pairwise_distance(g_feats, g_feats))
        return published(*(m.numpy() for m in matrices), k1=K1, k2=K2, lambda_value=LAMBDA)

    steps = {RERANK: lambda: rerank(q_feats, g_feats, K1, K2, LAMBDA)}
    if published is not None:
        steps[PUBLISHED] = published_rerank
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks = dict.fromkeys(steps, 0.0)
    results = {}
    for _ in range(args.repeats):
        for name, step in steps.items():
            results.pop(name, None)  # the previous result must not count in this peak
            (results[name], seconds), mib = peak(lambda step=step: timed(step, cpu))
            times[name].append(seconds)
            peaks[name] = max(peaks[name], mib)

    plain = evaluate_rank(pairwise_distance(q_feats, g_feats), *labels)
    reranked = evaluate_rank(results[RERANK], *labels)
    print(
        f"\n{size.name}: {size.num_query} x {size.num_gallery}, D={args.dim} float32, "
        f"k1={K1} k2={K2} lambda={LAMBDA}; synthetic mAP {plain.mAP:.3f} plain, "
        f"{reranked.mAP:.3f} re-ranked"
    )
    print(f"{'step':<36} {'time s':>8} {'ratio':>8} {'peak MiB':>9}")
    base = statistics.median(times[RERANK])
    for name in steps:
        seconds = statistics.median(times[name])
        print(f"{name:<36} {seconds:8.2f} {seconds / base:7.1f}x {peaks[name]:9.0f}")
    if published is None:
        return
    difference = np.abs(results[RERANK].numpy() - results[PUBLISHED])
    largest = float(difference.max())
    verdict = "OK"
    if largest > TOLERANCE:
        beyond = difference > TOLERANCE
        # The published result is a strided view of its (N, N) matrix.
        published_map = evaluate_rank(np.ascontiguousarray(results[PUBLISHED]), *labels).mAP
        verdict = (
            f"DIFFERENT in {int(beyond.sum())} entries of {int(beyond.any(1).sum())} queries; "
            f"{tied_boundaries(q_feats, g_feats)} items have a near tie at the end of a "
            f"neighbour list, ordered arbitrarily by either code; mAP {reranked.mAP:.6f} "
            f"against {published_map:.6f}"
        )
    print(f"  max |rerank - re_ranking| = {largest:.1e} (tolerance {TOLERANCE}): {verdict}")


def tied_boundaries(q_feats: torch.Tensor, g_feats: torch.Tensor, rows_per_step: int = 256) -> int:
    """Items whose first k1 + 1, round(k1 / 2) + 1 or k2 neighbours end between normalised
    squared distances within 4 float32 ulps: possibly equal in the published float32 matrix
    (whose values differ from these in their last bits), so either order is as right."""
    items = torch.cat([q_feats, g_feats])
    lengths = torch.tensor([K1 + 1, round(K1 / 2) + 1, K2])
    count = 0
    for rows in items.split(rows_per_step):
        squared = pairwise_distance(rows, items).square_()
        nearest = squared.div_(squared.amax(1, keepdim=True)).topk(K1 + 2, largest=False).values
        last, next_one = nearest[:, lengths - 1], nearest[:, lengths]
        near = next_one - last <= 4 * torch.finfo(torch.float32).eps * next_one
        count += int(near.any(1).sum())
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,duke", help="comma-separated: small,duke")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    published = load_published()
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, CPU, {torch.get_num_threads()} "
        f"torch thread(s) (torch.set_num_threads; re_ranking is single-threaded numpy); "
        f"median of {args.repeats} interleaved run(s)"
    )
    if published is None:
        print(
            "torchreid not found: only rerank runs. To compare, install the published code "
            "without its dependencies: pip install --no-deps torchreid==0.2.5"
        )
    # First calls load code and allocate library buffers; keep that out of the first peak.
    warm_up_q, warm_up_g, _ = make_dataset(DatasetSize("warm-up", 8, 24, 4, 0, 0, 2, 1.0, 0.5), 8)
    rerank(warm_up_q, warm_up_g)
    if published is not None:
        pairs = ((warm_up_q, warm_up_g), (warm_up_q, warm_up_q), (warm_up_g, warm_up_g))
        published(*(pairwise_distance(a, b).numpy() for a, b in pairs))
    peak = PeakMemory(torch.device("cpu"))
    for key in args.sizes.split(","):
        bench(BENCH_SIZES[key], args, published, peak)


if __name__ == "__main__":
    with torch.inference_mode():
        main()

"""Time and peak memory of reid_eval beside np.argsort of the same distance matrix.

    python benchmarks/bench_reid_eval.py [--repeats 3] [--dim 2048] [--datasets market,duke]
    python benchmarks/bench_reid_eval.py --large  # 3,368 x 500,000 gallery, D = 256

Synthetic data at the sizes of Market-1501 (3,368 queries x 15,913 gallery images, 751
identities plus 2,798 distractors of identity 0, 6 cameras) and Occluded-Duke (2,210 x 17,661,
1,110 identities, 8 cameras). Features are float32, an identity centre plus noise of a
per-image scale, so the distances have a realistic structure. Three distance matrices per size:

* easy: a good model (mAP about 0.87): few items rank before a query's last match;
* hard: a weak or occluded model (mAP about 0.2): most of the gallery ranks before it;
* ties: the hard distances quantised to 20 integer levels of equal frequency (like Hamming
  distances), so that every match ties with hundreds of items.

Each step runs ``--repeats`` times, interleaved with its yardstick; the table gives the median
time. "peak MiB" is the largest growth of the process's resident memory during one call, beyond
what it held before (so the inputs are not counted): before each call, glibc returns its free
memory to the system (malloc_trim) and the kernel's high-water mark VmHWM is reset through
/proc/self/clear_refs; after it, VmHWM minus the resident size before the call is the peak.
Every page a step touches therefore counts, even one that malloc had cached. On CUDA it is
torch.cuda.max_memory_allocated instead.

Checks: evaluate_rank / evaluate_features must give the same CMC, mAP and mINP as a plain
reference (a full stable np.argsort of each row, junk removed, the textbook formulas), and
evaluate_unified the same as the authors' way of ranking (all 9 full distance matrices, then
each query's row from its type's matrix) scored by that reference.

``--large``: Market-1501's queries and gallery plus 484,087 distractors (Market-1501-500k's
setting), D = 256: ``evaluate_features`` with its progress line, its time and peak memory
growth (the distance matrix alone would take 6.7 GB).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from oamn.reid_eval import (
    evaluate_features,
    evaluate_rank,
    evaluate_unified,
    pairwise_distance,
)

NUM_TYPES = 9


@dataclass(frozen=True)
class DatasetSize:
    name: str
    num_query: int
    num_gallery: int
    query_ids: int  # identities that have queries (and gallery images)
    gallery_only_ids: int  # further gallery identities without queries
    distractors: int  # gallery images of identity 0
    cameras: int
    noise: float  # feature noise scale
    visible: float  # least share of its identity centre in an image feature


SIZES = {
    "market": DatasetSize("Market-1501", 3368, 15913, 750, 1, 2798, 6, 1.6, 0.3),
    "duke": DatasetSize("Occluded-Duke", 2210, 17661, 519, 591, 0, 8, 1.6, 0.3),
}

#: The hard matrices' noise and least visible share (mAP about 0.2 at D = 2048).
HARD = {"noise": 2.6, "visible": 0.15}

#: Integer levels of the tie-heavy matrices.
TIE_LEVELS = 20

#: Market-1501-500k: the Market gallery plus this many distractors.
LARGE_GALLERY = 500_000


def make_dataset(size: DatasetSize, dim: int, seed: int = 0):
    """Labels and L2-normalised float32 features: identity centre plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    num_ids = size.query_ids + size.gallery_only_ids
    q_pids = np.concatenate(
        [np.arange(1, size.query_ids + 1), rng.integers(1, size.query_ids + 1, size.num_query)]
    )[: size.num_query]
    labelled = size.num_gallery - size.distractors
    g_pids = np.concatenate([np.arange(1, num_ids + 1), rng.integers(1, num_ids + 1, labelled)])[
        :labelled
    ]
    g_pids = rng.permutation(np.concatenate([g_pids, np.zeros(size.distractors, np.int64)]))
    q_cams = rng.integers(0, size.cameras, size.num_query)
    g_cams = rng.integers(0, size.cameras, size.num_gallery)

    gen = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_ids + 1, dim, generator=gen), dim=1)

    def features(pids: np.ndarray) -> torch.Tensor:
        centre = centres[torch.from_numpy(pids)]
        distractor = torch.from_numpy(pids == 0)[:, None]
        # Distractors (identity 0) are unrelated people: each gets its own random centre.
        unrelated = torch.nn.functional.normalize(torch.randn(centre.shape, generator=gen), dim=1)
        centre = torch.where(distractor, unrelated, centre)
        noise = torch.randn(len(pids), dim, generator=gen) * (size.noise / dim**0.5)
        # How much of its identity an image shows varies (pose, occlusion): some are hard.
        visible = size.visible + (1 - size.visible) * torch.rand(len(pids), 1, generator=gen)
        return torch.nn.functional.normalize(visible * centre + noise, dim=1)

    labels = tuple(torch.from_numpy(a) for a in (q_pids, g_pids, q_cams, g_cams))
    return features(q_pids), features(g_pids), labels


def gallery_bank(g_feats: torch.Tensor) -> torch.Tensor:
    """(9, G, D): type 0 is the gallery itself, each other type zeroes its own part of D."""
    dim = g_feats.shape[1]
    masks = torch.ones(NUM_TYPES, 1, dim)
    for t in range(1, NUM_TYPES):
        width = dim // 2 if t <= 4 else dim // 4
        start = ((t - 1) % 4) * dim // 4
        masks[t, :, start : start + width] = 0
    return g_feats[None] * masks


def reference_metrics(distmat: np.ndarray, labels, max_rank: int = 50, rows: int = 512):
    """CMC, mAP, mINP from a full stable argsort of each row (junk: same id and camera, id -1)."""
    q_pids, g_pids, q_cams, g_cams = (a.numpy() for a in labels)
    cmc_counts, aps, inps = np.zeros(max_rank), [], []
    for start in range(0, len(distmat), rows):
        order = np.argsort(distmat[start : start + rows], axis=1, kind="stable")
        gp = g_pids[order]
        same = gp == q_pids[start : start + rows, None]
        junk = (same & (g_cams[order] == q_cams[start : start + rows, None])) | (gp == -1)
        match = same & ~junk
        rank = np.cumsum(~junk, axis=1)
        hits = np.cumsum(match, axis=1)
        n = hits[:, -1]
        ok = n > 0
        first = np.where(match, rank, np.iinfo(np.int64).max).min(1)[ok]
        last = np.where(match, rank, 0).max(1)[ok]
        precision = np.divide(hits, rank, out=np.zeros(hits.shape), where=match)
        aps.append(precision.sum(1)[ok] / n[ok])
        inps.append(n[ok] / last)
        cmc_counts += (first[:, None] <= np.arange(1, max_rank + 1)).sum(0)
    aps, inps = np.concatenate(aps), np.concatenate(inps)
    return cmc_counts / len(aps), float(aps.mean()), float(inps.mean())


def ranked_fraction(distmat: torch.Tensor, labels) -> float:
    """Fraction of the distances at most their query's largest valid-match distance."""
    q_pids, g_pids, q_cams, g_cams = labels
    match = (q_pids[:, None] == g_pids) & (q_cams[:, None] != g_cams) & (g_pids != -1)
    last = torch.where(match, distmat, -torch.inf).amax(1, keepdim=True)
    return float((distmat <= last).float().mean())


class PeakMemory:
    """Peak growth of resident memory (CPU) or of allocated CUDA memory during a call."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cpu":
            self.libc = ctypes.CDLL("libc.so.6")

    def __call__(self, fn: Callable[[], object]) -> tuple[object, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            result = fn()
            torch.cuda.synchronize(self.device)
            return result, (torch.cuda.max_memory_allocated(self.device) - before) / 2**20
        self.libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident size
        before = self._status_kib("VmRSS")
        result = fn()
        return result, (self._status_kib("VmHWM") - before) / 1024

    @staticmethod
    def _status_kib(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def run_interleaved(steps: dict[str, Callable[[], object]], repeats: int, peak: PeakMemory, device):
    """{name: (result, median seconds, max peak MiB)}, the steps alternating in each repeat."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float] = dict.fromkeys(steps, 0.0)
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in steps.items():
            (results[name], seconds), mib = peak(lambda fn=fn: timed(fn, device))
            times[name].append(seconds)
            peaks[name] = max(peaks[name], mib)
    return {name: (results[name], statistics.median(times[name]), peaks[name]) for name in steps}


def verdict(metrics, reference) -> str:
    """How far ``metrics`` are from the reference's ``(cmc, mAP, mINP)``."""
    cmc, mean_ap, mean_inp = reference
    d_cmc = float(np.abs(metrics.cmc.cpu().numpy() - cmc[: metrics.cmc.numel()]).max())
    d_ap, d_inp = abs(metrics.mAP - mean_ap), abs(metrics.mINP - mean_inp)
    # 1e-12: the same ranks, the means summed in another order; 1e-9: a few swaps deep in the
    # ranking between distances equal but for their last bits.
    worst = max(d_cmc, d_ap, d_inp)
    word = "identical" if worst < 1e-12 else "equal to 1e-9" if worst < 1e-9 else "DIFFERENT"
    return f"{word} (max |dCMC| {d_cmc:.1e}, |dmAP| {d_ap:.1e}, |dmINP| {d_inp:.1e})"


ARGSORT = "np.argsort(distmat, axis=1)"
RANK = "evaluate_rank(distmat)"
FEATURES = "evaluate_features"
UNIFIED = f"evaluate_unified, {NUM_TYPES} types"
REFERENCE = "reference: stable argsort + metrics"
AUTHORS = f"authors' way: {NUM_TYPES} full matrices"


def tie_heavy(distmat: torch.Tensor) -> torch.Tensor:
    """``distmat`` quantised to :data:`TIE_LEVELS` integer levels of equal frequency (float32),
    so that each level holds a twentieth of every row, as uniform random levels would."""
    sample = distmat.flatten()[:: max(1, distmat.numel() // 1_000_000)].float()
    edges = torch.quantile(sample, torch.linspace(0, 1, TIE_LEVELS + 1)[1:-1].to(sample))
    return torch.bucketize(distmat, edges.to(distmat.dtype)).to(torch.float32)


def bench_ranking(size: DatasetSize, args, device: torch.device, peak: PeakMemory) -> None:
    """evaluate_rank beside np.argsort on the easy, hard and tie-heavy matrices of one size."""
    print(f"\n{size.name} size: {size.num_query} x {size.num_gallery}, D={args.dim}")
    header = f"{'matrix':<6} {'mAP':>5} {'before':>7} {'argsort s':>10} {'evaluate_rank s':>16}"
    print(f"{header} {'ratio':>6} {'peak MiB':>9}  to the reference")
    easy = make_dataset(size, args.dim)
    hard = make_dataset(dataclasses.replace(size, **HARD), args.dim)
    matrices = {}
    for name, (q_feats, g_feats, labels) in {"easy": easy, "hard": hard}.items():
        matrices[name] = (pairwise_distance(q_feats.to(device), g_feats.to(device)), labels)
    matrices["ties"] = (tie_heavy(matrices["hard"][0]), hard[2])
    for name, (distmat, labels) in matrices.items():
        labels = tuple(a.to(device) for a in labels)
        distmat_np = distmat.cpu().numpy()
        steps = {
            ARGSORT: lambda array=distmat_np: np.argsort(array, axis=1),
            RANK: lambda matrix=distmat, labels=labels: evaluate_rank(matrix, *labels),
        }
        results = run_interleaved(steps, args.repeats, peak, device)
        metrics, seconds, mib = results[RANK]
        argsort_seconds = results[ARGSORT][1]
        reference = reference_metrics(distmat_np, labels)
        print(
            f"{name:<6} {metrics.mAP:5.3f} {ranked_fraction(distmat, labels):7.1%} "
            f"{argsort_seconds:10.3f} {seconds:16.3f} {seconds / argsort_seconds:5.2f}x "
            f"{mib:9.0f}  {verdict(metrics, reference)}"
        )


def bench_features(size: DatasetSize, args, device: torch.device, peak: PeakMemory) -> None:
    q_feats, g_feats, labels = make_dataset(size, args.dim)
    q_feats, g_feats = q_feats.to(device), g_feats.to(device)
    labels = tuple(a.to(device) for a in labels)
    distmat_np = pairwise_distance(q_feats, g_feats).cpu().numpy()
    bank = gallery_bank(g_feats)
    types = np.random.default_rng(1).integers(0, NUM_TYPES, size.num_query)
    types = torch.from_numpy(types).to(device)
    chunk = args.chunk_size

    def authors_unified() -> np.ndarray:
        # As the authors' code: every type's full matrix, then each query's row from its type.
        matrices = torch.stack([pairwise_distance(q_feats, bank[t]) for t in range(NUM_TYPES)])
        return matrices[types, torch.arange(size.num_query, device=device)].cpu().numpy()

    features = {
        FEATURES: lambda: evaluate_features(q_feats, g_feats, *labels, chunk_size=chunk),
        UNIFIED: lambda: evaluate_unified(q_feats, types, bank, *labels, chunk_size=chunk),
    }
    results = {
        **run_interleaved(features, args.repeats, peak, device),
        **run_interleaved({AUTHORS: authors_unified}, 1, peak, device),
    }
    print(
        f"\n{size.name} size from features, D={args.dim} float32, chunk_size {chunk} "
        f"(the easy data)"
    )
    print(f"{'step':<40} {'time s':>8} {'ratio':>22} {'peak MiB':>9}")
    for name, (_, seconds, mib) in results.items():
        ratio = f"{seconds / results[FEATURES][1]:.2f}x {FEATURES}"
        print(f"{name:<40} {seconds:8.3f} {ratio:>22} {mib:9.0f}")
    reference = reference_metrics(distmat_np, labels)
    print(f"  {FEATURES}: {verdict(results[FEATURES][0], reference)} to the reference")
    authors = reference_metrics(results[AUTHORS][0], labels)
    print(f"  {UNIFIED}: {verdict(results[UNIFIED][0], authors)} to the authors' way")


def bench_large_gallery(args, device: torch.device, peak: PeakMemory) -> None:
    """evaluate_features against Market-1501 plus distractors up to LARGE_GALLERY images."""
    market = SIZES["market"]
    distractors = LARGE_GALLERY - market.num_gallery + market.distractors
    size = dataclasses.replace(market, num_gallery=LARGE_GALLERY, distractors=distractors)
    q_feats, g_feats, labels = make_dataset(size, args.large_dim)
    q_feats, g_feats = q_feats.to(device), g_feats.to(device)
    labels = tuple(a.to(device) for a in labels)
    print(
        f"\nLarge gallery: {size.num_query:,} queries x {size.num_gallery:,} gallery images "
        f"({distractors:,} distractors), D={args.large_dim} float32; the distance matrix would "
        f"take {size.num_query * size.num_gallery * 4 / 1e9:.1f} GB"
    )
    call = lambda: evaluate_features(q_feats, g_feats, *labels, progress=True)  # noqa: E731
    (metrics, seconds), mib = peak(lambda: timed(call, device))
    print(f"evaluate_features: {seconds:.1f} s, peak memory growth {mib:,.0f} MiB; {metrics}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--datasets", default="market,duke", help="comma-separated: market,duke")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--large", action="store_true", help="only the 500,000-image gallery")
    parser.add_argument("--large-dim", type=int, default=256)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, device {device}, "
        f"{torch.get_num_threads()} torch threads (np.argsort is single-threaded); "
        f"median of {args.repeats} interleaved runs"
    )
    peak = PeakMemory(device)
    if args.large:
        bench_large_gallery(args, device, peak)
        return
    for key in args.datasets.split(","):
        bench_ranking(SIZES[key], args, device, peak)
    for key in args.datasets.split(","):
        bench_features(SIZES[key], args, device, peak)


if __name__ == "__main__":
    with torch.inference_mode():
        main()

"""ReIDEvaluator under torch.distributed: two gloo processes evaluate the concatenation of their
rows, in rank order, and raise the same errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from oamn.reid_eval import (
    ReIDEvaluator,
)
from tests.reid_eval import helpers_streaming as cases

pytestmark = pytest.mark.usefixtures("one_thread")

WORLD_SIZE = 2
#: Rank 0's rows, then rank 1's: uneven shares, both with queries and gallery items.
SHARES = (slice(0, 35), slice(35, None))


def _distributed_worker(rank: int, store: str, results: str) -> None:
    """One rank of a 2-process gloo group: update with its share, compute, save the metrics."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        case = cases.problem(7)
        shared = ReIDEvaluator("unified", rerank_options=cases.RERANK)
        cases.feed(shared, case, SHARES[rank])
        metrics = {mode: shared.compute(mode) for mode in ("plain", "unified", "reranked")}
        local = ReIDEvaluator("unified", sync=False)
        cases.feed(local, case, SHARES[rank])
        metrics["local"] = local.compute()
        # Rank 0 holds every gallery item and no query, rank 1 every query: ranks without
        # queries are fine, and the order is rank 0's rows, then rank 1's.
        split = ReIDEvaluator(two_sided=False)
        mine = case["is_query"] == (rank == 1)
        labels = (case[key][mine] for key in ("pids", "camids", "is_query"))
        split.update(case["features"][:, mine], *labels)
        metrics["split"] = split.compute()
        # 16-bit features travel as their bytes (gloo has no 16-bit all_gather).
        half = ReIDEvaluator()
        share = cases.problem_rows(case, SHARES[rank])
        half.update(
            share["features"][0].bfloat16(), share["pids"], share["camids"], share["is_query"]
        )
        metrics["bfloat16"] = half.compute()
        # Rank 1 holds nothing at all: it must still take part (and learn the dtype and shapes).
        lopsided = ReIDEvaluator("unified")
        if rank == 0:
            cases.feed(lopsided, case, slice(None))
        metrics["lopsided"] = lopsided.compute()
        # Errors are raised on every rank alike, none left waiting at a collective.
        clashing, empty = ReIDEvaluator(), ReIDEvaluator()
        labels = (case[key][:4] for key in ("pids", "camids", "is_query"))
        clashing.update(case["features"][0, :4].to((torch.float32, torch.float64)[rank]), *labels)
        metrics["errors"] = [error_of(clashing.compute), error_of(empty.compute)]
        torch.save(metrics, Path(results) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def error_of(function) -> str:
    """The message of the ValueError that ``function()`` raises."""
    try:
        function()
    except ValueError as error:
        return str(error)
    return "no error"


def test_two_gloo_processes_evaluate_the_concatenation_of_their_rows(tmp_path: Path) -> None:
    context = mp.spawn(
        _distributed_worker,
        args=(str(tmp_path / "store"), str(tmp_path)),
        nprocs=WORLD_SIZE,
        join=False,
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two ranks did not finish within 120 s (a collective hangs)")
    case = cases.problem(7)
    expected = {mode: cases.functional(case, mode) for mode in ("plain", "unified", "reranked")}
    expected["split"] = expected["plain"]
    expected["lopsided"] = expected["unified"]
    expected["bfloat16"] = cases.functional(
        case | {"features": case["features"].bfloat16()}, "plain"
    )
    for rank in range(WORLD_SIZE):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for name, metrics in expected.items():
            cases.assert_equal(got[name], metrics)
        assert got["errors"] == [
            "features has dtype torch.float64 in rank 1 but torch.float32 in rank 0; every batch "
            "and every rank must agree (reset() starts over)",
            "nothing to evaluate on any rank: call update() with some batches",
        ]
        cases.assert_equal(
            got["local"], cases.functional(cases.problem_rows(case, SHARES[rank]), "unified")
        )

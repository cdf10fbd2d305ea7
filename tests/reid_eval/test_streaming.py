"""ReIDEvaluator: batches accumulated (on one or two processes) equal the functional API."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from oamn.reid_eval import (
    MODES,
    RankMetrics,
    ReIDEvaluator,
    evaluate_features,
    evaluate_rank,
    evaluate_soft_unified,
    evaluate_unified,
    predict_occlusion_type,
    rerank,
)
from tests.conftest import DEVICES

pytestmark = pytest.mark.usefixtures("one_thread")

NUM_ITEMS, NUM_TYPES, DIM = 90, 9, 4
#: Batch boundaries: a batch of one row, and rows 20-27, gallery only.
SPLITS = (0, 1, 20, 27, 31, 70, NUM_ITEMS)
RERANK = {"k1": 6, "k2": 3, "lambda_value": 0.2}


def problem(seed: int, num: int = NUM_ITEMS) -> dict[str, torch.Tensor]:
    """Integer features (many tied distances), queries and gallery interleaved, junk: identity
    -1 in the gallery and same-identity same-camera gallery items (8 identities, 3 cameras),
    and queries of identity 8, absent from the gallery."""
    rng = torch.Generator().manual_seed(seed)
    is_query = torch.rand(num, generator=rng) < 0.3
    is_query[20:27] = False
    pids = torch.randint(0, 8, (num,), generator=rng)
    pids[~is_query & (torch.rand(num, generator=rng) < 0.1)] = -1
    pids[is_query & (torch.rand(num, generator=rng) < 0.1)] = 8  # absent: a skipped query
    scores = torch.rand(num, 4, generator=rng)  # a spread of the 9 types by eq. 8
    probs = (3 * torch.randn(num, NUM_TYPES, generator=rng)).softmax(dim=1)
    return {
        "features": torch.randint(0, 3, (NUM_TYPES, num, DIM), generator=rng).float(),
        "pids": pids,
        "camids": torch.randint(0, 3, (num,), generator=rng),
        "is_query": is_query,
        "scores": scores,
        "probs": probs,
    }


def feed(evaluator: ReIDEvaluator, case: dict, rows: slice, scores: str = "scores") -> None:
    """Update with ``case``'s ``rows`` in the uneven batches of :data:`SPLITS`."""
    start, stop = rows.indices(NUM_ITEMS)[:2]
    bounds = sorted({start, stop, *(s for s in SPLITS if start < s < stop)})
    for low, high in itertools.pairwise(bounds):
        evaluator.update(
            case["features"][:, low:high],
            case["pids"][low:high],
            case["camids"][low:high],
            case["is_query"][low:high],
            occlusion_scores=case[scores][low:high],
        )


def functional(
    case: dict, mode: str, two_sided: bool = True, rerank_options: dict = RERANK, **options
) -> RankMetrics:
    """The functional API's metrics of ``case`` in ``mode``."""
    query, gallery = case["is_query"], ~case["is_query"]
    pids, camids, feats = case["pids"], case["camids"], case["features"]
    labels = (pids[query], pids[gallery], camids[query], camids[gallery])
    q_feats = feats[:, query] if two_sided else feats[0, query]
    if mode == "plain":
        return evaluate_features(feats[0, query], feats[0, gallery], *labels, **options)
    if mode == "unified":
        types = predict_occlusion_type(case["scores"][query])
        return evaluate_unified(q_feats, types, feats[:, gallery], *labels, **options)
    if mode == "soft_unified":
        probs = case["probs"][query]
        return evaluate_soft_unified(q_feats, probs, feats[:, gallery], *labels, **options)
    metric = options.pop("metric", "euclidean")
    distances = rerank(feats[0, query], feats[0, gallery], metric=metric, **rerank_options)
    return evaluate_rank(distances, *labels, **options)


def assert_equal(got: RankMetrics, expected: RankMetrics) -> None:
    """The same metrics to the bit, NaN (queries without a valid match) at the same places."""
    assert torch.equal(got.cmc, expected.cmc)
    for name in ("ap", "inp"):
        a, b = getattr(got, name), getattr(expected, name)
        assert torch.equal(a.isnan(), b.isnan()), name
        assert torch.equal(a.nan_to_num(-1.0), b.nan_to_num(-1.0)), name
    assert torch.equal(got.first_match, expected.first_match)
    assert (got.mAP, got.mINP, got.num_valid_queries) == (
        expected.mAP,
        expected.mINP,
        expected.num_valid_queries,
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_mode_equals_its_functional_counterpart(mode: str, seed: int) -> None:
    case = problem(seed)
    metric = ("euclidean", "cosine", "sqeuclidean")[seed]
    ap, two_sided = ("step", "trapezoid")[seed % 2], seed != 1
    evaluator = ReIDEvaluator(
        mode, metric, 20, ap, two_sided=two_sided, rerank_options=RERANK, chunk_size=7
    )
    feed(evaluator, case, slice(None), "probs" if mode == "soft_unified" else "scores")
    assert len(evaluator) == NUM_ITEMS
    expected = functional(case, mode, two_sided, metric=metric, max_rank=20, ap=ap)
    assert 0 < expected.num_valid_queries < expected.num_queries  # junk and skipped queries
    assert_equal(evaluator.compute(), expected)


def test_queries_and_gallery_keep_the_order_of_the_batches() -> None:
    case = problem(3)
    batches = [slice(low, high) for low, high in itertools.pairwise(SPLITS)][::-1]
    backwards = ReIDEvaluator()
    for rows in batches:
        backwards.update(
            case["features"][:, rows],
            case["pids"][rows],
            case["camids"][rows],
            case["is_query"][rows],
        )
    order = torch.cat([torch.arange(NUM_ITEMS)[rows] for rows in batches])
    reordered = {key: value[order] for key, value in case.items() if key != "features"}
    reordered["features"] = case["features"][:, order]
    got = backwards.compute()
    assert_equal(got, functional(reordered, "plain"))
    # The ties make the gallery order matter: the same queries rank differently in the forward
    # order (so the test above would catch a lost order).
    query_items = order[case["is_query"][order]]
    forwards = functional(case, "plain")
    in_item_order = got.ap[torch.argsort(query_items)]
    assert not torch.equal(in_item_order.nan_to_num(-1.0), forwards.ap.nan_to_num(-1.0))


def test_the_state_after_compute_and_reset() -> None:
    case = problem(4)
    evaluator = ReIDEvaluator("unified")
    feed(evaluator, case, slice(0, 60))
    first = evaluator.compute()
    assert_equal(evaluator.compute(), first)  # compute changes nothing
    # Other modes on the same state; the default mode is still the constructor's.
    assert_equal(evaluator.compute("plain"), functional(problem_rows(case, slice(60)), "plain"))
    reranked = functional(problem_rows(case, slice(60)), "reranked", rerank_options={})
    assert_equal(evaluator.compute("reranked"), reranked)
    with pytest.raises(ValueError, match=r"occlusion_scores must be .* T = 9"):
        evaluator.compute("soft_unified")  # its scores are eq. 8's, not 9 probabilities
    assert_equal(evaluator.compute(), first)
    assert_equal(first, functional(problem_rows(case, slice(60)), "unified"))
    feed(evaluator, case, slice(60, None))  # more batches after a compute
    assert_equal(evaluator.compute(), functional(case, "unified"))
    evaluator.reset()
    assert len(evaluator) == 0
    with pytest.raises(ValueError, match=r"nothing to evaluate: call update\(\)"):
        evaluator.compute()
    # reset forgets the first batch's dtype and shapes too.
    evaluator.update(
        case["features"][:, :50].double(),
        case["pids"][:50],
        case["camids"][:50],
        case["is_query"][:50],
        occlusion_scores=case["scores"][:50].double(),
    )
    assert_equal(evaluator.compute(), functional(problem_rows(case, slice(50)), "unified"))
    assert repr(evaluator) == (
        f"ReIDEvaluator(mode='unified', metric='euclidean', items=50 "
        f"({int(case['is_query'][:50].sum())} queries, {50 - int(case['is_query'][:50].sum())} "
        "gallery), features=(9, 50, 4) float64 on cpu)"
    )
    assert repr(ReIDEvaluator()) == "ReIDEvaluator(mode='plain', metric='euclidean', items=0)"


def problem_rows(case: dict, rows: slice) -> dict[str, torch.Tensor]:
    """The items ``rows`` of ``case``."""
    labels = {key: value[rows] for key, value in case.items() if key != "features"}
    return labels | {"features": case["features"][:, rows]}


def test_features_as_numpy_lists_or_2d_and_stored_as_copies() -> None:
    case = problem(5)
    expected = functional(case, "plain")
    from_numpy, from_2d = ReIDEvaluator(), ReIDEvaluator()
    bank = case["features"].numpy().copy()
    for low, high in itertools.pairwise(SPLITS):
        rows = slice(low, high)
        labels = [case[key][rows].tolist() for key in ("pids", "camids", "is_query")]
        from_numpy.update(bank[:, rows], *labels)
        with_graph = case["features"][0, rows].clone().requires_grad_() * 1.0
        from_2d.update(with_graph, *labels)
    bank[:] = 0  # the evaluator holds copies
    assert_equal(from_numpy.compute(), expected)
    assert_equal(from_2d.compute(), expected)
    stored = from_2d._rows[0].features
    assert not stored.requires_grad
    assert stored.grad_fn is None
    assert_equal(from_2d.compute("reranked"), functional(case, "reranked", rerank_options={}))


@pytest.mark.parametrize("device", DEVICES)
def test_items_are_stored_and_evaluated_on_the_features_device(device: str) -> None:
    case = problem(6)
    on_device = {key: value.to(device) for key, value in case.items()}
    evaluator = ReIDEvaluator("soft_unified")
    feed(evaluator, on_device, slice(None), "probs")
    assert evaluator._rows[0].features.device.type == device
    got = evaluator.compute()
    assert got.ap.device.type == device
    expected = functional(on_device, "soft_unified")
    # CUDA sums the precisions in no fixed order: the last bits of an AP may differ.
    torch.testing.assert_close(got.ap, expected.ap, rtol=1e-14, atol=0, equal_nan=True)
    assert torch.equal(got.first_match, expected.first_match)
    assert torch.equal(got.first_match.cpu(), functional(case, "soft_unified").first_match)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (
            {"mode": "hard"},
            ValueError,
            r"mode must be one of \['plain', 'unified', 'soft_unified', 'reranked'\]",
        ),
        ({"metric": "l1"}, ValueError, "metric must be one of"),
        ({"max_rank": 0}, ValueError, "max_rank must be >= 1"),
        ({"ap": "area"}, ValueError, "ap must be one of"),
        ({"junk_pids": -1}, TypeError, "junk_pids must be a sequence of ints"),
        ({"two_sided": 1}, TypeError, "two_sided must be a bool"),
        ({"thresholds": (0.8, 0.2)}, ValueError, "thresholds must be finite with low <= high"),
        ({"boundary": "mine"}, ValueError, "boundary must be one of"),
        (
            {"rerank_options": {"k3": 2}},
            ValueError,
            r"rerank_options takes k1, k2 and lambda_value, got \['k3'\]",
        ),
        ({"rerank_options": (20, 6)}, TypeError, "rerank_options must be a dict"),
        ({"rerank_options": {"k1": 0}}, ValueError, "k1 must be >= 1"),
        ({"rerank_options": {"lambda_value": 2}}, ValueError, r"lambda_value must be in \[0, 1\]"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
        ({"sync": None}, TypeError, "sync must be a bool"),
    ],
)
def test_bad_settings_are_refused_at_construction(options, error, match) -> None:
    with pytest.raises(error, match=match):
        ReIDEvaluator(**options)


B = 3
BANK = torch.arange(2 * B * 2, dtype=torch.float32).view(2, B, 2)
BATCH = {
    "features": BANK,
    "pids": torch.tensor([1, 2, 1]),
    "camids": torch.tensor([0, 0, 1]),
    "is_query": torch.tensor([True, False, False]),
    "occlusion_scores": torch.full((B, 4), 0.25),
}


def with_nan(tensor: torch.Tensor, value: float = float("nan")) -> torch.Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[-1] = value
    return tensor


@pytest.mark.parametrize(
    ("mode", "changes", "error", "match"),
    [
        ("plain", {"features": BANK[0, 0]}, ValueError, r"features must have shape \(B, D\)"),
        ("plain", {"features": BANK[:0]}, ValueError, r"with D >= 1 and T >= 1"),
        ("plain", {"features": BANK.long()}, TypeError, "features must be a floating"),
        (
            "plain",
            {"features": BANK[:, :, :0]},
            ValueError,
            r"features must have shape \(B, D\), or \(T, B, D\)",
        ),
        ("plain", {"features": with_nan(BANK)}, ValueError, "features contains NaN"),
        ("plain", {"features": with_nan(BANK, float("inf"))}, ValueError, "features contains inf"),
        ("plain", {"features": {"a": 1}}, TypeError, "features must be a torch.Tensor"),
        ("plain", {"pids": [1, 2]}, ValueError, "else pids needs 3 entries"),  # 2 = T too
        ("plain", {"pids": [1, 2, 3, 4]}, ValueError, "pids has 4 entries, expected 3"),
        ("plain", {"pids": torch.ones(B)}, TypeError, "pids must hold integers"),
        ("plain", {"camids": [[0, 0, 1]]}, ValueError, "camids must be 1-D"),
        (
            "plain",
            {"pids": torch.ones(B, dtype=torch.long, device="meta")},
            ValueError,
            "pids is on meta",
        ),
        (
            "plain",
            {"is_query": torch.tensor([1, 0, 0])},
            TypeError,
            r"is_query must be bool .*\.bool\(\)",
        ),
        (
            "plain",
            {"is_query": [True, False]},
            ValueError,
            r"is_query must have shape \(B,\) = \(3,\)",
        ),
        (
            "plain",
            {"occlusion_scores": torch.ones(2, 4)},
            ValueError,
            "occlusion_scores has 2 rows, expected one per item",
        ),
        (
            "plain",
            {"occlusion_scores": torch.ones(B)},
            ValueError,
            r"occlusion_scores must have shape \(B, 4\)",
        ),
        (
            "plain",
            {"occlusion_scores": torch.ones(B, 4, dtype=torch.long)},
            TypeError,
            "occlusion_scores must be a floating",
        ),
        (
            "plain",
            {"occlusion_scores": with_nan(torch.ones(B, 4))},
            ValueError,
            "occlusion_scores contains NaN",
        ),
        (
            "unified",
            {"features": BANK[0]},
            ValueError,
            r"pass features as the batch's \(T, B, D\) bank",
        ),
        (
            "unified",
            {"occlusion_scores": None},
            ValueError,
            "occlusion_scores is required for the query rows in mode 'unified'",
        ),
        ("soft_unified", {"occlusion_scores": None}, ValueError, "occlusion_scores is required"),
        (
            "soft_unified",
            {},
            ValueError,
            r"occlusion_scores must be \(B, T\) = \(3, 2\) type probabilities",
        ),
    ],
)
def test_bad_batches_are_refused_and_store_nothing(mode, changes, error, match) -> None:
    evaluator = ReIDEvaluator(mode)
    with pytest.raises(error, match=match):
        evaluator.update(**(BATCH | changes))
    assert len(evaluator) == 0
    assert evaluator._layout is None
    # The same batch is stored once it is right (soft_unified: with probabilities of T = 2).
    right = {"occlusion_scores": torch.tensor([[0.5, 0.5]] * B)} if mode == "soft_unified" else {}
    evaluator.update(**(BATCH | right))
    assert len(evaluator) == B


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"features": BANK.double()},
            "features has dtype torch.float64 in this batch but torch.float32 in the first batch",
        ),
        (
            {"features": torch.zeros(2, B, 3)},
            "features has feature size D 3 in this batch but 2 in the first batch",
        ),
        (
            {"features": torch.zeros(3, B, 2)},
            r"features has number of types T \(0: a \(B, D\) batch\) 3 in this batch but 2 in the",
        ),
        ({"features": BANK[0]}, r"features has number of types T .* 0 in this batch but 2 in"),
        (
            {"features": BANK.to("meta")},
            "features has device meta in this batch but cpu in the first batch",
        ),
        (
            {"occlusion_scores": torch.ones(B, 9)},
            "occlusion_scores has width S 9 in this batch but 4 in the first",
        ),
        (
            {"occlusion_scores": torch.ones(B, 4, dtype=torch.float64)},
            "occlusion_scores has dtype torch.float64",
        ),
    ],
)
def test_every_batch_must_agree_with_the_first(changes, match) -> None:
    evaluator = ReIDEvaluator()
    evaluator.update(**BATCH)
    with pytest.raises(ValueError, match=match):
        evaluator.update(**(BATCH | changes))
    assert len(evaluator) == B
    evaluator.update(**(BATCH | {"occlusion_scores": None}))  # scores may be left out
    assert len(evaluator) == 2 * B


def test_compute_says_what_is_missing() -> None:
    evaluator = ReIDEvaluator()
    with pytest.raises(ValueError, match=r"nothing to evaluate: call update\(\)"):
        evaluator.compute()
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluator.compute("fast")
    evaluator.update(**(BATCH | {"is_query": torch.zeros(B, dtype=torch.bool)}))
    with pytest.raises(
        ValueError, match="no query among the 3 items stored: add some with is_query=True"
    ):
        evaluator.compute()
    evaluator.reset()
    evaluator.update(**(BATCH | {"is_query": torch.ones(B, dtype=torch.bool)}))
    with pytest.raises(
        ValueError, match="no gallery item among the 3 items stored: add some with is_query=False"
    ):
        evaluator.compute()
    # The unified modes need the banks and the queries' scores.
    flat = ReIDEvaluator()
    flat.update(**(BATCH | {"features": BANK[0]}))
    assert flat.compute().num_valid_queries == 1
    with pytest.raises(ValueError, match=r"mode 'unified' needs the occlusion banks.*\(T, B, D\)"):
        flat.compute("unified")
    unscored = ReIDEvaluator()
    unscored.update(**(BATCH | {"occlusion_scores": None}))
    with pytest.raises(ValueError, match="occlusion_scores are missing for some queries"):
        unscored.compute("soft_unified")
    half = ReIDEvaluator()
    half.update(**BATCH)
    half.update(**(BATCH | {"occlusion_scores": None}))  # a query without scores
    with pytest.raises(ValueError, match="occlusion_scores are missing for some queries"):
        half.compute("unified")
    half.update(
        **(BATCH | {"is_query": torch.zeros(B, dtype=torch.bool), "occlusion_scores": None})
    )
    with pytest.raises(ValueError, match="occlusion_scores are missing"):
        half.compute("unified")
    scored = ReIDEvaluator()
    scored.update(**BATCH)
    scored.update(
        **(BATCH | {"is_query": torch.zeros(B, dtype=torch.bool), "occlusion_scores": None})
    )
    assert scored.compute("unified").num_queries == 1  # gallery rows need no scores
    with pytest.raises(
        ValueError, match=r"occlusion_scores must be \(B, T\) type probabilities with T = 2"
    ):
        scored.compute("soft_unified")


WORLD_SIZE = 2
#: Rank 0's rows, then rank 1's: uneven shares, both with queries and gallery items.
SHARES = (slice(0, 35), slice(35, None))


def _distributed_worker(rank: int, store: str, results: str) -> None:
    """One rank of a 2-process gloo group: update with its share, compute, save the metrics."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        case = problem(7)
        shared = ReIDEvaluator("unified", rerank_options=RERANK)
        feed(shared, case, SHARES[rank])
        metrics = {mode: shared.compute(mode) for mode in ("plain", "unified", "reranked")}
        local = ReIDEvaluator("unified", sync=False)
        feed(local, case, SHARES[rank])
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
        share = problem_rows(case, SHARES[rank])
        half.update(
            share["features"][0].bfloat16(), share["pids"], share["camids"], share["is_query"]
        )
        metrics["bfloat16"] = half.compute()
        # Rank 1 holds nothing at all: it must still take part (and learn the dtype and shapes).
        lopsided = ReIDEvaluator("unified")
        if rank == 0:
            feed(lopsided, case, slice(None))
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
    case = problem(7)
    expected = {mode: functional(case, mode) for mode in ("plain", "unified", "reranked")}
    expected["split"] = expected["plain"]
    expected["lopsided"] = expected["unified"]
    expected["bfloat16"] = functional(case | {"features": case["features"].bfloat16()}, "plain")
    for rank in range(WORLD_SIZE):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for name, metrics in expected.items():
            assert_equal(got[name], metrics)
        assert got["errors"] == [
            "features has dtype torch.float64 in rank 1 but torch.float32 in rank 0; every batch "
            "and every rank must agree (reset() starts over)",
            "nothing to evaluate on any rank: call update() with some batches",
        ]
        assert_equal(got["local"], functional(problem_rows(case, SHARES[rank]), "unified"))


def test_a_transposed_bank_is_named_as_such() -> None:
    evaluator = ReIDEvaluator("unified")
    items_first = torch.randn(6, 9, 4)  # (B, T, D) instead of (T, B, D)
    with pytest.raises(ValueError, match=r"features has shape \(6, 9, 4\).*features\.transpose"):
        evaluator.update(
            items_first,
            torch.arange(6),
            torch.zeros(6, dtype=torch.long),
            torch.zeros(6, dtype=torch.bool),
        )
    assert len(evaluator) == 0

"""ReIDEvaluator: batches accumulated (on one or two processes) equal the functional API."""

from __future__ import annotations

import itertools

import pytest
import torch

from oamn.reid_eval import (
    MODES,
    ReIDEvaluator,
)
from tests.conftest import DEVICES
from tests.reid_eval.helpers_streaming import (
    NUM_ITEMS,
    RERANK,
    SPLITS,
    assert_equal,
    feed,
    functional,
    problem,
    problem_rows,
)

pytestmark = pytest.mark.usefixtures("one_thread")


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

"""A seeded re-identification problem and its functional metrics, shared by the
ReIDEvaluator tests."""

from __future__ import annotations

import itertools

import torch

from oamn.reid_eval import (
    RankMetrics,
    ReIDEvaluator,
    evaluate_features,
    evaluate_rank,
    evaluate_soft_unified,
    evaluate_unified,
    predict_occlusion_type,
    rerank,
)

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


def problem_rows(case: dict, rows: slice) -> dict[str, torch.Tensor]:
    """The items ``rows`` of ``case``."""
    labels = {key: value[rows] for key, value in case.items() if key != "features"}
    return labels | {"features": case["features"][:, rows]}

"""Bad input gets a TypeError/ValueError that names the argument and says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oamn.reid_eval import (
    evaluate_features,
    evaluate_rank,
    evaluate_soft_unified,
    evaluate_unified,
    pairwise_distance,
    predict_occlusion_type,
)

Q, G = 3, 5
DISTMAT = np.arange(Q * G, dtype=np.float32).reshape(Q, G)
Q_PIDS, G_PIDS = np.array([1, 2, 3]), np.array([1, 2, 3, 1, 2])
Q_CAMS, G_CAMS = np.zeros(Q, dtype=int), np.ones(G, dtype=int)
LABELS = {"q_pids": Q_PIDS, "g_pids": G_PIDS, "q_camids": Q_CAMS, "g_camids": G_CAMS}


def rank_kwargs(**changes):
    return {"distmat": DISTMAT, **LABELS, **changes}


def with_value(array: np.ndarray, index, value: float) -> np.ndarray:
    array = array.copy()
    array[index] = value
    return array


def with_nan(array: np.ndarray, index) -> np.ndarray:
    return with_value(array, index, np.nan)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        (
            {"distmat": {"a": DISTMAT}},
            TypeError,
            "distmat must be a torch.Tensor, a numpy array or a list of numbers, got dict",
        ),
        (
            {"distmat": [[0.0, 1.0, 2.0, 3.0, 4.0]] * 2 + [[0.0, 1.0]]},
            ValueError,
            "distmat is a ragged list: its nested lists must all have the same length",
        ),
        ({"distmat": [["0.1"] * G] * Q}, TypeError, "distmat must hold numbers, got numpy dtype"),
        ({"distmat": DISTMAT.astype(object)}, TypeError, "distmat must hold numbers"),
        ({"distmat": DISTMAT[0]}, ValueError, r"distmat must have shape \(Q, G\)"),
        ({"distmat": DISTMAT.astype(int)}, TypeError, r"distmat must be a floating .*\.float\(\)"),
        ({"distmat": with_nan(DISTMAT, (2, 4))}, ValueError, "distmat contains NaN"),
        ({"distmat": with_nan(DISTMAT, (0, 0))}, ValueError, "distmat contains NaN"),
        (
            {"distmat": np.zeros((Q, 0), np.float32), "g_pids": G_PIDS[:0], "g_camids": G_CAMS[:0]},
            ValueError,
            "the gallery is empty",
        ),
        (
            {"distmat": np.zeros((0, G), np.float32), "q_pids": Q_PIDS[:0], "q_camids": Q_CAMS[:0]},
            ValueError,
            "there are no queries",
        ),
        ({"q_pids": Q_PIDS[:2]}, ValueError, "q_pids has 2 entries, expected 3"),
        ({"g_pids": np.append(G_PIDS, 4)}, ValueError, "g_pids has 6 entries, expected 5"),
        ({"q_camids": Q_CAMS[:, None]}, ValueError, r"q_camids must be 1-D, got shape \(3, 1\)"),
        ({"g_camids": G_CAMS.astype(float)}, TypeError, r"g_camids must hold integers.*\.long\(\)"),
        ({"q_pids": Q_PIDS > 1}, TypeError, "q_pids must hold integers"),
        ({"q_pids": [1, [2, 3], 3]}, ValueError, "q_pids is a ragged list"),
        ({"g_camids": [1, 1, None, 1, 1]}, TypeError, "g_camids must hold numbers"),
        ({"q_camids": [0, 0, 0.5]}, TypeError, r"q_camids must hold integers.*\.long\(\)"),
        ({"q_pids": [1, 2]}, ValueError, "q_pids has 2 entries, expected 3"),
        ({"g_pids": {1, 2, 3, 4, 5}}, TypeError, "g_pids must be a torch.Tensor, a numpy array"),
        ({"q_camids": G_CAMS[:3]}, ValueError, "no query has a valid match"),
        ({"max_rank": 0}, ValueError, "max_rank must be >= 1, got 0"),
        ({"max_rank": 5.0}, TypeError, "max_rank must be an int"),
        ({"max_rank": True}, TypeError, "max_rank must be an int"),
        ({"ap": "area"}, ValueError, r"ap must be one of \['step', 'trapezoid'\]"),
        ({"junk_pids": -1}, TypeError, "junk_pids must be a sequence of ints"),
        ({"junk_pids": (-1.0,)}, TypeError, "junk_pids must hold ints"),
    ],
)
def test_evaluate_rank_rejects(changes, error, match) -> None:
    with pytest.raises(error, match=match):
        evaluate_rank(**rank_kwargs(**changes))


def test_labels_on_another_device_are_rejected() -> None:
    with pytest.raises(
        ValueError,
        match=r"q_pids is on meta but the distances/features are on cpu; "
        r"move it with q_pids\.to\('cpu'\)",
    ):
        evaluate_rank(**rank_kwargs(q_pids=torch.tensor(Q_PIDS, device="meta")))


Q_FEATS = np.eye(Q, 4, dtype=np.float32)
G_FEATS = np.eye(G, 4, dtype=np.float32)


@pytest.mark.parametrize(
    ("q_feats", "g_feats", "error", "match"),
    [
        (Q_FEATS[0], G_FEATS, ValueError, r"q_feats must have shape \(Q, D\)"),
        (Q_FEATS, G_FEATS[None], ValueError, r"g_feats must have shape \(G, D\)"),
        (Q_FEATS, G_FEATS[:, :3], ValueError, "its last dimension must be the feature size D = 4"),
        (
            Q_FEATS,
            G_FEATS.astype(np.float64),
            TypeError,
            r"g_feats is torch\.float64 but q_feats is torch\.float32; convert one",
        ),
        (Q_FEATS.astype(np.int64), G_FEATS, TypeError, "q_feats must be a floating"),
        (with_nan(Q_FEATS, (1, 2)), G_FEATS, ValueError, "q_feats contains NaN"),
        (Q_FEATS, with_nan(G_FEATS, (4, 3)), ValueError, "g_feats contains NaN"),
        (with_value(Q_FEATS, (0, 1), np.inf), G_FEATS, ValueError, "q_feats contains inf"),
        (Q_FEATS, with_value(G_FEATS, (2, 0), -np.inf), ValueError, "g_feats contains -inf"),
        (Q_FEATS[:, :0], G_FEATS[:, :0], ValueError, r"no feature dimensions \(D = 0\)"),
        (Q_FEATS * 1e20, G_FEATS, ValueError, "distances between q_feats and g_feats overflow"),
        (Q_FEATS, "gallery", TypeError, "g_feats must be a torch.Tensor, a numpy array or a list"),
        (Q_FEATS.tolist(), G_FEATS, TypeError, r"g_feats is torch\.float32 but q_feats is .*64"),
        ([[1.0, 0.0], [0.5]], G_FEATS, ValueError, "q_feats is a ragged list"),
    ],
)
def test_feature_functions_reject(q_feats, g_feats, error, match) -> None:
    with pytest.raises(error, match=match):
        pairwise_distance(q_feats, g_feats)
    with pytest.raises(error, match=match):
        evaluate_features(q_feats, g_feats, **LABELS)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"metric": "manhattan"},
            ValueError,
            r"metric must be one of \['euclidean', 'sqeuclidean', 'cosine'\]",
        ),
        ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
        ({"chunk_size": None}, TypeError, "chunk_size must be an int"),
        ({"g_pids": G_PIDS[:4]}, ValueError, "g_pids has 4 entries, expected 5"),
        ({"ap": "auc"}, ValueError, "ap must be one of"),
    ],
)
def test_evaluate_features_rejects(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        evaluate_features(Q_FEATS, G_FEATS, **{**LABELS, **kwargs})


@pytest.mark.parametrize("progress", [1, "yes", None])
def test_progress_must_be_a_flag_or_a_callable(progress) -> None:
    with pytest.raises(TypeError, match="progress must be a bool or a callable"):
        evaluate_features(Q_FEATS, G_FEATS, **LABELS, progress=progress)


def test_features_on_another_device_are_rejected() -> None:
    with pytest.raises(ValueError, match="g_feats is on meta"):
        evaluate_features(torch.from_numpy(Q_FEATS), torch.empty(G, 4, device="meta"), **LABELS)


BANK = np.stack([G_FEATS, G_FEATS[::-1].copy()])


@pytest.mark.parametrize(
    ("q_types", "bank", "error", "match"),
    [
        (np.array([0, 2, 1]), BANK, ValueError, r"q_types must be in \[0, 2\).*from 0 to 2"),
        (np.array([0, -1, 1]), BANK, ValueError, r"q_types must be in \[0, 2\)"),
        (np.array([0, 1]), BANK, ValueError, "q_types has 2 entries, expected 3"),
        (np.array([0.0, 1.0, 1.0]), BANK, TypeError, "q_types must hold integers"),
        ([0, [1], 1], BANK, ValueError, "q_types is a ragged list"),
        (np.zeros(3, dtype=int), G_FEATS, ValueError, r"g_bank must have shape \(T, G, D\)"),
        (np.zeros(3, dtype=int), BANK[..., :2], ValueError, "feature size D = 4"),
        (np.zeros(3, dtype=int), with_nan(BANK, (1, 0, 0)), ValueError, "g_bank contains NaN"),
        (
            np.zeros(3, dtype=int),
            with_value(BANK, (1, 0, 0), np.inf),
            ValueError,
            "g_bank contains inf",
        ),
        (np.zeros(3, dtype=int), BANK * 1e20, ValueError, "between q_feats and g_bank overflow"),
    ],
)
def test_evaluate_unified_rejects(q_types, bank, error, match) -> None:
    with pytest.raises(error, match=match):
        evaluate_unified(Q_FEATS, q_types, bank, **LABELS)


def test_evaluate_unified_rejects_empty_inputs() -> None:
    with pytest.raises(ValueError, match="there are no queries"):
        evaluate_unified(
            Q_FEATS[:0], np.zeros(0, int), BANK, Q_PIDS[:0], G_PIDS, Q_CAMS[:0], G_CAMS
        )
    with pytest.raises(ValueError, match="the gallery is empty"):
        evaluate_unified(
            Q_FEATS, np.zeros(3, int), BANK[:, :0], Q_PIDS, G_PIDS[:0], Q_CAMS, G_CAMS[:0]
        )


@pytest.mark.parametrize(
    ("scores", "kwargs", "error", "match"),
    [
        (
            np.zeros((2, 3)),
            {},
            ValueError,
            r"scores must have shape \(N, 4\) \(columns top, bottom, left, right\)",
        ),
        (np.zeros(4), {}, ValueError, r"scores must have shape \(N, 4\)"),
        (np.zeros((2, 4), dtype=int), {}, TypeError, "scores must be a floating"),
        (with_nan(np.zeros((2, 4)), (1, 1)), {}, ValueError, "scores contains NaN"),
        ([[0.1, 0.2, 0.3, 0.4], [0.5]], {}, ValueError, "scores is a ragged list"),
        ([["top", 0.2, 0.3, 0.4]], {}, TypeError, "scores must hold numbers"),
        ([[1, 0, 0, 0]], {}, TypeError, "scores must be a floating"),
        (np.zeros((2, 4)), {"thresholds": (0.75, 0.5)}, ValueError, "low <= high"),
        (
            np.zeros((2, 4)),
            {"thresholds": (0.5,)},
            ValueError,
            r"thresholds must be a \(low, high\) pair",
        ),
        (np.zeros((2, 4)), {"thresholds": (0.5, float("nan"))}, ValueError, "must be finite"),
        (np.zeros((2, 4)), {"thresholds": ("low", 0.7)}, TypeError, "thresholds must hold numbers"),
        (
            np.zeros((2, 4)),
            {"boundary": "strict"},
            ValueError,
            r"boundary must be one of \['paper', 'official'\]",
        ),
    ],
)
def test_predict_occlusion_type_rejects(scores, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        predict_occlusion_type(scores, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_a_nan_anywhere_is_found(dtype: torch.dtype) -> None:
    # Every position of a row wider than a SIMD register, including rows without any match.
    g_pids = torch.arange(37) % 5
    for index in [0, 1, 15, 16, 17, 31, 36]:
        for row in range(2):
            distmat = torch.rand(2, 37).to(dtype)
            distmat[row, index] = torch.nan
            with pytest.raises(ValueError, match="distmat contains NaN"):
                evaluate_rank(
                    distmat,
                    torch.tensor([1, 9]),
                    g_pids,
                    torch.tensor([0, 0]),
                    torch.ones(37, dtype=torch.long),
                )


def test_a_transposed_bank_is_named_as_such() -> None:
    gallery_first = torch.randn(5, 9, 4)  # (G, T, D) for 5 gallery items, 9 types
    g_pids, g_cams = torch.arange(5), torch.zeros(5, dtype=torch.long)
    q_feats, q_ids, q_cams = (
        torch.randn(2, 4),
        torch.tensor([0, 1]),
        torch.ones(2, dtype=torch.long),
    )
    layout = r"g_bank has shape \(5, 9, 4\).*laid out \(T, N, D\).*g_bank\.transpose\(0, 1\)"
    with pytest.raises(ValueError, match=layout):
        evaluate_unified(q_feats, [0, 1], gallery_first, q_ids, g_pids, q_cams, g_cams)
    probs = torch.full((2, 5), 0.2)
    with pytest.raises(ValueError, match=layout):
        evaluate_soft_unified(q_feats, probs, gallery_first, q_ids, g_pids, q_cams, g_cams)
    # Given the right way round, the same bank evaluates.
    good = evaluate_unified(
        q_feats, [0, 1], gallery_first.transpose(0, 1), q_ids, g_pids, q_cams, g_cams
    )
    assert good.num_valid_queries == 2
    # A query bank stacked queries-first is told the layout of both.
    with pytest.raises(ValueError, match=r"\(T, Q, D\) and \(T, G, D\), types first"):
        evaluate_unified(
            torch.randn(2, 9, 4),
            [0, 1],
            gallery_first.transpose(0, 1),
            q_ids,
            g_pids,
            q_cams,
            g_cams,
        )

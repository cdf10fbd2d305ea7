"""Fast exact ReID evaluation: CMC / mAP / mINP, and occlusion-unified ("occlude them all") ranking.

Takes distances or features as torch tensors on any device, numpy arrays or Python lists. Ranks
are exact (a stable sort after junk removal) but computed without an argsort: only the items
that sort before a query's last true match count, and they are keyed, value-sorted or counted
(see :mod:`.ranking`). :func:`rerank` is k-reciprocal re-ranking without an ``(N, N)`` matrix.
"""

from .distances import METRICS, pairwise_distance
from .features import evaluate_features, evaluate_unified
from .k_reciprocal import rerank
from .metrics import AP_KINDS, RankMetrics, evaluate_rank, evaluate_rank_torchreid
from .occlusion_type import BOUNDARIES, SCORE_LOCATIONS, predict_occlusion_type

__all__ = [
    "AP_KINDS",
    "BOUNDARIES",
    "METRICS",
    "SCORE_LOCATIONS",
    "RankMetrics",
    "evaluate_features",
    "evaluate_rank",
    "evaluate_rank_torchreid",
    "evaluate_unified",
    "pairwise_distance",
    "predict_occlusion_type",
    "rerank",
]

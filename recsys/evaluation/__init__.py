"""Ranking metrics, full-ranking evaluation, baselines, the model gate and reports.

Nothing here imports torch: numpy, scipy and (for reports) matplotlib only.
"""

from __future__ import annotations

from recsys.evaluation.ranking import (
    evaluate_scorer,
    evaluate_topk,
    interactions_csr,
    topk_full_ranking,
)

__all__ = ["evaluate_scorer", "evaluate_topk", "interactions_csr", "topk_full_ranking"]

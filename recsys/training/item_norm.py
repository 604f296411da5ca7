"""The item table's norm exponent, chosen on validation after training.

A BPR-trained item embedding's norm grows with the item's popularity, so the
norm sets how much a score leans on popularity and the direction how much on
taste. Rescaling the final item table,

    e_i <- e_i * ||e_i||^(-g)        g in item_norm_powers and 0,

moves that balance without retraining (``g < 0``: more popular items; ``g = 1``:
cosine). The scores stay dot products with one fixed item table, so the ONNX
scorer and the user fold-in are unchanged (:class:`recsys.models.FeatureLightGCN`
applies ``g`` in ``forward``). Training always runs at ``g = 0``; ``g`` is chosen
like the filter's weight: on the validation pairs, at the last clean checkpoint
(before a fold), with ties going to the exponent nearest 0.
"""

from __future__ import annotations

import torch

from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.blend import BlendChoice, best_weight
from recsys.training.config import TrainConfig
from recsys.training.evaluator import RankingEvaluator


def choose_item_norm(
    model: FeatureLightGCN,
    adj: NormalizedAdjacency,
    evaluator: RankingEvaluator,
    cfg: TrainConfig,
) -> BlendChoice | None:
    """The exponent among ``cfg.item_norm_powers`` and 0 with the best validation
    ``cfg.select_metric`` (``adj``: the graph without the validation pairs); None when the
    config asks for none. ``model`` is left at the exponent it came with."""
    if not cfg.item_norm_powers:
        return None
    kept = model.item_norm_power
    was_training = model.training
    model.eval()

    def metrics(g: float) -> dict[str, float]:
        model.item_norm_power = g
        ue, ie = model(adj)
        return evaluator.evaluate(ue, ie)

    try:
        with torch.no_grad():
            return best_weight(cfg.item_norm_powers, metrics, cfg.select_metric, "item norm")
    finally:
        model.item_norm_power = kept
        model.train(was_training)

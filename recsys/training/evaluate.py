"""``recsys evaluate``: a trained model and every baseline on a snapshot's holdout.

It loads the model (torch) and trains MF-BPR with the same loop, hence its place beside
training rather than in :mod:`recsys.evaluation`, which stays torch-free.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.errors import InputError
from recsys.graph.snapshot import load_snapshot
from recsys.training.artifact import load_model
from recsys.training.data import InteractionData
from recsys.training.loop import train
from recsys.training.run import baseline_metrics, holdout_evaluator, model_metrics


def evaluate_on_snapshot(model_uri: str, graph_uri: str, device: str = "cpu") -> dict[str, Any]:
    """The model and every baseline on the snapshot's holdout, keyed by model name.

    MF-BPR is the same model with ``K = 0``, trained by the same loop and config.
    """
    loaded = load_model(model_uri, device)
    snapshot = load_snapshot(graph_uri)
    data = InteractionData.from_snapshot(snapshot)
    if (loaded.model.num_users, loaded.model.num_items) != (data.n_users, data.n_items):
        raise InputError(
            f"{model_uri} was trained for {loaded.model.num_users} users x "
            f"{loaded.model.num_items} items; {graph_uri} has {data.n_users} x {data.n_items}"
        )
    evaluator = holdout_evaluator(snapshot)
    if evaluator.empty:
        raise InputError(f"{graph_uri}: the holdout is empty, nothing to evaluate")
    out: dict[str, Any] = {"gnn": model_metrics(loaded.model, data, loaded.config, evaluator)}
    mf_cfg = loaded.config.model_copy(
        update={"num_layers": 0, "progress": False,
                "tracking": loaded.config.tracking.model_copy(update={"enabled": False})}
    )
    mf = train(data, mf_cfg, device=device)
    out["mf-bpr"] = model_metrics(mf.model, data, mf_cfg, evaluator)
    out.update(baseline_metrics(snapshot, evaluator))
    out["_meta"] = {
        "model_uri": model_uri, "graph_uri": graph_uri,
        "holdout_users": int(evaluator.users.size),
        "holdout_pairs": int(np.asarray(snapshot.holdout_user).size),
    }
    return out

"""``recsys evaluate``: a trained model, the baselines and the production bundle on a
snapshot's holdout, user by user.

Every model goes through the same evaluator (:class:`recsys.evaluation.holdout.Holdout`):
full ranking, train items masked, one metric value per holdout user, so each metric comes
with its bootstrap interval (:mod:`recsys.evaluation.stats`) and two models can be compared
on the same users (the model gate: :mod:`recsys.evaluation.gate`). It loads the model
(torch) and trains MF-BPR with the same loop, hence its place beside training rather than
in :mod:`recsys.evaluation`, which stays torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recsys.artifacts import read_manifest
from recsys.errors import InputError
from recsys.evaluation.gate import BASELINES, CANDIDATE, POPULARITY, PRODUCTION
from recsys.evaluation.holdout import Holdout, HoldoutScores
from recsys.evaluation.ranking import ScoreBatch, interactions_csr
from recsys.graph.snapshot import load_snapshot
from recsys.item_item import ItemItemTerm
from recsys.logs import get_logger
from recsys.training.artifact import load_model
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.item_item import histories
from recsys.training.loop import train
from recsys.training.training_graph import adjacency_for

log = get_logger(__name__)


def holdout_info(graph_uri: str) -> dict[str, Any]:
    """What the snapshot's manifest says about its holdout: span, first day, users, pairs."""
    m = read_manifest(graph_uri)
    info: dict[str, Any] = {"as_of": m.extra.get("as_of")}
    for key in ("holdout_start", "holdout_target_met", "holdout_sizing"):
        if key in m.extra:
            info[key] = m.extra[key]
    for key in ("holdout_days", "holdout_users", "holdout_pairs"):
        if key in m.counts:
            info[key] = int(m.counts[key])
    return info


def embedding_scorer(
    model: Any, data: InteractionData, cfg: TrainConfig, item_item: ItemItemTerm | None = None
) -> ScoreBatch:
    """``score(users)`` of a trained model: its propagated embeddings over the train edges,
    plus its item-item term of the users' train edges when it has one."""
    adj = adjacency_for(data, cfg).to(next(model.parameters()).device)
    with torch.no_grad():
        ue, ie = model(adj)
    item_t = ie.T.contiguous()
    extra = item_item.scorer(histories(data)) if item_item is not None else None

    def score(users: np.ndarray) -> np.ndarray:
        idx = torch.from_numpy(np.asarray(users, dtype=np.int64)).to(ue.device)
        with torch.no_grad():
            out: np.ndarray = (ue[idx] @ item_t).float().cpu().numpy()
        if extra is not None:
            out += extra(np.asarray(users, dtype=np.int64))
        return out

    return score


@dataclass
class Evaluation:
    """Per-user metrics of every model on one holdout, and what the holdout is."""

    scores: HoldoutScores
    info: dict[str, Any] = field(default_factory=dict)

    def summary(
        self, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
    ) -> dict[str, Any]:
        """Each model's metrics with their intervals (``ndcg@20``, ``ndcg@20_ci``) and
        users, and ``_meta``: the holdout (users, pairs, span) and the bootstrap."""
        out: dict[str, Any] = self.scores.summary(n_resamples, confidence, seed)
        out["_meta"] = {
            **self.info,
            "bootstrap": {
                "resamples": n_resamples,
                "confidence": confidence,
                "seed": seed,
                "paired_by": "user",
            },
        }
        return out


def evaluate_on_snapshot(
    model_uri: str,
    graph_uri: str,
    device: str = "cpu",
    *,
    baselines: Sequence[str] = BASELINES,
    production_bundle: str | None = None,
) -> Evaluation:
    """The model, the ``baselines`` and (if given) the production bundle on the snapshot's
    holdout, per user. MF-BPR is the same model with ``K = 0``, trained by the same loop and
    config; the production bundle scores the users it knows (the rest get NaN)."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise InputError(f"--baselines: unknown {unknown}; known: {', '.join(BASELINES)}")
    loaded = load_model(model_uri, device)
    snapshot = load_snapshot(graph_uri)
    data = InteractionData.from_snapshot(snapshot)
    if (loaded.model.num_users, loaded.model.num_items) != (data.n_users, data.n_items):
        raise InputError(
            f"{model_uri} was trained for {loaded.model.num_users} users x "
            f"{loaded.model.num_items} items; {graph_uri} has {data.n_users} x {data.n_items}"
        )
    info = {"model_uri": model_uri, "graph_uri": graph_uri, **holdout_info(graph_uri)}
    holdout = Holdout.from_snapshot(snapshot, info=info)
    if holdout.empty:
        raise InputError(f"{graph_uri}: the holdout is empty, nothing to evaluate")
    info["holdout_users"] = int(holdout.users.size)
    info["holdout_pairs"] = int(holdout.test_csr.nnz)
    scores = HoldoutScores(holdout.users, snapshot.user_ids[holdout.users])
    candidate = embedding_scorer(loaded.model, data, loaded.config, loaded.item_item)
    scores.add(CANDIDATE, holdout.score(candidate))
    if "mf-bpr" in baselines:
        mf_cfg = loaded.config.model_copy(
            update={
                "num_layers": 0,
                # the baseline is MF-BPR itself: no graph filter beside it
                "item_item_keep": 0,
                "blend_rank": 0,
                "progress": False,
                "tracking": loaded.config.tracking.model_copy(update={"enabled": False}),
            }
        )
        mf = train(data, mf_cfg, device=device)
        scores.add("mf-bpr", holdout.score(embedding_scorer(mf.model, data, mf_cfg)))
    weighted = interactions_csr(
        snapshot.train_user,
        snapshot.train_item,
        snapshot.n_users,
        snapshot.n_items,
        weight=snapshot.train_weight,
    )
    for name in (POPULARITY, "ease", "gf-cf"):
        if name in baselines:
            _baseline(scores, holdout, weighted, name)
    if production_bundle:
        from recsys.evaluation.production import production_scorer

        prod = production_scorer(
            production_bundle,
            snapshot.user_ids,
            snapshot.item_ids,
            snapshot.train_user,
            snapshot.train_item,
            snapshot.train_weight,
        )
        known = prod.known(holdout.users)
        scores.add(PRODUCTION, holdout.score(prod.score, scorable=known))
        info.update(
            {
                "production_bundle": production_bundle,
                "production_version": prod.version,
                "production_cannot_score": int((~known).sum()),
            }
        )
        log.info(
            "production %s scored %d of %d holdout users (the rest are new since)",
            prod.version,
            int(known.sum()),
            known.size,
        )
    return Evaluation(scores, info)


def _baseline(scores: HoldoutScores, holdout: Holdout, weighted: Any, name: str) -> None:
    from recsys.evaluation import baselines as bl

    makers: dict[str, Any] = {POPULARITY: bl.Popularity, "ease": bl.EASE, "gf-cf": bl.GFCF}
    try:
        rec = makers[name]()
        rec.fit(weighted)
        scores.add(name, holdout.score(rec.score))
    except InputError as exc:
        if name == POPULARITY:
            raise
        # EASE on a large catalogue, GF-CF on a tiny graph: reported, not fatal
        log.warning("baseline %s skipped: %s", name, exc)

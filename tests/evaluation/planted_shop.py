"""A small, low-volume synthetic shop with its planted truth, and models of known quality.

The shop is ``recsys synth`` (a few hundred events a day) with its graph snapshot built by
the real build (the holdout sized by its defaults). The planted truth gives each user's
purchase distribution ``P(i | u) = m_u[c_i] p_i / sum_{j in c_i} p_j``
(:mod:`recsys.data.synth`), so a scorer of it is better than popularity by construction,
the same scorer with its scores perturbed is worse than the clean one, and random scores
are worse than popularity.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation.baselines import Popularity
from recsys.evaluation.gate import CANDIDATE, POPULARITY, PRODUCTION
from recsys.evaluation.holdout import Holdout, HoldoutScores
from recsys.evaluation.ranking import interactions_csr
from recsys.graph.build import build_snapshot
from recsys.graph.config import GraphConfig
from recsys.graph.snapshot import GraphSnapshot, load_snapshot

END = dt.date(2026, 6, 30)
Scorer = Callable[[np.ndarray], np.ndarray]


def make_shop(root: Path, seed: int, days: int = 60) -> GraphSnapshot:
    """400 users, 120 products, ``days`` days of a few hundred events each; the snapshot
    of the last day with a 60-day window and the default holdout sizing."""
    from recsys.data.synth import SynthConfig, generate

    lake = str(root / f"shop-{seed}")
    generate(
        SynthConfig(
            users=400, items=120, days=days, end_date=END, seed=seed, events_per_user_day=3.0
        ),
        lake,
    )
    uri = build_snapshot(lake, END, GraphConfig(window_days=days))
    return load_snapshot(uri)


def truth_scorer(snapshot: GraphSnapshot) -> Scorer:
    """Scores ``P(i | u)`` of the planted truth for the snapshot's users and products."""
    lake = snapshot.uri.split("/graphs/")[0]
    truth = Path(lake) / "_truth"
    meta: dict[str, Any] = json.loads((truth / "truth.json").read_text())
    cats = {c: k for k, c in enumerate(meta["categories"])}
    items = pd.read_parquet(truth / "items.parquet").set_index("item_id")
    aff = pd.read_parquet(truth / "affinity.parquet")
    e = float(meta["explore_share"])
    cat_pop = np.asarray(meta["category_popularity"])
    item_cat = items.loc[snapshot.item_ids, "category"].map(cats).to_numpy()
    pop = items.loc[snapshot.item_ids, "popularity"].to_numpy()
    within = pop / np.bincount(item_cat, weights=pop, minlength=len(cats))[item_cat]
    user_pos = {u: k for k, u in enumerate(snapshot.user_ids)}
    a = np.zeros((snapshot.n_users, len(cats)))
    rows = aff["user_id"].map(user_pos)
    keep = rows.notna().to_numpy()
    a[rows[keep].astype(int), aff["category"][keep].map(cats)] = aff["affinity"][keep]
    mix = (1 - e) * a + e * cat_pop[None, :]

    def score(users: np.ndarray) -> np.ndarray:
        out: np.ndarray = (mix[users][:, item_cat] * within[None, :]).astype(np.float32)
        return out

    return score


def perturbed(scorer: Scorer, spread: float, seed: int) -> Scorer:
    """``scorer`` with each score multiplied by a log-normal factor of ``spread`` (fixed per
    user and product, so a user gets the same scores in every batch)."""

    def score(users: np.ndarray) -> np.ndarray:
        base = scorer(users)
        out = np.empty_like(base)
        for r, u in enumerate(users.tolist()):
            rng = np.random.default_rng([seed, u])
            out[r] = base[r] * np.exp(spread * rng.standard_normal(base.shape[1]))
        return out

    return score


def random_scorer(n_items: int, seed: int) -> Scorer:
    def score(users: np.ndarray) -> np.ndarray:
        return np.stack([np.random.default_rng([seed, int(u)]).random(n_items) for u in users])

    return score


def score_models(snapshot: GraphSnapshot, models: dict[str, Scorer]) -> HoldoutScores:
    """Per-user metrics of popularity and ``models`` on the snapshot's holdout."""
    holdout = Holdout.from_snapshot(snapshot)
    scores = HoldoutScores(holdout.users, snapshot.user_ids[holdout.users])
    pop = Popularity()
    pop.fit(
        interactions_csr(
            snapshot.train_user,
            snapshot.train_item,
            snapshot.n_users,
            snapshot.n_items,
            weight=snapshot.train_weight,
        )
    )
    scores.add("popularity", holdout.score(pop.score))
    for name, scorer in models.items():
        scores.add(name, holdout.score(scorer))
    return scores


def paired(scores: HoldoutScores, candidate: str, production: str) -> HoldoutScores:
    """What the gate sees: ``candidate`` as the candidate, popularity, and ``production`` as
    the model in production, on the same users."""
    out = HoldoutScores(scores.users, scores.user_ids)
    out.add(CANDIDATE, scores.models[candidate])
    out.add(POPULARITY, scores.models[POPULARITY])
    out.add(PRODUCTION, scores.models[production])
    return out

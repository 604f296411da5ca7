"""A snapshot's time-based holdout, and per-user metrics of any scorer on it.

Every model the model gate compares (the candidate, the baselines, the production bundle)
goes through :meth:`Holdout.score`: full ranking over the snapshot's catalogue, the user's
train items masked, the top K compared with the holdout items
(:func:`~recsys.evaluation.ranking.topk_full_ranking`,
:func:`~recsys.evaluation.ranking.topk_rows`). What comes back is one value per holdout
user and metric, so two models can be compared user by user
(:mod:`recsys.evaluation.stats`); a model that cannot score a user (production, for users
new since its snapshot) has NaN there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.evaluation.ranking import ScoreBatch, interactions_csr, topk_full_ranking, topk_rows
from recsys.evaluation.stats import Interval, bootstrap_means

__all__ = ["KS", "Holdout", "HoldoutScores"]

KS = (10, 20, 50)


@dataclass
class Holdout:
    """Train interactions (masked when ranking) and holdout positives of a snapshot."""

    train_csr: sp.csr_matrix
    """Binary user x item matrix of the train edges."""
    test_csr: sp.csr_matrix
    users: np.ndarray
    """Users with at least one holdout item, ascending: the users every model is scored on."""
    ks: tuple[int, ...] = KS
    info: dict[str, Any] = field(default_factory=dict)
    """What the snapshot recorded about its holdout (span, counts)."""

    @classmethod
    def from_snapshot(
        cls, snapshot: Any, ks: Sequence[int] = KS, info: dict[str, Any] | None = None
    ) -> Holdout:
        n_users, n_items = int(snapshot.n_users), int(snapshot.n_items)
        train = interactions_csr(snapshot.train_user, snapshot.train_item, n_users, n_items)
        test = interactions_csr(snapshot.holdout_user, snapshot.holdout_item, n_users, n_items)
        users = np.flatnonzero(np.diff(test.indptr) > 0)
        return cls(train, test, users, tuple(ks), dict(info or {}))

    @property
    def n_items(self) -> int:
        return int(self.train_csr.shape[1])

    @property
    def empty(self) -> bool:
        return self.users.size == 0

    def score(
        self, score_batch: ScoreBatch, scorable: np.ndarray | None = None, batch_size: int = 1024
    ) -> dict[str, np.ndarray]:
        """Per-user metrics of ``score_batch`` (``recall@20``, ``ndcg@20``, ...), one value
        per holdout user (:attr:`users` order); users outside ``scorable`` (a bool mask over
        :attr:`users`) are not scored and get NaN."""
        if self.empty:
            raise InputError("the holdout is empty: nothing to evaluate")
        mask = np.ones(self.users.size, bool) if scorable is None else np.asarray(scorable, bool)
        if mask.shape != self.users.shape:
            raise InputError(f"scorable must have one entry per holdout user ({self.users.size})")
        names = [
            f"{m}@{k}" for k in self.ks for m in ("recall", "ndcg", "precision", "hit_rate", "map")
        ]
        out = {name: np.full(self.users.size, np.nan) for name in names}
        users = self.users[mask]
        if users.size:
            topk = topk_full_ranking(score_batch, users, self.train_csr, max(self.ks), batch_size)
            counted, rows = topk_rows(topk, users, self.test_csr, self.ks)
            assert counted.size == users.size  # every holdout user has a holdout item
            for name in names:
                out[name][mask] = rows[name]
        return out


@dataclass
class HoldoutScores:
    """Per-user metrics of several models on the same holdout users."""

    users: np.ndarray
    user_ids: np.ndarray
    models: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """model -> metric -> one value per user (NaN: the model could not score the user)."""

    def add(self, model: str, metrics: dict[str, np.ndarray]) -> None:
        for name, values in metrics.items():
            if np.shape(values) != self.users.shape:
                raise InputError(f"{model} {name}: expected {self.users.size} per-user values")
        self.models[model] = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}

    def scored(self, model: str) -> np.ndarray:
        """Bool mask of the users ``model`` scored."""
        any_metric = next(iter(self.models[model].values()))
        out: np.ndarray = np.isfinite(any_metric)
        return out

    def summary(
        self, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
    ) -> dict[str, dict[str, Any]]:
        """Each model's metrics over the users it scored, each with its bootstrap interval
        (``ndcg@20`` and ``ndcg@20_ci``) and the number of users (``users``)."""
        out: dict[str, dict[str, Any]] = {}
        for model, metrics in self.models.items():
            scored = self.scored(model)
            names = list(metrics)
            entry: dict[str, Any] = {}
            if scored.any():
                intervals: list[Interval] = bootstrap_means(
                    np.stack([metrics[n][scored] for n in names]),
                    n_resamples=n_resamples,
                    confidence=confidence,
                    seed=seed,
                )
                for name, iv in zip(names, intervals, strict=True):
                    entry[name] = iv.mean
                    entry[f"{name}_ci"] = [iv.low, iv.high]
            entry["users"] = int(scored.sum())
            out[model] = entry
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per user: ``user_id`` and a ``<model>/<metric>`` column per series."""
        cols: dict[str, Any] = {
            "user_idx": self.users.astype(np.int64),
            "user_id": self.user_ids.astype(str),
        }
        for model, metrics in self.models.items():
            for name, values in metrics.items():
                cols[f"{model}/{name}"] = values
        return pd.DataFrame(cols)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> HoldoutScores:
        for col in ("user_idx", "user_id"):
            if col not in frame:
                raise InputError(f"per-user metrics: column {col!r} missing")
        out = cls(
            frame["user_idx"].to_numpy(dtype=np.int64),
            frame["user_id"].to_numpy(dtype=object).astype(str),
        )
        models: dict[str, dict[str, np.ndarray]] = {}
        for col in frame.columns:
            if "/" in col:
                model, name = col.split("/", 1)
                models.setdefault(model, {})[name] = frame[col].to_numpy(dtype=np.float64)
        for model, metrics in models.items():
            out.add(model, metrics)
        return out

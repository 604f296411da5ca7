"""The popularity fallback: what a user with neither history nor features is shown.

The bundle ranks items by summed edge weight, over everyone and within each user segment
(``popularity.parquet``: ``segment`` "" for the global ranking, ``item_idx``, ``rank``,
``score``). A segment's list is short (its own top items), so when filters empty it the
answer is topped up from the global ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Picked:
    """The items of a popularity answer (item indices, best first), their scores, where the
    ranking came from (``segment_popularity`` / ``global_popularity``) and why, in words."""

    items: np.ndarray
    scores: list[float]
    source: str
    reason: str


class Popularity:
    """The bundle's global and per-segment popularity rankings over ``n_items`` items."""

    def __init__(self, table: pd.DataFrame, n_items: int) -> None:
        self.n_items = n_items
        glob = table[table["segment"] == ""].sort_values("rank")
        self.global_order = glob["item_idx"].to_numpy(dtype=np.int64)
        self.global_score = np.zeros(n_items, dtype=np.float64)
        self.global_score[self.global_order] = glob["score"].to_numpy(dtype=np.float64)
        per_segment = table[table["segment"] != ""].groupby("segment")
        self.segment_score: dict[str, dict[int, float]] = {
            str(sg): dict(zip(g["item_idx"].tolist(), g["score"].tolist(), strict=True))
            for sg, g in per_segment
        }
        self.segment_order = {
            str(sg): g.sort_values("rank")["item_idx"].to_numpy(dtype=np.int64)
            for sg, g in per_segment
        }

    @property
    def segments(self) -> list[str]:
        """The segments with a ranking of their own, sorted."""
        return sorted(self.segment_order)

    def pick(self, segment: str | None, k: int, excluded: np.ndarray) -> Picked:
        """The ``k`` most popular items not in ``excluded`` (item indices; the padding index
        ``n_items`` may be among them), from ``segment``'s ranking when it has one."""
        order, source, reason = self.global_order, "global_popularity", "popular right now"
        if segment is not None and segment in self.segment_order:
            order, source = self.segment_order[segment], "segment_popularity"
            reason = f"popular in segment {segment}"
        if len(excluded) == 0 or (len(excluded) == 1 and excluded[0] == self.n_items):
            picked = order[:k]
            mask = np.zeros(0, dtype=bool)
        else:
            mask = np.zeros(self.n_items + 1, dtype=bool)
            mask[excluded] = True
            picked = order[~mask[order]][:k]
        if len(picked) < k and order is not self.global_order:
            # a small segment list runs out: top up from the global ranking
            rest = self.global_order[~mask[self.global_order]] if len(mask) else self.global_order
            rest = rest[~np.isin(rest, picked)]
            picked = np.concatenate([picked, rest[: k - len(picked)]])
        # the popularity score (summed edge weight, in the segment when it came from there)
        from_segment = order is not self.global_order
        in_segment = self.segment_score.get(segment or "", {}) if from_segment else {}
        scores = [in_segment.get(j, float(self.global_score[j])) for j in picked.tolist()]
        return Picked(picked, scores, source, reason)

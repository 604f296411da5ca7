"""Typed configuration of the graph build (edge weights, features, holdout, gate).

Every default is documented next to its field; a run is fully described by
one file read with :func:`recsys.config.load_config` (``--config``).
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.data.schema import EVENT_TYPES


class WeightConfig(BaseModel):
    """Edge weight of a (user, product) pair.

    ``w = saturate( sum_events type_weight(e) * decay(age_days(e)) )`` where
    ``decay(a) = exp(-ln2 * a / half_life_days)`` with ages measured from the end
    of the as-of day, and for ratings ``type_weight = type_weights['rating'] *
    value / 5``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "view": 1.0,
            "click": 2.0,
            "add_to_cart": 4.0,
            "purchase": 8.0,
            "rating": 8.0,
        }
    )
    """Weight per event type; must be strictly increasing view < click < add_to_cart < purchase.
    The rating weight is for a 5-star rating and scales linearly with the stars."""
    rating_default: float = 3.0
    """Stars assumed for a rating event with a missing value (validation should prevent it)."""
    half_life_days: float = Field(default=30.0, gt=0)
    """An event this many days old counts half as much as one at the end of the as-of day."""
    saturation: Literal["log1p", "hyperbolic", "none"] = "log1p"
    """Frequency saturation: ``log1p(w)``, ``w / (w + saturation_c)``, or none."""
    saturation_c: float = Field(default=8.0, gt=0)
    """Half-saturation constant of ``hyperbolic`` (a raw weight equal to it maps to 0.5)."""
    min_weight: float = Field(default=1e-6, gt=0)
    """Floor so very old events that decay to ~0 still give a strictly positive weight."""

    @model_validator(mode="after")
    def _check(self) -> WeightConfig:
        unknown = sorted(set(self.type_weights) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"type_weights: unknown event type(s) {unknown}")
        missing = [t for t in EVENT_TYPES if t not in self.type_weights]
        if missing:
            raise ValueError(f"type_weights: missing event type(s) {missing}")
        bad = [t for t, w in self.type_weights.items() if not (w > 0 and w < float("inf"))]
        if bad:
            raise ValueError(f"type_weights: weights must be finite and > 0, not for {bad}")
        order = ["view", "click", "add_to_cart", "purchase"]
        ws = [self.type_weights[t] for t in order]
        if any(a >= b for a, b in itertools.pairwise(ws)):
            raise ValueError(
                f"type_weights: must increase view < click < add_to_cart < purchase, got {ws}"
            )
        return self


class FeatureConfig(BaseModel):
    """How node features are encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_vocab: int = Field(default=64, ge=1)
    """Most frequent values kept per categorical feature; the rest go to the unknown bucket."""
    min_count: int = Field(default=1, ge=1)
    """A categorical value seen fewer times than this goes to the unknown bucket."""
    evolve: Literal["extend", "refit"] = "extend"
    """With a previous snapshot: ``extend`` carries its encoding forward (numeric statistics
    frozen, vocabularies kept: see :func:`recsys.graph.features.extend_table`), so the model
    in production can start today's training; ``refit`` fits every snapshot afresh."""
    grow_vocab: bool = False
    """``extend`` only: append new frequent categorical values as new columns (the width
    changes, which forces a cold start) instead of sending them to the unknown bucket."""


class GateConfig(BaseModel):
    """Thresholds of the graph gate (run before publishing a snapshot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_users: int = Field(default=10, ge=0)
    """Fewest users with at least one train edge."""
    min_items: int = Field(default=10, ge=0)
    """Fewest products with at least one train edge."""
    min_edges: int = Field(default=50, ge=0)
    """Fewest train edges (unique user-product pairs)."""
    max_isolated_user_share: float = Field(default=0.5, ge=0, le=1)
    """Largest share of mapped users without a train edge (e.g. users gone from the window)."""
    max_isolated_item_share: float = Field(default=0.8, ge=0, le=1)
    """Largest share of mapped products without a train edge (cold catalogue items count)."""
    max_degree_drift: float = Field(default=0.35, ge=0, le=1)
    """Largest total-variation distance between this and the previous snapshot's
    degree-distribution shapes, i.e. octave bins of degree / mean degree (users and
    products separately)."""
    drift_min_nodes: int = Field(default=200, ge=0)
    """Degree drift is only checked when both snapshots have at least this many active nodes
    of the kind (a histogram of a few dozen nodes is noise)."""
    max_type_mix_drift: float = Field(default=0.2, ge=0, le=1)
    """Largest total-variation distance between the event-type mixes of the train windows."""


class GraphConfig(BaseModel):
    """Everything that shapes a graph snapshot; stored in its manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: int = Field(default=365, ge=1)
    """Days of events (ending with the as-of day, included) that enter the snapshot."""
    holdout_days: int = Field(default=1, ge=0)
    """Fewest days at the end of the window held out for the model gate (the holdout starts
    with them and grows back from there); 0 disables the holdout."""
    holdout_max_days: int = Field(default=28, ge=1)
    """Most days the holdout grows back to while it holds fewer than ``holdout_min_users``
    users or ``holdout_min_pairs`` pairs."""
    holdout_min_users: int = Field(default=400, ge=0)
    """Users the holdout should hold (each with train edges and a holdout pair not in train).
    From a power calculation (:data:`recsys.evaluation.stats.POWER_DEFAULTS`): comparing two
    models on 413 users detects a mean per-user NDCG@20 difference of 0.04 when the
    differences have a standard deviation of 0.29, with 80 % power at the 5 % level (400:
    79 %)."""
    holdout_min_pairs: int = Field(default=400, ge=0)
    """Holdout (user, product) pairs the holdout should hold (a user has at least one, so
    this binds only above ``holdout_min_users``)."""
    holdout_max_event_share: float = Field(default=0.25, gt=0, le=1)
    """The holdout stops growing before it holds more than this share of the window's events,
    so training keeps the rest (its first ``holdout_days`` days are held out regardless)."""
    holdout_event_types: list[str] = Field(
        default_factory=lambda: ["click", "add_to_cart", "purchase", "rating"]
    )
    """Event types that make a holdout positive (default: every type but view)."""
    include_catalog_items: bool = True
    """Map every product of the as-of catalogue, so new products get an index (cold start)."""
    weights: WeightConfig = Field(default_factory=WeightConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    gate: GateConfig = Field(default_factory=GateConfig)

    @model_validator(mode="after")
    def _check(self) -> GraphConfig:
        if self.holdout_days >= self.window_days:
            raise ValueError(
                f"holdout_days ({self.holdout_days}) must be smaller than "
                f"window_days ({self.window_days})"
            )
        if self.holdout_days and self.holdout_max_days < self.holdout_days:
            raise ValueError(
                f"holdout_max_days ({self.holdout_max_days}) must be at least "
                f"holdout_days ({self.holdout_days})"
            )
        unknown = sorted(set(self.holdout_event_types) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"holdout_event_types: unknown event type(s) {unknown}")
        return self

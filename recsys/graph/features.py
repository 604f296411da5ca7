"""Node features: fitted on the training window, encoded the same way at serving.

A :class:`FeatureSpec` stores, per node type, the numeric features with their
transform (``log1p`` for heavy tails) and standardisation statistics, and the
categorical features with their vocabularies. Encoding is pure pandas/numpy so
the torch-free server turns a new user's raw features into exactly the vector
training saw. Layout per numeric feature: ``[z, missing]``; per categorical
feature: one-hot over ``vocab + [__unknown__, __missing__]``. A column absent
from the frame is treated as missing, so a new user with only ``age`` and
``country`` still encodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

UNKNOWN = "__unknown__"
MISSING = "__missing__"

USER_NUMERIC: tuple[tuple[str, bool], ...] = (
    ("age", False),
    ("tenure_days", True),
    ("n_events", True),
    ("n_purchases", True),
    ("days_since_last_event", True),
)
"""Raw user columns (name, log1p?): age in years, days since signup, events and
purchases in the train window, days from the last event to the train cutoff."""
USER_CATEGORICAL: tuple[str, ...] = ("country",)
ITEM_NUMERIC: tuple[tuple[str, bool], ...] = (
    ("price", True),
    ("rating", False),
    ("age_days", True),
    ("n_events", True),
    ("n_users", True),
    ("n_purchases", True),
)
"""Raw product columns: price, average rating, days since creation, events,
distinct users and purchases in the train window (popularity)."""
ITEM_CATEGORICAL: tuple[str, ...] = ("category",)


class NumericFeature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    log1p: bool = False
    """Apply ``log1p(max(x, 0))`` before standardising (counts, prices, durations)."""
    mean: float = 0.0
    std: float = 1.0


class CategoricalFeature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    vocab: list[str]


def _numeric_column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan, dtype=np.float64)
    out: np.ndarray = pd.to_numeric(df[name], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return out


def _string_column(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        return pd.Series([None] * len(df), dtype=object, index=df.index)
    col = df[name]
    return col.where(col.notna(), None).astype(object)


class TableSpec(BaseModel):
    """Encoding of one node type's raw feature table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for f in self.numeric:
            names += [f.name, f"{f.name}__missing"]
        for c in self.categorical:
            names += [f"{c.name}={v}" for v in c.vocab]
            names += [f"{c.name}={UNKNOWN}", f"{c.name}={MISSING}"]
        return names

    @property
    def width(self) -> int:
        return 2 * len(self.numeric) + sum(len(c.vocab) + 2 for c in self.categorical)

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Raw frame (one row per node) -> float32 matrix ``[len(df), width]``."""
        out = np.zeros((len(df), self.width), dtype=np.float32)
        col = 0
        for f in self.numeric:
            x = _numeric_column(df, f.name)
            if f.log1p:
                x = np.log1p(np.maximum(x, 0.0))
            missing = ~np.isfinite(x)
            z = (x - f.mean) / f.std
            out[:, col] = np.where(missing, 0.0, z)
            out[:, col + 1] = missing
            col += 2
        for c in self.categorical:
            values = _string_column(df, c.name)
            missing = values.isna().to_numpy()
            codes = pd.Categorical(values.astype("string"), categories=c.vocab).codes.astype(
                np.int64
            )
            codes = np.where(codes < 0, len(c.vocab), codes)  # unknown bucket
            codes = np.where(missing, len(c.vocab) + 1, codes)  # missing bucket
            out[np.arange(len(df)), col + codes] = 1.0
            col += len(c.vocab) + 2
        return out

    def decode(self, x: np.ndarray) -> pd.DataFrame:
        """Inverse of :meth:`encode` (up to float precision; unseen categories come back as
        ``__unknown__``); used to audit and test the encoding."""
        cols: dict[str, object] = {}
        col = 0
        for f in self.numeric:
            v = x[:, col].astype(np.float64) * f.std + f.mean
            if f.log1p:
                v = np.expm1(v)
            cols[f.name] = np.where(x[:, col + 1] > 0.5, np.nan, v)
            col += 2
        for c in self.categorical:
            labels = np.array([*c.vocab, UNKNOWN, MISSING], dtype=object)
            block = x[:, col : col + len(c.vocab) + 2]
            decoded = labels[np.argmax(block, axis=1)] if len(x) else labels[:0]
            cols[c.name] = pd.Series(decoded, dtype=object).where(decoded != MISSING, None)
            col += len(c.vocab) + 2
        return pd.DataFrame(cols)


def fit_table(
    df: pd.DataFrame,
    numeric: Sequence[tuple[str, bool]],
    categorical: Sequence[str],
    max_vocab: int,
    min_count: int,
) -> TableSpec:
    """Fit statistics (mean/std after the transform) and vocabularies on ``df``."""
    nums = []
    for name, log in numeric:
        x = _numeric_column(df, name)
        if log:
            x = np.log1p(np.maximum(x, 0.0))
        x = x[np.isfinite(x)]
        mean = float(x.mean()) if len(x) else 0.0
        std = float(x.std()) if len(x) > 1 else 0.0
        # a constant column encodes to 0 instead of dividing by zero
        nums.append(
            NumericFeature(name=name, log1p=log, mean=mean, std=std if std > 1e-12 else 1.0)
        )
    cats = []
    for name in categorical:
        counts = _string_column(df, name).dropna().astype(str).value_counts()
        counts = counts[counts >= min_count]
        # ties broken by value so the vocabulary is deterministic
        ranked = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))[:max_vocab]
        cats.append(CategoricalFeature(name=name, vocab=sorted(str(k) for k, _ in ranked)))
    return TableSpec(numeric=nums, categorical=cats)


def extend_table(
    prev: TableSpec,
    df: pd.DataFrame,
    numeric: Sequence[tuple[str, bool]],
    categorical: Sequence[str],
    max_vocab: int,
    min_count: int,
    grow_vocab: bool,
) -> tuple[TableSpec, list[str]]:
    """The previous snapshot's encoding carried forward, so yesterday's model and today's
    graph agree on every column's meaning; and what changed, in words.

    The rule: a numeric feature keeps its transform and standardisation statistics (frozen:
    a z of 1 means what it meant when the model was trained); a categorical feature keeps
    its vocabulary and its column order, and a value it has not seen goes to the unknown
    bucket, unless ``grow_vocab`` appends the new frequent values (fitted on ``df`` as
    :func:`fit_table` would, up to ``max_vocab`` in all), which widens the encoding. A
    feature the code adds or drops, or a changed transform, is fitted afresh. Any change
    of width is listed: it forces the next training to start cold."""
    fresh = fit_table(df, numeric, categorical, max_vocab, min_count)
    before = {f.name: f for f in prev.numeric}
    changes: list[str] = []
    nums = []
    for f in fresh.numeric:
        old = before.get(f.name)
        if old is not None and old.log1p == f.log1p:
            nums.append(old)
        else:
            nums.append(f)
            changes.append(
                f"numeric {f.name}: "
                + ("new feature" if old is None else "transform changed, refitted")
            )
    changes += [f"numeric {n}: dropped" for n in before if n not in {f.name for f in nums}]
    cats_before = {c.name: c for c in prev.categorical}
    cats = []
    for c in fresh.categorical:
        old_c = cats_before.get(c.name)
        if old_c is None:
            cats.append(c)
            changes.append(f"categorical {c.name}: new feature")
            continue
        new_values = [v for v in c.vocab if v not in set(old_c.vocab)]
        room = max(max_vocab - len(old_c.vocab), 0)
        if grow_vocab and new_values and room:
            added = new_values[:room]
            cats.append(CategoricalFeature(name=c.name, vocab=[*old_c.vocab, *added]))
            changes.append(
                f"categorical {c.name}: {len(added)} new value(s) appended "
                f"({', '.join(added[:5])}{', ...' if len(added) > 5 else ''})"
            )
        else:
            cats.append(old_c)
    changes += [f"categorical {n}: dropped" for n in cats_before if n not in {c.name for c in cats}]
    return TableSpec(numeric=nums, categorical=cats), changes


class FeatureSpec(BaseModel):
    """How user and product raw features become the model's node feature vectors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    users: TableSpec
    items: TableSpec

    @property
    def user_feature_names(self) -> list[str]:
        return self.users.feature_names

    @property
    def item_feature_names(self) -> list[str]:
        return self.items.feature_names

    @property
    def user_raw_columns(self) -> list[str]:
        return [f.name for f in self.users.numeric] + [c.name for c in self.users.categorical]

    @property
    def item_raw_columns(self) -> list[str]:
        return [f.name for f in self.items.numeric] + [c.name for c in self.items.categorical]

    def encode_users(self, df: pd.DataFrame) -> np.ndarray:
        return self.users.encode(df)

    def encode_items(self, df: pd.DataFrame) -> np.ndarray:
        return self.items.encode(df)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    def same_shape(self, other: FeatureSpec) -> bool:
        """True when a model of ``other``'s widths takes this spec's vectors."""
        return (self.users.width, self.items.width) == (other.users.width, other.items.width)

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureSpec:
        return cls.model_validate_json(text)

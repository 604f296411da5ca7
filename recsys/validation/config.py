"""Thresholds of the data-quality gate, as one pydantic model.

Every field has a default that suits a daily e-commerce event feed; a run can
override any of them with ``recsys validate --config FILE`` (JSON, YAML, TOML).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ValidationConfig(BaseModel):
    """What the gate accepts. Rates are fractions of the partition's rows (0.01 = 1 %)."""

    model_config = ConfigDict(extra="forbid")

    history_days: int = Field(
        7, ge=1, description="Trailing events partitions compared for volume and mix drift"
    )
    min_history_days: int = Field(
        1,
        ge=1,
        description="Fewer trailing partitions than this skips volume and mix drift (with a note)",
    )
    volume_min_ratio: float = Field(
        0.3, ge=0, description="Rows must be at least this multiple of the trailing median"
    )
    volume_max_ratio: float = Field(
        3.0, gt=0, description="Rows must be at most this multiple of the trailing median"
    )
    max_mix_tvd: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Largest total variation distance between today's event-type mix "
        "and the trailing days' mix",
    )
    max_unknown_user_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of events whose user_id is not in that day's users table "
        "(brand-new users not yet in the snapshot; the events compaction adds the users of "
        "served events to the snapshot, so those never count)",
    )
    max_unknown_item_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Same for item_id against the items table. Served events naming a "
        "product the catalogue does not know count here: the compaction does not invent "
        "catalogue rows, so a share above this is a catalogue or client error to fix",
    )
    max_duplicate_rate: float = Field(
        0.001,
        ge=0,
        le=1,
        description="Share of events repeating an earlier (user_id, item_id, event_type, ts)",
    )
    max_dimension_age_days: dict[str, int] = Field(
        default_factory=lambda: {"users": 3, "items": 3},
        description="Oldest the users / items snapshot read for a day may be, in days: the "
        "gate reads the latest partition on or before the day, and one older than this means "
        "the table stopped being updated",
    )
    age_min: float = Field(13, description="Youngest plausible user age")
    age_max: float = Field(110, description="Oldest plausible user age")
    max_future_skew_hours: float | None = Field(
        None,
        ge=0,
        description="If set, timestamps must also be no later than now (wall clock) plus "
        "this many hours; off by default so that results do not depend on when the gate runs",
    )
    examples: int = Field(5, ge=1, le=50, description="Example values quoted per failed check")
    data_docs: bool = Field(True, description="Build great-expectations Data Docs HTML")

    @model_validator(mode="after")
    def _check(self) -> ValidationConfig:
        if self.volume_min_ratio > self.volume_max_ratio:
            raise ValueError("volume_min_ratio must not exceed volume_max_ratio")
        if self.age_min > self.age_max:
            raise ValueError("age_min must not exceed age_max")
        if self.min_history_days > self.history_days:
            raise ValueError("min_history_days must not exceed history_days")
        tables = {"users", "items"}
        unknown = sorted(set(self.max_dimension_age_days) - tables)
        if unknown:
            raise ValueError(
                f"max_dimension_age_days: unknown table(s) {unknown} "
                f"(dimension tables: {sorted(tables)})"
            )
        self.max_dimension_age_days = {**{t: 3 for t in tables}, **self.max_dimension_age_days}
        if min(self.max_dimension_age_days.values()) < 0:
            raise ValueError("max_dimension_age_days: ages must be >= 0")
        return self

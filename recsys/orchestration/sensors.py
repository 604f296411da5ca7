"""Deferrable sensor: wait for the day's events partition to be complete in the lake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from recsys.orchestration.config import SensorConfig, load_retrain_config
from recsys.orchestration.triggers import LakeMarkerTrigger


class LakePartitionSensor(BaseSensorOperator):
    """Succeed once ``marker_uri`` (the partition's ``_SUCCESS``) exists.

    Writers publish the marker last, so its presence means the whole partition
    is there. Deferrable by default: the wait runs in the triggerer. How often it looks and
    how long it waits come from ``sensor`` (default: the pipeline config's ``sensor``, read
    when the task runs, never when the DAG is parsed).
    """

    template_fields: Sequence[str] = ("marker_uri",)
    ui_color = "#e6f2e6"

    def __init__(
        self,
        *,
        marker_uri: str,
        deferrable: bool = True,
        sensor: SensorConfig | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.marker_uri = marker_uri
        self.deferrable = deferrable
        self.sensor = sensor

    def poke(self, context: Context) -> bool:
        from recsys.storage import exists

        return exists(self.marker_uri)

    def execute(self, context: Context) -> Any:
        cfg = self.sensor or load_retrain_config().sensor
        self.poke_interval = cfg.poke_interval_s
        self.timeout = cfg.timeout_s
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):  # already there: no need to go through the triggerer
            return self.marker_uri
        self.defer(
            trigger=LakeMarkerTrigger(marker_uri=self.marker_uri, poll_interval=self.poke_interval),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        self.log.info("partition complete: %s", event.get("marker_uri"))
        return str(event.get("marker_uri", self.marker_uri))

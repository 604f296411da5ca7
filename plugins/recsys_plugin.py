"""Airflow plugin of recsys: the task -> report links (AirflowPlugin objects only)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from recsys.orchestration.links import ModelReportLink, ValidationReportLink


class RecsysPlugin(AirflowPlugin):
    name = "recsys"
    # AirflowPlugin declares these as plain class lists.
    global_operator_extra_links = [ValidationReportLink(), ModelReportLink()]  # noqa: RUF012

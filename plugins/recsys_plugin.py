"""Airflow plugin of recsys: the task -> report and task -> Azure ML job links
(AirflowPlugin objects only)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from recsys.orchestration.links import AzureMLJobLink, ModelReportLink, ValidationReportLink


class RecsysPlugin(AirflowPlugin):
    name = "recsys"
    # AirflowPlugin declares these as plain class lists.
    global_operator_extra_links = [ValidationReportLink(), ModelReportLink()]  # noqa: RUF012
    operator_extra_links = [AzureMLJobLink()]  # noqa: RUF012

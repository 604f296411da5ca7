"""Extra links from a task to what it made: its reports (validation Data Docs, model
report) and its Azure ML job in the studio.

A task pushes the report's URL to XCom under the link's ``xcom_key``; the
plugin registers the links, and the API server reads the XCom when the UI asks.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from airflow.sdk import BaseOperatorLink

from recsys.storage import get_fs, is_local, join


def browsable_url(uri: str) -> str:
    """A URL a browser can open for a lake URI: ``file://`` locally, ``https://`` on ADLS."""
    parts = urlsplit(uri)
    if parts.scheme in {"abfs", "abfss", "az"} and "@" in parts.netloc:
        container, host = parts.netloc.split("@", 1)
        account = host.split(".", 1)[0]
        return f"https://{account}.blob.core.windows.net/{container}{parts.path}"
    fs, path = get_fs(uri)
    if is_local(fs):
        return f"file://{path if path.startswith('/') else '/' + path}"
    return uri


def report_page(report_uri: str, page: str = "index.html") -> str:
    """The report's entry page if it has one (GX Data Docs), else the folder."""
    for candidate in (join(report_uri, "data_docs", page), join(report_uri, page)):
        fs, path = get_fs(candidate)
        if fs.exists(path):
            return browsable_url(candidate)
    return browsable_url(report_uri)


class _XComLink(BaseOperatorLink):
    key: ClassVar[str] = ""

    @property
    def xcom_key(self) -> str:
        return self.key

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        # Runs in the API server: read the URL the task pushed, as Airflow's own XCom links do.
        from airflow.serialization.definitions.operatorlink import XComOperatorLink

        return str(
            XComOperatorLink(name=self.name, xcom_key=self.xcom_key).get_link(
                operator, ti_key=ti_key
            )
        )


class ValidationReportLink(_XComLink):
    name = "Validation report"
    key = "recsys_validation_report_url"


class ModelReportLink(_XComLink):
    name = "Model report"
    key = "recsys_model_report_url"


class AzureMLJobLink(_XComLink):
    """The training job's page in Azure ML studio (the URL the control plane returned)."""

    name = "Azure ML job"
    key = "azureml_studio_url"

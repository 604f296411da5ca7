"""Airflow hook for Azure ML: an ``MLClient`` from an Airflow connection.

Connection (``conn_type`` ``azure_ml``, default id ``azureml_default``):
login / password = a service principal's client id and secret (with
``tenant_id`` in the extras); without them, ``DefaultAzureCredential`` (managed
identity or AKS workload identity, ``managed_identity_client_id`` and
``workload_identity_tenant_id`` extras). Extras always name
``subscription_id``, ``resource_group`` and ``workspace_name``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook, Connection

from recsys.orchestration.azureml_job import FAILED, SUCCEEDED, TERMINAL

__all__ = ["FAILED", "SUCCEEDED", "TERMINAL", "AzureMLHook", "SubmittedJob"]


@dataclass(frozen=True)
class SubmittedJob:
    name: str
    studio_url: str | None
    """The job's page in Azure ML studio, as the control plane returned it."""


def _extra(extras: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = extras.get(name) or extras.get(f"extra__azure_ml__{name}")
    if required and not value:
        raise ValueError(f"Azure ML connection: extra {name!r} is required")
    return str(value) if value else None


def client_from_connection(conn: Connection) -> Any:
    """Build an ``MLClient`` for the workspace the connection names."""
    from azure.ai.ml import MLClient
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    extras = json.loads(conn.extra) if conn.extra else {}
    tenant = _extra(extras, "tenant_id")
    credential: Any
    if conn.login and conn.password:
        if not tenant:
            raise ValueError(
                "Azure ML connection: tenant_id is required with a client id and secret"
            )
        credential = ClientSecretCredential(
            tenant_id=tenant, client_id=conn.login, client_secret=conn.password
        )
    else:
        mi_client = _extra(extras, "managed_identity_client_id")
        wi_tenant = _extra(extras, "workload_identity_tenant_id")
        kwargs: dict[str, Any] = {}
        if mi_client:
            kwargs["managed_identity_client_id"] = mi_client
        if wi_tenant:
            kwargs.update(
                workload_identity_tenant_id=wi_tenant, additionally_allowed_tenants=[wi_tenant]
            )
        credential = DefaultAzureCredential(**kwargs)
    return MLClient(
        credential=credential,
        subscription_id=_extra(extras, "subscription_id", required=True),
        resource_group_name=_extra(extras, "resource_group", required=True),
        workspace_name=_extra(extras, "workspace_name", required=True),
    )


class AzureMLHook(BaseHook):
    """Submit, poll and cancel Azure ML jobs.

    ``client`` injects a ready client (tests pass a fake one); otherwise the
    connection is looked up on first use, never at construction, so building
    the hook in a DAG file costs nothing.
    """

    conn_name_attr = "azureml_conn_id"
    default_conn_name = "azureml_default"
    conn_type = "azure_ml"
    hook_name = "Azure Machine Learning"

    def __init__(self, azureml_conn_id: str = default_conn_name, client: Any | None = None) -> None:
        super().__init__()
        self.azureml_conn_id = azureml_conn_id
        self._client = client

    def get_conn(self) -> Any:
        if self._client is None:
            self._client = client_from_connection(self.get_connection(self.azureml_conn_id))
        return self._client

    async def aget_conn(self) -> Any:
        """The client, with the connection fetched the async way (inside the triggerer)."""
        if self._client is None:
            conn = await self.aget_connection(self.azureml_conn_id)
            self._client = await asyncio.to_thread(client_from_connection, conn)
        return self._client

    def submit(self, job: Any) -> SubmittedJob:
        created = self.get_conn().jobs.create_or_update(job)
        url = getattr(created, "studio_url", None)
        return SubmittedJob(name=str(created.name), studio_url=str(url) if url else None)

    def get_status(self, job_name: str) -> str:
        return str(self.get_conn().jobs.get(job_name).status)

    async def aget_status(self, job_name: str) -> str:
        client = await self.aget_conn()
        # azure-ai-ml has no asyncio client: keep its blocking call off the triggerer's loop.
        job = await asyncio.to_thread(client.jobs.get, job_name)
        return str(job.status)

    def cancel(self, job_name: str) -> None:
        """Ask Azure ML to cancel; a job already finished is left as it is."""
        if self.get_status(job_name) in TERMINAL:
            return
        self.get_conn().jobs.begin_cancel(job_name)

    async def acancel(self, job_name: str) -> None:
        """:meth:`cancel` from the triggerer's event loop."""
        client = await self.aget_conn()
        job = await asyncio.to_thread(client.jobs.get, job_name)
        if str(job.status) in TERMINAL:
            return
        await asyncio.to_thread(client.jobs.begin_cancel, job_name)

"""Triggers (run in the Airflow triggerer's event loop, so a waiting task holds no worker slot)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from recsys.orchestration.azureml import FAILED, SUCCEEDED, AzureMLHook


class AzureMLJobTrigger(BaseTrigger):
    """Poll an Azure ML job until it reaches a terminal state or ``end_time``, then fire once.

    The event is ``{"status": "success" | "error", "job_name", "job_status", "message"}``.
    At ``end_time`` (seconds since the epoch) the trigger cancels the job before it fires
    its ``error`` event: Airflow calls no ``on_kill`` when a deferral times out, so the
    wait's own deadline is what keeps a forgotten job from holding GPUs. A user who kills
    the waiting task (mark failed, clear) reaches :meth:`on_kill`, which cancels too.
    Transient errors of the control plane are retried ``max_errors`` times in a row before
    the trigger gives up with an ``error`` event (the job is left alone: it may be fine).
    """

    def __init__(
        self,
        job_name: str,
        end_time: float,
        azureml_conn_id: str = AzureMLHook.default_conn_name,
        poll_interval: float = 30.0,
        max_errors: int = 5,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_name = job_name
        self.end_time = end_time
        self.azureml_conn_id = azureml_conn_id
        self.poll_interval = poll_interval
        self.max_errors = max_errors

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "end_time": self.end_time,
                "azureml_conn_id": self.azureml_conn_id,
                "poll_interval": self.poll_interval,
                "max_errors": self.max_errors,
            },
        )

    def _hook(self) -> AzureMLHook:
        return AzureMLHook(azureml_conn_id=self.azureml_conn_id)

    def _event(self, ok: bool, job_status: str | None, message: str) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": "success" if ok else "error",
                "job_name": self.job_name,
                "job_status": job_status,
                "message": message,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        errors = 0
        status: str | None = None
        while time.time() < self.end_time:
            try:
                status = await hook.aget_status(self.job_name)
                errors = 0
            except Exception as exc:
                errors += 1
                self.log.warning("Azure ML job %s: status check failed (%s)", self.job_name, exc)
                if errors >= self.max_errors:
                    yield self._event(
                        False, None, f"{self.job_name}: no status after {errors} tries: {exc}"
                    )
                    return
            else:
                if status in SUCCEEDED or status in FAILED:
                    yield self._event(
                        status in SUCCEEDED, status, f"Azure ML job {self.job_name} ended {status}"
                    )
                    return
                self.log.info("Azure ML job %s is %s", self.job_name, status)
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.end_time - time.time())))
        message = f"Azure ML job {self.job_name} still {status} at the end of its wait"
        try:
            await hook.acancel(self.job_name)
            message += ": cancelled"
        except Exception as exc:
            self.log.exception("Azure ML job %s: cancel failed", self.job_name)
            message += f"; cancelling it failed ({exc}): cancel it in Azure ML studio"
        yield self._event(False, status, message)

    async def on_kill(self) -> None:
        """The waiting task was killed by a user: cancel the job it was waiting for."""
        self.log.info("Cancelling Azure ML job %s", self.job_name)
        await self._hook().acancel(self.job_name)


class LakeMarkerTrigger(BaseTrigger):
    """Fire when a marker file (a partition's ``_SUCCESS``) exists in the lake."""

    def __init__(self, marker_uri: str, poll_interval: float = 60.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.marker_uri = marker_uri
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"marker_uri": self.marker_uri, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from recsys.storage import exists

        while True:
            try:
                # fsspec calls block; a thread keeps the triggerer's loop free.
                found = await asyncio.to_thread(exists, self.marker_uri)
            except Exception as exc:  # a storage hiccup: try again at the next poll
                self.log.warning("%s: check failed (%s)", self.marker_uri, exc)
                found = False
            if found:
                yield TriggerEvent({"status": "success", "marker_uri": self.marker_uri})  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poll_interval)

"""Report artifacts: what a gate or a deployment decided, for people and for programs.

A report is an artifact folder at ``<lake>/reports/<name>/dt=YYYY-MM-DD`` (``name``:
``validation``, ``model``, ``deploy``) holding its documents (a JSON one that programs
read, Markdown for people), optionally the HTML site of a tool (great-expectations'
Data Docs under ``data_docs/``), and the manifest with the report's lineage. Each gate
decides what its documents say; this module decides where they live and how they are
written and read back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsys.artifacts import InputRef, read_json, write_artifact
from recsys.storage import join

REPORTS_DIR = "reports"
DATA_DOCS = "data_docs"
VALIDATION = "validation"
MODEL = "model"
DEPLOY = "deploy"


def report_uri(lake: str, name: str, day: dt.date) -> str:
    """Where the ``name`` report of ``day`` lives: ``<lake>/reports/<name>/dt=YYYY-MM-DD``."""
    return join(lake, REPORTS_DIR, name, f"dt={day.isoformat()}")


def write_report(
    uri: str,
    kind: str,
    documents: Mapping[str, str | Mapping[str, Any]],
    *,
    docs: Path | None = None,
    inputs: dict[str, InputRef] | None = None,
    counts: dict[str, int | float] | None = None,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Publish a report at ``uri``: each document (text as it is, a mapping as JSON) and the
    local folder ``docs`` (a generated site) under ``data_docs/``; returns ``uri``."""
    with write_artifact(uri, kind) as draft:
        for name, content in documents.items():
            if isinstance(content, str):
                draft.write_text(name, content)
            else:
                draft.write_json(name, content)
        if docs is not None:
            draft.copy_tree(DATA_DOCS, docs)
        draft.inputs = dict(inputs or {})
        draft.counts = dict(counts or {})
        draft.config = dict(config or {})
        draft.extra = dict(extra or {})
    return uri


def read_report(uri: str, document: str) -> Any:
    """A JSON document of the report at ``uri``."""
    return read_json(join(uri, document))

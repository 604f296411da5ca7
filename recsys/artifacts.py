"""Artifacts: folders with a ``manifest.json``, published atomically.

Every artifact of the lineage (validation report, graph snapshot, model run,
ONNX bundle, deployment) is a folder whose ``manifest.json`` records the
schema version, the inputs with their content hashes, counts, the config and
the sha256 of each file. The manifest holds no wall-clock time, so the same
inputs give the same manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from recsys import __version__
from recsys.errors import InputError
from recsys.storage import get_fs, join, list_files, publish_dir, sha256_file, staged_dir

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


class FileEntry(BaseModel):
    sha256: str
    bytes: int


class InputRef(BaseModel):
    uri: str
    sha256: str
    """Content hash of the input: its manifest's hash, or a hash of its files."""


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    kind: str
    recsys_version: str = __version__
    inputs: dict[str, InputRef] = Field(default_factory=dict)
    counts: dict[str, int | float] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry] = Field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


@dataclass
class ArtifactDraft:
    """An artifact being written: put files under :attr:`uri`, fill the manifest fields."""

    uri: str
    kind: str
    inputs: dict[str, InputRef] = field(default_factory=dict)
    counts: dict[str, int | float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return join(self.uri, name)


@contextmanager
def write_artifact(final_uri: str, kind: str) -> Iterator[ArtifactDraft]:
    """Write an artifact into a staging folder and publish it when the block ends.

    If the block raises, nothing is published and any previous artifact at
    ``final_uri`` is left as it was.
    """
    with staged_dir(final_uri) as staged:
        draft = ArtifactDraft(uri=staged, kind=kind)
        yield draft
        fs, root = get_fs(staged)
        files = {
            rel: FileEntry(
                sha256=sha256_file(fs, f"{root}/{rel}"), bytes=int(fs.size(f"{root}/{rel}"))
            )
            for rel in list_files(fs, root)
            if rel != MANIFEST
        }
        manifest = Manifest(
            kind=kind,
            inputs=draft.inputs,
            counts=draft.counts,
            config=draft.config,
            extra=draft.extra,
            files=files,
        )
        with fs.open(f"{root}/{MANIFEST}", "w") as f:
            f.write(manifest.to_json())
        publish_dir(staged, final_uri, MANIFEST)


def read_manifest(uri: str) -> Manifest:
    """The manifest of the artifact at ``uri``; an error if it is not a published artifact."""
    fs, root = get_fs(uri)
    path = f"{root}/{MANIFEST}"
    if not fs.exists(path):
        raise InputError(f"{uri}: not a published artifact (no {MANIFEST})")
    with fs.open(path, "r") as f:
        return Manifest.model_validate_json(f.read())


def manifest_sha256(uri: str) -> str:
    """Content hash of an artifact: the sha256 of its manifest (which lists each file's hash)."""
    import hashlib

    fs, root = get_fs(uri)
    with fs.open(f"{root}/{MANIFEST}", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def verify_artifact(uri: str) -> Manifest:
    """Check every file's checksum against the manifest; raise naming the first bad file."""
    manifest = read_manifest(uri)
    fs, root = get_fs(uri)
    for rel, entry in manifest.files.items():
        path = f"{root}/{rel}"
        if not fs.exists(path):
            raise InputError(f"{uri}: {rel} listed in the manifest is missing")
        if sha256_file(fs, path) != entry.sha256:
            raise InputError(f"{uri}: {rel} does not match its sha256 in the manifest")
    return manifest

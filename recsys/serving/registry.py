"""The local model registry: ``<registry>/production.json`` names the bundle to serve.

``production.json`` holds the current entry (bundle URI, version, manifest
hash) and the history of earlier production entries, newest last, so a
rollback is one atomic rewrite of the pointer. Servers started with
``--registry`` watch the pointer and hot-reload. Torch-free; used by the
server, the CLI and the Airflow deploy task.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from recsys.artifacts import manifest_sha256, read_manifest, verify_artifact
from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.storage import exists, get_fs, is_local, join, read_bytes, write_bytes_atomic

log = get_logger(__name__)

POINTER = "production.json"
MAX_HISTORY = 20


class RegistryEntry(BaseModel):
    bundle_uri: str
    version: str
    manifest_sha256: str
    published_at: str


class Pointer(BaseModel):
    current: RegistryEntry
    history: list[RegistryEntry] = Field(default_factory=list)
    """Earlier production entries, newest last (rollback targets)."""


def _absolute(uri: str) -> str:
    fs, path = get_fs(uri)
    return os.path.abspath(path) if is_local(fs) and "://" not in uri else uri


def read_pointer(registry: str) -> Pointer | None:
    uri = join(registry, POINTER)
    if not exists(uri):
        return None
    try:
        return Pointer.model_validate_json(read_bytes(uri))
    except ValueError as exc:
        raise InputError(f"{uri}: unreadable registry pointer: {exc}") from None


def current(registry: str) -> RegistryEntry | None:
    p = read_pointer(registry)
    return p.current if p else None


def _write(registry: str, pointer: Pointer) -> None:
    data = json.dumps(pointer.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(join(registry, POINTER), data.encode())


def publish(
    registry: str, bundle_uri: str, version: str | None = None, verify: bool = True
) -> RegistryEntry:
    """Make ``bundle_uri`` production; the old current entry becomes the rollback target.

    ``verify`` checks every file's checksum first, so a damaged bundle is never named (the
    servers verify again before they swap)."""
    bundle_uri = _absolute(bundle_uri)
    manifest = verify_artifact(bundle_uri) if verify else read_manifest(bundle_uri)
    if manifest.kind != "bundle":
        raise InputError(f"{bundle_uri}: artifact kind is {manifest.kind!r}, not a bundle")
    version = version or str(manifest.config.get("version") or "")
    if not version:
        raise InputError(f"{bundle_uri}: no version given and none in the manifest")
    entry = RegistryEntry(
        bundle_uri=bundle_uri,
        version=version,
        manifest_sha256=manifest_sha256(bundle_uri),
        published_at=datetime.now(UTC).isoformat(),
    )
    old = read_pointer(registry)
    history = [] if old is None else [*old.history, old.current][-MAX_HISTORY:]
    _write(registry, Pointer(current=entry, history=history))
    log.info("registry %s: production is now %s (%s)", registry, version, bundle_uri)
    return entry


def rollback(registry: str) -> RegistryEntry:
    """Make the previous production entry current again; an error when there is none."""
    old = read_pointer(registry)
    if old is None or not old.history:
        raise InputError(f"{registry}: nothing to roll back to")
    target = old.history[-1]
    # Bundle folders are immutable (one per version), so the target must still be there
    # exactly as published; refusing here beats naming a bundle every server would refuse.
    try:
        same = manifest_sha256(target.bundle_uri) == target.manifest_sha256
    except (InputError, OSError):  # the folder or its manifest is gone
        same = False
    if not same:
        raise InputError(
            f"{registry}: cannot roll back to {target.version}: {target.bundle_uri} is gone or "
            "no longer the bundle that was published"
        )
    _write(registry, Pointer(current=target, history=old.history[:-1]))
    log.info(
        "registry %s: rolled back from %s to %s", registry, old.current.version, target.version
    )
    return target

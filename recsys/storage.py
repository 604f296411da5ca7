"""One way to reach every store: fsspec URIs.

A URI is a local path (``./lake``), ``memory://...`` (tests) or
``abfs://container/path`` (ADLS Gen2 / Azure Blob through adlfs; credentials
come from ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_NAME``
with a workload identity, as adlfs reads them).

Publishing is atomic for readers: a writer fills a staging folder and
:func:`publish_dir` swaps it in with renames on a local disk; on object stores
(where a folder rename is a copy) the destination's ``manifest.json`` or
``_SUCCESS`` marker is written last and readers ignore a folder without it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
from fsspec import AbstractFileSystem

from recsys.errors import InputError

STAGING_PREFIX = "_staging-"


def get_fs(uri: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem behind ``uri`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path.rstrip("/") or path


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/`` (works for local paths and URLs)."""
    out = uri.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def is_local(fs: AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in {"file", "local"}


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return bool(fs.exists(path))


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    try:
        with fs.open(path, "rb") as f:
            data: bytes = f.read()
    except FileNotFoundError:
        raise InputError(f"{uri}: file not found") from None
    return data


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never half."""
    fs, path = get_fs(uri)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if is_local(fs):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        # a single blob PUT is atomic on object stores
        with fs.open(path, "wb") as f:
            f.write(data)


def sha256_file(fs: AbstractFileSystem, path: str) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def list_files(fs: AbstractFileSystem, root: str) -> list[str]:
    """Every file under ``root``, as paths relative to it, sorted."""
    out = []
    for p in fs.find(root):
        rel = p[len(root) :].lstrip("/") if p.startswith(root) else p.split(root, 1)[-1].lstrip("/")
        out.append(rel)
    return sorted(out)


def staging_uri(final_uri: str) -> str:
    """A sibling of ``final_uri`` to write into before publishing."""
    head, _, name = final_uri.rstrip("/").rpartition("/")
    staged = f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex[:12]}"
    return f"{head}/{staged}" if head else staged


def publish_dir(staged_uri: str, final_uri: str, marker: str) -> None:
    """Move a fully written staging folder to ``final_uri``, replacing any old one.

    ``marker`` (``manifest.json`` or ``_SUCCESS``) must exist in the staging
    folder; it is what readers check for, so on object stores it is copied last.
    """
    fs, staged = get_fs(staged_uri)
    _, final = get_fs(final_uri)
    if not fs.exists(f"{staged}/{marker}"):
        raise RuntimeError(f"{staged_uri}: refusing to publish without {marker}")
    if is_local(fs):
        old = None
        if fs.exists(final):
            old = f"{final.rstrip('/')}.old-{uuid.uuid4().hex[:12]}"
            os.replace(final, old)
        os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
        os.replace(staged, final)
        if old is not None:
            fs.rm(old, recursive=True)
        return
    if fs.exists(f"{final}/{marker}"):
        fs.rm(f"{final}/{marker}")  # the old artifact disappears first, as a whole
    if fs.exists(final):
        fs.rm(final, recursive=True)
    for rel in list_files(fs, staged):
        if rel != marker:
            fs.copy(f"{staged}/{rel}", f"{final}/{rel}")
    fs.copy(f"{staged}/{marker}", f"{final}/{marker}")
    fs.rm(staged, recursive=True)


@contextmanager
def staged_dir(final_uri: str) -> Iterator[str]:
    """Yield a staging URI; on error it is removed and nothing is published.

    The caller writes everything (marker last) and calls :func:`publish_dir`.
    """
    staged = staging_uri(final_uri)
    fs, path = get_fs(staged)
    fs.makedirs(path, exist_ok=True)
    try:
        yield staged
    finally:
        if fs.exists(path):
            fs.rm(path, recursive=True)

"""Resumable checkpoints: tensors, numbers and strings only, read with ``weights_only=True``.

A checkpoint holds the model and optimizer state_dicts, the epoch reached, the
sampling generator's and torch's RNG states, the best model so far and the
history, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from recsys.storage import exists, join, read_bytes, write_bytes_atomic

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(folder: str, state: dict[str, Any]) -> str:
    """Write ``state`` to ``<folder>/checkpoint.pt`` atomically; returns its URI."""
    buf = io.BytesIO()
    torch.save(state, buf)
    uri = join(folder, CHECKPOINT)
    write_bytes_atomic(uri, buf.getvalue())
    return uri


def load_checkpoint(folder: str, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The checkpoint in ``folder``, or ``None`` if there is none. Never unpickles code."""
    uri = join(folder, CHECKPOINT)
    if not exists(uri):
        return None
    state: dict[str, Any] = torch.load(
        io.BytesIO(read_bytes(uri)), map_location=map_location, weights_only=True
    )
    return state

"""Read the LightGCN benchmark format (``train.txt`` / ``test.txt``, optionally gzipped).

Each line is ``user item item ...`` with non-negative integer ids; one row of
the returned arrays per (user, item) interaction. ``n_users`` / ``n_items``
are ``max id + 1`` over both files, as the reference implementation counts
them, so ids index embedding tables directly.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.errors import InputError


@dataclass(frozen=True)
class LightGCNSplit:
    """A train/test split; every array is int64 with one entry per interaction."""

    n_users: int
    n_items: int
    train_user: np.ndarray
    train_item: np.ndarray
    test_user: np.ndarray
    test_item: np.ndarray


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: corrupt gzip file ({exc})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _bad_line(path: Path, lines: list[str]) -> InputError:
    """Find the first offending line (slow path, only after the fast parse failed)."""
    for no, line in enumerate(lines, start=1):
        for tok in line.split():
            if not tok.isdigit():
                return InputError(
                    f"{path}: line {no}: expected non-negative integer ids "
                    f"'user item item ...', got {tok!r}"
                )
    return InputError(f"{path}: unparseable content")


def _parse(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """``(user, item)`` int64 arrays in file order, and the largest user id listed."""
    lines = _read_text(path).splitlines()
    tokens: list[str] = []
    lengths: list[int] = []
    for line in lines:
        parts = line.split()
        if parts:
            lengths.append(len(parts) - 1)
            tokens.extend(parts)
    if not tokens:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), -1
    try:
        flat = np.array(tokens, dtype=np.str_).astype(np.int64)
    except (ValueError, OverflowError):
        raise _bad_line(path, lines) from None
    if (flat < 0).any():
        raise _bad_line(path, lines)
    # each non-empty line is one user token followed by its item tokens
    n_items = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(n_items + 1)[:-1]]).astype(np.int64)
    is_user = np.zeros(len(flat), dtype=bool)
    is_user[starts] = True
    line_users = flat[starts]
    return np.repeat(line_users, n_items), flat[~is_user], int(line_users.max())


def read_lightgcn_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(user, item)`` int64 arrays of one file, in file order."""
    user, item, _ = _parse(Path(path))
    return user, item


def load_lightgcn(train: str | Path, test: str | Path) -> LightGCNSplit:
    """Load a LightGCN-format split (``.txt`` or ``.txt.gz``)."""
    tr_u, tr_i, tr_max = _parse(Path(train))
    te_u, te_i, te_max = _parse(Path(test))
    if len(tr_u) == 0:
        raise InputError(f"{train}: no interactions")
    n_users = max(tr_max, te_max) + 1
    n_items = int(max(tr_i.max(initial=-1), te_i.max(initial=-1))) + 1
    return LightGCNSplit(
        n_users=n_users,
        n_items=n_items,
        train_user=tr_u,
        train_item=tr_i,
        test_user=te_u,
        test_item=te_i,
    )

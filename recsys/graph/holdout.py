"""The holdout: how many days it spans (stage 2, sized on the data), the pairs it holds,
and the served history (every in-window edge, holdout days included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.graph.arrays import present, unique_int
from recsys.graph.config import GraphConfig
from recsys.graph.idmap import index_of
from recsys.graph.inputs import Events
from recsys.graph.snapshot import ServedHistory
from recsys.graph.weights import (
    TYPE_CODE,
    US_PER_DAY,
    aggregate_pairs,
    event_weights,
    pair_types,
    saturate,
)
from recsys.graph.window import EPOCH, Inputs, Window, known_items


@dataclass(frozen=True)
class HoldoutSize:
    """How the holdout was sized: its span and what it holds (see :func:`size_holdout`)."""

    span: int
    users: int
    pairs: int
    target_met: bool
    why: str
    """Why the holdout stopped growing where it did."""


def size_holdout(inp: Inputs, w: Window, cfg: GraphConfig) -> tuple[Window, HoldoutSize]:
    """Stage 2: grow the holdout back from the as-of day until it holds enough to decide.

    The span starts at ``holdout_days`` and grows a day at a time until the holdout holds
    at least ``holdout_min_users`` users and ``holdout_min_pairs`` pairs, up to
    ``holdout_max_days`` (and never past the day where it would hold more than
    ``holdout_max_event_share`` of the window's events, nor to the window's first day).
    What a span ``d`` holds is counted exactly as :func:`holdout_pairs` will pick the pairs: a
    pair counts when its user has an event before the holdout (train edges), its product
    is mapped (the previous snapshot's or the as-of catalogue's, or seen before the
    holdout), it has an event of a holdout type, and no event of it is before the holdout.
    """
    if cfg.holdout_days == 0:
        return Window.of(w.as_of, cfg, 0), HoldoutSize(0, 0, 0, True, "holdout disabled")
    ev = inp.events
    in_window = (ev.ts_us >= w.start_us) & (ev.ts_us < w.cutoff_us)
    day = ev.ts_us[in_window] // US_PER_DAY
    user, item = ev.user[in_window], ev.item[in_window]
    n_u, n_i = max(len(ev.user_vocab), 1), max(len(ev.item_vocab), 1)
    never = np.iinfo(np.int64).max
    u_first = np.full(n_u, never, dtype=np.int64)
    np.minimum.at(u_first, user, day)
    i_first = np.full(n_i, never, dtype=np.int64)
    np.minimum.at(i_first, item, day)
    known = known_items(inp, cfg)
    if known is not None and len(ev.item_vocab):
        mapped = pd.Index(np.asarray(ev.item_vocab, dtype=object)).isin(known)
        i_first[: len(mapped)][mapped] = np.iinfo(np.int64).min
    hold_types = np.array([TYPE_CODE[t] for t in cfg.holdout_event_types], dtype=np.int8)
    key = user * np.int64(n_i) + item
    order = np.argsort(key, kind="stable")
    key_s = key[order]
    starts = (
        np.flatnonzero(np.concatenate(([True], key_s[1:] != key_s[:-1])))
        if len(key_s)
        else np.zeros(0, np.int64)
    )
    p_first = np.minimum.reduceat(day[order], starts) if len(starts) else day[:0]
    p_pos = (
        (
            np.maximum.reduceat(
                np.isin(ev.type_code[in_window], hold_types)[order].astype(np.int8), starts
            )
            > 0
        )
        if len(starts)
        else day[:0] > 0
    )
    p_key = key_s[starts]
    p_first, p_key = p_first[p_pos], p_key[p_pos]
    p_user, p_item = p_key // n_i, p_key % n_i
    pu_first, pi_first = u_first[p_user], i_first[p_item]
    day_sorted = np.sort(day)

    def share(first: int) -> float:
        return float(
            (len(day_sorted) - np.searchsorted(day_sorted, first)) / max(len(day_sorted), 1)
        )

    def holds(first: int) -> tuple[int, int]:
        ok = (p_first >= first) & (pu_first < first) & (pi_first < first)
        return int((np.bincount(p_user[ok], minlength=n_u) > 0).sum()), int(ok.sum())

    return choose_holdout_span(w, cfg, share, holds)


def holdout_span_range(cfg: GraphConfig) -> range:
    """The spans :func:`size_holdout` tries: ``holdout_days`` up to ``holdout_max_days``
    (never the whole window)."""
    max_span = min(max(cfg.holdout_max_days, cfg.holdout_days), cfg.window_days - 1)
    return range(cfg.holdout_days, max_span + 1)


def choose_holdout_span(
    w: Window,
    cfg: GraphConfig,
    share: Callable[[int], float],
    holds: Callable[[int], tuple[int, int]],
) -> tuple[Window, HoldoutSize]:
    """The sizing rule of :func:`size_holdout`, for either engine: ``share(first)`` is the
    share of the window's events on or after day number ``first`` (days since the epoch),
    ``holds(first)`` the ``(users, pairs)`` a holdout starting that day holds."""
    as_of_day = (w.as_of - EPOCH).days
    spans = holdout_span_range(cfg)
    max_span = spans.stop - 1
    span, users, pairs, why = cfg.holdout_days, 0, 0, ""
    for d in spans:
        first = as_of_day - d + 1
        if d > cfg.holdout_days and (frac := share(first)) > cfg.holdout_max_event_share:
            why = (
                f"stopped at {span} day(s): {d} would hold {frac:.0%} of the window's "
                f"events (holdout_max_event_share {cfg.holdout_max_event_share:g})"
            )
            break
        span = d
        users, pairs = holds(first)
        if users >= cfg.holdout_min_users and pairs >= cfg.holdout_min_pairs:
            why = f"{users} users and {pairs} pairs in {d} day(s) reach the targets"
            break
    else:
        why = (
            f"stopped at holdout_max_days: {max_span} day(s)"
            if max_span > cfg.holdout_days
            else f"holdout_days={cfg.holdout_days}"
        )
    met = users >= cfg.holdout_min_users and pairs >= cfg.holdout_min_pairs
    if not met:
        why += (
            f"; holds {users} users and {pairs} pairs, short of the targets "
            f"{cfg.holdout_min_users} / {cfg.holdout_min_pairs}"
        )
    return Window.of(w.as_of, cfg, span), HoldoutSize(span, users, pairs, met, why)


def holdout_pairs(
    ev: Events,
    mask: np.ndarray,
    user_lookup: np.ndarray,
    item_lookup: np.ndarray,
    user_deg: np.ndarray,
    train_key: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Unique holdout pairs not in train, with users that have train edges and mapped items."""
    n_vocab_items = max(len(ev.item_vocab), 1)
    code_key = unique_int(ev.user[mask] * np.int64(n_vocab_items) + ev.item[mask])
    hu = user_lookup[code_key // n_vocab_items]
    hi = item_lookup[code_key % n_vocab_items]
    known_user = hu >= 0
    known_user[known_user] = user_deg[hu[known_user]] > 0
    known_item = hi >= 0
    keep = known_user & known_item
    key = hu[keep] * np.int64(n_items) + hi[keep]
    pos = np.searchsorted(train_key, key)
    in_train = (pos < len(train_key)) & (
        train_key[np.minimum(pos, max(len(train_key) - 1, 0))] == key
    )
    if len(train_key) == 0:
        in_train = np.zeros(len(key), dtype=bool)
    key = np.sort(key[~in_train])
    counts = {
        "holdout_candidate_pairs": len(code_key),
        "holdout_dropped_unknown_user": int((~known_user).sum()),
        "holdout_dropped_unknown_item": int((known_user & ~known_item).sum()),
        "holdout_dropped_in_train": int(in_train.sum()),
    }
    return key // n_items, key % n_items, counts


def served_history(
    ev: Events,
    in_window: np.ndarray,
    user_lookup: np.ndarray,
    item_lookup: np.ndarray,
    n_users: int,
    n_items: int,
    cutoff_us: int,
    cfg: GraphConfig,
) -> ServedHistory:
    """Every user's history through the end of the as-of day, holdout days included.

    The holdout exists for the model gate, not to hide a shopper's latest interactions
    from serving: the bundle serves these edges (the fold-in makes any history exact to
    score). Weights follow the train edges' rule (same decay reference, same saturation).
    Users first seen in the holdout days get indices after the model's ``n_users``, in
    id order (``extra_user_ids``). Events naming an unmapped item
    are left out (serving could not score them either).
    """
    mask = in_window & (item_lookup[ev.item] >= 0)
    u_code, i_code = ev.user[mask], ev.item[mask]
    su = user_lookup[u_code]
    new = su < 0
    extra_ids = ev.user_vocab[present(u_code[new], len(ev.user_vocab))].astype(str)
    if len(extra_ids):
        su = su.copy()
        su[new] = n_users + index_of(extra_ids.astype(object), ev.user_vocab)[u_code[new]]
    ts = ev.ts_us[mask]
    raw = event_weights(
        ev.type_code[mask], ev.value[mask], (cutoff_us - ts) / US_PER_DAY, cfg.weights
    )
    hu, hi, summed, order, starts = aggregate_pairs(su, item_lookup[i_code], raw, n_items)
    return ServedHistory(
        user=hu,
        item=hi,
        weight=saturate(summed, cfg.weights).astype(np.float32),
        types=pair_types(ev.type_code[mask], order, starts),
        extra_user_ids=extra_ids,
    )

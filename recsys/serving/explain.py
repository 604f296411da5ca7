"""How a recommendation's reason is said: a phrase per event type ("because you bought X",
"your purchase of X"), as a dict and as a JSON fragment spliced from escaped ids (the hot
path builds answers without ``json.dumps``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.bundle import ALL_TYPES_MASK, TYPE_BITS
from recsys.serving.batcher import Prepared, Scored

PROFILE_REASON = "because it matches your profile"


def _phrases() -> list[tuple[str | None, str, str, str]]:
    """Per event-type bitmask: the strongest type and how to say it: "[you] bought X",
    "[your] purchase of X" (verb, suffix, noun)."""
    order = (
        ("purchase", "bought ", "", "your purchase of "),
        ("add_to_cart", "added ", " to your cart", "adding "),
        ("rating", "rated ", "", "your rating of "),
        ("click", "clicked on ", "", "your click on "),
        ("view", "viewed ", "", "your view of "),
    )
    unknown: tuple[str | None, str, str, str] = (
        None,
        "interacted with ",
        "",
        "your interaction with ",
    )
    return [
        next((ph for ph in order if bits & TYPE_BITS[str(ph[0])]), unknown)
        for bits in range(ALL_TYPES_MASK + 1)
    ]


PHRASES = _phrases()


Because = tuple[int, int, float | None, bool]
"""What a recommended item's explanation names: (history item index, its event-type bits,
what it adds to the score or None when the scorer does not say, ``also``: the item's
second-largest contribution, named because the largest one leads most of the list);
item -1 is the profile (no history item adds to the score)."""
PROFILE: Because = (-1, 0, None, False)
_LEADS = ("because you ", "also because you ")
_PROFILE_JSON = '{"reason":"' + PROFILE_REASON + '"}'
_PHRASE_JSON = [
    [("null" if t is None else f'"{t}"', f"{lead}{verb}", suffix) for t, verb, suffix, _ in PHRASES]
    for lead in _LEADS
]
"""Per ``also`` and event-type bits: (event type as JSON, reason before the id, after it)."""


def because_dict(b: Because, ids: np.ndarray) -> dict[str, Any]:
    item, types, contribution, also = b
    if item < 0:
        return {"reason": PROFILE_REASON}
    t, verb, suffix, _ = PHRASES[types & ALL_TYPES_MASK]
    return {
        "item_id": ids[item],
        "event_type": t,
        "contribution": contribution,
        "reason": f"{_LEADS[also]}{verb}{ids[item]}{suffix}",
    }


def because_json(b: Because, ij: list[str]) -> str:
    """:func:`because_dict` as JSON, spliced from the escaped item id (see ``finish_json``)."""
    item, types, contribution, also = b
    if item < 0:
        return _PROFILE_JSON
    tj, before, after = _PHRASE_JSON[also][types & ALL_TYPES_MASK]
    c = "null" if contribution is None else repr(contribution)
    return (
        f'{{"item_id":{ij[item]},"event_type":{tj},"contribution":{c},'
        f'"reason":"{before}{ij[item][1:-1]}{after}"}}'
    )


def explain(
    p: Prepared, s: Scored, item_ids: np.ndarray
) -> tuple[list[Because], dict[str, Any] | None]:
    """Per recommended item, what its explanation names; and the note, when one history
    item is the largest contribution to most of the list.

    An item is explained by its largest history contribution with the event type ("because
    you bought X"), or by the profile when no history item adds to its score. When one
    history item is the largest contribution of at least two items and at least half the
    list (the highest-ranked such item on a tie), naming it on each of them would explain
    nothing: the answer says so once (``explanation``: how many items, and the share of
    what the history adds to their scores that it carries) and those items name their
    second-largest contribution instead ("also because you viewed Y"), where one adds to
    their score."""
    n = len(s.idx)
    if not len(p.h_idx):
        return [PROFILE] * n, None
    first = s.top[0]
    named: list[int] = p.h_idx[first].tolist()
    types: list[int] = p.h_types[first].tolist()
    if s.contrib is None:
        out: list[Because] = [(j, t, None, False) for j, t in zip(named, types, strict=True)]
    else:
        out = [
            (j, t, c, False) if c > 0.0 else PROFILE
            for j, t, c in zip(named, types, s.contrib[0].tolist(), strict=True)
        ]
        named = [b[0] for b in out]
    if n < 2 or len(p.h_idx) < 2:
        return out, None
    lead, count = -1, 1
    for j in dict.fromkeys(named):  # first appearance order: ties go to the higher rank
        c = named.count(j)
        if c > count and j >= 0:
            lead, count = j, c
    if lead < 0 or 2 * count < n:
        return out, None
    return out, _lead_note(p, s, out, lead, count, item_ids)


def _lead_note(
    p: Prepared, s: Scored, out: list[Because], lead: int, count: int, item_ids: np.ndarray
) -> dict[str, Any]:
    """Name each led item's second contribution (in ``out``) and say what ``lead`` does."""
    n = len(out)
    group = [r for r, b in enumerate(out) if b[0] == lead]
    c1 = [out[r][2] for r in group]
    lead_types = out[group[0]][1]
    if s.contrib is not None and len(s.top) > 1:
        slots2, c2 = s.top[1].tolist(), s.contrib[1].tolist()
        for r in group:
            if c2[r] > 0.0:
                b = slots2[r]
                out[r] = (int(p.h_idx[b]), int(p.h_types[b]), c2[r], True)
    t, _, suffix, noun = PHRASES[lead_types & ALL_TYPES_MASK]
    said = f"{noun}{item_ids[lead]}{suffix}"
    where = f"all {n}" if count == n else f"{count} of these {n}"
    note: dict[str, Any] = {
        "item_id": item_ids[lead],
        "event_type": t,
        "items": count,
        "share": None,
        "reason": f"{said[0].upper()}{said[1:]} weighs most in {where}",
    }
    if s.history_pos is not None:
        share = [
            float(c or 0.0) / max(float(s.history_pos[r]), 1e-30)
            for r, c in zip(group, c1, strict=True)
        ]
        lo, hi = min(share), max(share)
        note["share"] = [round(lo, 4), round(hi, 4)]
        span = f"{lo:.0%}" if round(lo, 2) == round(hi, 2) else f"{lo:.0%}-{hi:.0%}"
        note["reason"] += f": {span} of what your history adds to each score"
    return note

"""The hand-built recommendation body equals json.dumps of the dict answer, byte for byte."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
from srv_helpers import make_bundle

from recsys.serving.batcher import Scored
from recsys.serving.engine import load_engine
from recsys.serving.live import LiveEvent
from recsys.serving.query import Query


def test_finish_json_equals_json_dumps(tmp_path: Path) -> None:
    engine = load_engine(make_bundle(str(tmp_path / "b"), "v1", seed=5, n_items=300))
    # ids that need escaping: quotes, backslashes, control and non-ASCII characters
    odd = ['q"uote', "back\\slash", "tab\tnew\nline", "caf\u00e9 \u2603", "\U0001f600"]
    ids = engine.item_ids.copy()
    ids[: len(odd)] = odd
    engine.item_ids = ids
    engine.item_id_json = [json.dumps(i) for i in ids.tolist()]
    engine.item_index = {it: i for i, it in enumerate(ids.tolist())}
    live = {
        "u1": [LiveEvent(1, odd[0], "purchase", None)],
        'new "user"': [LiveEvent(1, odd[3], "view", None)],
    }
    cases = [
        ("u1", Query(k=10)),
        ("u2", Query(k=7, exclude_seen_mask=0)),
        ('new "user"', Query(k=5)),
        ("cold", Query(k=4, features={"age": 30})),
        ("nobody", Query(k=3)),
    ]
    for user, q in cases:
        want = engine.recommend(user, q, live.get(user, []))
        want_idx = want.pop("_idx")
        body, source, idx = asyncio.run(engine.recommend_body(user, q, live.get(user, [])))
        assert body == json.dumps(want, separators=(",", ":")).encode()
        assert source == want["source"]
        assert np.array_equal(idx, want_idx)
    # every odd id both as a recommended item and as the "because" item, every event type
    p = engine.prepare("u1", Query(k=5), live["u1"])
    assert not isinstance(p, dict)
    n = len(odd)
    p.h_idx = np.arange(n, dtype=np.int64)
    p.h_types = np.array([1, 2, 4, 8, 16 | 1], dtype=np.int64)
    recs = np.arange(n, dtype=np.int64)[::-1].copy()
    scores = np.linspace(1.0, 0.1, n).astype(np.float32)
    own = Scored(
        scores,
        recs,
        np.stack([np.arange(n), np.roll(np.arange(n), 1)]),
        np.array([[0.5, 0.25, -1.0, 1e-3, 2.0], [0.1, 0.1, -2.0, 0.0, 1.0]], np.float32),
        np.full(n, 3.0, np.float32),
    )
    lead = own._replace(
        top=np.stack([np.zeros(n, np.int64), np.arange(n)]),
        contrib=np.array([[0.5] * n, [0.2, 0.0, 0.1, 0.3, 0.4]], np.float32),
    )
    old = Scored(scores, recs, np.arange(n, dtype=np.int64)[None, :], None, None)
    for result in (own, lead, old):
        want = engine.finish(p, result)
        want.pop("_idx")
        assert engine.finish_json(p, result) == json.dumps(want, separators=(",", ":")).encode()
    assert engine.finish(p, lead)["explanation"]["item_id"] == odd[0]
    p.h_idx = p.h_idx[:0]  # no history: the profile explanation
    p.h_types = p.h_types[:0]
    want = engine.finish(p, own)
    want.pop("_idx")
    assert engine.finish_json(p, own) == json.dumps(want, separators=(",", ":")).encode()

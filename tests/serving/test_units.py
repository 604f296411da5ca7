"""Pure functions of the serving side: live edge weights, exclusion masks."""

from __future__ import annotations

import math

import pytest

from recsys.bundle import ALL_TYPES_MASK, TYPE_BITS, WeightRules
from recsys.errors import InputError
from recsys.serving.query import seen_mask


def test_live_event_weight_matches_the_graph_rule() -> None:
    log1p = WeightRules()
    # one purchase then one view: saturate(8 + 1), as the graph would weigh the pair
    w = log1p.add_event(0.0, "purchase", None)
    assert w == pytest.approx(math.log1p(8.0))
    assert log1p.add_event(w, "view", None) == pytest.approx(math.log1p(9.0))
    assert log1p.add_event(0.0, "rating", 5.0) == pytest.approx(math.log1p(8.0))
    assert log1p.add_event(0.0, "rating", None) == pytest.approx(math.log1p(8.0 * 3 / 5))
    hyp = WeightRules(saturation="hyperbolic", saturation_c=8.0)
    w = hyp.add_event(0.0, "click", None)
    assert w == pytest.approx(2 / 10)
    assert hyp.add_event(w, "click", None) == pytest.approx(4 / 12)
    assert WeightRules(saturation="none").add_event(3.0, "view", None) == pytest.approx(4.0)


def test_serving_rules_are_the_graph_config() -> None:
    """One set of defaults, and a custom graph config weighs live events as the graph does."""
    from recsys.graph.config import WeightConfig
    from recsys.graph.weights import edge_weight

    assert WeightRules().model_dump() == WeightConfig().model_dump()
    cfg = WeightConfig(
        type_weights={"view": 0.5, "click": 1.5, "add_to_cart": 3.0, "purchase": 10.0,
                      "rating": 6.0},
        saturation="hyperbolic", saturation_c=5.0, rating_default=4.0,
    )  # fmt: skip
    rules = WeightRules.from_config(cfg)
    # ratings outside the star range and a NaN: clipped / defaulted as the graph does
    events = [("view", None), ("rating", None), ("purchase", None), ("rating", 2.0),
              ("rating", 9.0), ("rating", -3.0), ("rating", math.nan)]  # fmt: skip
    w = 0.0
    for i, (kind, value) in enumerate(events, start=1):
        w = rules.add_event(w, kind, value)
        done = events[:i]
        want = edge_weight([k for k, _ in done], [v for _, v in done], [0.0] * i, cfg)
        assert w == pytest.approx(want)  # live events have age 0: no decay


def test_seen_mask() -> None:
    assert seen_mask("all") == ALL_TYPES_MASK and seen_mask("") == ALL_TYPES_MASK
    assert seen_mask("none") == 0
    assert seen_mask("purchase, view") == TYPE_BITS["purchase"] | TYPE_BITS["view"]
    with pytest.raises(InputError, match="teleport"):
        seen_mask("teleport")


def test_event_log_daily_partitions(tmp_path: object) -> None:
    import asyncio
    import json
    from datetime import UTC, datetime
    from pathlib import Path

    from recsys.serving.eventlog import EventLog

    root = Path(str(tmp_path)) / "events"
    log = EventLog(str(root))

    async def go() -> None:
        await asyncio.gather(
            *(log.append([{"event_id": str(j), "user_id": "u"}]) for j in range(5))
        )

    asyncio.run(go())
    log.close()
    day = datetime.now(UTC).date().isoformat()
    files = list((root / f"dt={day}").glob("*.jsonl"))
    assert len(files) == 1
    rows = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert sorted(r["event_id"] for r in rows) == [str(j) for j in range(5)]


@pytest.mark.parametrize("in_thread", [True, False])
def test_batched_scoring_equals_one_by_one(tmp_path: object, in_thread: bool) -> None:
    """Requests scored together (padded histories and exclusions) get their own answers."""
    import asyncio
    from pathlib import Path

    from srv_helpers import make_bundle

    from recsys.serving.engine import load_engine
    from recsys.serving.live import LiveEvent
    from recsys.serving.query import Query
    from recsys.serving.scoring import LONG_HISTORY

    uri = make_bundle(str(Path(str(tmp_path)) / "b"), "v1", seed=3, n_items=600)
    engine = load_engine(uri, score_in_thread=in_thread)
    # a heavy user is scored alone, not padded into the batch
    heavy = [LiveEvent(1, f"i{j}", "view", None) for j in range(LONG_HISTORY + 8)]
    queries = [
        ("heavy", Query(k=5)),
        ("u1", Query(k=5)),
        ("u2", Query(k=3, exclude_categories=["c1"])),
        ("u3", Query(k=7, include_categories=["c2", "c3"])),
        ("newbie", Query(k=4, features={"age": 50, "country": "FR"})),
        ("u4", Query(k=6, exclude_seen_mask=0)),
        ("nobody", Query(k=2)),
    ]
    live = {"heavy": heavy}
    want = [engine.recommend(u, q, live.get(u, [])) for u, q in queries]

    async def together() -> list[dict[str, object]]:
        return list(
            await asyncio.gather(
                *(engine.recommend_async(u, q, live.get(u, [])) for u, q in queries)
            )
        )

    got = asyncio.run(together())
    assert engine.batcher.batches < engine.batcher.batched_requests or not in_thread
    for g, w in zip(got, want, strict=True):
        assert g["source"] == w["source"]
        gi, wi = g["items"], w["items"]
        assert isinstance(gi, list) and isinstance(wi, list)
        assert [x["item_id"] for x in gi] == [x["item_id"] for x in wi]
        # the explanation names the same items; what they add may round differently too
        assert [{**x["because"], "contribution": None} for x in gi] == [
            {**x["because"], "contribution": None} for x in wi
        ]
        assert [x["because"].get("contribution") or 0.0 for x in gi] == pytest.approx(
            [x["because"].get("contribution") or 0.0 for x in wi], abs=1e-5
        )
        # a batched matmul may round differently from a single-row one
        assert [x["score"] for x in gi] == pytest.approx([x["score"] for x in wi], abs=1e-5)


def test_popularity_tops_a_short_segment_up_from_the_global_ranking() -> None:
    """A segment's own list comes first with its own scores; when filters leave fewer than
    ``k`` of it, the global ranking fills the rest (never an excluded item, never twice)."""
    import numpy as np
    import pandas as pd

    from recsys.serving.popularity import Popularity

    table = pd.DataFrame(
        {
            "segment": ["", "", "", "", "FR", "FR"],
            "item_idx": [0, 1, 2, 3, 3, 1],
            "rank": [1, 2, 3, 4, 1, 2],
            "score": [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],
        }
    )
    pop = Popularity(table, n_items=4)
    pad = np.array([4])
    assert pop.segments == ["FR"]
    fr = pop.pick("FR", 3, pad)
    assert fr.items.tolist() == [3, 1, 0] and fr.source == "segment_popularity"
    assert fr.scores == [5.0, 4.0, 9.0]  # the segment's own scores, then the global ones
    fr = pop.pick("FR", 4, np.array([4, 1, 0]))
    assert fr.items.tolist() == [3, 2]
    glob = pop.pick("DE", 2, pad)  # no list of its own
    assert glob.items.tolist() == [0, 1] and glob.source == "global_popularity"
    assert glob.reason == "popular right now"

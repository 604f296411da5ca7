"""Explanations: the scorer's contributions against plain numpy, the rules that pick what
each item's explanation names (event type, the note when one history item leads), and
bundles exported before the two-contribution outputs still loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from srv_helpers import make_bundle

from recsys.artifacts import write_artifact
from recsys.bundle import TYPE_BITS
from recsys.scorer import build_scorer
from recsys.serving.batcher import Prepared, Scored
from recsys.serving.engine import Engine, load_engine
from recsys.serving.query import Query


@pytest.mark.parametrize("width", [1, 2, 6])
def test_scorer_contributions_equal_numpy(width: int) -> None:
    rng = np.random.default_rng(width)
    n, d, layers, b, k = 30, 6, 2, 4, 7
    S, F = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    deg = rng.random(n) + 0.1
    sess = ort.InferenceSession(
        build_scorer(
            S.astype(np.float32), F.astype(np.float32), deg.astype(np.float32), layers
        ).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    h_idx = np.stack([rng.permutation(n)[:width] for _ in range(b)]).astype(np.int64)
    h_w = rng.random((b, width)).astype(np.float32) + 0.1
    h_w[0, width - 1] = 0.0  # a padding slot (the whole history when width is 1)
    idx, top, contrib, hpos = sess.run(
        ["indices", "because_top", "because_contrib", "history_pos"],
        {
            "e0": rng.normal(size=(b, d)).astype(np.float32),
            "hist_idx": h_idx,
            "hist_w": h_w,
            "excl_idx": np.full((b, 1), n, np.int64),
            "k": np.array([k], np.int64),
        },
    )
    assert top.shape == contrib.shape == (b, min(2, width), k)
    for r in range(b):
        w = h_w[r].astype(np.float64)
        for j in range(k):
            item = idx[r, j]
            c = [
                w[s]
                / np.sqrt(w.sum())
                * deg[h_idx[r, s]]
                * (S[h_idx[r, s]] @ F[item])
                / (layers + 1)
                if w[s] > 0
                else -np.inf
                for s in range(width)
            ]
            ranked = sorted(range(width), key=lambda s: -c[s])
            for t in range(top.shape[1]):
                want = c[ranked[t]]
                if np.isinf(want):
                    assert np.isneginf(contrib[r, t, j])
                    continue
                assert contrib[r, t, j] == pytest.approx(want, abs=1e-5)
                assert c[top[r, t, j]] == pytest.approx(want, abs=1e-5)
            assert hpos[r, j] == pytest.approx(sum(x for x in c if x > 0), abs=1e-5)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return load_engine(make_bundle(str(tmp_path_factory.mktemp("b") / "b"), "v1", seed=3))


def _prepared(engine: Engine, types: list[int]) -> Prepared:
    p = engine.prepare("u1", Query(k=4))
    assert not isinstance(p, dict)
    p.h_idx = np.arange(10, 10 + len(types), dtype=np.int64)
    p.h_types = np.array(types, dtype=np.int64)
    return p


def _scored(top: list[list[int]], contrib: list[list[float]], pos: float = 4.0) -> Scored:
    k = len(top[0])
    return Scored(
        np.linspace(2, 1, k).astype(np.float32),
        np.arange(k, dtype=np.int64),
        np.array(top, np.int64),
        np.array(contrib, np.float32),
        np.full(k, pos, np.float32),
    )


def test_each_item_names_its_largest_contribution_with_the_event_type(engine: Engine) -> None:
    t = TYPE_BITS
    p = _prepared(
        engine, [t["view"] | t["purchase"], t["add_to_cart"] | t["click"], t["rating"], t["view"]]
    )
    out = engine.finish(
        p, _scored([[0, 1, 2, 3], [1, 0, 3, 2]], [[1.0, 0.5, 0.25, -0.5], [0.2, 0.1, 0.1, -1.0]])
    )
    assert out["explanation"] is None
    reasons = [it["because"]["reason"] for it in out["items"]]
    assert reasons == [
        "because you bought i10",
        "because you added i11 to your cart",
        "because you rated i12",
        "because it matches your profile",
    ]
    assert [it["because"].get("event_type") for it in out["items"]] == [
        "purchase",
        "add_to_cart",
        "rating",
        None,
    ]
    assert out["items"][0]["because"]["contribution"] == pytest.approx(1.0)


def test_one_history_item_leading_most_of_the_list_is_said_once(engine: Engine) -> None:
    t = TYPE_BITS
    p = _prepared(engine, [t["purchase"], t["view"], t["click"]])
    # history item 0 (i10) is the largest contribution of items 0, 1 and 3: three of four
    s = _scored(
        [[0, 0, 1, 0], [1, 2, 0, 1]], [[2.0, 1.0, 0.8, 0.5], [0.5, 0.4, 0.3, -0.1]], pos=4.0
    )
    out = engine.finish(p, s)
    note = out["explanation"]
    assert note["item_id"] == "i10" and note["event_type"] == "purchase" and note["items"] == 3
    # its share of what the history adds to each of those three scores: 2/4, 1/4, 0.5/4
    assert note["share"] == [0.125, 0.5]
    assert note["reason"] == (
        "Your purchase of i10 weighs most in 3 of these 4: 12%-50% of "
        "what your history adds to each score"
    )
    got = [(it["because"].get("item_id"), it["because"]["reason"]) for it in out["items"]]
    assert got == [
        ("i11", "also because you viewed i11"),
        ("i12", "also because you clicked on i12"),
        ("i11", "because you viewed i11"),  # not led by i10: its own largest
        ("i10", "because you bought i10"),  # no second contribution adds to its score
    ]


def test_no_note_below_half_or_for_a_single_history_item(engine: Engine) -> None:
    t = TYPE_BITS
    p = _prepared(engine, [t["view"], t["view"], t["view"]])
    spread = _scored([[0, 0, 1, 2, 1], [1, 1, 0, 0, 2]], [[1.0] * 5, [0.5] * 5])
    assert engine.finish(p, spread)["explanation"] is None  # 2 of 5 is under half
    p = _prepared(engine, [t["purchase"]])
    alone = Scored(
        np.ones(3, np.float32),
        np.arange(3, dtype=np.int64),
        np.zeros((1, 3), np.int64),
        np.ones((1, 3), np.float32),
        np.ones(3, np.float32),
    )
    out = engine.finish(p, alone)
    assert out["explanation"] is None
    assert {it["because"]["reason"] for it in out["items"]} == {"because you bought i10"}


def test_bundle_exported_before_the_contributions_still_loads(tmp_path: Path) -> None:
    """An older scorer has ``because_slot`` only: the server loads it, says it predates the
    full explanations, and names each item's largest contribution without a value."""
    uri = make_bundle(str(tmp_path / "new"), "v1", seed=4)
    model = onnx.load(f"{uri}/scorer.onnx")
    keep = [
        o
        for o in model.graph.output
        if o.name not in {"because_top", "because_contrib", "history_pos"}
    ]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    old = str(tmp_path / "old")
    with write_artifact(old, "bundle") as draft:
        for f in sorted(Path(uri).iterdir()):
            if f.name != "manifest.json":
                draft.write_bytes(
                    f.name, f.read_bytes() if f.name != "scorer.onnx" else model.SerializeToString()
                )
    new_e, old_e = load_engine(uri), load_engine(old)
    assert new_e.explains and not old_e.explains
    got, want = old_e.recommend("u3", Query(k=5)), new_e.recommend("u3", Query(k=5))
    assert [i["item_id"] for i in got["items"]] == [i["item_id"] for i in want["items"]]
    assert all(i["because"]["contribution"] is None for i in got["items"])
    assert all(i["because"]["reason"].startswith("because you ") for i in got["items"])

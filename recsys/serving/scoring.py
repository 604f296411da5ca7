"""The bundle's ONNX scorer, run on batches of prepared requests (see :mod:`recsys.scorer`
for its inputs and outputs). Reads no live state, so it is safe off the event loop."""

from __future__ import annotations

import numpy as np

from recsys.logs import get_logger
from recsys.serving.batcher import Prepared, Scored
from recsys.sessions import scorer_session

log = get_logger(__name__)

LONG_HISTORY = 512
"""History length above which a request is scored alone instead of padded into a batch."""
LONG_EXCLUSION = 4096

EXPLAIN_OUTPUTS = ("because_top", "because_contrib", "history_pos")
"""Scorer outputs of the explanations (bundles exported before them have ``because_slot`` only)."""
NEG_INF = float("-inf")


class OnnxScorer:
    """A scorer's onnxruntime session for a catalogue of ``n_items`` items and embeddings of
    size ``dim``; ``uri`` names the bundle in logs."""

    def __init__(self, model: bytes, threads: int, n_items: int, dim: int, uri: str) -> None:
        self.sess = scorer_session(model, threads)
        self.n_items = n_items
        self.dim = dim
        self.explains = set(EXPLAIN_OUTPUTS) <= {o.name for o in self.sess.get_outputs()}
        """The scorer gives the two largest contributions per item (bundles exported before
        them explain by the largest alone, without saying what it adds)."""
        if not self.explains:
            log.warning(
                "bundle %s predates the two-contribution explanations: each item names "
                "its largest history contribution only; re-export it (recsys export) "
                "for the full explanations",
                uri,
            )

    def run_many(self, batch: list[Prepared]) -> list[Scored]:
        """Score a batch, keeping padding bounded: a request with a long history or a long
        exclusion list is scored on its own, so one heavy user cannot make every other
        request in the batch pay (and allocate) for its length."""
        light = [
            j
            for j, p in enumerate(batch)
            if len(p.h_idx) <= LONG_HISTORY and len(p.excl) <= LONG_EXCLUSION
        ]
        out: list[Scored | None] = [None] * len(batch)
        if light:
            for j, res in zip(light, self.run_batch([batch[j] for j in light]), strict=True):
                out[j] = res
        for j, p in enumerate(batch):
            if out[j] is None:
                out[j] = self.run_batch([p])[0]
        return [r for r in out if r is not None]

    def run_batch(self, batch: list[Prepared]) -> list[Scored]:
        """One onnxruntime call for several requests (safe off the loop: reads no live state)."""
        n = len(batch)
        width = max(max(len(p.h_idx) for p in batch), 1)
        e_width = max(len(p.excl) for p in batch)
        e0 = np.empty((n, self.dim), dtype=np.float32)
        h_idx = np.zeros((n, width), dtype=np.int64)
        h_w = np.zeros((n, width), dtype=np.float32)
        excl = np.full((n, e_width), self.n_items, dtype=np.int64)
        for r, p in enumerate(batch):
            e0[r] = p.e0
            h_idx[r, : len(p.h_idx)] = p.h_idx
            h_w[r, : len(p.h_w)] = p.h_w
            excl[r, : len(p.excl)] = p.excl
        k = max(p.k for p in batch)
        feeds = {
            "e0": e0,
            "hist_idx": h_idx,
            "hist_w": h_w,
            "excl_idx": excl,
            "k": np.array([k], dtype=np.int64),
        }
        out: list[Scored] = []
        if self.explains:
            scores, idx, top, contrib, hpos = self.sess.run(
                ["scores", "indices", *EXPLAIN_OUTPUTS], feeds
            )
            for r, p in enumerate(batch):
                # masked items score -inf and come last (top-k is sorted): keep the prefix
                m = int(np.count_nonzero(scores[r, : p.k] > NEG_INF))
                out.append(
                    Scored(scores[r, :m], idx[r, :m], top[r, :, :m], contrib[r, :, :m], hpos[r, :m])
                )
            return out
        scores, idx, slot = self.sess.run(["scores", "indices", "because_slot"], feeds)
        for r, p in enumerate(batch):
            sr = scores[r, : p.k]
            keep = np.isfinite(sr)
            out.append(
                Scored(sr[keep], idx[r, : p.k][keep], slot[r, : p.k][keep][None, :], None, None)
            )
        return out

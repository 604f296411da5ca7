"""The scorer's exclusion mask: the dummy padding column is never returned, any E works."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from recsys.scorer import build_scorer


@pytest.mark.parametrize("n", [5, 300])
def test_masked_items_and_dummy_column_never_returned(n: int) -> None:
    rng = np.random.default_rng(n)
    d, b = 8, 3
    model = build_scorer(
        rng.normal(size=(n, d)).astype(np.float32),
        rng.normal(size=(n, d)).astype(np.float32),
        rng.random(n).astype(np.float32),
        3,
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for e in (0, 1, n - 2, n):
        excl = np.stack([rng.permutation(n)[:e] for _ in range(b)]).astype(np.int64).reshape(b, e)
        for k in (1, max(n // 2, 1), n):
            scores, idx = sess.run(
                ["scores", "indices"],
                {
                    "e0": rng.normal(size=(b, d)).astype(np.float32),
                    "hist_idx": np.zeros((b, 2), np.int64),
                    "hist_w": np.ones((b, 2), np.float32),
                    "excl_idx": excl,
                    "k": np.array([k], np.int64),
                },
            )
            assert idx.max() < n  # never the dummy column I
            for r in range(b):
                finite = np.isfinite(scores[r])
                assert finite.sum() == min(k, n - len(set(excl[r].tolist())))
                assert not set(idx[r][finite].tolist()) & set(excl[r].tolist())

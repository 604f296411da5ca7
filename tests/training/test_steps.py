"""The step's pieces that trade memory traffic for arithmetic: each must draw or compute
what the plain version does."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from recsys.training import losses
from recsys.training.sampling import NegativeSampler
from recsys.training.steps import HARD_POOL_ROWS, hardest_candidates, pooled_hardest_negatives
from recsys.training.table_rows import BPR_BLOCK_ROWS, TableRows, mean_sq_norm


def _world(n_users: int, n_items: int, seed: int) -> tuple[NegativeSampler, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    user = torch.randint(n_users, (n_users * 2,), generator=gen)
    item = torch.randint(n_items, (n_users * 2,), generator=gen)
    return (
        NegativeSampler(user, item, n_users, n_items),
        torch.randn(n_users, 16, generator=gen),
        torch.randn(n_items, 16, generator=gen),
    )


def test_pooled_negatives_are_never_positives_and_follow_the_per_row_draw() -> None:
    sampler, users_emb, items = _world(300, 400, seed=1)
    gen = torch.Generator().manual_seed(2)
    rows = torch.randint(300, (8 * HARD_POOL_ROWS + 17,), generator=gen)  # several blocks
    n, m = 3, 6
    pooled = pooled_hardest_negatives(users_emb[rows], items, rows, sampler, n, m, 64, gen)
    assert pooled.shape == (rows.numel(), n)
    assert not sampler.is_positive(rows.unsqueeze(1).expand(-1, n), pooled).any()
    # the per-row draw it replaces: the hardest of m uniform non-positives per slot
    cand = sampler.sample(rows, n * m, gen)
    plain = hardest_candidates(users_emb[rows], items, cand, n, m)

    def rank_share(neg: Tensor) -> float:
        # where the chosen item's score sits among all items' for the row's user (1 = top)
        scores = users_emb[rows] @ items.T
        chosen = scores.gather(1, neg)
        return float((scores.unsqueeze(1) < chosen.unsqueeze(2)).float().mean())

    # the max of 6 uniforms sits at 6/7 on average: both draws, within sampling noise (the
    # standard error of each share is 0.0008 here)
    assert abs(rank_share(pooled) - 6 / 7) < 0.005
    assert abs(rank_share(pooled) - rank_share(plain)) < 0.005
    # a fixed generator gives the same negatives
    again = pooled_hardest_negatives(
        users_emb[rows], items, rows, sampler, n, m, 64, torch.Generator().manual_seed(2)
    )
    first = pooled_hardest_negatives(
        users_emb[rows], items, rows, sampler, n, m, 64, torch.Generator().manual_seed(2)
    )
    assert torch.equal(again, first)


def test_pooled_negatives_of_a_user_who_saw_almost_everything() -> None:
    # user 0 has 47 of 50 items: most slots draw only positives and fall back to an exact draw
    user = torch.cat([torch.zeros(47, dtype=torch.long), torch.ones(3, dtype=torch.long)])
    item = torch.cat([torch.arange(47), torch.arange(3)])
    sampler = NegativeSampler(user, item, 2, 50)
    gen = torch.Generator().manual_seed(0)
    rows = torch.zeros(500, dtype=torch.long)
    neg = pooled_hardest_negatives(
        torch.randn(500, 8), torch.randn(50, 8), rows, sampler, 2, 4, 16, gen
    )
    assert set(torch.unique(neg).tolist()) <= {47, 48, 49}


def test_layer0_l2_is_the_mean_squared_norm_of_the_rows_on_either_path() -> None:
    gen = torch.Generator().manual_seed(3)
    for n_table, b in ((40, 30), (1000, 10)):  # 40 < 3*30+60 rows: the table path; else gathers
        x0 = torch.randn(n_table, 8, generator=gen, requires_grad=True)
        iu = torch.randint(n_table, (b,), generator=gen)
        ip = torch.randint(n_table, (b,), generator=gen)
        ineg = torch.randint(n_table, (b, 2), generator=gen)
        got = TableRows(x0, iu, ip, ineg).l2()
        (g_got,) = torch.autograd.grad(got, x0)
        want = 0.5 * (mean_sq_norm(x0[iu]) + mean_sq_norm(x0[ip]) + mean_sq_norm(x0[ineg]))
        (g_want,) = torch.autograd.grad(want, x0)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(g_got, g_want)


def test_bpr_on_table_rows_equals_bpr_of_the_gathered_rows() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(300, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    b, n = 2 * BPR_BLOCK_ROWS + 5, 3  # several blocks; rows repeat, as popular items do
    iu = torch.randint(100, (b,), generator=gen)
    ip = torch.randint(100, 300, (b,), generator=gen)
    ineg = torch.randint(100, 300, (b, n), generator=gen)
    rows = TableRows(x, iu, ip, ineg)
    got = rows.bpr()
    (g_got,) = torch.autograd.grad(3.0 * got, x)
    want = losses.bpr(*losses.scores(*rows.gather()))
    (g_want,) = torch.autograd.grad(3.0 * want, x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)
    with pytest.raises(ValueError, match="per-positive"):
        TableRows(x, iu, ip, ineg[:, 0]).bpr()

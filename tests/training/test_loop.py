from __future__ import annotations

import io
import types

import numpy as np
import pytest
import torch

from recsys.evaluation.baselines import Popularity
from recsys.evaluation.ranking import ScoreBatch, evaluate_topk, interactions_csr, topk_full_ranking
from recsys.training.config import TrackingConfig, TrainConfig
from recsys.training.data import split_validation
from recsys.training.evaluator import RankingEvaluator
from recsys.training.loop import train
from recsys.training.training_graph import adjacency_for

from .planted import Planted, planted


def cfg(**kw: object) -> TrainConfig:
    # random init and uniform negatives: the comparisons below measure what propagation
    # adds over MF, not what the spectral start (itself a graph filter) adds
    base: dict[str, object] = dict(
        init="normal",
        hard_negative_candidates=1,
        embedding_dim=32,
        num_layers=2,
        epochs=40,
        batch_size=1024,
        negatives=4,
        lr=0.01,
        eval_every=5,
        patience=3,
        val_fraction=0.1,
        progress=False,
        threads=1,
        tracking=TrackingConfig(enabled=False),
    )
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_recall(
    p: Planted, ue: torch.Tensor, ie: torch.Tensor, extra: ScoreBatch | None = None
) -> float:
    ev = RankingEvaluator(
        p.data.train_user,
        p.data.train_item,
        p.test_user,
        p.test_item,
        p.data.n_users,
        p.data.n_items,
        ks=(10,),
    )
    return ev.evaluate(ue, ie, extra)["recall@10"]


test_recall.__test__ = False  # type: ignore[attr-defined]


def popularity_recall(p: Planted, users: np.ndarray | None = None) -> float:
    d = p.data
    train = interactions_csr(d.train_user, d.train_item, d.n_users, d.n_items)
    test = interactions_csr(p.test_user, p.test_item, d.n_users, d.n_items)
    pop = Popularity()
    pop.fit(train)
    if users is None:
        users = np.flatnonzero(np.diff(test.indptr) > 0)
    topk = topk_full_ranking(pop.score, users, train, 10)
    return evaluate_topk(topk, users, test, (10,))["recall@10"]


def final(p: Planted, c: TrainConfig) -> float:
    result = train(p.data, c)
    adj = adjacency_for(p.data, c)
    with torch.no_grad():
        ue, ie = result.model(adj)
    return test_recall(p, ue, ie)


def test_gnn_beats_popularity_and_mf_on_planted_clusters() -> None:
    p = planted(n_users=500, n_items=300, per_user=8, seed=1)  # sparse: propagation helps
    pop = popularity_recall(p)
    gnn = final(p, cfg())
    mf = final(p, cfg(num_layers=0))
    print(f"gnn={gnn:.3f} mf={mf:.3f} pop={pop:.3f}")
    assert gnn > 1.5 * pop, (gnn, mf, pop)
    assert gnn > mf + 0.03, (gnn, mf, pop)


def test_default_config_beats_popularity_and_mf() -> None:
    p = planted(n_users=500, n_items=300, per_user=6, seed=1)
    defaults = dict(progress=False, threads=1, tracking=TrackingConfig(enabled=False))
    gnn = final(p, TrainConfig.model_validate(defaults))
    mf = final(p, TrainConfig.model_validate({**defaults, "num_layers": 0}))
    pop = popularity_recall(p)
    print(f"defaults: gnn={gnn:.3f} mf={mf:.3f} pop={pop:.3f}")
    assert gnn > 1.4 * pop and gnn > mf, (gnn, mf, pop)


def test_feature_path_recommends_for_users_without_interactions() -> None:
    p = planted(n_users=500, n_items=300, per_user=8, n_cold=80, features=True, seed=2)
    result = train(p.data, cfg())
    model = result.model
    adj = adjacency_for(p.data, cfg())
    with torch.no_grad():
        _, ie = model(adj)
        # what serving computes for a new user: layer 0 from features alone, no history
        assert model.user_features is not None
        ue = model.project_user_features(model.user_features)
    cold = p.cold_users
    d = p.data
    train_csr = interactions_csr(d.train_user, d.train_item, d.n_users, d.n_items)
    test_csr = interactions_csr(p.test_user, p.test_item, d.n_users, d.n_items)
    item_t = ie.T

    def score(users: np.ndarray) -> np.ndarray:
        out: np.ndarray = (ue[torch.from_numpy(users)] @ item_t).numpy()
        return out

    feat = evaluate_topk(topk_full_ranking(score, cold, train_csr, 10), cold, test_csr, (10,))
    pop = popularity_recall(p, cold)
    print(f"cold: features={feat['recall@10']:.3f} pop={pop:.3f}")
    assert feat["recall@10"] > 1.5 * pop, (feat, pop)
    # and those users' id embeddings were never trained: they stay zero
    assert torch.count_nonzero(model.user_embedding.weight[torch.from_numpy(cold)]) == 0


def test_same_seed_same_metrics_on_cpu() -> None:
    p = planted(n_users=200, n_items=120, seed=3)
    c = cfg(epochs=6, eval_every=2, hard_negative_candidates=2, items_per_hard_candidate=1)
    a, b = train(p.data, c), train(p.data, c)
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in b.history]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    other = train(
        p.data,
        cfg(epochs=6, eval_every=2, hard_negative_candidates=2, items_per_hard_candidate=1, seed=1),
    )
    assert other.history[-1]["loss"] != a.history[-1]["loss"]


def _state_bytes(model: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def test_same_seed_same_state_dict_bytes_with_several_threads() -> None:
    # large enough batches that torch splits the backward's row accumulation over threads:
    # with plain ``x[index]`` (parallel atomic adds) the weights' last bits differed per run
    p = planted(n_users=2000, n_items=400, per_user=6, features=True, seed=7)
    c = cfg(epochs=1, threads=2, eval_every=5, val_fraction=0.0, batch_size=16384)
    assert _state_bytes(train(p.data, c).model) == _state_bytes(train(p.data, c).model)


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path: object) -> None:
    p = planted(n_users=200, n_items=120, features=True, seed=4)
    c = cfg(epochs=6, eval_every=2, checkpoint_every=1)
    whole = train(p.data, c)
    folder = str(tmp_path)
    first = train(p.data, c, checkpoint_dir=folder, max_epochs=3)
    assert first.epochs_run == 3
    # the checkpoint holds tensors and plain values only
    state = torch.load(f"{folder}/checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and "optimizer" in state and "generator" in state
    resumed = train(p.data, c, checkpoint_dir=folder)
    assert resumed.epochs_run == 6
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in whole.history]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in resumed.history]
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


@pytest.mark.parametrize("candidates", [1, 4])
def test_sampled_mode_learns_the_clusters(candidates: int) -> None:
    p = planted(n_users=400, n_items=240, per_user=8, seed=5)
    gnn = final(
        p,
        cfg(
            mode="sampled",
            fanouts=[8, 4],
            sampled_batch_size=512,
            epochs=20,
            hard_negative_candidates=candidates,
            items_per_hard_candidate=1,
        ),
    )
    assert gnn > 1.5 * popularity_recall(p)


def test_early_stopping_uses_validation_only() -> None:
    p = planted(n_users=200, n_items=120, seed=6)
    result = train(p.data, cfg(epochs=200, eval_every=1, patience=2, lr=0.05, val_fraction=0.3))
    assert result.stopped_early and result.epochs_run < 200
    assert result.best_epoch <= result.epochs_run
    assert all(not k.startswith("test") for r in result.history for k in r)
    assert result.best_val["recall@20"] == max(
        r["val_recall@20"] for r in result.history if "val_recall@20" in r
    )


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(norm="max"), dict(unknown=1)])
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        cfg(**bad)


def test_hardest_candidates_picks_the_top_scored_candidate_of_each_slot() -> None:
    from recsys.training.steps import hardest_candidates

    gen = torch.Generator().manual_seed(0)
    items = torch.randn(500, 40, generator=gen)
    users = torch.randn(700, 40, generator=gen)  # > HARD_SCORE_ROWS: several row blocks
    n, m = 3, 5
    cand = torch.randint(0, 500, (700, n * m), generator=gen)
    chosen = hardest_candidates(users, items, cand, n, m)
    scores = (users.unsqueeze(1) * items[cand]).sum(-1).view(700, n, m)
    expect = cand.view(700, n, m).gather(2, scores.argmax(-1, keepdim=True)).squeeze(2)
    assert torch.equal(chosen, expect)
    picked = (users.unsqueeze(1) * items[chosen]).sum(-1)
    torch.testing.assert_close(picked, scores.max(-1).values)
    # bfloat16 scoring: always one of the slot's own candidates, the same one but for near ties
    low = hardest_candidates(users, items, cand, n, m, torch.bfloat16)
    assert (low.unsqueeze(-1) == cand.view(700, n, m)).any(-1).all()
    assert (low == chosen).float().mean() > 0.9


# every loss, with a setting that suits it: the planted signal must come through each
LOSSES: dict[str, dict[str, object]] = {
    "bpr": {},
    "softmax-uniform-dot": dict(
        loss="softmax", init_std=0.01, cosine=False, temperature=1.0, softmax_sampler="uniform"
    ),
    "softmax-in-batch-logq-dot": dict(
        loss="softmax", init_std=0.01, cosine=False, temperature=1.0, logq_correction=True
    ),
    "softmax-uniform-cosine": dict(
        loss="softmax", init_std=0.01, softmax_sampler="uniform", temperature=0.05
    ),
    "softmax-adaptive-temperature": dict(
        loss="softmax",
        init_std=0.01,
        cosine=False,
        temperature=1.0,
        softmax_sampler="uniform",
        temperature_mode="adaptive",
    ),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_beats_popularity_and_mf_on_planted_clusters(name: str) -> None:
    p = planted(n_users=500, n_items=300, per_user=8, seed=1)
    pop = popularity_recall(p)
    gnn = final(p, cfg(**LOSSES[name]))
    mf = final(p, cfg(num_layers=0))  # MF-BPR, as the product's evaluate command trains it
    print(f"{name}: gnn={gnn:.3f} mf-bpr={mf:.3f} pop={pop:.3f}")
    assert gnn > 1.5 * pop, (gnn, mf, pop)
    assert gnn > mf + 0.03, (gnn, mf, pop)


def test_adaptive_temperatures_follow_the_users_losses() -> None:
    p = planted(n_users=300, n_items=120, seed=8)
    c = cfg(**LOSSES["softmax-adaptive-temperature"], epochs=3, eval_every=3)
    result = train(p.data, c)
    means = [r["temperature_mean"] for r in result.history]
    assert all(m > 0 for m in means) and len(set(means)) == len(means)  # recomputed each epoch


def test_validation_pairs_join_training_for_the_last_epochs_while_improving() -> None:
    p = planted(n_users=400, n_items=240, per_user=8, seed=9)
    # a slow learning rate: still improving at the fold point (epoch 4), so the fold happens
    c = cfg(epochs=6, eval_every=2, lr=0.002, fold_validation_epochs=2)
    folded = train(p.data, c)
    assert folded.extra["folded_validation"]
    assert folded.best_epoch == 6 and folded.epochs_run == 6  # the final model is the result
    assert [r["epoch"] for r in folded.history if "val_recall@20" in r] == [2, 4]
    assert folded.best_val == {
        k[4:]: v for k, v in folded.history[3].items() if k.startswith("val_")
    }
    plain = train(p.data, cfg(epochs=6, eval_every=2, lr=0.002))
    assert not plain.extra["folded_validation"]
    # the folded epochs trained on the validation pairs: the model ranks them higher
    split = split_validation(p.data, c.val_fraction, c.seed)
    held = RankingEvaluator.of_validation(split)
    adj = adjacency_for(p.data, c)

    def recall(model: torch.nn.Module) -> float:
        with torch.no_grad():
            ue, ie = model(adj)
        return held.evaluate(ue, ie)["recall@20"]

    assert recall(folded.model) > recall(plain.model)


def test_no_fold_once_validation_stops_improving() -> None:
    p = planted(n_users=200, n_items=120, seed=6)
    # a high learning rate overfits within a few epochs: the best checkpoint is not the last one
    c = cfg(
        epochs=30, eval_every=1, patience=100, lr=0.05, val_fraction=0.3, fold_validation_epochs=10
    )
    result = train(p.data, c)
    assert not result.extra["folded_validation"]
    assert result.stopped_early and result.epochs_run == 20
    assert result.best_epoch < 20 and result.best_val["recall@20"] == max(
        r["val_recall@20"] for r in result.history if "val_recall@20" in r
    )


def test_time_budget_stops_at_the_first_epoch_past_it() -> None:
    p = planted(n_users=200, n_items=120, seed=3)
    result = train(p.data, cfg(epochs=50, eval_every=10, max_train_seconds=1e-3))
    assert result.epochs_run == 1 and result.stopped_early
    assert "val_recall@20" in result.history[0]  # validated at the stop


def test_time_budget_is_not_overrun_by_the_last_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.training.loop as loop

    # a clock that moves 1 s per epoch and stands still otherwise: no timing in the test
    now = [0.0]
    real_epoch = loop.train_epoch

    def one_second_epochs(*args: object, **kw: object) -> dict[str, float]:
        now[0] += 1.0
        return real_epoch(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(loop, "train_epoch", one_second_epochs)
    p = planted(n_users=200, n_items=120, seed=3)
    result = train(p.data, cfg(epochs=50, eval_every=1, max_train_seconds=3.5))
    # a fourth epoch would end at 4 s, past the budget: stop after the third, validated
    assert result.stopped_early and result.epochs_run == 3
    assert result.train_seconds == 3.0 and "val_recall@20" in result.history[-1]


def test_resume_equals_uninterrupted_run_with_adaptive_temperatures_and_a_fold(
    tmp_path: object,
) -> None:
    p = planted(n_users=200, n_items=120, features=True, seed=4)
    c = cfg(
        **LOSSES["softmax-adaptive-temperature"],
        epochs=6,
        eval_every=2,
        lr=0.002,
        fold_validation_epochs=2,
        checkpoint_every=1,
    )
    whole = train(p.data, c)
    assert whole.extra["folded_validation"]
    folder = str(tmp_path)
    train(p.data, c, checkpoint_dir=folder, max_epochs=5)  # paused inside the folded epochs
    resumed = train(p.data, c, checkpoint_dir=folder)
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in whole.history]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in resumed.history]
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_lr_per_step_anneals_inside_the_epochs() -> None:
    """Per epoch the rate moves at epoch starts (epoch 1 of 2 runs at the peak throughout); per
    step it decays through each epoch and ends the schedule near its floor."""
    p = planted(n_users=200, n_items=120, seed=3)
    per_epoch = train(p.data, cfg(epochs=2, eval_every=1, batch_size=64))
    per_step = train(p.data, cfg(epochs=2, eval_every=1, batch_size=64, lr_per_step=True))
    lr0 = 0.01
    assert per_epoch.history[0]["lr"] == lr0
    assert per_epoch.history[1]["lr"] == pytest.approx(lr0 * (0.05 + 0.95 * 0.5))
    assert 0.5 * lr0 < per_step.history[0]["lr"] < 0.6 * lr0  # near the midpoint, t -> 1/2
    assert per_step.history[1]["lr"] < 0.1 * lr0  # near the floor, t -> 1
    assert per_step.best_val["recall@20"] > 0  # it trains

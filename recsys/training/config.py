"""Training configuration: one pydantic model, every default documented.

The defaults are the recipe measured on Gowalla (benchmarks/RESULTS.md): large
batches with one full-graph propagation per step, several hard negatives per
positive, a high Adam learning rate with cosine decay, and validation every few
epochs. They suit general graphs too: nothing in them is Gowalla-specific. The
one trade-off left to the user is the embedding size: the default d=64 keeps the
serving scorer cheap; d=256 (benchmarks/configs/gowalla.toml) ranks better on a
large catalogue (Gowalla Recall@20 0.1849 vs 0.1739) at 4x the scoring cost.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrackingConfig(BaseModel):
    """MLflow tracking."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Log params, per-epoch metrics and the artifact files to MLflow."""
    uri: str | None = None
    """Tracking URI; ``None``: ``MLFLOW_TRACKING_URI`` if set, else a local store ``./mlruns``."""
    experiment: str = "recsys"
    """MLflow experiment name."""


class TrainConfig(BaseModel):
    """How to train :class:`recsys.models.FeatureLightGCN` with BPR."""

    model_config = ConfigDict(extra="forbid")

    # model
    embedding_dim: int = Field(64, ge=1)
    """Size ``d`` of every embedding (see the module docstring for d=256)."""
    num_layers: int = Field(3, ge=0)
    """Propagation layers ``K``; 0 is MF-BPR."""
    norm: Literal["sym", "mean"] = "sym"
    """Adjacency normalisation; ``sym`` is the one serving's exact fold-in needs."""
    init: Literal["normal", "spectral"] = "spectral"
    """Id-embedding init: ``normal(0, init_std)``, or ``spectral``: the top singular
    vectors of the normalised interaction matrix (see :mod:`recsys.training.init`),
    scaled to std ``init_std``; BPR then needs far fewer epochs."""
    init_std: float = Field(0.1, gt=0)
    """Std of the id embeddings at init."""

    # optimisation
    epochs: int = Field(30, ge=1)
    """Epochs to train (one epoch = as many positives as training edges); the cosine
    schedule spans them, early stopping may end sooner."""
    batch_size: int = Field(16384, ge=1)
    """Positives per step; each step costs one full-graph propagation, so large is fast.
    Capped so that an epoch has at least ``min_steps_per_epoch`` steps (small graphs)."""
    min_steps_per_epoch: int = Field(8, ge=1)
    loss: Literal["bpr", "softmax"] = "bpr"
    """Ranking loss (:mod:`recsys.training.losses`): ``bpr`` against ``negatives`` hard
    negatives per positive, or ``softmax``: a sampled-softmax cross-entropy with temperature
    against ``softmax_negatives`` negatives shared by the whole batch."""
    negatives: int = Field(4, ge=1)
    """BPR: negatives per positive; the loss is averaged over them."""
    softmax_negatives: int = Field(1024, ge=1)
    """Softmax: negatives shared by every positive of a batch (one ``[B, d] x [d, M]`` product)."""
    softmax_sampler: Literal["in_batch", "uniform"] = "in_batch"
    """Softmax negatives: ``in_batch``, the positive items of the batch (drawn by popularity,
    and their embeddings are already gathered), or ``uniform`` items."""
    temperature: float = Field(0.1, gt=0)
    """Softmax temperature ``tau`` (with ``cosine``, scores lie in [-1, 1])."""
    temperature_mode: Literal["fixed", "adaptive"] = "fixed"
    """``adaptive``: per-user temperatures from each user's loss in the previous epoch
    (:func:`recsys.training.losses.adaptive_temperature`), ``temperature`` for an average user."""
    temperature_spread: float = Field(1.0, gt=0)
    """How strongly a user's loss moves their adaptive temperature."""
    cosine: bool = True
    """Softmax: L2-normalise the embeddings inside the loss (cosine scores). Serving still ranks
    by the dot product of the final embeddings."""
    logq_correction: bool = False
    """Softmax with ``in_batch`` negatives: subtract ``log q_j`` (item popularity) from each
    negative's logit, so the sampled softmax estimates the full one."""
    contrastive_weight: float = Field(0.0, ge=0)
    """Weight of an InfoNCE regulariser between the batch nodes' layer-0 and final embeddings
    (:func:`recsys.training.losses.info_nce`); 0 disables it."""
    distill_weight: float = Field(0.0, ge=0)
    """Weight of a BPR term whose positives are a graph filter's top unseen items per user
    (:mod:`recsys.training.distill`); 0 disables it. Full-graph mode, BPR loss only."""
    distill_top: int = Field(20, ge=1)
    """The teacher's items per user that a soft positive is drawn from."""
    distill_rank_decay: float = Field(1.0, gt=0, le=1)
    """Slot ``r`` of the teacher's list (0: its best) is drawn with weight ``decay**r``; 1 draws
    uniformly."""
    distill_low_pass: float = Field(0.1, ge=0)
    """The teacher filter's ideal low-pass weight (PolyFilter's ``alpha``; 0 skips its SVD)."""
    contrastive_temperature: float = Field(0.2, gt=0)
    contrastive_rows: int = Field(1024, ge=1)
    """The regulariser contrasts the first this many users and positives of each batch."""
    hard_negative_candidates: int = Field(8, ge=1)
    """Candidates drawn per negative, keeping the highest-scoring one (1 = uniform)."""
    hard_negative_precision: Literal["float32", "bfloat16"] = "bfloat16"
    """Precision of the candidate scoring (full-graph mode): ``bfloat16`` gathers half the
    bytes (3-4x faster on CPU at d=256) and picks the same candidate except for near ties."""
    hard_negative_pool: int = Field(512, ge=0, le=65536)
    """Full-graph mode: each block of ``HARD_POOL_ROWS`` rows draws its candidates from one
    pool of this many uniform items, scored by one matrix product (each row's candidates stay
    uniform draws; a Gowalla epoch at batch 65,536 23.5 s vs 28.7 s gathering every row's
    own: benchmarks/RESULTS.md); 0 gathers every row's own candidates."""
    items_per_hard_candidate: int = Field(500, ge=1)
    """Caps the candidates at ``n_items // items_per_hard_candidate`` (at least 1): in a small
    catalogue the hardest of many draws is too often a positive the user has not shown yet."""
    lr: float = Field(1e-2, gt=0)
    """Adam learning rate (peak)."""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """``cosine`` decays the rate to ``lr_min_ratio * lr`` at ``epochs``."""
    lr_min_ratio: float = Field(0.05, ge=0, le=1)
    lr_per_step: bool = False
    """Move the schedule at every step (``epoch + share of the epoch done``) instead of once per
    epoch: a schedule of a few epochs then anneals inside them, not in steps of an epoch."""
    warmup_epochs: int = Field(0, ge=0)
    """Linear warm-up epochs."""
    l2: float = Field(1e-4, ge=0)
    """Weight of ``0.5 * (|e0_u|^2 + |e0_pos|^2 + mean_j |e0_neg_j|^2)`` averaged over the batch."""
    feature_loss_weight: float = Field(0.5, ge=0)
    """Weight of the BPR losses on features alone (cold-start path); used only with features."""

    # validation and early stopping (never on the test/holdout data)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of each user's distinct training items held out for validation."""
    eval_every: int = Field(3, ge=1)
    """Validate every this many epochs (and at the last epoch)."""
    eval_max_users: int | None = Field(10000, ge=1)
    """Validate on at most this many users (a fixed random subset), for speed."""
    eval_k: int = Field(20, ge=1)
    """Cutoff of the validation metric."""
    select_metric: str = "recall@20"
    """Validation metric that selects the checkpoint and drives early stopping."""
    patience: int = Field(4, ge=1)
    """Stop after this many validations without improvement."""
    fold_validation_epochs: int = Field(0, ge=0)
    """Train the last this many epochs of the schedule on the validation pairs too (in the loss
    and the graph). Validation ends before them, and they run only when the checkpoint chosen on
    validation is the last one validated (the model was still improving); otherwise training
    stops there with that checkpoint."""

    # graph scale
    mode: Literal["auto", "full", "sampled"] = "auto"
    """``full``: exact propagation over the whole graph per step; ``sampled``:
    neighbour-sampled subgraphs per mini-batch; ``auto``: full while the
    adjacency has at most ``full_graph_max_edges`` interactions."""
    full_graph_max_edges: int = Field(50_000_000, ge=1)
    fanouts: list[int] = Field(default_factory=lambda: [15, 10, 5])
    """Neighbours sampled per node at each hop (sampled mode); the last is reused."""
    sampled_batch_size: int = Field(2048, ge=1)
    """Positives per step in sampled mode."""

    # reproducibility and runtime
    seed: int = 0
    """Seed of every random draw; same seed, same metrics on CPU."""
    threads: int | None = Field(None, ge=1)
    """CPU threads for torch; ``None``: ``RECSYS_TORCH_THREADS`` or all cores."""
    # blend with a graph filter (recsys.training.blend), chosen on validation
    blend_rank: int = Field(0, ge=0)
    """Rank ``k`` of a low-pass graph filter appended to the trained model as ``k`` fixed
    embedding columns (the fold-in stays exact); its weight is chosen on validation among
    ``blend_weights`` and 0 (no blend). 0 disables the blend. It replaces the default item-item
    term (``item_item_keep``), which is the filter that measured better."""
    blend_weights: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    """Candidate weights: the filter's score spread as a multiple of the GNN's."""
    blend_power: float = 0.5
    """The filter's item columns are ``V S^power`` (top singular vectors and values of R~)."""
    item_item_keep: int = Field(300, ge=0)
    """Entries per item of an item-item term added to the model's scores (a graph filter's
    operator, :mod:`recsys.training.item_item`; the serving fold-in adds it exactly); its weight
    is chosen on validation among ``item_item_weights`` and 0. 0 disables it. On the synthetic
    shop 30 / 100 / 300 entries lift holdout Recall@20 from 0.571 to 0.587 / 0.596 / 0.599
    (benchmarks/RESULTS.md), hence 300."""
    item_item_weights: list[float] = Field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 3.0])
    """Candidate weights of the item-item term: its score spread as a multiple of the GNN's."""
    item_item_low_pass: float = Field(0.1, ge=0)
    """The filter's ideal low-pass weight (PolyFilter's ``alpha``, its default). 0 skips its SVD:
    a 3x cheaper operator (91 s vs 267 s per build on Gowalla) that validation could not tell
    apart (0.2326 vs 0.2328), but Gowalla's test could: 0.1939 / 0.1591 vs 0.1978 / 0.1642."""
    item_item_max_work: float = Field(5e10, gt=0)
    """Graphs whose training edges x items exceed this get no item-item term: its operator is
    a filter pass per item, each a few sparse products over every edge (Gowalla, 810k edges x
    41k items = 3.3e10: ~4.5 min per build on 2 cores, two builds per training). Raise it
    where the minutes are worth it."""
    max_train_seconds: float | None = Field(None, gt=0)
    """Training time budget (validation included): training stops, validating there, after
    the last epoch that another one (at the run's mean epoch time) would not fit after; the
    cosine schedule runs over this budget (or over ``epochs`` if those end first;
    single-process only). The DAG's ``train_budget_s`` sets it; time-matched comparisons
    (benchmarks) too. ``None``: no limit."""
    warm_epochs: int = Field(4, ge=1)
    """Epochs of a warm start (``recsys train --init-from``): production's parameters are
    close already, so the schedule is short (:func:`recsys.training.warm.warm_config`)."""
    warm_lr_scale: float = Field(0.5, gt=0, le=1)
    """A warm start's peak learning rate, as a share of ``lr``."""
    checkpoint_every: int = Field(3, ge=1)
    """Save a resumable checkpoint every this many epochs (when a folder is given)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _one_filter(self) -> TrainConfig:
        if self.blend_rank and self.item_item_keep:
            if "item_item_keep" in self.model_fields_set:
                raise ValueError(
                    "blend_rank and item_item_keep both add a graph filter to the model: set one"
                )
            # the spectral blend asked for, the default item-item term steps aside
            self.item_item_keep = 0
        return self

    def resolved_threads(self) -> int | None:
        if self.threads is not None:
            return self.threads
        env = os.environ.get("RECSYS_TORCH_THREADS")
        return int(env) if env else None

"""The synthetic shop's world and its days: what :mod:`recsys.data.synth` writes as a lake.

Generative model (all vectorised numpy, one ``numpy.random.Generator`` seeded
by ``cfg.seed``, drawn in a fixed order, so a seed gives byte-identical files):

* Users have a hidden age band ``b`` and country ``g`` (the lake shows ``age``
  and ``country``, with a few nulls). Their *segment* sets a preference over
  the ``C`` categories, ``l_{b,g} = A[b] + G[g]`` with ``A, G ~ N(0, s^2)``
  (``s = segment_strength``).
* Each user draws ``k = affinity_categories`` favourite categories without
  replacement from ``softmax(l_{b,g})`` (Gumbel top-k) and weights
  ``a_u ~ Dirichlet(1_k)`` on them: the sparse planted affinity (saved in
  ``_truth/affinity.parquet``). Because the draw depends on the segment,
  features alone predict a brand-new user's affinities better than the
  global popularity does.
* Items have a category (Dirichlet-sized categories), a log-normal price per
  category, a latent quality ``q_i ~ N(0, 1)``, a catalogue rating
  ``3.6 + 0.6 q_i + noise`` and a popularity ``p_i = r_i^{-alpha} e^{beta q_i}``
  for a random rank ``r_i`` (a power law).
* A user's browsing picks a category from ``m_u = (1 - e) a_u + e P_cat``
  (``e = explore_share``, ``P_cat`` the catalogue's popularity mass per
  category), then an item in that category proportionally to ``p_i``; so
  ``P(i | u) = m_u[c_i] p_i / sum_{j in c_i} p_j``: popularity x affinity.
* Each pick is a funnel chain view -> click -> add_to_cart -> purchase
  (-> rating 1-5 after some purchases), with strictly increasing timestamps;
  click and cart rates grow with the user's affinity for the category, the
  purchase rate falls with the price, the rating grows with quality and
  affinity. Chains are grouped in sessions with a diurnal start time.
* Users and items appear over time (``new_user_share`` / ``new_item_share``
  of them are created during the period). ``users``/``items`` partition
  ``dt=D`` holds everyone existing on day ``D``; ``events`` partition ``dt=D``
  holds the events whose ``ts`` is on UTC day ``D`` (sessions spill past
  midnight into the next partition; events after ``end_date`` are dropped).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, model_validator

from recsys.data.schema import EVENT_TYPES

DAY_US = 86_400 * 1_000_000

CATEGORY_NAMES = (
    "electronics", "books", "fashion", "home", "beauty", "sports", "toys", "grocery",
    "garden", "automotive", "pet", "music", "health", "jewelry", "office", "baby",
    "shoes", "games", "tools", "outdoors",
)  # fmt: skip
AGE_BANDS = ((18, 25), (25, 35), (35, 45), (45, 60), (60, 80))
AGE_BAND_WEIGHTS = (0.18, 0.30, 0.24, 0.18, 0.10)
# share of sessions starting in each UTC hour: quiet nights, evening peak
DIURNAL = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.2, 2.6, 2.8, 3.0,
     3.2, 3.1, 3.0, 3.0, 3.2, 3.6, 4.2, 4.8, 5.0, 4.4, 3.2, 1.8]
)  # fmt: skip
VIEW, CLICK, CART, PURCHASE, RATING = range(5)
assert EVENT_TYPES == ("view", "click", "add_to_cart", "purchase", "rating")


class SynthConfig(BaseModel):
    """Size and shape of the synthetic shop."""

    users: int = Field(2000, ge=1, description="Users existing on the last day")
    items: int = Field(500, ge=1, description="Products existing on the last day")
    days: int = Field(5, ge=1, description="Number of daily partitions")
    end_date: dt.date = Field(dt.date(2026, 11, 27), description="Last day (UTC)")
    seed: int = Field(1, description="Random seed: same seed, byte-identical lake")
    events_per_user_day: float = Field(5.0, gt=0, description="Mean events per active user and day")
    active_share: float = Field(
        0.35, gt=0, le=1, description="Mean share of existing users active on a day"
    )
    n_categories: int = Field(20, ge=1, description="Product categories (at most one per item)")
    countries: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "ES", "IT", "PL", "NL", "SE", "IN"],
        min_length=1,
    )
    popularity_exponent: float = Field(
        1.0, ge=0, description="alpha in p_i = rank^-alpha (Zipf-like popularity)"
    )
    quality_popularity: float = Field(
        0.5, ge=0, description="beta: how much quality lifts popularity"
    )
    affinity_categories: int = Field(3, ge=1, description="k: favourite categories per user")
    segment_strength: float = Field(
        1.5, ge=0, description="s: how strongly age band and country drive the affinities"
    )
    explore_share: float = Field(
        0.15, ge=0, lt=1, description="e: share of browsing outside the user's affinities"
    )
    click_rate: float = Field(0.35, ge=0, le=1, description="P(click | view) at mean affinity")
    cart_rate: float = Field(0.3, ge=0, le=1, description="P(add_to_cart | click) at mean affinity")
    purchase_rate: float = Field(
        0.5, ge=0, le=1, description="P(purchase | add_to_cart) at median price"
    )
    rating_rate: float = Field(0.3, ge=0, le=1, description="P(rating | purchase)")
    new_user_share: float = Field(
        0.2, ge=0, le=1, description="Share of users who sign up during the period"
    )
    new_item_share: float = Field(
        0.1, ge=0, le=1, description="Share of items created during the period"
    )
    missing_age_share: float = Field(0.02, ge=0, le=1, description="Users whose age is null")
    missing_country_share: float = Field(
        0.01, ge=0, le=1, description="Users whose country is null"
    )

    @model_validator(mode="after")
    def _fit_small_shops(self) -> SynthConfig:
        # a tiny shop (fewer items than categories) gets one category per item rather than an error
        self.n_categories = min(self.n_categories, self.items)
        self.affinity_categories = min(self.affinity_categories, self.n_categories)
        return self

    @property
    def start_date(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)


@dataclass
class World:
    """Everything drawn once, before the days are simulated."""

    user_band: np.ndarray  # (U,) int
    user_country: np.ndarray  # (U,) int
    user_age: np.ndarray  # (U,) float, NaN = missing
    user_country_seen: np.ndarray  # (U,) bool, False = null in the lake
    user_signup: np.ndarray  # (U,) int day offset from start (negative = before)
    user_activity: np.ndarray  # (U,) float, P(active on a day)
    aff_sparse: np.ndarray  # (U, C) float, k non-zeros per row summing to 1
    aff_mix: np.ndarray  # (U, C) float, rows sum to 1
    age_effect: np.ndarray  # (bands, C)
    country_effect: np.ndarray  # (countries, C)
    item_cat: np.ndarray  # (I,) int
    item_quality: np.ndarray  # (I,) float
    item_pop: np.ndarray  # (I,) float
    item_price: np.ndarray  # (I,) float
    item_rating: np.ndarray  # (I,) float
    item_created: np.ndarray  # (I,) int day offset
    cat_median_price: np.ndarray  # (C,) float
    cat_names: list[str]


def _signup_days(rng: np.random.Generator, n: int, new_share: float, days: int) -> np.ndarray:
    """Day offsets: the new ones inside the period (from day 1), the rest up to 2 years before."""
    new = rng.random(n) < new_share if days > 1 else np.zeros(n, dtype=bool)
    out = -rng.integers(1, 731, size=n)
    out[new] = rng.integers(1, days, size=int(new.sum())) if days > 1 else 0
    # ids follow creation order, as in a real shop's auto-increment keys
    return np.sort(out, kind="stable")


def draw_world(cfg: SynthConfig, rng: np.random.Generator) -> World:
    n_u, n_i, n_c = cfg.users, cfg.items, cfg.n_categories
    cat_names = [
        CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category-{c}" for c in range(n_c)
    ]

    # --- users and their planted affinities
    band = rng.choice(len(AGE_BANDS), size=n_u, p=np.array(AGE_BAND_WEIGHTS))
    lo = np.array([b[0] for b in AGE_BANDS])[band]
    hi = np.array([b[1] for b in AGE_BANDS])[band]
    age = np.floor(lo + rng.random(n_u) * (hi - lo)).astype(np.float64)
    age[rng.random(n_u) < cfg.missing_age_share] = np.nan
    cw = 1.0 / np.arange(1, len(cfg.countries) + 1) ** 0.8
    country = rng.choice(len(cfg.countries), size=n_u, p=cw / cw.sum())
    country_seen = rng.random(n_u) >= cfg.missing_country_share
    age_effect = rng.normal(0, cfg.segment_strength, size=(len(AGE_BANDS), n_c))
    country_effect = rng.normal(0, cfg.segment_strength, size=(len(cfg.countries), n_c))
    logits = age_effect[band] + country_effect[country]  # (U, C)
    gumbel = logits - np.log(-np.log(rng.random((n_u, n_c)) + 1e-300) + 1e-300)
    top = np.argsort(-gumbel, axis=1, kind="stable")[:, : cfg.affinity_categories]  # (U, k)
    weights = rng.dirichlet(np.ones(cfg.affinity_categories), size=n_u)  # (U, k)
    aff_sparse = np.zeros((n_u, n_c))
    np.put_along_axis(aff_sparse, top, weights, axis=1)
    signup = _signup_days(rng, n_u, cfg.new_user_share, cfg.days)
    activity = np.clip(cfg.active_share * rng.lognormal(-0.32, 0.8, size=n_u), 0.01, 1.0)

    # --- items
    cat_share = rng.dirichlet(np.full(n_c, 2.0))
    # the n_c oldest items, one per category, exist before the period: every category can be browsed
    item_cat = np.concatenate([np.arange(n_c), rng.choice(n_c, size=n_i - n_c, p=cat_share)])
    created = _signup_days(rng, n_i, cfg.new_item_share, cfg.days)
    created[:n_c] = np.minimum(created[:n_c], -1)
    quality = rng.normal(size=n_i)
    rank = rng.permutation(n_i) + 1
    pop = rank.astype(np.float64) ** -cfg.popularity_exponent * np.exp(
        cfg.quality_popularity * quality
    )
    cat_mu = rng.normal(3.3, 0.9, size=n_c)
    price = np.round(np.exp(cat_mu[item_cat] + rng.normal(0, 0.6, size=n_i)), 2) + 0.99
    rating = np.round(np.clip(3.6 + 0.6 * quality + rng.normal(0, 0.3, size=n_i), 1, 5), 1)
    cat_median = np.array([np.median(price[item_cat == c]) for c in range(n_c)])

    cat_mass = np.bincount(item_cat, weights=pop, minlength=n_c)
    aff_mix = (1 - cfg.explore_share) * aff_sparse + cfg.explore_share * (cat_mass / cat_mass.sum())
    return World(
        user_band=band,
        user_country=country,
        user_age=age,
        user_country_seen=country_seen,
        user_signup=signup,
        user_activity=activity,
        aff_sparse=aff_sparse,
        aff_mix=aff_mix,
        age_effect=age_effect,
        country_effect=country_effect,
        item_cat=item_cat,
        item_quality=quality,
        item_pop=pop,
        item_price=price,
        item_rating=rating,
        item_created=created,
        cat_median_price=cat_median,
        cat_names=cat_names,
    )


def _sample_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per entry of ``rows`` from ``probs[rows]`` (rows of (U, C))."""
    out = np.empty(len(rows), dtype=np.int64)
    cum = np.cumsum(probs, axis=1)
    step = 1 << 18  # bounds the (chunk, C) temporary
    for s in range(0, len(rows), step):
        r = rows[s : s + step]
        c = cum[r]
        u = rng.random(len(r)) * c[:, -1]
        out[s : s + step] = np.minimum((c <= u[:, None]).sum(axis=1), probs.shape[1] - 1)
    return out


def _group_cumsum(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of ``values`` within runs of equal (sorted) ``keys``."""
    total = np.cumsum(values)
    starts = np.r_[True, keys[1:] != keys[:-1]]
    base = np.maximum.accumulate(np.where(starts, total - values, 0))
    return total - base


def simulate_day(
    cfg: SynthConfig, w: World, rng: np.random.Generator, day: int, day_start_us: int
) -> tuple[np.ndarray, ...]:
    """Events that start on ``day``: (user, item, type, value, ts_us), possibly spilling past it."""
    exists_u = w.user_signup <= day
    active = exists_u & ((rng.random(len(exists_u)) < w.user_activity) | (w.user_signup == day))
    act = np.flatnonzero(active)
    # expected events per chain at base rates; chains per user-day scaled to hit events_per_user_day
    per_chain = 1 + cfg.click_rate * (
        1 + cfg.cart_rate * (1 + cfg.purchase_rate * (1 + cfg.rating_rate))
    )
    mean_chains = cfg.events_per_user_day / per_chain
    n_chains = 1 + rng.poisson(max(mean_chains - 1, 0.0), size=len(act))
    user = np.repeat(act, n_chains)
    n = len(user)

    # category from the user's mixture, then an item of it by popularity among the existing ones
    cat = _sample_rows(rng, w.aff_mix, user)
    weight = np.where(w.item_created <= day, w.item_pop, 0.0)
    order = np.argsort(w.item_cat, kind="stable")
    cum = np.cumsum(weight[order])
    sorted_cat = w.item_cat[order]
    cat_end = np.searchsorted(sorted_cat, np.arange(cfg.n_categories), side="right")  # exclusive
    cat_lo = np.r_[0.0, cum][np.searchsorted(sorted_cat, np.arange(cfg.n_categories), side="left")]
    cat_hi = cum[cat_end - 1]
    positive_idx = np.where(weight[order] > 0, np.arange(len(order)), -1)
    last_pos = np.maximum.accumulate(positive_idx)[cat_end - 1]
    r = cat_lo[cat] + rng.random(n) * (cat_hi[cat] - cat_lo[cat])
    idx = np.minimum(np.searchsorted(cum, r, side="right"), last_pos[cat])
    item = order[idx]

    # sessions: 1 + Poisson(0.4) per user-day, each starting at a diurnal hour
    n_sessions = 1 + rng.poisson(0.4, size=len(act))
    sess_of_user = np.repeat(n_sessions, n_chains)
    session = np.floor(rng.random(n) * sess_of_user).astype(np.int64)
    hour_p = DIURNAL / DIURNAL.sum()
    sess_start = (rng.choice(24, size=(n, 1), p=hour_p)[:, 0] * 3600 + rng.random(n) * 3600) * 1e6
    key = user * 64 + np.minimum(session, 63)
    srt = np.argsort(key, kind="stable")
    user, item, cat, key = user[srt], item[srt], cat[srt], key[srt]
    # all chains of a session share the start drawn for its first chain
    first_of = np.r_[True, key[1:] != key[:-1]]
    start = np.maximum.accumulate(np.where(first_of, np.arange(n), 0))
    gap = rng.exponential(90e6, size=n) + 1e6
    t_view = (
        day_start_us + sess_start[start].astype(np.int64) + _group_cumsum(key, gap).astype(np.int64)
    )

    # the funnel: each step only if the previous one happened
    aff_rel = w.aff_mix[user, cat] / w.aff_mix[user].max(axis=1)
    clicked = rng.random(n) < np.clip(cfg.click_rate * (0.5 + aff_rel), 0, 0.95)
    carted = clicked & (rng.random(n) < np.clip(cfg.cart_rate * (0.5 + aff_rel), 0, 0.95))
    price_factor = np.clip((w.cat_median_price[cat] / w.item_price[item]) ** 0.3, 0.5, 1.5)
    bought = carted & (rng.random(n) < np.clip(cfg.purchase_rate * price_factor, 0, 0.98))
    rated = bought & (rng.random(n) < cfg.rating_rate)
    t_click = t_view + (rng.exponential(20e6, size=n) + 1e6).astype(np.int64)
    t_cart = t_click + (rng.exponential(60e6, size=n) + 1e6).astype(np.int64)
    t_buy = t_cart + (rng.exponential(120e6, size=n) + 1e6).astype(np.int64)
    # ratings come hours to days after the purchase
    t_rate = t_buy + (rng.exponential(DAY_US, size=n) + 60e6).astype(np.int64)
    stars = np.clip(
        np.rint(3.0 + w.item_quality[item] + (aff_rel - 0.5) + rng.normal(0, 0.7, size=n)), 1, 5
    )

    masks = (np.ones(n, dtype=bool), clicked, carted, bought, rated)
    times = (t_view, t_click, t_cart, t_buy, t_rate)
    u_out = np.concatenate([user[m] for m in masks])
    i_out = np.concatenate([item[m] for m in masks])
    t_out = np.concatenate([np.full(int(m.sum()), k, dtype=np.int8) for k, m in enumerate(masks)])
    v_out = np.concatenate([np.full(int(m.sum()), np.nan) for m in masks[:-1]] + [stars[rated]])
    ts_out = np.concatenate([t[m] for t, m in zip(times, masks, strict=True)])
    return u_out, i_out, t_out, v_out, ts_out

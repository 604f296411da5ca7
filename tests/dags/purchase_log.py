"""A purchase log shaped like a small real shop's: about 10^5 purchases over three years,
tens a day at the end, most customers buying a handful of times; with a planted signal.

Customers sign up over the years (a quarter before the log starts) and buy at a personal
rate (log-normal: a few are regulars, most buy rarely). Each has 2 favourite categories of
``categories`` (Dirichlet weights) and buys in them with probability ``1 - explore``, else in
a category drawn by the catalogue's popularity; within a category a product is drawn by its
Zipf popularity. So ``P(product | customer) = m_u[c] p_i / sum_{j in c} p_j``: popularity
knows ``p``, a model of the customer's history can learn ``m_u`` too.

Written as the CSV a shop would export (``customer, product, ordered_at``) and a product
file (``product, category``), for ``recsys import events``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DAY_S = 86_400


@dataclass(frozen=True)
class PurchaseLog:
    purchases: Path
    products: Path
    first_day: dt.date
    last_day: dt.date
    rows: int
    per_day_end: float
    """Mean purchases a day over the last 30 days."""


def write_purchase_log(
    out: Path,
    end: dt.date = dt.date(2014, 1, 31),
    days: int = 1095,
    customers: int = 20_000,
    products: int = 500,
    categories: int = 20,
    start_per_day: float = 80.0,
    end_per_day: float = 100.0,
    explore: float = 0.2,
    seed: int = 0,
) -> PurchaseLog:
    rng = np.random.default_rng(seed)
    first = end - dt.timedelta(days=days - 1)
    signup = np.sort(np.where(rng.random(customers) < 0.25, 0, rng.integers(0, days, customers)))
    rate = rng.lognormal(0.0, 1.0, customers)
    fav = np.argsort(rng.random((customers, categories)), axis=1)[:, :2]
    fav_w = rng.dirichlet(np.ones(2), customers)
    cat = rng.integers(0, categories, products)
    pop = 1.0 / rng.permutation(np.arange(1, products + 1)) ** 1.0
    cat_mass = np.bincount(cat, weights=pop, minlength=categories)
    by_cat = [np.flatnonzero(cat == c) for c in range(categories)]
    n_per_day = rng.poisson(np.linspace(start_per_day, end_per_day, days))
    day = np.repeat(np.arange(days), n_per_day)
    n = day.size
    # a buyer among those signed up by that day, by rate (signups are sorted: a prefix)
    signed = np.searchsorted(signup, day, side="right")
    cum = np.cumsum(rate)
    buyer = np.searchsorted(cum, rng.random(n) * cum[signed - 1], side="right")
    explores = rng.random(n) < explore
    pick = (rng.random(n) < fav_w[buyer, 1]).astype(np.int64)
    c = np.where(explores, rng.choice(categories, n, p=cat_mass / cat_mass.sum()), fav[buyer, pick])
    item = np.empty(n, dtype=np.int64)
    for k in range(categories):
        rows = np.flatnonzero(c == k)
        members = by_cat[k] if by_cat[k].size else np.arange(products)
        p = pop[members] / pop[members].sum()
        item[rows] = members[rng.choice(members.size, rows.size, p=p)]
    seconds = rng.integers(0, DAY_S, n)
    epoch = (first - dt.date(1970, 1, 1)).days * DAY_S
    ts = pd.to_datetime(epoch + day * DAY_S + seconds, unit="s", utc=True)
    out.mkdir(parents=True, exist_ok=True)
    purchases = out / "purchases.csv"
    frame = pd.DataFrame(
        {
            "customer": [f"c{b:06d}" for b in buyer],
            "product": [f"sku-{i:05d}" for i in item],
            "ordered_at": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    frame.sort_values("ordered_at", kind="stable").to_csv(purchases, index=False)
    catalogue = out / "products.csv"
    pd.DataFrame(
        {
            "product": [f"sku-{i:05d}" for i in range(products)],
            "category": [f"cat-{k:02d}" for k in cat],
        }
    ).to_csv(catalogue, index=False)
    return PurchaseLog(purchases, catalogue, first, end, n, float(n_per_day[-30:].mean()))

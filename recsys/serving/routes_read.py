"""Read routes: recommendations (GET and POST) and similar items."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.routing import Route

from recsys.errors import InputError
from recsys.serving.context import ServerContext
from recsys.serving.http import (
    check_id,
    int_param,
    parse_list,
    qparam,
    respond,
    str_param,
    timed,
)
from recsys.serving.query import Query, seen_mask
from recsys.serving.schemas import RecommendBody


def add_read_routes(app: FastAPI, ctx: ServerContext) -> None:
    cfg, metrics = ctx.cfg, ctx.metrics

    async def recommend(user_id: str, body: RecommendBody, t0: float) -> Response:
        check_id(user_id, "user_id", cfg.max_id_len)
        e = ctx.engine()
        k = body.k or cfg.default_k
        if k > cfg.max_k:
            raise HTTPException(status_code=422, detail=f"k: at most {cfg.max_k}, got {k}")
        for name in ("include_categories", "exclude_categories", "exclude_items"):
            if len(getattr(body, name)) > cfg.max_list:
                raise InputError(f"{name}: at most {cfg.max_list} entries")
        if body.features is not None and len(body.features) > cfg.max_list:
            raise InputError(f"features: at most {cfg.max_list} entries")
        q = Query(
            k=k,
            exclude_seen_mask=seen_mask(body.exclude_seen),
            include_categories=body.include_categories,
            exclude_categories=body.exclude_categories,
            exclude_items=body.exclude_items,
            features=body.features,
            segment=body.segment,
        )
        live, live_state = await ctx.live_events(user_id)
        body_json, source, idx = await e.recommend_body(user_id, q, live, live_state)
        if len(idx):
            fresh = int(np.count_nonzero(~e.served[idx]))
            if fresh:
                e.served[idx] = True
                e.n_served += fresh
                if e is ctx.manager.active:
                    metrics.coverage.set(e.n_served / max(e.n_items, 1))
        metrics.sources.labels(source=source).inc()
        ctx.health.record(e, source, live_state, idx, time.perf_counter() - t0)
        return Response(content=body_json, media_type="application/json")

    rec_params = [
        qparam("user_id", "User id", where="path"),
        qparam("k", f"Number of items, 1..{cfg.max_k} (default {cfg.default_k})", "integer"),
        qparam(
            "exclude_seen",
            "all (default) | none | comma list of event types whose "
            "items are excluded (so consumables can be re-bought)",
        ),
        qparam("include_categories", "Comma list: only these categories"),
        qparam("exclude_categories", "Comma list: never these categories"),
        qparam("exclude_items", f"Comma list of item ids to leave out (at most {cfg.max_list})"),
        qparam("segment", "Segment of an unknown user (popularity fallback)"),
        qparam("f.<feature>", "Raw feature of an unknown user, e.g. f.age=31&f.country=DE"),
    ]

    # Parameters are read from the request by hand: FastAPI's per-parameter validation
    # cost more CPU than scoring (profiled), and this endpoint is the hot path.
    @app.get("/v1/recommendations/{user_id}", openapi_extra={"parameters": rec_params})
    @timed(metrics, "recommendations")
    async def get_recommendations(request: Request) -> Response:
        """Top-k for a user, with filters; cold-start features as ``f.<name>`` parameters.
        ``live_state`` in the answer is ``unavailable`` when the live store could not be
        read and the answer comes from the bundle's history alone."""
        t0 = time.perf_counter()
        qp = request.query_params
        user_id = request.path_params["user_id"]
        feats: dict[str, str | float | int | None] = {
            key[2:]: val for key, val in qp.items() if key.startswith("f.")
        }
        limit = cfg.max_list * (cfg.max_id_len + 1)

        def listed(name: str) -> list[str]:
            return parse_list(str_param(qp.get(name), name, limit), name, cfg.max_list)

        body = RecommendBody.model_construct(
            k=int_param(qp.get("k"), "k", cfg.default_k),
            exclude_seen=str_param(qp.get("exclude_seen"), "exclude_seen", 100) or "all",
            include_categories=listed("include_categories"),
            exclude_categories=listed("exclude_categories"),
            exclude_items=listed("exclude_items"),
            segment=str_param(qp.get("segment"), "segment", cfg.max_id_len),
            features=feats or None,
        )
        return await recommend(user_id, body, t0)

    @app.post("/v1/recommendations/{user_id}")
    @timed(metrics, "recommendations")
    async def post_recommendations(user_id: str, body: RecommendBody) -> Response:
        """Same as GET, with filters and cold-start ``features`` in a JSON body."""
        return await recommend(user_id, body, time.perf_counter())

    similar_params: list[dict[str, Any]] = [
        qparam("item_id", "Item id", where="path"),
        qparam("k", f"Number of items, 1..{cfg.max_k} (default 10)", "integer"),
    ]

    @app.get("/v1/items/{item_id}/similar", openapi_extra={"parameters": similar_params})
    @timed(metrics, "similar")
    async def similar(request: Request) -> Response:
        """Items closest to ``item_id`` (cosine of the final item embeddings)."""
        item_id = request.path_params["item_id"]
        k = int_param(request.query_params.get("k"), "k", 10)
        check_id(item_id, "item_id", cfg.max_id_len)
        if k > cfg.max_k:
            raise HTTPException(status_code=422, detail=f"k: at most {cfg.max_k}, got {k}")
        try:
            return respond(ctx.engine().similar(item_id, k))
        except KeyError:
            raise HTTPException(status_code=404, detail=f"unknown item {item_id!r}") from None

    # The two hot read paths are also mounted as plain Starlette routes ahead of FastAPI's:
    # FastAPI's per-request dependency solving cost about a quarter of the CPU of a
    # recommendation (profiled); the FastAPI routes above still document them in OpenAPI.
    app.router.routes.insert(
        0,
        Route(
            "/v1/recommendations/{user_id}",
            get_recommendations,
            methods=["GET"],
            include_in_schema=False,
        ),
    )
    app.router.routes.insert(
        0, Route("/v1/items/{item_id}/similar", similar, methods=["GET"], include_in_schema=False)
    )

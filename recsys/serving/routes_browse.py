"""Browse routes: what a storefront shows besides recommendations (shopper search, a
shopper's history, product details, the catalogue's facets). Reads only, bounded like the
other endpoints; the logic is in :mod:`recsys.serving.browse`."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from recsys.serving import browse
from recsys.serving.context import ServerContext
from recsys.serving.http import check_id, parse_list, respond, timed


def add_browse_routes(app: FastAPI, ctx: ServerContext) -> None:
    cfg, metrics = ctx.cfg, ctx.metrics
    max_search = min(cfg.max_k, 50)

    @app.get("/v1/users")
    @timed(metrics, "browse")
    async def search_users(
        prefix: str = Query("", max_length=128, description="Start of the user id"),
        limit: int = Query(10, ge=1, le=max_search, description="Most ids returned"),
    ) -> Response:
        """Known shoppers (users of the served bundle) whose id starts with ``prefix``."""
        e = ctx.engine()
        return respond(
            {
                "model_version": e.version,
                "prefix": prefix,
                "users": browse.search_users(e, prefix, limit),
                "total_users": len(e.user_ids),
            }
        )

    @app.get("/v1/users/{user_id}/history")
    @timed(metrics, "browse")
    async def user_history(
        user_id: str,
        limit: int = Query(20, ge=1, le=cfg.max_list, description="Most entries of each list"),
    ) -> Response:
        """The shopper's live events (newest first; ``folded``: part of their next
        recommendations) and the history the served bundle holds (heaviest first).
        ``live_state`` is ``unavailable`` when the live store could not be read."""
        check_id(user_id, "user_id", cfg.max_id_len)
        e = ctx.engine()
        live, state = await ctx.live_events(user_id)
        return respond(browse.user_history(e, user_id, live, state, limit))

    @app.get("/v1/items")
    @timed(metrics, "browse")
    async def items(
        ids: str = Query(
            ...,
            max_length=cfg.max_list * (cfg.max_id_len + 1),
            description=f"Comma list of item ids (at most {cfg.max_list})",
        ),
    ) -> Response:
        """Product details (category, price) of the given ids; unknown ids are listed apart."""
        wanted = parse_list(ids, "ids", cfg.max_list)
        if not wanted:
            raise HTTPException(status_code=422, detail="ids: give at least one item id")
        found, unknown = browse.item_details(ctx.engine(), wanted)
        return respond({"items": found, "unknown": unknown})

    @app.get("/v1/catalog")
    @timed(metrics, "browse")
    async def catalog() -> Response:
        """The catalogue's categories (for ``include_categories``), and the user features a
        new visitor can give (``f.<name>`` of the recommendations endpoint)."""
        return respond(browse.catalog(ctx.engine()))

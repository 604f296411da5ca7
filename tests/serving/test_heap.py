"""Swaps freeze the heap out of the cyclic GC; a dropped engine must still be freed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from srv_helpers import make_bundle

from recsys.serving.bundles import Manager
from recsys.serving.engine import load_engine
from recsys.serving.metrics import Metrics
from recsys.serving.query import Query
from recsys.serving.schemas import ServeConfig


def test_dropped_engines_are_freed_after_frozen_swaps(tmp_path: Path) -> None:
    uris = [make_bundle(str(tmp_path / f"b{i}"), f"v{i}", seed=i, n_items=200) for i in range(4)]

    async def main() -> list[bool]:
        m = Manager(ServeConfig(), Metrics())
        refs = []
        for uri in uris:
            e = load_engine(uri, score_in_thread=False)
            refs.append(weakref.ref(e))
            old = m.active
            # requests in flight on the old engine while the swap happens
            tasks = (
                [asyncio.create_task(old.recommend_body(f"u{j}", Query(k=5))) for j in range(8)]
                if old is not None
                else []
            )
            await asyncio.sleep(0)
            m.activate(e)
            del e, old
            await asyncio.gather(*tasks)
            del tasks
        await asyncio.sleep(0)
        return [r() is not None for r in refs]

    try:
        # only the active and the previous (rollback) engine may stay alive
        assert asyncio.run(main()) == [False] * (len(uris) - 2) + [True, True]
    finally:
        gc.unfreeze()

"""Natural batching of scoring requests (see :class:`Batcher`), and what travels through it."""

from __future__ import annotations

import asyncio
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np


@dataclass
class Prepared:
    user_id: str
    source: str
    live_state: str
    e0: np.ndarray
    h_idx: np.ndarray
    h_w: np.ndarray
    h_types: np.ndarray
    excl: np.ndarray
    k: int


class Scored(NamedTuple):
    """The scorer's answer for one request, top-k first."""

    scores: np.ndarray
    idx: np.ndarray
    top: np.ndarray
    """``[T, k]`` history slots with the largest contributions to each item's score (T <= 2)."""
    contrib: np.ndarray | None
    """``[T, k]`` those contributions, in score units (None: a scorer that predates them)."""
    history_pos: np.ndarray | None
    """``[k]`` what the history adds to each score (the sum of its positive contributions)."""


class Scorer(Protocol):
    """What a batch is scored by (one bundle's :class:`~recsys.serving.scoring.OnnxScorer`)."""

    def run_many(self, batch: list[Prepared]) -> list[Scored]: ...


class Batcher:
    """Natural batching: requests that arrive while a batch is scoring go in the next one.

    Under load one pass over the item table serves many users; a lone request is
    scored at once, without waiting. ``inline`` (the server's default) scores on the
    event loop, scheduled with ``call_soon`` so that every request parsed in the same
    loop iteration joins the batch, and requests that arrive while it scores wait in
    the socket buffers and form the next one; otherwise one worker thread runs
    onnxruntime (which releases the GIL) while the loop keeps parsing HTTP, at the
    price of two thread hand-offs per batch.
    """

    def __init__(self, engine: Scorer, max_batch: int = 64, inline: bool = False) -> None:
        # a weak reference: no engine <-> batcher cycle, so a dropped engine is freed by
        # reference counting even when the server has frozen it out of the cyclic GC
        # (an in-flight request holds its engine, which keeps this reference alive)
        self._engine = weakref.ref(engine)
        self.inline = inline
        self.max_batch = max_batch
        self.pending: list[tuple[Prepared, asyncio.Future[Scored]]] = []
        self.busy = False
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self.batches = 0
        self.batched_requests = 0

    async def submit(self, p: Prepared) -> Scored:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Scored] = loop.create_future()
        self.pending.append((p, fut))
        if not self.busy:
            self._start(loop)
        return await fut

    @property
    def engine(self) -> Scorer:
        e = self._engine()
        if e is None:
            raise RuntimeError("the engine of this batcher is gone")
        return e

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.busy = True
        if self.inline:
            loop.call_soon(self._run_inline)
            return
        batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
        self.batches += 1
        self.batched_requests += len(batch)
        job = loop.run_in_executor(self.pool, self.engine.run_many, [p for p, _ in batch])
        job.add_done_callback(lambda f: self._done(loop, batch, f))

    def _run_inline(self) -> None:
        # scheduled with call_soon: requests parsed in this loop iteration join the batch
        batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
        self.batches += 1
        self.batched_requests += len(batch)
        try:
            results = self.engine.run_many([p for p, _ in batch])
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
        self.busy = False
        if self.pending:
            self._start(asyncio.get_running_loop())

    def _done(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Prepared, asyncio.Future[Scored]]],
        job: asyncio.Future[list[Scored]],
    ) -> None:
        self.busy = False
        exc = job.exception()
        for r, (_, fut) in enumerate(batch):
            if fut.done():  # the client went away
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(job.result()[r])
        if self.pending:
            self._start(loop)

    def close(self) -> None:
        self.pool.shutdown(wait=False)

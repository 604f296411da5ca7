"""The embedded live store's durable log: its writer (the server) and its reader (compaction).

Append-only JSONL; a batch is written and fdatasynced before the request returns 2xx.
``path`` ending in ``.jsonl`` is one file. Any other path is a folder partitioned like
the lake, one file per UTC day of receipt and per process (so several processes can
share a volume): ``<path>/dt=YYYY-MM-DD/<host>-<pid>.jsonl``; each line has the lake's
event columns (event_id, user_id, item_id, event_type, value, ts) plus receipt fields.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from recsys.storage import get_fs


class EventLog:
    """Writer: group-committed appends, one fdatasync per group, off the event loop."""

    def __init__(self, path: str) -> None:
        self.root = path
        self.daily = not path.endswith(".jsonl")
        self.path = ""
        self._fd = -1
        self._day = ""
        self._open(dt.datetime.now(dt.UTC).date().isoformat())
        # one writer thread keeps appends ordered and off the event loop
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventlog")
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._busy = False

    def _open(self, day: str) -> None:
        if self.daily:
            name = f"{socket.gethostname()}-{os.getpid()}.jsonl"
            path = os.path.join(self.root, f"dt={day}", name)
        else:
            path = self.root
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.path, self._day = fd, path, day

    def _write(self, data: bytes) -> None:
        day = dt.datetime.now(dt.UTC).date().isoformat()
        if self.daily and day != self._day:
            self._open(day)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        # fdatasync: the data and the new file size reach the disk; mtime need not
        os.fdatasync(self._fd)

    async def append(self, rows: list[dict[str, Any]]) -> None:
        """Return once ``rows`` are on disk. Group commit: batches that arrive during a
        write share the next write + fdatasync."""
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.append((data, fut))
        if not self._busy:
            self._kick(loop)
        await fut

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        self._busy = True
        job = loop.run_in_executor(self._pool, self._write, b"".join(d for d, _ in batch))

        def done(f: asyncio.Future[None]) -> None:
            self._busy = False
            exc = f.exception()
            for _, waiter in batch:
                if not waiter.done():
                    if exc is not None:
                        waiter.set_exception(exc)
                    else:
                        waiter.set_result(None)
            if self._queue:
                self._kick(loop)

        job.add_done_callback(done)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        os.close(self._fd)


def log_files(event_log: str, since: dt.date | None = None) -> list[str]:
    """The log file itself, or every ``*.jsonl*`` file in a folder (rotated logs); with
    ``since``, only the daily folders ``dt=`` on or after that day."""
    fs, path = get_fs(event_log)
    if not fs.exists(path):
        return []
    if not fs.isdir(path):
        return [path]
    out = []
    for p in sorted(fs.find(path)):
        if ".jsonl" not in p.rsplit("/", 1)[-1]:
            continue
        if since is not None:
            part = next((s for s in p.split("/") if s.startswith("dt=")), None)
            if part is not None and part[3:] < since.isoformat():
                continue
        out.append(p)
    return out


def parse_record(rec: dict[str, Any]) -> dict[str, Any]:
    """One logged (or streamed) event as the lake's event columns; raises on a bad record."""
    ts = dt.datetime.fromisoformat(str(rec["ts"]).replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return {
        "event_id": str(rec["event_id"]),
        "user_id": str(rec["user_id"]),
        "item_id": str(rec["item_id"]),
        "event_type": str(rec["event_type"]),
        "value": None if rec.get("value") is None else float(rec["value"]),
        "ts": ts.astimezone(dt.UTC),
    }


def read_log(event_log: str, since: dt.date | None = None) -> Iterator[dict[str, Any] | None]:
    """Every record of the log as lake columns, in file order; ``None`` for an unreadable
    line (a torn last line: the server died mid-append before fsync returned, so the
    client got no 2xx)."""
    fs, _ = get_fs(event_log)
    for path in log_files(event_log, since):
        with fs.open(path, "rb") as f:
            for raw in f:
                line = raw.strip()
                if not line:
                    continue
                try:
                    yield parse_record(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    yield None

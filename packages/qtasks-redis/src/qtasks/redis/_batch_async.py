"""`AsyncBatcher`: the event-loop flavour of the write-behind batcher (see `_batch.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from qtasks.redis import _batch
from qtasks.redis._batch import HOPS, SUPERSEDED, Key, Packer, _goes_now, _Pipeline, _superseded

_Entry = tuple[tuple[Packer, Any], "asyncio.Future[Any]", Key]


class AsyncBatcher:
    """Calls of one tick share a round trip; calls made while it is in flight share the next.

    A task's `process` mark sent behind (`behind` with key `("mark", id)`) is held back as on
    the sync worker: it rides with the next round trip, and a task that ends within
    `MARK_DELAY` sends only its final record, which replaces it. A mark still waiting after
    `MARK_DELAY` (a long task on a quiet worker) is sent by a loop timer. Flushing each mark a
    couple of loop iterations after it was made cost a task whose body waits on I/O a round
    trip of its own before its final write.
    """

    def __init__(self, client: Any, scripts: Callable[[str], Any] | None = None) -> None:
        self._pipeline = _Pipeline(client, scripts)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Entry] = []
        self._flusher: asyncio.Task[None] | None = None
        self._scheduled = False
        self._held: dict[asyncio.Future[Any], float] = {}
        """Held marks' futures -> when they were made (the loop's clock)."""
        self._timer: asyncio.TimerHandle | None = None

    def _on(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A client serves one loop at a time; calls of a closed loop are gone with it.
            self._loop, self._pending, self._flusher, self._scheduled = loop, [], None, False
            self._held, self._timer = {}, None
        return loop

    def call(self, packer: Packer, item: Any, key: Key = None) -> asyncio.Future[Any]:
        loop = self._on()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((packer, item), future, key))
        self._schedule(loop)
        return future

    submit = call

    def behind(self, packer: Packer, item: Any, key: Key = None) -> asyncio.Future[Any]:
        """Write-behind: the write joins the next flush (a mark may wait for one up to
        `MARK_DELAY`); `collect` collects the reply."""
        if key is None or key[0] != "mark":
            future = self.call(packer, item, key)
        else:
            loop = self._on()
            future = loop.create_future()
            self._pending.append(((packer, item), future, key))
            self._held[future] = loop.time()
            if self._timer is None:
                self._timer = loop.call_later(_batch.MARK_DELAY, self._due, loop)
        # Retrieved even when the caller's flow ends before asking (no "never retrieved").
        future.add_done_callback(_retrieve)
        return future

    def collect(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """The step that collects a `behind` write's reply: the future, for the async driver
        to await; a mark still held goes with the next flush (its waiter does not wait
        `MARK_DELAY`)."""
        if self._held.pop(future, None) is not None and self._loop is not None:
            self._schedule(self._loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._hop, loop, HOPS)

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The mark timer: flush the marks that waited `MARK_DELAY` (a flush in flight takes
        them next), and wait for the youngest of the rest."""
        self._timer = None
        if loop is not self._loop or not self._held:
            return
        now = loop.time()
        oldest = min(self._held.values())
        if oldest + _batch.MARK_DELAY <= now:
            self._schedule(loop)
            later = [t for t in self._held.values() if t + _batch.MARK_DELAY > now]
            if not later:
                return
            oldest = min(later)
        self._timer = loop.call_at(oldest + _batch.MARK_DELAY, self._due, loop)

    def _hop(self, loop: asyncio.AbstractEventLoop, left: int) -> None:
        # The flush starts a few loop iterations later (callbacks, not a timer): writes made by
        # the tasks that run meanwhile join it.
        if loop is not self._loop:
            return
        if left:
            loop.call_soon(self._hop, loop, left - 1)
        else:
            self._flusher = loop.create_task(self._flush())

    def _take(self) -> list[_Entry]:
        """What the next round trip sends (the rest stays pending): see `_batch._goes_now`."""
        pending, held = self._pending, self._held
        if not held:
            self._pending = []
            return pending
        assert self._loop is not None
        keys = [key for _, _, key in pending]
        since = [held.get(future) for _, future, _ in pending]
        goes = _goes_now(keys, since, self._loop.time())
        batch = [entry for entry, go in zip(pending, goes, strict=True) if go]
        self._pending = [entry for entry, go in zip(pending, goes, strict=True) if not go]
        for _, future, _ in batch:
            held.pop(future, None)
        return batch

    async def _flush(self) -> None:
        try:
            while batch := self._take():
                skipped = _superseded([key for _, _, key in batch])
                for i in skipped:
                    if not batch[i][1].done():
                        batch[i][1].set_result(SUPERSEDED)
                batch = [entry for i, entry in enumerate(batch) if i not in skipped]
                try:
                    outcomes = await self._pipeline.run_async([item for item, _, _ in batch])
                except asyncio.CancelledError:
                    for _, future, _ in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - every caller gets it and decides
                    outcomes = [(False, exc)] * len(batch)
                for (_, future, _), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            if asyncio.current_task() is self._flusher:
                self._flusher = None
                self._scheduled = False


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

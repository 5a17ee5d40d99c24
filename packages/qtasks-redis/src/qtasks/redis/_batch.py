"""Write-behind batching of worker writes: many tasks' writes, one round trip.

A worker finishing ten tasks at once used to send ten FINISH scripts, one round trip each, and
as many `process` marks. Here the writes made while a round trip is in flight (or, on the event
loop, within one loop tick) are merged: consecutive final writes become one FINISH_MANY call,
consecutive record updates one UPDATE_MANY call, sent in submission order as one
non-transactional pipeline.
Each item keeps the checks of its single-task script (the lease fence, the re-sent-finish
memo, no reopening of a final record); one script call per batch also saves Redis the per-call
set-up and redis-py the per-argument encoding of the keys every item shares.

A task's flow still gets the reply to its own item before it goes on, so a task's final write is
done before its worker reports success or lets its lease go, and a failed round trip hands every
caller of the batch the error, to retry exactly as before (each item is safe to re-send). A sync
caller either sleeps until the reply is in (`run_sync`), or, on the sync worker, parks its flow
on the reply (`run_parking`) so its thread runs the next task; the thread that brings the reply
in hands the flow back (`_Slot.on_settle`).

On the event loop the first call of a tick schedules one flush task that sends until nothing is
pending (`_batch_async.py`); with threads the first caller sends (group commit) while the
others queue behind it. Either way a task's `process` mark is held back up to `MARK_DELAY` for
a round trip to ride with, and is dropped when its task's final write goes first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from qtasks._drive import Flow, Pending, run_async, run_sync
from qtasks.redis._stream import pipelined_scripts_flow
from qtasks.redis.scripts import SOURCES
from redis.exceptions import DataError

Call = tuple[str, list[str], list[Any]]
Packer = Callable[[list[Any]], Call]
"""Merges the items of one kind into one script call whose reply is a list, one per item."""

HOPS = 2
"""Loop iterations between the first write of a batch and its flush (`_batch_async.py`)."""

Key = tuple[str, str] | None
"""What an item is to its task: `("mark", id)` for a `process` mark, `("final", id)` for a
final write, None for anything else (see `_superseded`)."""

MARK_DELAY = 0.02
"""Seconds a `process` mark waits for a round trip to ride with (see `SyncBatcher`)."""

FLUSHER_IDLE = 1.0
"""Seconds without a waiting mark after which `SyncBatcher`'s mark flusher thread ends."""

REFUSED_VALUE = (TypeError, ValueError, DataError)
"""What building or packing a call raises for a value it cannot send (text UTF-8 refuses, a type
the client does not encode), before anything is sent; never a connection or timeout error."""

SUPERSEDED = 1
"""The reply of a `process` mark that was not sent because its task's final write is in the
same batch: the final record replaces the whole record, so the mark would be overwritten in
the same round trip (its script reply for "written")."""


def _groups(items: list[tuple[Packer, Any]]) -> list[tuple[Packer, list[int]]]:
    """Runs of consecutive items of one packer, in submission order: every write lands after
    the writes submitted before it (a task's `process` mark before its final record)."""
    groups: list[tuple[Packer, list[int]]] = []
    for i, (packer, _) in enumerate(items):
        if groups and groups[-1][0] == packer:
            groups[-1][1].append(i)
        else:
            groups.append((packer, [i]))
    return groups


def _superseded(keys: list[Key]) -> set[int]:
    """Positions of `process` marks whose task's final write is in the same batch. A task whose
    body finished at once (the common case for short tasks) thus costs one write, not two."""
    finals = {key[1] for key in keys if key is not None and key[0] == "final"}
    if not finals:
        return set()
    return {
        i for i, key in enumerate(keys) if key is not None and key[0] == "mark" and key[1] in finals
    }


def _goes_now(keys: list[Key], held: list[float | None], now: float) -> list[bool]:
    """Per pending item, whether the next round trip takes it: everything but the `process`
    marks held (since `held`, a monotonic time) for less than `MARK_DELAY`, unless their
    task's final write goes too (which then replaces them: a mark never lands after its task's
    final record). Shared by both batchers."""
    finals = {key[1] for key in keys if key is not None and key[0] == "final"}
    due = now - MARK_DELAY
    return [
        since is None or since <= due or (key is not None and key[1] in finals)
        for key, since in zip(keys, held, strict=True)
    ]


def _spread(
    items: list[tuple[Packer, Any]], groups: list[tuple[Packer, list[int]]], replies: list[Any]
) -> list[tuple[bool, Any]]:
    """Per item: (True, its reply) or (False, the error of its group's call)."""
    out: list[tuple[bool, Any]] = [(False, None)] * len(items)
    for (_, positions), reply in zip(groups, replies, strict=True):
        if isinstance(reply, BaseException):
            for i in positions:
                out[i] = (False, reply)
        else:
            for i, value in zip(positions, reply, strict=True):
                out[i] = (True, value)
    return out


class _Pipeline:
    """Builds the merged calls and sends them as one write on a pooled connection, through
    either driver (`_stream.pipelined_scripts_flow`: NOSCRIPT after SCRIPT FLUSH or a restart
    loads the script and re-sends the calls that did not run)."""

    def __init__(self, client: Any, scripts: Callable[[str], Any] | None = None) -> None:
        self.client = client
        # Without the connection's script objects (a batcher made alone): registered once each.
        self._scripts = scripts or cache(lambda name: client.register_script(SOURCES[name]))

    def flow(self, items: list[tuple[Packer, Any]]) -> Flow[list[tuple[bool, Any]]]:
        groups = _groups(items)
        try:
            calls = []
            for packer, positions in groups:
                name, keys, args = packer([items[i][1] for i in positions])
                calls.append((self._scripts(name), keys, args))
            replies = yield from pipelined_scripts_flow(self.client, calls)
        except REFUSED_VALUE:
            # An item's value was refused while the calls were built or packed, before anything
            # was sent: each item goes alone, so the one bad write fails and its batch does not.
            if len(items) == 1:
                raise
            return (yield from self._alone_flow(items))
        return _spread(items, groups, replies)

    def _alone_flow(self, items: list[tuple[Packer, Any]]) -> Flow[list[tuple[bool, Any]]]:
        out: list[tuple[bool, Any]] = []
        for item in items:
            try:
                out += yield from self.flow([item])
            except REFUSED_VALUE as exc:
                out.append((False, exc))
        return out

    def run(self, items: list[tuple[Packer, Any]]) -> list[tuple[bool, Any]]:
        return run_sync(self.flow(items))

    async def run_async(self, items: list[tuple[Packer, Any]]) -> list[tuple[bool, Any]]:
        return await run_async(self.flow(items))


class _Slot(Pending):
    __slots__ = ("batcher", "callback", "done", "held", "item", "key", "ok", "value", "wake")

    def __init__(self, batcher: SyncBatcher, item: tuple[Packer, Any], key: Key) -> None:
        self.batcher = batcher
        self.item = item
        self.key = key
        self.done = False
        self.ok = False
        self.value: Any = None
        self.wake: threading.Lock | None = None
        """Held while its caller sleeps; released once: its reply is in, or it leads next."""
        self.callback: Callable[[], None] | None = None
        """Called once settled, on the thread that settled it (a parked flow's resumption)."""
        self.held: float | None = None
        """A `process` mark's time of submission (monotonic): it rides with the next round
        trip, or goes with the mark flusher's once it waited `MARK_DELAY`."""

    def wait(self) -> Any:
        return self.batcher.reply(self)

    def on_settle(self, callback: Callable[[], None]) -> bool:
        with self.batcher._lock:
            if self.done:
                return False
            self.callback = callback
            return True

    def settle(self, ok: bool, value: Any) -> None:
        self.ok, self.value, self.done = ok, value, True

    def result(self) -> Any:
        if not self.ok:
            raise self.value
        return self.value


def _held() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


class SyncBatcher:
    """Group commit for threads: whoever finds no send in flight sends everything pending.

    Each sleeping caller has its own wake-up lock, so a round trip wakes exactly the callers
    whose replies it carried, plus the one caller that leads the next round trip; the others
    sleep on (a shared condition woke every pool thread on every batch, which cost the worker
    more CPU than the sends). Writes sent behind (`behind`) need no sleeper: the leader sends
    what is pending until nothing is, or hands the lead to a sleeper queued behind.

    A task's `process` mark (key `("mark", id)`) is held back instead of being sent on its own:
    it rides with the next round trip anyone makes, and a task that ends within `MARK_DELAY`
    sends only its final record, which replaces the mark (`_superseded`). A mark still waiting
    after `MARK_DELAY` (a long task on an otherwise quiet worker) is sent by a flusher thread,
    which exists only while marks come in and waits on a timer, not on every mark. Sending each
    mark at once cost a sync worker a round trip before most task bodies started.
    """

    def __init__(self, client: Any, scripts: Callable[[str], Any] | None = None) -> None:
        self._pipeline = _Pipeline(client, scripts)
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._sending = False
        self._handed: _Slot | None = None
        """The sleeper handed the lead and not yet leading."""
        self._held = threading.Condition(self._lock)
        """Wakes the mark flusher while it waits with no mark held."""
        self._flusher: threading.Thread | None = None
        self._flusher_idle = False

    def call(self, packer: Packer, item: Any, key: Key = None) -> Any:
        """Send `item` with the next round trip; its reply (or its error)."""
        slot = _Slot(self, (packer, item), key)
        with self._lock:
            self._pending.append(slot)
            lead = self._claim_lead(slot)
        if not lead:
            self._sleep(slot)
            if slot.done:
                return slot.result()
        self._lead()
        return slot.result()

    def behind(self, packer: Packer, item: Any, key: Key = None) -> _Slot:
        """Write-behind: with a round trip in flight, queue `item` for the next one and return
        at once; with none, send it now. A `process` mark is held instead (`_hold`): it waits
        up to `MARK_DELAY` for a round trip, then the flusher sends it. `reply` collects the
        reply."""
        slot = _Slot(self, (packer, item), key)
        with self._lock:
            self._pending.append(slot)
            if key is not None and key[0] == "mark":
                self._hold(slot)
                return slot
            if self._sending:
                return slot
            self._sending = True
        self._lead()
        return slot

    submit = behind
    """A write whose reply the caller's driver collects (`Pending`): waited for by `run_sync`,
    parked on by `run_parking`."""

    @staticmethod
    def collect(slot: _Slot) -> _Slot:
        """The step that collects a `behind` write's reply: the slot itself, which the driver
        waits for (`_Slot.wait`, which sends a held mark at once) or parks on."""
        return slot

    def _hold(self, slot: _Slot) -> None:
        """(Under the lock) keep a mark for the next round trip; the flusher sends it if
        nothing else does within `MARK_DELAY`."""
        slot.held = time.monotonic()
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_held, daemon=True, name="qtasks-mark-flusher"
            )
            self._flusher.start()
        elif self._flusher_idle:
            self._held.notify()

    def _take(self) -> tuple[list[_Slot], list[_Slot]]:
        """(Under the lock) (what the next round trip sends, what stays pending): every write but
        the marks held for less than `MARK_DELAY`, unless their task's final write goes too
        (which then replaces them: a mark never lands after its task's final record)."""
        pending = self._pending
        if all(s.held is None for s in pending):
            return pending, []
        goes = _goes_now([s.key for s in pending], [s.held for s in pending], time.monotonic())
        batch = [s for s, go in zip(pending, goes, strict=True) if go]
        kept = [s for s, go in zip(pending, goes, strict=True) if not go]
        return batch, kept

    def _sendable(self) -> bool:
        """(Under the lock) whether anything pending is worth a round trip now."""
        if not self._pending:
            return False
        due = time.monotonic() - MARK_DELAY
        return any(s.held is None or s.held <= due for s in self._pending)

    def _flush_held(self) -> None:
        try:
            self._flush_held_loop()
        finally:
            with self._lock:
                if self._flusher is threading.current_thread():
                    self._flusher = None

    def _flush_held_loop(self) -> None:
        while True:
            with self._lock:
                oldest = min((s.held for s in self._pending if s.held is not None), default=None)
                if oldest is None:
                    self._flusher_idle = True
                    self._held.wait(FLUSHER_IDLE)
                    self._flusher_idle = False
                    if not any(s.held is not None for s in self._pending):
                        self._flusher = None  # under the lock: the next mark starts another
                        return
                    continue
                due = oldest + MARK_DELAY - time.monotonic()
                if due > 0 or self._sending:  # the round trip in flight sends them after
                    self._held.wait(due if due > 0 else MARK_DELAY)
                    continue
                self._sending = True
            self._lead()

    def reply(self, slot: _Slot) -> Any:
        """The reply of a `behind` write, waiting for its round trip if still pending."""
        if not slot.done:
            with self._lock:
                slot.held = None  # waited for: sent with the next round trip
                lead = not slot.done and self._claim_lead(slot)
            if not slot.done:
                if not lead:
                    self._sleep(slot)
                if not slot.done:
                    self._lead()
        return slot.result()

    def _claim_lead(self, slot: _Slot) -> bool:
        """(Under the lock) lead now if no send is in flight, else get ready to sleep."""
        if not self._sending:
            self._sending = True
            return True
        slot.wake = _held()
        return False

    def _sleep(self, slot: _Slot) -> None:
        wake = slot.wake
        assert wake is not None
        try:
            wake.acquire()
            slot.wake = None  # released once, by the round trip or the hand-off that woke it
        except BaseException:
            # Interrupted (KeyboardInterrupt): the write is still sent by the next leader; if
            # this caller was just handed the lead, it passes the lead on.
            with self._lock:
                slot.wake = None
                handed = self._handed is slot
                if handed:
                    self._handed = None
                    after = self._next_sleeper()
                    if after is None:
                        self._sending = False  # the next caller leads what is pending
            if handed and after is not None:
                after.release()
            raise

    def _next_sleeper(self) -> threading.Lock | None:
        """(Under the lock) hand the lead to the first sleeper still pending, if any."""
        for s in self._pending:
            if s.wake is not None and not s.done:
                self._handed = s
                return s.wake
        return None

    def _lead(self) -> None:
        while True:
            with self._lock:
                self._handed = None
                batch, self._pending = self._take()
            skipped = _superseded([s.key for s in batch])
            for i in skipped:
                batch[i].settle(True, SUPERSEDED)
            sent = [s for i, s in enumerate(batch) if i not in skipped]
            try:
                try:
                    outcomes = self._pipeline.run([s.item for s in sent]) if sent else []
                except Exception as exc:  # noqa: BLE001 - every caller gets it and decides
                    outcomes = [(False, exc)] * len(sent)
                for s, (ok, value) in zip(sent, outcomes, strict=True):
                    s.settle(ok, value)
            finally:
                with self._lock:
                    for s in sent:
                        if not s.done:  # interrupted (KeyboardInterrupt): let them retry
                            s.settle(False, RuntimeError("batched write interrupted"))
                    # The next leader first: the next round trip starts sooner.
                    successor = self._next_sleeper()
                    woken = [s.wake for s in batch if s.wake is not None]
                    resumed = [s.callback for s in batch if s.callback is not None]
                    for s in batch:
                        s.callback = None
                    # Marks held for less than `MARK_DELAY` are no reason for another one.
                    again = successor is None and self._sendable()
                    if successor is None and not again:
                        self._sending = False
                if successor is not None:
                    successor.release()
                for wake in woken:
                    wake.release()
                for callback in resumed:
                    callback()
            if not again:
                return

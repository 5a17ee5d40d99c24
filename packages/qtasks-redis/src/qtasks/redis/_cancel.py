"""Cancel notifications: a pub/sub subscriber that runs while a broker is started.

A cancelled running task must be interrupted in whichever process runs it. The cancel script
publishes `id\\n<flag><reason>` on `{p}:cancel`; every started broker listens (a thread for the
sync flavour, a task for the asyncio one) and calls `broker.notify_cancel`. Messages missed
while disconnected are caught up by the heartbeat, which reports held tasks flagged in
`{p}:cancel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from functools import partial
from typing import Any

from qtasks._drive import Flow, run_async, run_sync
from qtasks.redis.connection import backoff, raw
from qtasks.redis.protocol import decode_reason

log = logging.getLogger("qtasks.redis")
POLL = 0.5
"""Longest wait for a message; bounds how long `stop` takes."""


class CancelListener:
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._stopped = True
        self._handle: Any = None

    def start(self) -> None:
        if self._handle is not None:
            return
        self._stopped = False
        flow = self._flow()
        if self.broker.flavour.is_async:
            self._handle = asyncio.ensure_future(run_async(flow))
        else:
            thread = threading.Thread(
                target=run_sync, args=(flow,), daemon=True, name="qtasks-redis-cancel"
            )
            thread.start()
            self._handle = thread

    def stop(self) -> Any:
        """A step: None once stopped (sync), or a coroutine that waits for the task."""
        self._stopped = True
        handle, self._handle = self._handle, None
        if handle is None:
            return None
        if isinstance(handle, threading.Thread):
            handle.join(POLL * 4)
            return None
        return self._finish_task(handle)

    @staticmethod
    async def _finish_task(task: asyncio.Future[Any]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(task), POLL * 4)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - stop must always end
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _handle_message(self, message: dict[str, Any]) -> None:
        data = raw(message.get("data", b""))
        task_id, _, flagged = data.partition(b"\n")
        self.broker.notify_cancel(
            task_id.decode(errors="replace"), decode_reason(flagged.decode(errors="replace"))
        )

    def _flow(self) -> Flow[None]:
        failures = 0
        channel = self.broker.keys.cancel_channel
        while not self._stopped:
            pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
            try:
                yield partial(pubsub.subscribe, channel)
                while not self._stopped:
                    message = yield partial(pubsub.get_message, True, POLL)
                    failures = 0
                    if message and message.get("type") == "message":
                        self._handle_message(message)
            except Exception as exc:  # noqa: BLE001 - the listener outlives any Redis outage
                failures += 1
                if failures == 1:
                    log.warning(
                        "cancel listener lost its subscription (%s: %s); retrying",
                        type(exc).__name__,
                        exc,
                    )
            with contextlib.suppress(Exception):
                yield getattr(pubsub, "aclose", pubsub.close)
            if failures and not self._stopped:
                yield partial(self.broker.flavour.sleep, backoff(failures, 2.0))

"""A registered Lua script run straight on a pooled connection of qtasks' own clients.

redis-py's `AsyncScript.__call__` goes through `evalsha`, `execute_command`, the retry helper,
`_send_command_parse_response`, `send_command` and `parse_response`, each a coroutine that
copies the call's 30-50 arguments once more; on an enqueue that was 15-25 us of 140. Its sync
`Script.__call__` takes the same way without the coroutines: 25-37 us of client CPU per call,
against 9-16 us here. This sends the packed EVALSHA and reads its reply on a checked-out
connection, with redis-py's own retry object (one retry with backoff on a connection error or
timeout, the connection dropped first) and its NOSCRIPT handling (load the script, run the call
again). One flow for both clients (`qtasks._drive`), around one try that is a plain call on the
sync client and a coroutine on the asyncio one; `run_async` costs no more here than a
hand-written coroutine did.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from qtasks._drive import Flow, run_async, run_sync
from qtasks.redis._wire import checkout_flow, release_flow
from redis.exceptions import NoScriptError, ResponseError


class ScriptCall:
    """`call(keys, args)`: the reply (sync client) or an awaitable of it (asyncio client);
    `sha` and `script` as on redis-py's script objects."""

    def __init__(self, client: Any, script: Any, is_async: bool) -> None:
        self.client = client
        self._script = script  # redis-py's, for the source and the digest
        self._drive: Any = run_async if is_async else run_sync
        self._send_and_read: Any = _send_and_read_async if is_async else _send_and_read_sync

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    @property
    def script(self) -> Any:
        return self._script.script

    def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        return self._drive(self.flow(keys, args))

    def flow(self, keys: list[Any], args: list[Any]) -> Flow[Any]:
        """The call as a flow, for a caller's flow to run in its own driver (`yield from`)."""
        try:
            return (yield from self._attempt_flow(keys, args))
        except NoScriptError:
            # Redis restarted or was flushed: load the script and run the call once more.
            self._script.sha = yield partial(self.client.script_load, self._script.script)
            return (yield from self._attempt_flow(keys, args))

    def _attempt_flow(self, keys: list[Any], args: list[Any]) -> Flow[Any]:
        pool = self.client.connection_pool
        connection = yield from checkout_flow(pool)
        packed = connection.pack_command("EVALSHA", self._script.sha, len(keys), *keys, *args)

        try:
            reply = yield partial(
                connection.retry.call_with_retry,
                partial(self._send_and_read, connection, packed),
                lambda _error: connection.disconnect(),
            )
        except ResponseError:
            # An error reply (NOSCRIPT, OOM, a script error) is read whole: the connection is
            # in step and goes back to the pool.
            yield from release_flow(pool, connection)
            raise
        except BaseException:
            # Interrupted between the send and the reply (a cancel, KeyboardInterrupt): the
            # reply would be read by the connection's next user.
            yield connection.disconnect
            yield from release_flow(pool, connection)
            raise
        yield from release_flow(pool, connection)
        return reply


# One try, as redis-py's retry object calls it: the only part that differs by client.
def _send_and_read_sync(connection: Any, packed: Any) -> Any:
    connection.send_packed_command(packed, False)
    return connection.read_response()


async def _send_and_read_async(connection: Any, packed: Any) -> Any:
    await connection.send_packed_command(packed, False)
    return await connection.read_response()

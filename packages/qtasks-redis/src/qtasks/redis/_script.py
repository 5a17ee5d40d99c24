"""A registered Lua script run straight on a pooled connection of qtasks' own clients.

redis-py's `AsyncScript.__call__` goes through `evalsha`, `execute_command`, the retry helper,
`_send_command_parse_response`, `send_command` and `parse_response`, each a coroutine that
copies the call's 30-50 arguments once more; on an enqueue that was 15-25 us of 140. Its sync
`Script.__call__` takes the same way without the coroutines: 25-37 us of client CPU per call,
against 9-16 us here. This sends the packed EVALSHA and reads its reply on a checked-out
connection, with redis-py's own retry object (one retry with backoff on a connection error or
timeout, the connection dropped first) and its NOSCRIPT handling (load the script, run the call
again). The sync and asyncio calls differ only in their awaits.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError, ResponseError


class _ScriptCall:
    """`call(keys, args)`; `sha` and `script` as on redis-py's script objects."""

    def __init__(self, client: Any, script: Any) -> None:
        self.client = client
        self._script = script  # redis-py's, for the source and the digest

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    @property
    def script(self) -> Any:
        return self._script.script

    def _command(self, keys: list[Any], args: list[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self._script.sha, len(keys), *keys, *args)


class AsyncScriptCall(_ScriptCall):
    """`await call(keys, args)`."""

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self._run(keys, args)
        except NoScriptError:
            # Redis restarted or was flushed: load the script and run the call once more.
            self._script.sha = await self.client.script_load(self._script.script)
            return await self._run(keys, args)

    async def _run(self, keys: list[Any], args: list[Any]) -> Any:
        pool = self.client.connection_pool
        connection = await pool.get_connection()
        command = self._command(keys, args)

        async def attempt() -> Any:
            await connection.send_packed_command(connection.pack_command(*command), False)
            # An error reply (NOSCRIPT, OOM, a script error) is read whole and raised: the
            # connection stays in step and goes back to the pool.
            return await connection.read_response()

        try:
            return await connection.retry.call_with_retry(
                attempt, lambda _error: connection.disconnect()
            )
        finally:
            await pool.release(connection)


class SyncScriptCall(_ScriptCall):
    """`call(keys, args)` on the sync client."""

    def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        try:
            return self._run(keys, args)
        except NoScriptError:
            self._script.sha = self.client.script_load(self._script.script)
            return self._run(keys, args)

    def _run(self, keys: list[Any], args: list[Any]) -> Any:
        pool = self.client.connection_pool
        connection = pool.get_connection()
        packed = connection.pack_command(*self._command(keys, args))

        def attempt() -> Any:
            connection.send_packed_command(packed, False)
            return connection.read_response()

        try:
            return connection.retry.call_with_retry(
                attempt, lambda _error: connection.disconnect()
            )
        except ResponseError:
            raise  # read whole: the connection is in step
        except BaseException:
            # Interrupted between the send and the reply (KeyboardInterrupt): the reply would
            # be read by the connection's next user.
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

"""A registered Lua script run straight on a pooled connection of qtasks' asyncio client.

redis-py's `AsyncScript.__call__` goes through `evalsha`, `execute_command`, the retry helper,
`_send_command_parse_response`, `send_command` and `parse_response`, each a coroutine that
copies the call's 30-50 arguments once more; on an enqueue that was 15-25 us of 140. This sends
the packed EVALSHA and reads its reply on a checked-out connection, with redis-py's own retry
object (one retry with backoff on a connection error or timeout, the connection dropped first)
and its NOSCRIPT handling (load the script, run the call again). The sync client keeps
redis-py's `Script`: its path costs a few microseconds next to its socket calls.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError


class AsyncScriptCall:
    """`await call(keys, args)`; `sha` and `script` as on redis-py's script objects."""

    def __init__(self, client: Any, script: Any) -> None:
        self.client = client
        self._script = script  # redis-py's, for the source and the digest

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    @property
    def script(self) -> Any:
        return self._script.script

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
        command = ("EVALSHA", self._script.sha, len(keys), *keys, *args)

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

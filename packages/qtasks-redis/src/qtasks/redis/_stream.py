"""Script calls streamed on one connection: each is sent as soon as it is built, the replies
are read after the last one, so Redis runs call k while Python builds call k + 1.

A bulk enqueue is validated whole first (arguments, JSON, sizes: nothing is written for bad
input); what remains per task is building its Redis arguments, about as long as Redis takes to
file it. One script call at a time made those two wait for each other; streamed, they overlap.
redis-py's pipelines send everything at `execute()`, hence this flow over a pooled connection.

Only for calls that are safe to re-send (ENQUEUE: an id that exists is skipped): a connection
error re-sends the calls once, one by one, through the client (its usual retry); a script
missing from Redis (restart, SCRIPT FLUSH) is loaded and its calls sent again.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from qtasks._drive import Flow
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

Call = tuple[list[str], list[Any]]


def streamed_scripts_flow(client: Any, script: Any, calls: Iterable[Call]) -> Flow[list[Any]]:
    """Run `script` once per (keys, args) of `calls` (a lazy iterable); -> the replies in order.
    An error reply is raised after every reply was read (the connection stays in step)."""
    pool = client.connection_pool
    sent: list[Call] = []
    replies: list[Any] = []
    calls = iter(calls)
    connection = yield pool.get_connection
    try:
        for keys, args in calls:
            packed = connection.pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
            sent.append((keys, args))
            yield partial(connection.send_packed_command, packed, False)
        for _ in sent:
            try:
                replies.append((yield connection.read_response))
            except ResponseError as exc:  # an error reply, read whole: the stream is in step
                replies.append(exc)
    except (ConnectionError, TimeoutError, OSError):
        yield connection.disconnect
        yield partial(pool.release, connection)
        # Re-sent whole, one call at a time with the client's own retry; the calls not built
        # yet are built now.
        return (yield from _one_by_one_flow(script, [*sent, *calls]))
    except BaseException:
        yield connection.disconnect  # replies may be left unread
        yield partial(pool.release, connection)
        raise
    yield partial(pool.release, connection)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    for i in missing:
        replies[i] = yield partial(script, *sent[i])  # loads the script, then runs the call
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _one_by_one_flow(script: Any, calls: list[Call]) -> Flow[list[Any]]:
    replies = []
    for keys, args in calls:
        replies.append((yield partial(script, keys, args)))
    return replies

"""Script calls streamed on one connection: each is sent as soon as it is built, the replies
are read after the last one, so Redis runs call k while Python builds call k + 1.

A bulk enqueue is validated whole first (arguments, JSON, sizes: nothing is written for bad
input); what remains per task is building its Redis arguments, about as long as Redis takes to
file it. One script call at a time made those two wait for each other; streamed, they overlap.
redis-py's pipelines send everything at `execute()`, hence this flow over a pooled connection.
The worker's batched writes (`_batch.py`) use its pipelined form: all calls in one write, with
none of the command stack, per-command coroutines and response callbacks of redis-py's
pipelines: an asyncio batch of two script calls took 58-66 us of client CPU through redis-py's
pipeline and takes 37-41 us here (a sync one about the same either way, 19-38 us).

Only for calls that are safe to re-send (ENQUEUE: an id that exists is skipped; the batched
writes carry their own fences and memos): a connection error re-sends the calls once, one by
one, through their script objects (the client's usual retry); a script missing from Redis
(restart, SCRIPT FLUSH) is loaded and its calls sent again.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from qtasks._drive import Flow
from qtasks.redis._wire import checkout_flow, release_flow
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

Call = tuple[list[str], list[Any]]
ScriptCall = tuple[Any, list[str], list[Any]]
"""(script, keys, args): a script object (qtasks' or redis-py's: `sha`, and `script(keys, args)`
runs it alone with the client's retry and NOSCRIPT handling) and one call's keys and args."""


def streamed_scripts_flow(client: Any, script: Any, calls: Iterable[Call]) -> Flow[list[Any]]:
    """Run `script` once per (keys, args) of `calls` (a lazy iterable); -> the replies in order.
    An error reply is raised after every reply was read (the connection stays in step)."""
    replies = yield from _one_connection_flow(
        client, ((script, keys, args) for keys, args in calls), streamed=True
    )
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def pipelined_scripts_flow(client: Any, calls: list[ScriptCall]) -> Flow[list[Any]]:
    """Run `calls` in order, sent in one write on one pooled connection (a pipeline without
    redis-py's per-command layers); -> the replies in order, an error reply (a `ResponseError`)
    in its place. A connection error is raised if the one-by-one re-send fails too."""
    return (yield from _one_connection_flow(client, calls, streamed=False))


def _one_connection_flow(
    client: Any, calls: Iterable[ScriptCall], streamed: bool
) -> Flow[list[Any]]:
    pool = client.connection_pool
    sent: list[ScriptCall] = []
    replies: list[Any] = []
    calls = iter(calls)
    connection = yield from checkout_flow(pool)
    try:
        if streamed:
            for call in calls:
                sent.append(call)
                packed = connection.pack_command(*_evalsha(*call))
                yield partial(connection.send_packed_command, packed, False)
        else:
            sent = list(calls)
            packed = connection.pack_commands([_evalsha(*call) for call in sent])
            yield partial(connection.send_packed_command, packed, False)
        for _ in sent:
            try:
                replies.append((yield connection.read_response))
            except ResponseError as exc:  # an error reply, read whole: the stream is in step
                replies.append(exc)
    except (ConnectionError, TimeoutError, OSError):
        yield connection.disconnect
        yield from release_flow(pool, connection)
        # Re-sent whole, one call at a time with the client's own retry; the calls not built
        # yet are built now.
        return (yield from _one_by_one_flow([*sent, *calls]))
    except BaseException:
        yield connection.disconnect  # replies may be left unread
        yield from release_flow(pool, connection)
        raise
    yield from release_flow(pool, connection)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        # The script is gone (restart, SCRIPT FLUSH): its object loads it and runs the call.
        again = yield from _one_by_one_flow([sent[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


def _evalsha(script: Any, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _one_by_one_flow(calls: list[ScriptCall]) -> Flow[list[Any]]:
    replies: list[Any] = []
    for script, keys, args in calls:
        try:
            replies.append((yield partial(script, keys, args)))
        except ResponseError as exc:
            replies.append(exc)
    return replies

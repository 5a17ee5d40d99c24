"""A tiny blocking RESP2 client for test fixtures.

qtasks-core does not depend on redis-py, yet its test fixtures must be able to tell when a
server is up, flush it, and poke at keys. This speaks just enough RESP for that.
"""

from __future__ import annotations

import socket
from typing import TypeAlias


class RespError(str):
    """An error reply (`-ERR ...`) from the server."""


# RESP2 replies decode to these; errors come back as RespError values, not exceptions, so
# a caller can pipeline several commands and look at each reply.
Reply: TypeAlias = "bytes | int | RespError | list[Reply] | None"


def encode_command(*args: str | bytes | int) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self._buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            self._fill()
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n + 2:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n + 2 :]
        return data

    def reply(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise ConnectionError(f"unexpected RESP reply: {line!r}")


def pipeline(
    port: int,
    commands: list[tuple[str | bytes | int, ...]],
    *,
    host: str = "127.0.0.1",
    password: str | None = None,
    timeout: float = 5.0,
) -> list[Reply]:
    """Send `commands` on one fresh connection and return their replies in order.

    With `password`, an `AUTH` goes first and its reply is dropped (a failed AUTH shows up
    as NOAUTH errors on the commands themselves).
    """
    cmds = list(commands)
    if password is not None:
        cmds.insert(0, ("AUTH", password))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"".join(encode_command(*cmd) for cmd in cmds))
        reader = _Reader(sock)
        replies = [reader.reply() for _ in cmds]
    return replies[1:] if password is not None else replies


def command(
    port: int,
    *args: str | bytes | int,
    host: str = "127.0.0.1",
    password: str | None = None,
    timeout: float = 5.0,
) -> Reply:
    """Run one command, e.g. `command(port, "SET", "k", "v")`; returns the decoded reply."""
    return pipeline(port, [args], host=host, password=password, timeout=timeout)[0]

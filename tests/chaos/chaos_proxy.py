"""`FaultProxy`: a TCP proxy in front of redis-server that delays, blackholes or resets.

toxiproxy is not available here, so this is the few faults the suite needs, in threads:

* `delay(lo, hi)`: each chunk waits a random lo..hi seconds before it is forwarded (both ways);
* `blackhole()`: connections stay open but nothing is forwarded (a half-open partition: the
  client sees neither data nor an error until its socket timeout);
* `reset()`: every open connection is closed with RST (SO_LINGER 0), like a dead middlebox;
* `heal()`: forward normally again.

New connections are accepted in every mode, as a real network would let SYN through to a
proxy that is then silent.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from types import TracebackType

CHUNK = 65536


class FaultProxy:
    def __init__(self, upstream_port: int, seed: int = 0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._delay: tuple[float, float] | None = None
        self._blackhole = threading.Event()
        self._closing = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self.connections_accepted = 0

    # -- faults -------------------------------------------------------------------------------
    def delay(self, lo: float, hi: float | None = None) -> None:
        self._delay = (lo, lo if hi is None else hi)

    def blackhole(self) -> None:
        self._blackhole.set()

    def reset(self) -> None:
        with self._lock:
            doomed = list(self._conns)
            self._conns.clear()
        for sock in doomed:
            _rst(sock)

    def heal(self) -> None:
        self._delay = None
        self._blackhole.clear()

    # -- plumbing -----------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset()
        self._thread.join(2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections_accepted += 1
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _rst(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._conns.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pause(self) -> float:
        span = self._delay
        if span is None:
            return 0.0
        with self._rng_lock:
            return self._rng.uniform(*span)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                if self._blackhole.is_set():
                    continue  # partitioned: what arrives never reaches the far side
                pause = self._pause()
                if pause:
                    time.sleep(pause)  # the injected latency itself
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()


def _rst(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()

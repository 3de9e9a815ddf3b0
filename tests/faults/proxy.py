"""A TCP forwarder on 127.0.0.1 that cuts every live connection and refuses new ones for a while, on demand.

Put it between clients and a server (PostgreSQL, an S3 endpoint) and call `cut`, or let `Cutter`
cut at random moments. With `at` (for PostgreSQL: b"COMMIT"), an armed cut waits for the next
client message holding those bytes and fires right after forwarding it: the server may commit,
but no client hears whether it did.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

LINGER_RESET = struct.pack("ii", 1, 0)  # close with a TCP reset, as a dropped link or a killed proxy does


def _drop(sock: socket.socket) -> None:
    """Reset a socket (waking any thread blocked on it); a socket already closed is left alone."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class CuttingProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`; `cut(seconds)` drops every connection and refuses new ones."""

    def __init__(self, target: int, at: bytes | None = None) -> None:
        self.target, self.at = target, at
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.live: dict[socket.socket, socket.socket] = {}  # client side -> server side
        self.refusing_until = 0.0
        self.armed: float | None = None  # the outage of a cut waiting for `at`
        self.cuts = self.connections_cut = self.refused = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}")
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if time.monotonic() < self.refusing_until:
                self.refused += 1
                _drop(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                _drop(client)
                continue
            server.settimeout(None)
            with self.lock:
                self.live[client] = server
            for src, dst, watch in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, watch), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if watch and self.armed is not None and self.at is not None and self.at in data:
                    time.sleep(0.002)  # let the server read it: it may commit, and no one hears
                    self._fire()
        except OSError:
            pass
        finally:
            with self.lock:
                self.live.pop(src, None)
                self.live.pop(dst, None)
            _drop(src)
            _drop(dst)

    def _fire(self) -> None:
        """The armed cut, once (two connections may meet `at` together)."""
        with self.lock:
            seconds, self.armed = self.armed, None
        if seconds is not None:
            self.cut(seconds)

    def cut(self, seconds: float) -> None:
        """Drop every live connection now, and refuse new ones for `seconds`."""
        with self.lock:
            self.armed = None
            self.refusing_until = time.monotonic() + seconds
            self.cuts += 1
            self.connections_cut += len(self.live)
        self._drop_all()

    def _drop_all(self) -> None:
        with self.lock:
            pairs = list(self.live.items())
            self.live.clear()
        for client, server in pairs:
            _drop(client)
            _drop(server)

    def arm(self, seconds: float) -> None:
        """Cut (for `seconds`) right after the next client message holding `at`; at once without `at`."""
        if self.at is None:
            self.cut(seconds)
        else:
            self.armed = seconds

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()
        self._drop_all()


class Cutter(threading.Thread):
    """Arms `cuts` cuts of each proxy, in random order `gap` seconds apart, each refusing connections for `outage` seconds."""

    def __init__(self, proxies: list[CuttingProxy], cuts: int, seed: int, gap: tuple[float, float],
                 outage: tuple[float, float]) -> None:
        super().__init__(daemon=True, name="cutter")
        self.rng, self.gap, self.outage = random.Random(seed), gap, outage
        self.order = [proxy for proxy in proxies for _ in range(cuts)]
        self.rng.shuffle(self.order)
        self.stop = threading.Event()

    def run(self) -> None:
        for proxy in self.order:
            if self.stop.wait(self.rng.uniform(*self.gap)):
                return
            before = proxy.cuts
            proxy.arm(self.rng.uniform(*self.outage))
            deadline = time.monotonic() + 10
            while proxy.cuts == before and time.monotonic() < deadline:  # an armed cut waits for its moment
                if self.stop.wait(0.01):
                    return

#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds a fixed delay to every chunk, in each direction.

The kernel of the benchmark machine has no sch_netem, so `tc netem` cannot add latency; this
proxy stands in for it between an auth server and slapd. A chunk read at time t is written to
the other side at t + RTT/2. Each direction keeps its order (due times strictly increase), and
later chunks never wait for earlier ones to be written (pipelining is preserved, as on a real
link). End of stream is passed on after the same delay. Built on asyncio protocols and timers
(no task per chunk) so the proxy itself costs little CPU.

usage: delayproxy.py LISTEN_PORT TARGET_PORT RTT_MS   (runs until killed)
"""
import asyncio
import socket
import sys
import time


class Side(asyncio.Protocol):
    """One socket; what it reads is written to `peer` after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport = None
        self.peer = None          # the other Side
        self.pending = []         # chunks read before the peer was connected
        self.last_due = 0.0
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _due(self) -> float:
        # Strictly increasing, so the timer heap can never swap two chunks of one direction.
        due = max(time.monotonic() + self.delay, self.last_due + 1e-7)
        self.last_due = due
        return due

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.pending.append(data)
            return
        asyncio.get_running_loop().call_at(self._due(), self.peer.send, data)

    def eof_received(self):
        if self.peer is not None:
            asyncio.get_running_loop().call_at(self._due(), self.peer.close)
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.peer is not None:
            asyncio.get_running_loop().call_at(self._due(), self.peer.close)

    def send(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listen, target, rtt_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    one_way = rtt_ms / 2000.0

    async def serve() -> None:
        loop = asyncio.get_running_loop()

        class Client(Side):
            def connection_made(self, transport) -> None:
                super().connection_made(transport)
                loop.create_task(self.connect_upstream())

            async def connect_upstream(self) -> None:
                try:
                    _, upstream = await loop.create_connection(lambda: Side(one_way), "127.0.0.1", target)
                except OSError:
                    self.close()
                    return
                upstream.peer, self.peer = self, upstream
                for chunk in self.pending:
                    loop.call_at(self._due(), upstream.send, chunk)
                self.pending = []
                if self.closed:
                    loop.call_at(self._due(), upstream.close)

        server = await loop.create_server(lambda: Client(one_way), "127.0.0.1", listen, backlog=1024)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

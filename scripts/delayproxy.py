#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds a fixed delay to every chunk, in each direction.

The kernel of the benchmark machine has no sch_netem, so `tc netem` cannot add latency; this
proxy stands in for it between an auth server and slapd. Each direction of each connection
keeps its own FIFO: a chunk read at time t is written at t + RTT/2, in the order it was read,
and later chunks do not wait for earlier ones to be written (pipelining is preserved, as on a
real link). Closing one side closes the other after the delay.

usage: delayproxy.py LISTEN_PORT TARGET_PORT RTT_MS   (runs until killed; prints "ready")
"""
import asyncio
import sys
import time


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listen, target, rtt_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    one_way = rtt_ms / 2000.0

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            try:
                while True:
                    due, chunk = await queue.get()
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if chunk is None:
                        break
                    writer.write(chunk)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                queue.put_nowait((time.monotonic() + one_way, chunk))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((time.monotonic() + one_way, None))
        await sender

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(forward(client_r, server_w), forward(server_r, client_w), return_exceptions=True)

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1024)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

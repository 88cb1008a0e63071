"""A TCP proxy that delays each direction by a fixed time: a network round trip on loopback.

The kernel here has no netem, so `tc` cannot delay loopback, and Node's and asyncio's timers
round sub-millisecond waits up to about 1 ms. So this is a small program of threads: for each
direction of each connection, one thread reads and stamps each chunk with its arrival time, and
another sleeps until arrival + delay and sends it on. The sender sleeps with clock_nanosleep
under a timer slack of 1 ns (prctl PR_SET_TIMERSLACK), which wakes it within some 10 to 60 us
here, without spinning: the proxy must not take the CPU the clients and the server measure on.
Both sockets set TCP_NODELAY, so the kernel adds no wait of its own.

The bench does not trust the configured delay: it measures `select 1` through the proxy and
direct, and reports the round trip each cell really had.

    python3 delay_proxy.py --target 127.0.0.1:5432 --delay-ms 0.25 [--port 0]

prints `listening on 127.0.0.1:<port>` once it accepts, and runs until stdin closes (its
parent exits) or it gets SIGTERM or SIGINT. A line `delay <ms>` on stdin changes the delay for
the chunks that arrive from then on (the bench tunes it until `select 1` measures the round trip
it wants), answered by `delay <ms>` on stdout.
"""
import argparse
import ctypes
import os
import queue
import signal
import socket
import sys
import threading
import time

PR_SET_TIMERSLACK = 29
CHUNK = 65536


def precise_timers() -> None:
    """This thread's timer slack to 1 ns (Linux), so that its sleeps end on time."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Delay:
    """The delay of each direction, in seconds: one value, read at each chunk's arrival."""

    seconds = 0.0


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Reads src, and forwards each chunk to dst Delay.seconds after it arrived, in order."""
    chunks: "queue.SimpleQueue" = queue.SimpleQueue()

    def send() -> None:
        precise_timers()
        while True:
            item = chunks.get()
            if item is None:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            due, data = item
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                dst.sendall(data)
            except OSError:
                return

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    while True:
        try:
            data = src.recv(CHUNK)
        except OSError:
            data = b""
        if not data:
            chunks.put(None)
            break
        chunks.put((time.perf_counter() + Delay.seconds, data))
    sender.join()


def serve(client: socket.socket, target: tuple) -> None:
    try:
        upstream = socket.create_connection(target)
    except OSError:
        client.close()
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    there = threading.Thread(target=pump, args=(client, upstream), daemon=True)
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    there.start()
    back.start()
    there.join()
    back.join()
    client.close()
    upstream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--delay-ms", type=float, required=True, help="delay of each direction, in ms (half the round trip)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on, on 127.0.0.1 (default: any free one)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit() or args.delay_ms < 0:
        parser.error("--target must be host:port and --delay-ms at least 0")
    # Wake a thread that got its data quickly: the default switch interval (5 ms) would swamp the delay.
    sys.setswitchinterval(0.0001)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    Delay.seconds = args.delay_ms / 1000.0

    def control() -> None:
        # The parent holds our stdin: `delay <ms>` lines; when it exits, stdin closes and so do we.
        for line in sys.stdin:
            words = line.split()
            if len(words) == 2 and words[0] == "delay":
                try:
                    ms = float(words[1])
                except ValueError:
                    ms = -1.0
                if ms >= 0:
                    Delay.seconds = ms / 1000.0
                    print("delay %s" % words[1], flush=True)
                    continue
            print("error: expected `delay <ms>` with ms at least 0, not %r" % line.strip(), flush=True)
        # Out at once: the main thread sits in accept(), which no signal from this thread interrupts.
        sys.stdout.flush()
        os._exit(0)

    threading.Thread(target=control, daemon=True).start()
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, (host, int(port))), daemon=True).start()


if __name__ == "__main__":
    main()

"""CPU of reading a request body: through gunicorn's ``wsgi.input`` against ``socket_body``'s reader.

    python -m bench.body_read [--size-mib 256] [--block-kib 1024] [--rounds 8]

A child process sends the body down a socket pair; this process reads it in blocks through
gunicorn's own reader classes, either as Django does (``request.read``, which goes through
``wsgi.input``) or with ``chunky_redis.protocols.socket_body.block_reader``. The order alternates
each round. The figure is the CPU (user + system) of the read calls alone per GiB, with each
round's ratio of the direct reader to ``wsgi.input``; every block read is compared with the bytes
sent. Each comparison runs twice: with nothing else between the reads, and with each block
md5-hashed between them, as the service does (the socket then fills up meanwhile). No network,
no disk: only the cost of getting the bytes to the application.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import sys
import time

import django

BODY_BLOCK = 1 << 20


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()


def read_once(
    size: int, block: int, direct: bool, payload: bytes, hash_between: bool
) -> tuple[float, bool]:
    """Read a body of ``size`` bytes (``payload`` repeated) in reads of ``block`` bytes at most;
    returns the CPU seconds of the read calls, and whether every byte was the one sent. Between
    reads, each block is compared with what was sent and, with ``hash_between``, md5-hashed as
    the service does (meanwhile the socket fills up, so the next read finds more waiting)."""
    from django.core.handlers.wsgi import WSGIRequest
    from gunicorn.http.body import Body, LengthReader
    from gunicorn.http.unreader import SocketUnreader

    from chunky_redis.protocols.socket_body import block_reader

    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the sender
        ours.close()
        for start in range(0, size, len(payload)):
            theirs.sendall(payload[: size - start])
        os._exit(0)
    theirs.close()
    environ = {
        "REQUEST_METHOD": "PUT",
        "CONTENT_LENGTH": str(size),
        "wsgi.input": Body(LengthReader(SocketUnreader(ours), size)),
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    request = WSGIRequest(environ)
    read = block_reader(request) if direct else request.read
    if direct and read == request.read:
        raise SystemExit("socket_body did not take the direct path: nothing to compare")
    twice = payload + payload  # any window of up to len(payload) bytes of the stream is in here
    digest = hashlib.md5()
    same = True
    cpu = 0.0
    got = 0
    while got < size:
        started = time.process_time()
        data = read(min(block, size - got))
        cpu += time.process_time() - started
        if not data:
            break
        at = got % len(payload)
        same = same and data == twice[at : at + len(data)]
        if hash_between:
            digest.update(data)
        got += len(data)
    os.waitpid(pid, 0)
    ours.close()
    return cpu, same and got == size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.body_read")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--block-kib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    setup_django()
    size, block = args.size_mib << 20, args.block_kib << 10
    payload = os.urandom(BODY_BLOCK)
    if block > len(payload):
        parser.error(f"--block-kib may be at most {len(payload) >> 10}")
    gib = (1 << 30) / size
    for hash_between in (False, True):
        between = "md5 of each block between reads" if hash_between else "nothing between reads"
        print(f"-- {between}")
        cpu: dict[str, list[float]] = {"wsgi.input": [], "socket_body": []}
        for r in range(args.rounds):
            order = ["wsgi.input", "socket_body"] if r % 2 == 0 else ["socket_body", "wsgi.input"]
            for name in order:
                seconds, same = read_once(size, block, name == "socket_body", payload, hash_between)
                if not same:
                    raise SystemExit(f"{name} read bytes that differ from those sent")
                cpu[name].append(seconds)
                print(f"round {r + 1} {name:<12} {seconds * gib:6.3f} CPU-s/GiB")
        ratios = [d / g for d, g in zip(cpu["socket_body"], cpu["wsgi.input"], strict=True)]
        for name, values in cpu.items():
            print(f"{name:<12} median {statistics.median(values) * gib:.3f} CPU-s/GiB")
        print(
            f"socket_body / wsgi.input, {between}, per round: {statistics.median(ratios):.2f} "
            f"[{min(ratios):.2f}, {max(ratios):.2f}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

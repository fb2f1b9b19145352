#!/usr/bin/env python3
"""CPU a Porter proxy spends on ClientHellos trickled a byte at a time (issue 21, point 3).

Starts `PORTER proxy --intercept` on 127.0.0.1:0 in a temporary folder, opens COUNT CONNECT tunnels
at once, sends each a ClientHello of about SIZE bytes (a hand-built TLS 1.3 hello with a padding
extension, split into records of 2^14 bytes) one byte per send() with TCP_NODELAY and a pause of
DELAY_MS after each (so the proxy reads most bytes on their own), reads the first byte of the answer
(0x16, the ServerHello), and prints the proxy's CPU time (user + system, from /proc/PID/stat) over
the whole run.

    python3 benches/hello_trickle.py target/release/porter [COUNT [SIZE [DELAY_MS]]]
"""

import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def client_hello(name: bytes, size: int) -> bytes:
    """A TLS 1.3 ClientHello for `name`, padded (RFC 7685) to about `size` bytes, as records."""

    def ext(kind: int, body: bytes) -> bytes:
        return struct.pack("!HH", kind, len(body)) + body

    sni = struct.pack("!H", len(name) + 3) + b"\x00" + struct.pack("!H", len(name)) + name
    extensions = b"".join(
        [
            ext(0x0000, sni),
            ext(0x000A, b"\x00\x02\x00\x1d"),  # supported_groups: x25519
            ext(0x000D, b"\x00\x04\x04\x03\x08\x04"),  # signature_algorithms
            ext(0x002B, b"\x04\x03\x04\x03\x03"),  # supported_versions: 1.3, 1.2
            ext(0x0033, b"\x00\x24\x00\x1d\x00\x20" + os.urandom(32)),  # key_share
            ext(0x0010, b"\x00\x09\x08http/1.1"),  # ALPN
        ]
    )
    body = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x20"
        + os.urandom(32)
        + b"\x00\x06\x13\x01\x13\x02\x13\x03"
        + b"\x01\x00"
    )
    padding = max(0, size - len(body) - len(extensions) - 2 - 4 - 4 - 10)
    extensions += ext(0x0015, bytes(padding))
    body += struct.pack("!H", len(extensions)) + extensions
    message = b"\x01" + struct.pack("!I", len(body))[1:] + body
    out = b""
    for at in range(0, len(message), 1 << 14):
        fragment = message[at : at + (1 << 14)]
        out += b"\x16\x03\x01" + struct.pack("!H", len(fragment)) + fragment
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    porter = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 18 * 1024
    delay = (float(sys.argv[4]) if len(sys.argv) > 4 else 1.0) / 1000
    with tempfile.TemporaryDirectory() as dir:
        proxy = subprocess.Popen(
            [porter, "proxy", "--intercept", "--listen", "127.0.0.1:0", "--no-cache",
             "--ca-dir", os.path.join(dir, "ca"), "--head-timeout", "120s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            line = proxy.stdout.readline()
            port = int(re.search(r"listening on \S+:(\d+)", line).group(1))
            hello = client_hello(b"localhost", size)
            answered = []

            def trickle() -> None:
                s = socket.create_connection(("127.0.0.1", port), timeout=120)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n")
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    head += s.recv(1)
                for i in range(len(hello)):
                    s.send(hello[i : i + 1])
                    time.sleep(delay)
                answered.append(s.recv(1) == b"\x16")
                s.close()

            before = cpu_seconds(proxy.pid)
            started = time.monotonic()
            threads = [threading.Thread(target=trickle) for _ in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            answered = sum(answered)
            wall = time.monotonic() - started
            cpu = cpu_seconds(proxy.pid) - before
            print(f"{count} hellos of {len(hello)} bytes, a byte per send: "
                  f"{answered} answered with a ServerHello, proxy CPU {cpu:.2f} s, wall {wall:.1f} s")
        finally:
            proxy.kill()
            proxy.wait()


if __name__ == "__main__":
    main()

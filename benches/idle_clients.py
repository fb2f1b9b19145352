#!/usr/bin/env python3
"""Holds N idle keep-alive connections open through a proxy, for benches/scale.sh.

Each connection makes one request for URL through the proxy (absolute form for http://, a CONNECT
tunnel and TLS verified against --cafile for https://), reads the whole response, and then stays open
and idle. When all are open it prints "open N" and waits until stdin closes, so the caller can read
the proxy's memory with every connection idle in it.

    idle_clients.py --proxy 127.0.0.1:3128 --count 10000 --url http://127.0.0.1:8080/1k.bin
    idle_clients.py --proxy ... --count 10000 --url https://127.0.0.1:8443/1k.bin --cafile ca.pem
"""

import argparse
import resource
import socket
import ssl
import sys
from urllib.parse import urlsplit


def read_response(sock):
    """Reads one response with a Content-Length body; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
        if len(data) > 65536:
            raise ConnectionError("response head larger than 64 KiB")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return status


def open_one(proxy, url, context):
    host, port = proxy.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    parts = urlsplit(url)
    target = parts.netloc
    if parts.scheme == "https":
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed before the CONNECT answer")
            data += chunk
        status_line = data.split(b"\r\n", 1)[0]
        if b" 200 " not in status_line:
            raise ConnectionError(f"CONNECT refused: {status_line!r}")
        sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        request_target = parts.path or "/"
    else:
        request_target = url
    sock.sendall(f"GET {request_target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    status = read_response(sock)
    if status != 200:
        raise ConnectionError(f"status {status}")
    return sock


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--cafile")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.count + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None

    held = []
    for n in range(args.count):
        try:
            held.append(open_one(args.proxy, args.url, context))
        except (OSError, ConnectionError) as error:
            print(f"failed at connection {n + 1}: {error}", file=sys.stderr)
            sys.exit(1)
    print(f"open {len(held)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()

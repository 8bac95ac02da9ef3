#!/usr/bin/env python3
"""Exit 0 once a Kafka broker at HOST:PORT answers a Metadata request listing >= 1 broker.

Usage: python3 ready.py HOST:PORT [--timeout SECONDS]

Stdlib only on purpose: up.sh runs this before any virtualenv (and so before any Kafka
client library) exists. An open TCP port is not readiness: a KRaft broker accepts
connections only late in startup, and a Metadata answer that lists a broker proves the
broker is registered and unfenced, i.e. clients can actually use it.
"""

import argparse
import socket
import struct
import sys
import time

API_METADATA = 3
API_VERSIONS = 18
CLIENT_ID = b"ready.py"


def request(sock, api_key, version, correlation_id, body):
    # Request header v1 (non-flexible): ApiVersions v0 and Metadata v1 both use it, which
    # keeps this free of the tagged-field/compact encodings of newer versions.
    header = struct.pack(">hhih", api_key, version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    data = recv_exact(sock, size)
    got_id = struct.unpack_from(">i", data)[0]
    if got_id != correlation_id:
        raise RuntimeError(f"correlation id {got_id} != {correlation_id}")
    return data, 4  # response header v0 is just the correlation id


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            # Kafka closes the connection rather than answering an unsupported version.
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return buf


def check_api_versions(sock):
    """Confirm the peer speaks Kafka and supports Metadata v1 (KIP-896 removed old versions)."""
    data, off = request(sock, API_VERSIONS, 0, 1, b"")
    error, count = struct.unpack_from(">hi", data, off)
    if error:
        raise RuntimeError(f"ApiVersions error code {error}")
    off += 6
    for _ in range(count):
        key, lo, hi = struct.unpack_from(">hhh", data, off)
        off += 6
        if key == API_METADATA:
            if not lo <= 1 <= hi:
                raise RuntimeError(f"broker supports Metadata v{lo}-v{hi}, not v1")
            return
    raise RuntimeError("broker does not list the Metadata API")


def metadata_brokers(sock):
    # Topics array of length 0 (not -1/null) asks for brokers only, no topic metadata.
    data, off = request(sock, API_METADATA, 1, 2, struct.pack(">i", 0))
    (count,) = struct.unpack_from(">i", data, off)
    off += 4
    brokers = []
    for _ in range(count):
        node_id, hlen = struct.unpack_from(">ih", data, off)
        off += 6
        host = data[off : off + hlen].decode()
        off += hlen
        (port, rack_len) = struct.unpack_from(">ih", data, off)
        off += 6 + max(rack_len, 0)  # rack is a nullable string (-1 = null)
        brokers.append(f"{node_id}@{host}:{port}")
    return brokers


def probe(host, port, timeout):
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        check_api_versions(sock)
        return metadata_brokers(sock)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=30.0, help="overall deadline in seconds")
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    deadline = time.monotonic() + args.timeout
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            brokers = probe(host, int(port), min(remaining, 5.0))
            if brokers:
                print(f"ready: {args.address} brokers={','.join(brokers)}")
                return 0
            last_error = "metadata lists no brokers yet"
        except (OSError, RuntimeError, struct.error) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    print(f"not ready after {args.timeout:g}s: {args.address}: {last_error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

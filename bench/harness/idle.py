"""Idle keep-alive connections: what holding one costs a proxy.

`hold(port, n, request)` opens `n` connections to 127.0.0.1:`port`, sends
one request on each and reads its whole answer (so the proxy has set up
all its per-connection state, the upstream pool included), and keeps them
open until the `with` block ends. Plain blocking sockets, opened by a few
threads at once (each connection is one short blocking exchange, so
threads keep it simple; the GIL is released while they wait). The parser of the answer is a
pure function, tested on canned bytes by selftest.py.
"""

import concurrent.futures
import socket
import threading
import time


def response_complete(buf):
    """Whether `buf` holds one whole HTTP/1.1 response (headers and a
    `Content-Length` body, or a chunked body up to its last chunk), and its
    status. Returns (done, status)."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False, None
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    length, chunked = None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        return body.endswith(b"0\r\n\r\n"), status
    return len(body) >= (length or 0), status


def request_bytes(path, headers):
    """A keep-alive GET of `path` with `headers` ("Name: value")."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


class Held:
    """The connections of one `hold`: `.socks` (open ones) and `.failed`
    (connections whose request did not come back 2xx, or that failed)."""

    def __init__(self):
        self.socks = []
        self.failed = 0
        self.first_error = None


def _one(port, request, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the answer was complete")
            buf += chunk
            done, status = response_complete(buf)
            if done:
                break
        if not 200 <= status < 300:
            raise ConnectionError(f"answered {status}")
        return s
    except BaseException:
        s.close()
        raise


class hold:
    """with hold(port, n, request) as held: … (the connections stay open
    and idle inside the block; all are closed at its end)."""

    def __init__(self, port, n, request, timeout=5.0, threads=8):
        self.port, self.n, self.request, self.timeout, self.threads = port, n, request, timeout, threads
        self.held = Held()
        self._lock = threading.Lock()

    def _open(self, _):
        h = self.held
        if h.failed > max(10, self.n // 100):
            return  # something is wrong: do not wait out 10,000 timeouts
        try:
            s = _one(self.port, self.request, self.timeout)
        except (OSError, ValueError) as e:
            with self._lock:
                h.failed += 1
                h.first_error = h.first_error or str(e)
            return
        with self._lock:
            h.socks.append(s)

    def __enter__(self):
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(self._open, range(self.n)))
        self.held.open_s = time.monotonic() - t0
        return self.held

    def __exit__(self, *exc):
        for s in self.held.socks:
            try:
                s.close()
            except OSError:
                pass
        self.held.socks = []

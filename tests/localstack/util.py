"""Small shared helpers: free ports, threaded HTTP servers, process groups that are always stopped."""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_children: list[subprocess.Popen] = []
_children_lock = threading.Lock()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args, **kw) -> subprocess.Popen:
    """Starts a child in its own process group; it is killed at exit (and by stop_all on signals)."""
    p = subprocess.Popen(args, start_new_session=True, **kw)
    with _children_lock:
        _children.append(p)
    return p


def stop(p: subprocess.Popen, timeout: float = 3.0) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    with _children_lock:
        if p in _children:
            _children.remove(p)


def stop_all() -> None:
    with _children_lock:
        kids = list(_children)
    for p in kids:
        stop(p)


atexit.register(stop_all)


def install_signal_handlers() -> None:
    """Ctrl-C / SIGTERM: stop every child, then exit with the conventional status."""

    def handler(signum, _frame):
        stop_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # no access log on the console
        pass

    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status: int, body=b"", headers: dict | None = None, content_type="application/json"):
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        self.send_response(status)
        if body or status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def drop(self):
        """Closes the connection without an answer (a dropped connection)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server:
    """A ThreadingHTTPServer on a free 127.0.0.1 port, served from a daemon thread."""

    def __init__(self, handler_cls, **attrs):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        for k, v in attrs.items():
            setattr(self.httpd, k, v)
        default_handle_error = self.httpd.handle_error

        def handle_error(request, client_address):
            # A peer that went away (a killed function, a dropped connection) is expected: no traceback.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                default_handle_error(request, client_address)

        self.httpd.handle_error = handle_error
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def close_all(closers) -> None:
    """Runs every closer at once (a server's shutdown waits up to half a second for its loop to notice)."""
    threads = [threading.Thread(target=c, daemon=True) for c in closers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


def now_ms() -> int:
    return int(time.time() * 1000)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a live process has used so far, from /proc (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return None


def percentiles(values, ps=(50, 95, 99)):
    if not values:
        return {p: None for p in ps}
    v = sorted(values)
    out = {}
    for p in ps:
        k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
        out[p] = v[k]
    return out


def wait_for(cond, timeout: float, what: str, step: float = 0.1):
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def drain(sqs, url) -> list[dict]:
    """Every message currently in a queue (received with all attributes, then deleted)."""
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                   AttributeNames=["All"], WaitTimeSeconds=0, VisibilityTimeout=60).get("Messages", [])
        if not msgs:
            return out
        out += msgs
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for j, m in enumerate(msgs)])

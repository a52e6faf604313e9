"""The webhook leg: Reltio's signed-webhook delivery (retry policy maxRetries 3, retryDelay 5000 ms,
backoffMultiplier 2.0, scaled down) and an API Gateway HTTP API (payload v2) in front of webhook-receiver (Reltio's
own stream, `--path native`: native.py)."""
from __future__ import annotations

import hashlib
import hmac
import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from .runtime import FunctionPool, InvocationError
from .util import QuietHandler, Server, now_ms


class _ApiGw(QuietHandler):
    def do_POST(self):
        host: FunctionPool = self.server.host
        body = self.read_body()
        path, _, query = self.path.partition("?")
        headers = {}
        for k, v in self.headers.items():  # HTTP APIs lowercase header names and join repeats with commas
            k = k.lower()
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        headers["x-forwarded-proto"] = "https"  # the endpoint only serves HTTPS
        headers["x-forwarded-port"] = "443"
        headers["x-forwarded-for"] = "127.0.0.1"
        rid = str(uuid.uuid4())
        now = datetime.now(timezone.utc)
        event = {
            "version": "2.0", "routeKey": "POST /webhook", "rawPath": path, "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012", "apiId": "local", "domainName": "local.execute-api.localhost",
                "domainPrefix": "local",
                "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                         "userAgent": headers.get("user-agent", "")},
                "requestId": rid, "routeKey": "POST /webhook", "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": now_ms(),
            },
            "body": body.decode("utf-8", errors="replace"), "isBase64Encoded": False,
        }
        try:
            r = host.invoke(event)
        except InvocationError:
            return self.send(500, {"message": "Internal Server Error"})
        if not isinstance(r, dict) or "statusCode" not in r:
            return self.send(200, r)
        rb = r.get("body") or ""
        rb = __import__("base64").b64decode(rb) if r.get("isBase64Encoded") else rb.encode()
        self.send(int(r["statusCode"]), rb, {k: v for k, v in (r.get("headers") or {}).items()
                                              if k.lower() not in ("content-length", "content-type")})


class ApiGateway:
    """HTTP API stand-in: each request is served on its own thread and invokes the function synchronously, so up
    to the function's concurrency run at once; a request beyond it waits for a free environment."""

    def __init__(self, host: FunctionPool):
        self.server = Server(_ApiGw, host=host)
        self.url = f"{self.server.url}/webhook"

    def close(self):
        self.server.close()


def sign(secret: str, body: bytes, ts: int) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


class WebhookDeliverer:
    """Delivers each event as a signed POST; retries as the webhook registration's retry policy says (`policy`:
    maxRetries, retryDelay s, backoffMultiplier; default Reltio's 3, 5 s, 2.0), the delays times `scale`. Several
    workers deliver concurrently, so events of one entity can arrive out of order (as Reltio's can)."""

    def __init__(self, url: str, secret: str, *, workers=1, scale=0.01, duplicate_rate=0.0, seed=3, policy=None):
        self.url, self.secret, self.scale = url, secret, scale
        self.policy = policy or (lambda: (3, 5.0, 2.0))
        self.duplicate_rate = duplicate_rate
        self.rng = random.Random(seed)
        self.q: queue.Queue = queue.Queue()
        self.accepted: dict[str, int] = {}  # event id -> ms the receiver answered 2xx
        self.given_up: list[str] = []
        self.statuses: dict[int, int] = {}
        self.attempts = 0
        self.forged: list[int] = []  # statuses answered to deliberately forged requests
        self.inflight = 0
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, body: dict, event_id: str):
        with self.lock:
            self.inflight += 1
        self.q.put((json.dumps(body).encode(), event_id))
        if self.rng.random() < self.duplicate_rate:
            with self.lock:
                self.inflight += 1
            self.q.put((json.dumps(body).encode(), event_id))  # the sender delivers it twice

    def idle(self):
        return self.inflight == 0

    def _post(self, body: bytes, headers: dict) -> int:
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except Exception:
            return 0

    def forge(self, body: dict) -> int:
        """A request signed with the wrong secret: must be refused with 401 and never enqueued."""
        raw = json.dumps(body).encode()
        ts = int(time.time())
        status = self._post(raw, {"X-Reltio-Timestamp": str(ts), "X-Reltio-Signature": sign("not-the-secret", raw, ts),
                                  "X-Reltio-Event-Id": "forged-" + str(uuid.uuid4())})
        self.forged.append(status)
        return status

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                body, eid = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            max_retries, delay, multiplier = self.policy()
            delay *= self.scale
            ok = False
            for attempt in range(1 + max_retries):  # the first try and maxRetries
                ts = int(time.time())
                status = self._post(body, {"X-Reltio-Timestamp": str(ts), "X-Reltio-Signature": sign(self.secret, body, ts),
                                           "X-Reltio-Event-Id": eid})
                with self.lock:
                    self.attempts += 1
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    ok = True
                    break
                if attempt < max_retries:
                    time.sleep(delay)
                    delay *= multiplier
            with self.lock:
                if ok:
                    self.accepted.setdefault(eid, now_ms())
                else:
                    self.given_up.append(eid)
                self.inflight -= 1

    def close(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(5)

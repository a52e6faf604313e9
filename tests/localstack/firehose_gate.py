"""Partial Firehose failures for the analytics sink: a pass-through proxy in front of moto's Firehose (whose
`FailedPutCount` is always 0) that fails a share of each `PutRecordBatch`'s records the way Firehose does - the call
answers 200, the failed records carry an `ErrorCode` in their `RequestResponses` entry and were not written, the
others were - so that the sink's resend-then-report-transient path is exercised end to end.

The analytics-sink gets the gate as `AWS_ENDPOINT_URL_FIREHOSE`; every other request is forwarded unchanged.
"""
from __future__ import annotations

import http.client
import json
import random
import threading

from .util import QuietHandler, Server

HOP = {"connection", "content-length", "transfer-encoding", "host"}


class _Handler(QuietHandler):
    def do_POST(self):
        gate: FirehoseGate = self.server.gate
        body = self.read_body()
        target = self.headers.get("X-Amz-Target") or ""
        if target.endswith(".PutRecordBatch"):
            return self._put_record_batch(gate, body)
        status, data, headers = gate.forward(self.path, body, self.headers)
        kind = next((headers.pop(k) for k in list(headers) if k.lower() == "content-type"),
                    "application/x-amz-json-1.1")
        self.send(status, data, headers, content_type=kind)

    def _put_record_batch(self, gate: "FirehoseGate", body: bytes):
        request = json.loads(body)
        records = request.get("Records", [])
        failed = gate.choose(len(records))
        kept = [r for i, r in enumerate(records) if i not in failed]
        answers = iter([])
        moto_failed = 0
        if kept:
            status, data, headers = gate.forward(self.path, json.dumps({**request, "Records": kept}).encode(),
                                                 self.headers)
            if status != 200:  # the whole call failed (moto's answer stands)
                return self.send(status, data, headers, content_type="application/x-amz-json-1.1")
            out = json.loads(data)
            moto_failed = out.get("FailedPutCount", 0)
            answers = iter(out.get("RequestResponses", []))
        responses = []
        for i in range(len(records)):
            if i in failed:
                responses.append({"ErrorCode": "ServiceUnavailableException",
                                  "ErrorMessage": "Slow down (injected by the local stack)"})
            else:
                responses.append(next(answers))
        self.send(200, {"FailedPutCount": len(failed) + moto_failed, "Encrypted": False,
                        "RequestResponses": responses}, content_type="application/x-amz-json-1.1")


class FirehoseGate:
    """Fails each record of a `PutRecordBatch` with probability `rate` (counted in `injected`)."""

    def __init__(self, moto_port: int, rate: float, seed: int = 0):
        self.moto_port, self.rate = moto_port, rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected = 0
        self.calls = 0
        self.server = Server(_Handler, gate=self)
        self.url = self.server.url

    def choose(self, n: int) -> set[int]:
        with self.lock:
            self.calls += 1
            failed = {i for i in range(n) if self.rng.random() < self.rate}
            self.injected += len(failed)
            return failed

    def forward(self, path: str, body: bytes, headers) -> tuple[int, bytes, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=30)
        try:
            conn.request("POST", path, body, {k: v for k, v in headers.items() if k.lower() not in HOP})
            r = conn.getresponse()
            data = r.read()
            out = {k: v for k, v in r.getheaders() if k.lower() not in HOP | {"server", "date"}}
            return r.status, data, out
        finally:
            conn.close()

    def close(self):
        self.server.close()

"""Reltio's own stream into the stack (`--path native`): each event the simulator emits, in the destination's
format and payload type (reltio_stream.py), published to the fan-out topic as Reltio's SNS destination does, or
sent to the event queue as its SQS destination does (no topic: `--no-fanout`), with Reltio's headers as message
attributes and nothing else."""
from __future__ import annotations

import queue
import random
import threading
import time

from . import reltio_stream
from .util import now_ms


class NativeStream:
    """`submit(event, eid)` turns the simulator's event into Reltio's message and publishes it: at once (`workers`
    0), or from that many threads (several reorder one entity's events, as Reltio's stream, which is not FIFO, can).
    `duplicate_rate`: a share of the events is published twice (delivery at least once). A FIFO topic or queue gets
    the entity URI as the message group and the simulator's event id as the deduplication id (Reltio is not
    documented to send either: FIFO destinations are unverified).

    `published` maps each message's event id, as the consumers derive it (the SHA-256 of the unzipped JSON), to the
    events it was published for: the trace joins the consumers' log lines to Reltio's events by it."""

    def __init__(self, res, *, topic: str | None = None, fmt: str = "zip", payload: str = "snapshot",
                 workers: int = 0, duplicate_rate: float = 0.0, seed: int = 13):
        if fmt not in reltio_stream.FORMATS or payload not in reltio_stream.PAYLOADS:
            raise ValueError(f"format {fmt!r} / payload {payload!r}: one of {reltio_stream.FORMATS} / "
                             f"{reltio_stream.PAYLOADS}")
        self.res, self.topic, self.fmt, self.payload = res, topic, fmt, payload
        self.duplicate_rate = duplicate_rate
        self.rng = random.Random(seed)
        self.accepted: dict[str, int] = {}  # simulator event id -> ms it was published
        self.given_up: list[str] = []
        self.forged: list[int] = []
        self.published: dict[str, list[dict]] = {}
        self.duplicates = 0
        self.snapshots: dict[str, dict] = {}  # entity URI -> its last snapshot (the deltas' "before")
        self.lock = threading.Lock()
        self.inflight = 0
        self.q: queue.Queue = queue.Queue()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, event: dict, eid: str):
        """Called in the order the simulator emits (the deltas depend on it); the publishing may be later."""
        uri = reltio_stream.entity_uri(event)
        obj = event.get("object") or {}
        before = None
        if "attributes" in obj:
            before = self.snapshots.get(uri)
            self.snapshots[uri] = obj
        text = reltio_stream.event_json(event, self.payload, before)
        message = (reltio_stream.body(text, self.fmt), reltio_stream.headers(event), uri, eid)
        with self.lock:
            self.published.setdefault(reltio_stream.event_id(text, message[1]), []).append(
                {"entity": uri, "object_version": event.get("objectVersion"), "type": event["type"], "eid": eid})
            copies = 2 if self.rng.random() < self.duplicate_rate else 1
            self.duplicates += copies - 1
            self.inflight += copies
        for _ in range(copies):
            if self.threads:
                self.q.put(message)
            else:
                self._deliver(message)

    def _deliver(self, message):
        text, headers, uri, eid = message
        attributes = {k: {"DataType": "String", "StringValue": v} for k, v in headers.items()}
        kw = {"MessageGroupId": uri or eid, "MessageDeduplicationId": eid} if self.res.fifo else {}
        ok = False
        for attempt in range(5):  # moto answers; a refused call is retried as an SDK would
            try:
                if self.topic:
                    self.res.sns.publish(TopicArn=self.topic, Message=text, MessageAttributes=attributes, **kw)
                else:
                    self.res.sqs.send_message(QueueUrl=self.res.event_queue, MessageBody=text,
                                              MessageAttributes=attributes, **kw)
                ok = True
                break
            except Exception:
                time.sleep(0.1 * (attempt + 1))
        with self.lock:
            if ok:
                self.accepted.setdefault(eid, now_ms())
            else:
                self.given_up.append(eid)
            self.inflight -= 1

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                message = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            self._deliver(message)

    def idle(self):
        return self.inflight == 0

    def close(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(5)

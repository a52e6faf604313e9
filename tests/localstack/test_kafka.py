"""stream-consumer end to end: a Kafka topic (Tansu) → KafkaPoller (Lambda's self-managed Kafka event source) →
target/release/stream-consumer → the moto SQS event queue and stream DLQ (docs/contract.md, "stream-consumer").

The function's SQS calls go through `SqsGate`, a pass-through proxy in front of moto that can make the event queue
unavailable (503 to every send) and counts the sends it lets through (the kill probe: a kill lands right after the
function's first event-queue request of an invocation, its effects half done).
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest

from .aws import Moto
from .kafka import KafkaBroker, KafkaPoller
from .runtime import FunctionPool
from .util import QuietHandler, Server, close_all, drain, wait_for

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("LOCALSTACK_TARGET_DIR", ROOT / "target" / "release"))
TENANT = "LOCAL1"
ENTITY_TYPE = "configuration/entityTypes/Individual"
PARTITIONS = 3


class _GateHandler(QuietHandler):
    def do_POST(self):
        gate: SqsGate = self.server.gate
        body = self.read_body()
        if gate.is_event_send(self.headers, body):
            if gate.down.is_set():
                gate.refused += 1
                return self.send(503, {"__type": "ServiceUnavailable", "message": "event queue unavailable"},
                                 content_type="application/x-amz-json-1.0")
            gate.event_sends += 1
            time.sleep(gate.delay_s)
        conn = http.client.HTTPConnection("127.0.0.1", gate.moto_port, timeout=30)
        try:
            hop = {"connection", "content-length", "transfer-encoding", "host"}
            conn.request("POST", self.path, body, {k: v for k, v in self.headers.items() if k.lower() not in hop})
            r = conn.getresponse()
            data = r.read()
            headers = {k: v for k, v in r.getheaders() if k.lower() not in hop | {"content-type", "server", "date"}}
            self.send(r.status, data, headers, content_type=r.getheader("Content-Type", "application/json"))
        finally:
            conn.close()


class SqsGate:
    """SQS endpoint for the function: forwards to moto; while `down` is set the event queue's sends get 503."""

    def __init__(self, moto: Moto):
        self.moto_port = moto.port
        self.event_queue = None
        self.down = threading.Event()
        self.delay_s = 0.0
        self.refused = 0
        self.event_sends = 0  # event-queue sends forwarded
        self.server = Server(_GateHandler, gate=self)
        self.url = self.server.url

    def is_event_send(self, headers, body: bytes) -> bool:
        target = headers.get("X-Amz-Target") or ""
        if target:  # the JSON protocol (the AWS SDKs' current one)
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                return False
            action, url = target.rsplit(".", 1)[-1], req.get("QueueUrl")
        else:  # the query protocol
            form = urllib.parse.parse_qs(body.decode(errors="replace"))
            action, url = (form.get("Action") or [""])[0], (form.get("QueueUrl") or [""])[0]
        return action.startswith("SendMessage") and url == self.event_queue

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def infra(tmp_path_factory):
    binary = TARGET / "stream-consumer"
    assert binary.exists(), f"{binary} missing (run `make release`)"
    logs = tmp_path_factory.mktemp("kafka-logs")
    moto = broker = gate = None
    try:
        moto = Moto(str(logs / "moto.log"), wait=False)
        broker = KafkaBroker(str(logs / "tansu.log"))
        moto.wait_ready()
        gate = SqsGate(moto)
        yield SimpleNamespace(moto=moto, sqs=moto.client("sqs"), broker=broker, gate=gate, logs=logs,
                              binary=str(binary))
    finally:
        close_all([c.close for c in (gate, broker, moto) if c is not None])


@pytest.fixture
def run(infra, request):
    """One test's pieces: its own topic, queues, consumer group, function pool and poller."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40]
    sqs = infra.sqs
    queue = sqs.create_queue(QueueName=f"{name}-events", Attributes={"MaximumMessageSize": "1048576"})["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"{name}-stream-dlq")["QueueUrl"]
    infra.gate.event_queue = queue
    topic = f"reltio.{TENANT}.entities.changes.{name}"
    infra.broker.create_topic(topic, PARTITIONS)
    closers = []

    def start(*, batch_size=10, window_s=0.2, broker=None, **poller_options):
        pool = FunctionPool("stream-consumer", infra.binary, {
            "AWS_ENDPOINT_URL": infra.moto.endpoint, "AWS_ENDPOINT_URL_SQS": infra.gate.url,
            "EVENT_QUEUE_URL": queue, "STREAM_DLQ_URL": dlq, "RUST_LOG": "info",
            "METRICS_NAMESPACE": "MdmSync/local"}, timeout_s=20, size=1,
            log_path=str(infra.logs / f"{name}-stream-consumer.log"),
            probe_for=lambda i: lambda: infra.gate.event_sends)
        poller = KafkaPoller(broker or infra.broker, topic, pool, group_id=f"{name}-group", batch_size=batch_size,
                             window_s=window_s, **poller_options)
        closers.extend([poller.close, pool.close])
        return pool, poller

    def durable_broker():
        """A second broker of this test's own, keeping its data in a moto S3 bucket: it survives restart()."""
        bucket = f"{name}-tansu"[:63]
        infra.moto.client("s3").create_bucket(Bucket=bucket)
        b = KafkaBroker(str(infra.logs / f"{name}-tansu.log"), s3=(infra.moto.endpoint, bucket))
        closers.append(b.close)
        b.create_topic(topic, PARTITIONS)
        return b

    r = SimpleNamespace(topic=topic, queue=queue, dlq=dlq, start=start, sqs=sqs, broker=infra.broker,
                        gate=infra.gate, durable_broker=durable_broker, name=name)
    try:
        yield r
    finally:
        infra.gate.down.clear()
        infra.gate.delay_s = 0.0
        for c in closers:  # the poller before the function it feeds (and a durable broker last)
            c()


# ---------------------------------------------------------------------------------------------- the workload
def _entity_event(i: int, version: int, etype: str) -> dict:
    uri = f"entities/E{i:03d}"
    t = 1_780_000_000_000 + i * 1000 + version
    return {"type": etype, "tenantId": TENANT, "objectVersion": version, "updatedTime": t, "ovChanged": True,
            "object": {"uri": uri, "type": ENTITY_TYPE, "createdTime": t - version, "updatedTime": t,
                       "attributes": {"FirstName": [{"type": f"{ENTITY_TYPE}/attributes/FirstName", "ov": True,
                                                     "value": f"Name{i}v{version}",
                                                     "uri": f"{uri}/attributes/FirstName/1"}]},
                       "crosswalks": [{"uri": f"{uri}/crosswalks/0", "type": "configuration/sources/CRM_DB",
                                       "value": str(1000 + i), "sourceTable": "public.customer"}]}}


def workload(entities: int = 8, versions: int = 5):
    """Kafka records (key, value, headers) in produce order and the events they must become, as
    (sourceObjectUri, objectVersion, eventType). Keys are entity URIs: one entity's records stay in one
    partition, in version order."""
    records, expected = [], []
    for v in range(1, versions + 1):
        for i in range(entities):
            ev = _entity_event(i, v, "ENTITY_CREATED" if v == 1 else "ENTITY_CHANGED")
            headers = [("eventType", ev["type"].encode())]
            if i == 0 and v == versions:
                del ev["tenantId"]  # the header fills what the body lacks (one event per record)
                headers.append(("tenantId", TENANT.encode()))
            records.append((ev["object"]["uri"].encode(), json.dumps(ev).encode(), headers))
            expected.append((ev["object"]["uri"], str(v), ev["type"]))
    # A merge: one record holding a JSON array of two events (the winner's key).
    win, lose, v = "entities/E000", "entities/E001", versions + 1
    merge = [{"type": "ENTITIES_MERGED", "tenantId": TENANT, "objectVersion": v, "updatedTime": 1_790_000_000_000,
              "uris": [win, lose]},
             {"type": "ENTITY_LOST_MERGE", "tenantId": TENANT, "objectVersion": v, "updatedTime": 1_790_000_000_000,
              "uris": [lose, win], "object": {"uri": lose, "type": ENTITY_TYPE}}]
    records.append((win.encode(), json.dumps(merge).encode(), []))
    expected += [(win, str(v), "ENTITIES_MERGED"), (lose, str(v), "ENTITY_LOST_MERGE")]
    return records, expected


POISON = [(b"entities/E002", b"not json {", []),            # neither JSON nor zipped-base64 JSON
          (b"entities/E003", b'{"hello": "world"}', []),    # JSON, not a Reltio event
          (None, None, [])]                                 # no key, no value (a tombstone)


def settle(r, poller, ends):
    """Every partition committed to its end, by the poller and on the broker."""
    wait_for(lambda: poller.committed == ends or poller.error, 40, f"committed offsets {ends}")
    assert poller.committed == ends and not poller.error, poller.figures()
    assert poller.broker.committed(poller.group_id, r.topic, PARTITIONS) == ends


# ------------------------------------------------------------------------------------------------ checks
def check_queue(msgs, expected, exactly_once: bool):
    """Every expected event is on the queue with the contract's attributes; copies of one event carry one eventId
    and the same body."""
    by_event: dict = {}
    for m in msgs:
        a = {k: v.get("StringValue") for k, v in (m.get("MessageAttributes") or {}).items()}
        key = (a.get("sourceObjectUri"), a.get("objectVersion"), a.get("eventType"))
        assert key in expected, f"unexpected queue message {a}"
        assert a.get("tenantId") == TENANT, a
        assert re.fullmatch(r"[0-9a-f]{64}", a.get("eventId") or ""), a
        body = json.loads(m["Body"])
        assert body["type"] == key[2] and str(body["objectVersion"]) == key[1]
        by_event.setdefault(key, []).append((a["eventId"], m["Body"]))
    missing = set(expected) - set(by_event)
    assert not missing, f"{len(missing)} events never enqueued: {sorted(missing)[:5]}"
    for key, copies in by_event.items():
        assert len({c for c in copies}) == 1, f"{key}: copies differ {copies}"
        if exactly_once:
            assert len(copies) == 1, f"{key} enqueued {len(copies)} times"
    ids = {copies[0][0] for copies in by_event.values()}
    assert len(ids) == len(expected), "one eventId per event"
    return by_event


def check_dead_letters(msgs, poison_at):
    seen = {}
    for m in msgs:
        d = json.loads(m["Body"])
        assert d["function"] == "stream-consumer" and d["reason"], d
        assert d["topic"] and isinstance(d["partition"], int) and isinstance(d["offset"], int), d
        seen.setdefault((d["partition"], d["offset"]), d)
    assert set(seen) == set(poison_at), (sorted(seen), sorted(poison_at))
    return seen


def check_delivery_order(poller, placed, records, ends):
    """Each partition's records reach the function in offset order, none skipped; a redelivery starts no earlier
    than the previous batch of that partition; so each entity's events arrive first in objectVersion order."""
    first_seen: list = []
    done: set = set()
    last_start: dict[int, int] = {}
    reached: dict[int, int] = {}
    for d in poller.deliveries:
        for p, offs in d.items():
            assert offs == list(range(offs[0], offs[0] + len(offs))), f"partition {p}: gap in {offs}"
            assert last_start.get(p, 0) <= offs[0] <= reached.get(p, 0), f"partition {p}: batch at {offs[0]}"
            last_start[p], reached[p] = offs[0], max(reached.get(p, 0), offs[-1] + 1)
            first_seen += [(p, o) for o in offs if (p, o) not in done]
            done.update((p, o) for o in offs)
    assert reached == ends
    where = {po: i for i, po in enumerate(placed)}
    versions: dict[bytes, list] = {}
    for po in first_seen:
        key, value, _ = records[where[po]]
        try:
            body = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(body, dict) and "objectVersion" in body:
            versions.setdefault(key, []).append(body["objectVersion"])
    for key, vs in versions.items():
        assert vs == sorted(vs), f"{key}: versions first delivered in order {vs}"


# ------------------------------------------------------------------------------------------------- tests
def test_every_event_is_enqueued_once_and_every_poison_record_is_dead_lettered(run):
    records, expected = workload()
    records = records[:5] + [POISON[0]] + records[5:20] + [POISON[1]] + records[20:] + [POISON[2]]
    placed, ends = run.broker.produce(run.topic, records)
    assert len(ends) == PARTITIONS, "the workload spreads over every partition"
    pool, poller = run.start()
    settle(run, poller, ends)
    print("poller", poller.figures(), "function", pool.figures())
    check_queue(drain(run.sqs, run.queue), expected, exactly_once=True)
    poison_at = [placed[records.index(p)] for p in POISON]
    letters = check_dead_letters(drain(run.sqs, run.dlq), poison_at)
    assert letters[poison_at[2]]["key"] is None
    assert letters[poison_at[0]]["key"] == "entities/E002" and "valueBase64" in letters[poison_at[0]]
    check_delivery_order(poller, placed, records, ends)
    f = poller.figures()
    assert f["partial_failures"] == 0 and f["failed_invocations"] == 0, f
    assert f["invocations"] >= len(records) // 10, f  # batches of at most 10
    assert max(len(o) for d in poller.deliveries for o in d.values()) <= 10
    assert pool.errors == 0 and not pool.init_errors


def test_an_unavailable_event_queue_and_a_killed_function_lose_nothing(run):
    # The event queue answers 503 to every send until the function has reported a partial batch failure (its own
    # retries exhausted): the poller commits before the reported records and reads them again. Then one
    # invocation is killed right after its first event-queue request: the whole batch comes again.
    records, expected = workload()
    records = records[:12] + [POISON[0]] + records[12:] + [POISON[2]]
    run.gate.down.set()
    run.gate.delay_s = 0.02  # each forwarded send takes a moment: the kill lands while effects are half done
    placed, ends = run.broker.produce(run.topic, records)
    pool, poller = run.start()
    pool.arm_kill()  # waits for the first event-queue request that gets through
    wait_for(lambda: poller.stats.partial_failures >= 1, 40, "a partial batch failure")
    assert poller.committed != ends
    run.gate.down.clear()
    settle(run, poller, ends)
    print("poller", poller.figures(), "function", pool.figures(), "refused", run.gate.refused)
    assert pool.kills == 1 and pool.restarts >= 1, pool.figures()
    assert run.gate.refused > 0
    check_queue(drain(run.sqs, run.queue), expected, exactly_once=False)
    check_dead_letters(drain(run.sqs, run.dlq), [placed[records.index(p)] for p in (POISON[0], POISON[2])])
    check_delivery_order(poller, placed, records, ends)
    f = poller.figures()
    assert f["failed_invocations"] >= 1 and f["redelivered"] >= 1, f


def test_retries_are_bounded_and_a_discarded_batch_names_exactly_the_records_not_handed_on(run):
    # The event queue refuses every send until the poller has discarded batches: MaximumRetryAttempts 2, then
    # Lambda's on-failure record (topic-partition, offset range; no values) goes to the stream failure queue and
    # the partition moves on. Every record is then either handed on (enqueued or dead-lettered) or inside a
    # discarded range: none lost without a trace.
    failures_q = run.sqs.create_queue(QueueName=f"{run.name}-failures")["QueueUrl"]
    records, expected = workload()
    records = records[:12] + [POISON[0]] + records[12:]
    placed, ends = run.broker.produce(run.topic, records)
    run.gate.down.set()
    pool, poller = run.start(batch_size=6, max_retry_attempts=2,
                             on_failure=lambda rec: run.sqs.send_message(QueueUrl=failures_q,
                                                                         MessageBody=json.dumps(rec)))
    wait_for(lambda: poller.stats.on_failure >= 2, 60, "two discarded batches")
    run.gate.down.clear()
    settle(run, poller, ends)
    print("poller", poller.figures(), "function", pool.figures())
    discarded: set = set()
    for m in drain(run.sqs, failures_q):
        rec = json.loads(m["Body"])
        assert rec["requestContext"]["condition"] == "RetryAttemptsExhausted", rec
        assert rec["requestContext"]["approximateInvokeCount"] == 3, rec  # the first attempt and two retries
        info = rec["KafkaBatchInfo"]
        assert info["consumerGroupId"] == poller.group_id and info["bootstrapServers"] == run.broker.bootstrap
        [(pid, r)] = info["recordsInfo"].items()
        p = int(pid.rsplit("-", 1)[1])
        assert pid == f"{run.topic}-{p}"
        first, last = int(r["firstRecordOffset"]), int(r["lastRecordOffset"])
        assert last - first + 1 == info["batchSize"], info
        discarded |= {(p, o) for o in range(first, last + 1)}
        assert "value" not in json.dumps(info).lower().replace("payloadsize", "")  # metadata only
    assert discarded and len(discarded) < len(records), "some batches discarded, the rest handed on"
    enqueued = {}
    for m in drain(run.sqs, run.queue):
        a = {k: v.get("StringValue") for k, v in (m.get("MessageAttributes") or {}).items()}
        enqueued[(a["sourceObjectUri"], a["objectVersion"])] = m
    dead = {(json.loads(m["Body"])["partition"], json.loads(m["Body"])["offset"]) for m in drain(run.sqs, run.dlq)}
    for (key, value, _), at in zip(records, placed):
        if at in discarded:
            continue
        if (key, value, _) == POISON[0]:
            assert at in dead, "the poison record outside the discarded ranges is dead-lettered"
            continue
        body = json.loads(value)
        events = body if isinstance(body, list) else [body]
        for ev in events:
            uri = (ev.get("object") or {}).get("uri") or ev["uris"][0]
            assert (uri, str(ev["objectVersion"])) in enqueued, f"record at {at} neither handed on nor discarded"


def test_a_broker_restart_and_a_bisected_function_error_lose_nothing(run):
    # The broker keeps its log in S3 (moto) and is restarted while the poller reads; records are produced before
    # and after. An invocation is killed mid-batch with BisectBatchOnFunctionError on: the batch comes back as
    # its first half. Every event is enqueued, every partition committed to its end on the restarted broker.
    broker = run.durable_broker()
    records, expected = workload(entities=8, versions=6)
    half = len(records) // 2
    placed, ends = broker.produce(run.topic, records[:half])
    run.gate.delay_s = 0.02
    pool, poller = run.start(broker=broker, batch_size=8, bisect=True)
    pool.arm_kill()
    wait_for(lambda: poller.committed and pool.kills == 1, 40, "a first commit and the kill")
    broker.restart(down_s=2.0)
    more, more_ends = broker.produce(run.topic, records[half:])
    placed += more
    ends = {p: max(ends.get(p, 0), more_ends.get(p, 0)) for p in set(ends) | set(more_ends)}
    settle(run, poller, ends)
    print("poller", poller.figures(), "function", pool.figures(), "broker restarts", broker.restarts)
    assert broker.restarts == 1 and pool.kills == 1
    check_queue(drain(run.sqs, run.queue), expected, exactly_once=False)
    check_delivery_order(poller, placed, records, ends)
    i = poller.outcomes.index("error")
    failed, retried = poller.deliveries[i], poller.deliveries[i + 1]
    n_failed = sum(len(o) for o in failed.values())
    assert n_failed > 1 and sum(len(o) for o in retried.values()) <= n_failed // 2, (failed, retried)
    assert all(offs[0] == failed[p][0] for p, offs in retried.items() if p in failed), (failed, retried)
    assert poller.stats.bisected == 1 and poller.discarded == []

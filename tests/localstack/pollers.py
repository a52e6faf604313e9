"""Event-source pollers that follow Lambda's event source mapping rules (docs/reference.md).

Kinesis: per shard one reader; with ParallelizationFactor F the shard's records are split by partition key
(md5 of the key, mod F) into F lanes, and each lane is its own in-order sequence of batches, so up to
shards x F invocations run at once while one key's records stay in order (one lane, one batch at a time).
Per lane: batches of up to BatchSize within MaximumBatchingWindowInSeconds (counted from the oldest record
waiting), ReportBatchItemFailures checkpointing at the lowest failed sequence number, retries bounded by
MaximumRetryAttempts (-1: none) and MaximumRecordAgeInSeconds, and the batch metadata to the on-failure queue.
SQS: one receiver gathers batches of up to BatchSize within the batching window and hands each to one of up to
MaximumConcurrency concurrent invocations; partial batch responses (an unknown id fails the batch), failed
messages come back after the visibility timeout, the queue's RedrivePolicy moves them to the DLQ after
maxReceiveCount. On a FIFO queue a message group with messages in flight is not received again until they are
deleted or visible again (SQS's rule, which moto implements), so one group is never in two batches at once.
Receiving from one thread keeps moto's unlocked ReceiveMessage from handing one message out twice.
Faults: duplicate deliveries (a batch delivered again before it is checkpointed/deleted) and, for SQS,
reordered batches.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time

from .runtime import InvocationError


class Stats:
    def __init__(self):
        self.batches = 0
        self.records = 0
        self.failed_invocations = 0
        self.partial_failures = 0
        self.duplicates = 0
        self.on_failure = 0
        self.lock = threading.Lock()

    def add(self, name: str, n: int = 1):
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def figures(self) -> dict:
        with self.lock:
            return {k: v for k, v in vars(self).items() if k != "lock"}


class _Lane:
    """Records of one shard whose partition keys hash to this lane, in sequence order, not yet checkpointed."""

    def __init__(self, shard: str, index: int):
        self.shard, self.index = shard, index
        self.buf: list = []      # [(arrival time, record)]
        self.busy = False        # a batch of this lane is being invoked
        self.batches = 0
        self.cond = threading.Condition()


class KinesisPoller:
    def __init__(self, res, host, *, batch_size=50, window_s=0.0, parallelization=1, max_retry_attempts=-1,
                 max_record_age_s=600.0, duplicate_rate=0.0, rng=None):
        self.res, self.host = res, host
        self.batch_size, self.window_s = batch_size, window_s
        self.parallelization = max(1, min(10, parallelization))
        self.max_retry_attempts, self.duplicate_rate = max_retry_attempts, duplicate_rate
        self.max_record_age_s = max_record_age_s
        self.rng = rng or random.Random(1)
        self.stats = Stats()
        self.stop_flag = threading.Event()
        shards = [s["ShardId"] for s in res.kinesis.list_shards(StreamName=res.stream_name)["Shards"]]
        self.lanes = {s: [_Lane(s, k) for k in range(self.parallelization)] for s in shards}
        self.caught_up = {s: False for s in shards}
        self.threads = [threading.Thread(target=self._read, args=(s,), daemon=True) for s in shards]
        self.threads += [threading.Thread(target=self._run, args=(lane,), daemon=True)
                         for lanes in self.lanes.values() for lane in lanes]
        for t in self.threads:
            t.start()

    def lane_of(self, partition_key: str) -> int:
        return int.from_bytes(hashlib.md5(partition_key.encode()).digest()[:8], "big") % self.parallelization

    def _exhausted(self, attempts: int, batch) -> bool:
        """Lambda's bounds: the retry count (unless -1), or the batch's oldest record older than the maximum age."""
        if 0 <= self.max_retry_attempts < attempts:
            return True
        oldest = batch[0]["ApproximateArrivalTimestamp"].timestamp()
        return time.time() - oldest > self.max_record_age_s

    def idle(self) -> bool:
        if not all(self.caught_up.values()):
            return False
        return all(not lane.buf and not lane.busy for lanes in self.lanes.values() for lane in lanes)

    def lanes_used(self) -> int:
        return sum(1 for lanes in self.lanes.values() for lane in lanes if lane.batches)

    def _event(self, shard, recs):
        return {"Records": [{
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r["PartitionKey"],
                "sequenceNumber": r["SequenceNumber"],
                "data": base64.b64encode(r["Data"]).decode(),
                "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard}:{r['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/cdc-ingest",
            "awsRegion": "us-east-1",
            "eventSourceARN": self.res.stream_arn,
        } for r in recs]}

    def _read(self, shard):
        """The shard's reader: GetRecords from TRIM_HORIZON on, each record to its partition key's lane."""
        kin = self.res.kinesis
        it = kin.get_shard_iterator(StreamName=self.res.stream_name, ShardId=shard,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        lanes = self.lanes[shard]
        while not self.stop_flag.is_set():
            try:
                r = kin.get_records(ShardIterator=it, Limit=1000)
            except Exception:
                if self.stop_flag.is_set():
                    return
                raise
            it = r["NextShardIterator"]
            now = time.time()
            for rec in r["Records"]:
                lane = lanes[self.lane_of(rec["PartitionKey"])]
                with lane.cond:
                    lane.buf.append((now, rec))
                    lane.cond.notify()
            self.caught_up[shard] = not r["Records"]
            if not r["Records"]:
                time.sleep(0.1)

    def _next_batch(self, lane: _Lane, at_once: bool):
        """Waits for a batch: BatchSize records, or the window since the oldest one passed (a retry or a
        redelivery goes at once)."""
        with lane.cond:
            while not self.stop_flag.is_set():
                if lane.buf:
                    wait = 0.0 if at_once or len(lane.buf) >= self.batch_size else \
                        lane.buf[0][0] + self.window_s - time.time()
                    if wait <= 0:
                        lane.busy = True
                        return [rec for _, rec in lane.buf[: self.batch_size]]
                else:
                    wait = 0.2
                lane.cond.wait(min(wait, 0.2))
        return None

    def _drop(self, lane: _Lane, n: int):
        """Checkpoint: the first n records of the lane are done (or given up)."""
        with lane.cond:
            del lane.buf[:n]

    def _run(self, lane: _Lane):
        attempts, again = 0, False
        while not self.stop_flag.is_set():
            batch = self._next_batch(lane, at_once=attempts > 0 or again)
            if batch is None:
                return
            try:
                attempts, again = self._deliver(lane, batch, attempts)
            finally:
                with lane.cond:
                    lane.busy = False

    def _deliver(self, lane: _Lane, batch, attempts):
        """One invocation of `batch`, then the checkpoint. Returns the lane's retry count and whether the same
        records are to be delivered again at once (a lost checkpoint)."""
        shard = lane.shard
        seqs = [x["SequenceNumber"] for x in batch]
        lane.batches += 1
        try:
            result = self.host.invoke(self._event(shard, batch))
            failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
            if failures is None and result is not None and not isinstance(result, dict):
                raise InvocationError("response is not a batch response")
            ids = [f.get("itemIdentifier") for f in (failures or [])]
            if any(not i or i not in seqs for i in ids):
                raise InvocationError(f"invalid batchItemFailures {ids}")  # fails the whole batch
        except InvocationError:
            if self.stop_flag.is_set():
                return attempts, False
            self.stats.add("failed_invocations")
            attempts += 1
            if self._exhausted(attempts, batch):
                self._on_failure(shard, batch)
                self._drop(lane, len(batch))
                return 0, False
            time.sleep(min(0.2 * attempts, 1.0))
            return attempts, False
        self.stats.add("batches")
        if not ids:
            self.stats.add("records", len(batch))
            if self.rng.random() < self.duplicate_rate:
                self.stats.add("duplicates")  # checkpoint lost: the same batch is delivered again
                return attempts, True
            self._drop(lane, len(batch))
            return 0, False
        self.stats.add("partial_failures")
        lowest = min(ids, key=int)
        cut = seqs.index(lowest)
        self.stats.add("records", cut)
        self._drop(lane, cut)
        rest = batch[cut:]
        attempts += 1
        if self._exhausted(attempts, rest):
            self._on_failure(shard, rest)
            self._drop(lane, len(rest))
            return 0, False
        time.sleep(min(0.2 * attempts, 1.0))
        return attempts, False

    def _on_failure(self, shard, batch):
        # Lambda's on-failure record for a stream: batch metadata only (docs/reference.md).
        self.stats.add("on_failure")
        self.res.sqs.send_message(QueueUrl=self.res.cdc_failure, MessageBody=json.dumps({
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": "cdc-ingest"},
            "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": batch[0]["SequenceNumber"],
                                 "endSequenceNumber": batch[-1]["SequenceNumber"], "batchSize": len(batch),
                                 "streamArn": self.res.stream_arn}}))

    def close(self):
        self.stop_flag.set()
        for lanes in self.lanes.values():
            for lane in lanes:
                with lane.cond:
                    lane.cond.notify_all()
        for t in self.threads:
            t.join(5)


class SqsPoller:
    def __init__(self, res, host, *, batch_size=10, window_s=0.3, max_concurrency=1, duplicate_rate=0.0,
                 reorder=False, rng=None, queue: str | None = None, queue_arn: str | None = None):
        """`queue`/`queue_arn`: the queue polled (default: the event queue)."""
        self.res, self.host = res, host
        self.queue = queue or res.event_queue
        self.queue_arn = queue_arn or res.event_queue_arn
        self.batch_size, self.window_s = min(batch_size, 10) if res.fifo else batch_size, window_s
        self.max_concurrency = max(1, max_concurrency)
        self.duplicate_rate, self.reorder = duplicate_rate, reorder
        self.rng = rng or random.Random(2)
        self.stats = Stats()
        self.stop_flag = threading.Event()
        self.slots = threading.Semaphore(self.max_concurrency)
        self.inflight = 0  # batches received and not yet settled (deleted or left to come back)
        self.peak = 0
        self._lock = threading.Lock()
        self.workers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def busy(self) -> bool:
        return self.inflight > 0

    def _event(self, msgs):
        out = []
        for m in msgs:
            attrs = {k: {"stringValue": v.get("StringValue"), "stringListValues": [], "binaryListValues": [],
                         "dataType": v.get("DataType", "String")}
                     for k, v in (m.get("MessageAttributes") or {}).items()}
            out.append({
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": attrs,
                "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arn,
                "awsRegion": "us-east-1",
            })
        return {"Records": out}

    def _receive_some(self, n: int, wait_s: int):
        r = self.res.sqs.receive_message(
            QueueUrl=self.queue, MaxNumberOfMessages=min(10, n), AttributeNames=["All"],
            MessageAttributeNames=["All"], WaitTimeSeconds=wait_s)
        return r.get("Messages", [])

    def _receive(self):
        """A batch: long-polls for the first messages, then gathers up to BatchSize until the window, counted
        from the first message, has passed."""
        msgs = []
        while not msgs and not self.stop_flag.is_set():
            msgs = self._receive_some(self.batch_size, 1)
        end = time.time() + self.window_s
        while msgs and len(msgs) < self.batch_size and not self.stop_flag.is_set():
            left = end - time.time()
            if left <= 0:
                break
            got = self._receive_some(self.batch_size - len(msgs), 1 if left >= 1 else 0)
            msgs.extend(got)
            if not got and left < 1:
                time.sleep(min(0.05, left))
        return msgs

    def _run(self):
        while not self.stop_flag.is_set():
            if not self.slots.acquire(timeout=0.2):  # at most max_concurrency batches in flight
                continue
            try:
                msgs = self._receive()
            except Exception:
                msgs = []
                if not self.stop_flag.is_set():
                    time.sleep(0.2)
            if not msgs:
                self.slots.release()
                continue
            # (While a batch is being gathered its messages are in flight on the queue: the depth counts them.)
            with self._lock:
                self.inflight += 1
                self.peak = max(self.peak, self.inflight)
            t = threading.Thread(target=self._batch, args=(msgs,), daemon=True)
            self.workers = [w for w in self.workers if w.is_alive()] + [t]
            t.start()

    def _done(self):
        with self._lock:
            self.inflight -= 1
        self.slots.release()

    def _batch(self, msgs):
        try:
            self._deliver(msgs)
        finally:
            self._done()

    def _deliver(self, msgs):
        if self.reorder and not self.res.fifo:
            self.rng.shuffle(msgs)
        rounds = 2 if self.rng.random() < self.duplicate_rate else 1
        ids = None
        for rnd in range(rounds):
            if rnd:
                self.stats.add("duplicates")
            try:
                result = self.host.invoke(self._event(msgs))
                ids = [f.get("itemIdentifier") for f in ((result or {}).get("batchItemFailures") or [])]
                known = {m["MessageId"] for m in msgs}
                if any(i not in known for i in ids):
                    raise InvocationError(f"unknown ids in batchItemFailures {ids}")
            except InvocationError:
                self.stats.add("failed_invocations")
                ids = None  # nothing deleted: every message comes back after the visibility timeout
            self.stats.add("batches")
        if ids is None or self.stop_flag.is_set():
            return
        if ids:
            self.stats.add("partial_failures")
        done = [m for m in msgs if m["MessageId"] not in set(ids)]
        self.stats.add("records", len(done))
        for i in range(0, len(done), 10):
            self.res.sqs.delete_message_batch(QueueUrl=self.queue, Entries=[
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done[i:i + 10])])

    def close(self):
        self.stop_flag.set()
        self.thread.join(5)
        for t in list(self.workers):
            t.join(5)

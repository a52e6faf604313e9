"""Event-source pollers that follow Lambda's event source mapping rules (docs/reference.md).

Kinesis: one poller per shard, batches in sequence order, ReportBatchItemFailures checkpointing at the lowest
failed sequence number, retries bounded by MaximumRetryAttempts (-1: none) and MaximumRecordAgeInSeconds, and the
batch metadata to the on-failure queue.
SQS: batches of up to 10, partial batch responses (an unknown id fails the batch), failed messages come back
after the visibility timeout, the queue's RedrivePolicy moves them to the DLQ after maxReceiveCount.
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

from .runtime import FunctionHost, InvocationError


class Stats:
    def __init__(self):
        self.batches = 0
        self.records = 0
        self.failed_invocations = 0
        self.partial_failures = 0
        self.duplicates = 0
        self.on_failure = 0
        self.lock = threading.Lock()


class KinesisPoller:
    def __init__(self, res, host: FunctionHost, *, batch_size=50, max_retry_attempts=-1, max_record_age_s=600.0,
                 duplicate_rate=0.0, rng=None):
        self.res, self.host = res, host
        self.batch_size, self.max_retry_attempts, self.duplicate_rate = batch_size, max_retry_attempts, duplicate_rate
        self.max_record_age_s = max_record_age_s
        self.rng = rng or random.Random(1)
        self.stats = Stats()
        self.stop_flag = threading.Event()
        self.invoke_lock = threading.Lock()
        shards = res.kinesis.list_shards(StreamName=res.stream_name)["Shards"]
        self.pending = {s["ShardId"]: 0 for s in shards}
        self.threads = [threading.Thread(target=self._run, args=(s["ShardId"],), daemon=True) for s in shards]
        for t in self.threads:
            t.start()

    def _exhausted(self, attempts: int, batch) -> bool:
        """Lambda's bounds: the retry count (unless -1), or the batch's oldest record older than the maximum age."""
        if 0 <= self.max_retry_attempts < attempts:
            return True
        oldest = batch[0]["ApproximateArrivalTimestamp"].timestamp()
        return time.time() - oldest > self.max_record_age_s

    def idle(self) -> bool:
        return all(v == 0 for v in self.pending.values())

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

    def _run(self, shard):
        kin = self.res.kinesis
        it = kin.get_shard_iterator(StreamName=self.res.stream_name, ShardId=shard,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        buf: list = []
        attempts = 0
        while not self.stop_flag.is_set():
            if len(buf) < self.batch_size:
                r = kin.get_records(ShardIterator=it, Limit=1000)
                it = r["NextShardIterator"]
                buf.extend(r["Records"])
            self.pending[shard] = len(buf)
            if not buf:
                time.sleep(0.1)
                continue
            batch = buf[: self.batch_size]
            seqs = [x["SequenceNumber"] for x in batch]
            try:
                with self.invoke_lock:  # one execution environment serves every shard in the local stack
                    result = self.host.invoke(self._event(shard, batch))
                failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
                if failures is None and result is not None and not isinstance(result, dict):
                    raise InvocationError("response is not a batch response")
                ids = [f.get("itemIdentifier") for f in (failures or [])]
                if any(not i or i not in seqs for i in ids):
                    raise InvocationError(f"invalid batchItemFailures {ids}")  # fails the whole batch
            except InvocationError:
                self.stats.failed_invocations += 1
                attempts += 1
                if self._exhausted(attempts, batch):
                    self._on_failure(shard, batch)
                    buf = buf[len(batch):]
                    attempts = 0
                else:
                    time.sleep(min(0.2 * attempts, 1.0))
                continue
            self.stats.batches += 1
            if not ids:
                self.stats.records += len(batch)
                if self.rng.random() < self.duplicate_rate:
                    self.stats.duplicates += 1  # checkpoint lost: the same batch is delivered again
                    continue
                buf = buf[len(batch):]
                attempts = 0
                continue
            self.stats.partial_failures += 1
            lowest = min(ids, key=int)
            cut = seqs.index(lowest)
            self.stats.records += cut
            buf = buf[cut:]
            attempts += 1
            if self._exhausted(attempts, buf):
                self._on_failure(shard, buf[: len(batch) - cut])
                buf = buf[len(batch) - cut:]
                attempts = 0
            else:
                time.sleep(min(0.2 * attempts, 1.0))

    def _on_failure(self, shard, batch):
        # Lambda's on-failure record for a stream: batch metadata only (docs/reference.md).
        self.stats.on_failure += 1
        self.res.sqs.send_message(QueueUrl=self.res.cdc_failure, MessageBody=json.dumps({
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": "cdc-ingest"},
            "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": batch[0]["SequenceNumber"],
                                 "endSequenceNumber": batch[-1]["SequenceNumber"], "batchSize": len(batch),
                                 "streamArn": self.res.stream_arn}}))

    def close(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(5)


class SqsPoller:
    def __init__(self, res, host: FunctionHost, *, batch_size=10, window_s=0.3, duplicate_rate=0.0,
                 reorder=False, rng=None):
        self.res, self.host = res, host
        self.batch_size, self.window_s = min(batch_size, 10) if res.fifo else batch_size, window_s
        self.duplicate_rate, self.reorder = duplicate_rate, reorder
        self.rng = rng or random.Random(2)
        self.stats = Stats()
        self.stop_flag = threading.Event()
        self.busy = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

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
                "eventSourceARN": self.res.event_queue_arn,
                "awsRegion": "us-east-1",
            })
        return {"Records": out}

    def _receive(self):
        msgs = []
        end = time.time() + self.window_s
        while len(msgs) < self.batch_size and time.time() < end and not self.stop_flag.is_set():
            r = self.res.sqs.receive_message(
                QueueUrl=self.res.event_queue, MaxNumberOfMessages=min(10, self.batch_size - len(msgs)),
                AttributeNames=["All"], MessageAttributeNames=["All"], WaitTimeSeconds=0)
            got = r.get("Messages", [])
            msgs.extend(got)
            if not got:
                time.sleep(0.05)
        return msgs

    def _run(self):
        while not self.stop_flag.is_set():
            msgs = self._receive()
            if not msgs:
                self.busy = False
                continue
            self.busy = True
            if self.reorder and not self.res.fifo:
                self.rng.shuffle(msgs)
            rounds = 2 if self.rng.random() < self.duplicate_rate else 1
            for rnd in range(rounds):
                if rnd:
                    self.stats.duplicates += 1
                try:
                    result = self.host.invoke(self._event(msgs))
                    ids = [f.get("itemIdentifier") for f in ((result or {}).get("batchItemFailures") or [])]
                    known = {m["MessageId"] for m in msgs}
                    if any(i not in known for i in ids):
                        raise InvocationError(f"unknown ids in batchItemFailures {ids}")
                except InvocationError:
                    self.stats.failed_invocations += 1
                    ids = None  # nothing deleted: every message comes back after the visibility timeout
                self.stats.batches += 1
            if ids is None:
                continue
            if ids:
                self.stats.partial_failures += 1
            done = [m for m in msgs if m["MessageId"] not in set(ids)]
            self.stats.records += len(done)
            for i in range(0, len(done), 10):
                self.res.sqs.delete_message_batch(QueueUrl=self.res.event_queue, Entries=[
                    {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done[i:i + 10])])

    def close(self):
        self.stop_flag.set()
        self.thread.join(5)

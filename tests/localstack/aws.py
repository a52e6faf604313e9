"""moto_server and the AWS resources of infra/template.yaml, provisioned the way the template sets them."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from .util import cpu_seconds, free_port, spawn, stop, drain

REGION = "us-east-1"
STACK = "mdm-sync-local"
# infra/template.yaml's FilterPolicy of both fan-out subscriptions: entity events, and messages without the attribute
# (Reltio's own SNS stream may not carry its headers as message attributes: unverified); the consumers skip what they
# do not take. moto honours `prefix` and `exists: false` together (test_simulators.py checks it).
ENTITY_EVENTS_FILTER = {"eventType": [{"prefix": "ENTIT"}, {"exists": False}]}
ROOT = Path(__file__).resolve().parents[2]


def _moto_command() -> list[str]:
    """tests/localstack/moto_server.py under this interpreter when it has moto (tools/moto_server_atomic.py's
    atomic DynamoDB requests, which concurrent crm-updater instances need for their ledger claims, plus speed-ups
    of moto's hot paths); else `$MOTO_SERVER` or moto_server on PATH. `$LOCALSTACK_MOTO_SERVER` names another."""
    explicit = os.environ.get("LOCALSTACK_MOTO_SERVER")
    if explicit:
        return [explicit]
    if importlib.util.find_spec("moto") is not None and (ROOT / "tools" / "moto_server_atomic.py").exists():
        return [sys.executable, str(Path(__file__).with_name("moto_server.py"))]
    for cand in (os.environ.get("MOTO_SERVER"), shutil.which("moto_server")):
        if cand and os.path.exists(cand):
            return [cand]
    raise RuntimeError("moto_server not found: run `make tools` (or set MOTO_SERVER)")


class Moto:
    def __init__(self, log_path: str | None = None, wait: bool = True):
        """Starts moto_server; `wait=False` returns at once (call `wait_ready()`), so that two start together."""
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        out = open(log_path, "ab") if log_path else open(os.devnull, "wb")
        self.proc = spawn([*_moto_command(), "-H", "127.0.0.1", "-p", str(self.port)], stdout=out, stderr=out)
        if wait:
            self.wait_ready()

    def wait_ready(self):
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            # Pollers, their concurrent batches and the workload share one client per service.
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=64),
        )

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid) if self.proc.poll() is None else None

    def close(self):
        stop(self.proc)


def endpoints_env(res: "Resources") -> dict:
    """The functions' endpoint settings (the AWS SDK honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>). The
    topic lives with the queues (moto delivers SNS to SQS within one server)."""
    env = {"AWS_ENDPOINT_URL": res.moto.endpoint}
    if res.sqs_moto is not res.moto:
        env["AWS_ENDPOINT_URL_SQS"] = res.sqs_moto.endpoint
        env["AWS_ENDPOINT_URL_SNS"] = res.sqs_moto.endpoint
    return env


class Resources:
    """Same resources and settings as infra/template.yaml (names prefixed by the local stack name)."""

    def __init__(self, moto: Moto, *, shards: int = 2, fifo: bool = False, visibility_timeout: int = 6,
                 max_receive_count: int = 10, sqs_moto: Moto | None = None):
        """`sqs_moto`: a second moto_server for every queue (the functions get AWS_ENDPOINT_URL_SQS); default:
        all services on `moto`."""
        self.moto = moto
        self.sqs_moto = sqs_moto or moto
        kin, ddb, sm = (moto.client(s) for s in ("kinesis", "dynamodb", "secretsmanager"))
        sqs = self.sqs_moto.client("sqs")
        self.sqs, self.kinesis, self.ddb, self.sm = sqs, kin, ddb, sm
        self.stream_name = f"{STACK}-cdc"
        kin.create_stream(StreamName=self.stream_name, ShardCount=shards)
        for _ in range(50):
            d = kin.describe_stream(StreamName=self.stream_name)["StreamDescription"]
            if d["StreamStatus"] == "ACTIVE":
                break
            time.sleep(0.1)
        self.stream_arn = d["StreamARN"]
        retention = {"MessageRetentionPeriod": "1209600"}
        self.cdc_dlq = sqs.create_queue(QueueName=f"{STACK}-cdc-dlq", Attributes=retention)["QueueUrl"]
        self.cdc_failure = sqs.create_queue(QueueName=f"{STACK}-cdc-stream-failures", Attributes=retention)["QueueUrl"]
        self.crm_dlq = sqs.create_queue(QueueName=f"{STACK}-crm-dlq", Attributes=retention)["QueueUrl"]
        suffix = ".fifo" if fifo else ""
        fifo_attrs = {"FifoQueue": "true"} if fifo else {}
        self.event_dlq = sqs.create_queue(QueueName=f"{STACK}-events-dlq{suffix}",
                                          Attributes={**retention, **fifo_attrs})["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.event_dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        # The template uses 370 s (6 x the function timeout); the local stack scales it down with the timeouts.
        self.event_queue = sqs.create_queue(
            QueueName=f"{STACK}-events{suffix}",
            Attributes={
                **fifo_attrs,
                "VisibilityTimeout": str(visibility_timeout),
                "MessageRetentionPeriod": "345600",
                "MaximumMessageSize": "1048576",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
            },
        )["QueueUrl"]
        self.event_queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.event_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.fifo = fifo
        # The letter store (the template's LetterStoreBucket): dead letters' payloads too large for their queue.
        self.letter_bucket = f"{STACK}-letters"
        self.s3 = moto.client("s3")
        self.s3.create_bucket(Bucket=self.letter_bucket)
        self.table = f"{STACK}-sync-state"
        ddb.create_table(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )

    def key_ledger(self) -> str:
        """The CDC key ledger's table (the template's CdcKeyLedgerTable), created on first use."""
        name = f"{STACK}-cdc-key-ledger"
        if name not in self.ddb.list_tables()["TableNames"]:
            self.ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                                  AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        return name

    def fan_out(self, *, analytics: bool, visibility_timeout: int, max_receive_count: int = 10):
        """The template's fan-out: the event topic (FIFO with the queues) with the event queue subscribed (raw
        message delivery, `ENTITY_EVENTS_FILTER`); with `analytics`, the analytics queue (+ redrive DLQ) subscribed
        too, the analytics DLQ, the dedup table, Firehose into an S3 bucket (moto: one object per PutRecordBatch,
        no dynamic partitioning, no compression) and the refresh signal's EventBridge rule with a queue target."""
        sns = self.sqs_moto.client("sns")
        self.sns = sns
        attrs = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if self.fifo else {}
        self.topic = sns.create_topic(Name=f"{STACK}-events" + (".fifo" if self.fifo else ""),
                                      Attributes=attrs)["TopicArn"]
        entity_events = json.dumps(ENTITY_EVENTS_FILTER)

        def subscribe(queue_arn: str):
            sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn,
                          Attributes={"RawMessageDelivery": "true", "FilterPolicy": entity_events})

        subscribe(self.event_queue_arn)
        self.analytics = analytics
        if not analytics:
            return
        sqs, suffix = self.sqs, ".fifo" if self.fifo else ""
        fifo_attrs = {"FifoQueue": "true"} if self.fifo else {}
        retention = {"MessageRetentionPeriod": "1209600"}
        self.analytics_queue_dlq = sqs.create_queue(QueueName=f"{STACK}-analytics-queue-dlq{suffix}",
                                                    Attributes={**retention, **fifo_attrs})["QueueUrl"]
        dlq_arn = self._arn(self.analytics_queue_dlq)
        self.analytics_queue = sqs.create_queue(QueueName=f"{STACK}-analytics{suffix}", Attributes={
            **fifo_attrs, "VisibilityTimeout": str(visibility_timeout), "MaximumMessageSize": "1048576",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
        })["QueueUrl"]
        self.analytics_queue_arn = self._arn(self.analytics_queue)
        self.analytics_dlq = sqs.create_queue(QueueName=f"{STACK}-analytics-dlq", Attributes=retention)["QueueUrl"]
        subscribe(self.analytics_queue_arn)
        self.analytics_table = f"{STACK}-analytics-dedup"
        self.ddb.create_table(TableName=self.analytics_table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        self.bucket = f"{STACK}-analytics"
        self.s3.create_bucket(Bucket=self.bucket)
        self.delivery_stream = f"{STACK}-analytics"
        self.moto.client("firehose").create_delivery_stream(
            DeliveryStreamName=self.delivery_stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/firehose",
                                                "BucketARN": f"arn:aws:s3:::{self.bucket}", "Prefix": "changes/"})
        # The refresh signal's rule targets a queue on the same moto as EventBridge (moto delivers in-process).
        self.signals_sqs = self.moto.client("sqs")
        self.signals = self.signals_sqs.create_queue(QueueName=f"{STACK}-refresh-signals")["QueueUrl"]
        signals_arn = self.signals_sqs.get_queue_attributes(
            QueueUrl=self.signals, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = self.moto.client("events")
        events.put_rule(Name=f"{STACK}-refresh", EventPattern=json.dumps(
            {"source": ["mdm-sync.analytics"], "detail-type": ["Analytics batch written"]}))
        events.put_targets(Rule=f"{STACK}-refresh", Targets=[{"Id": "signals", "Arn": signals_arn}])

    def _arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def landed_records(self, folder: str) -> list[dict]:
        """Every change record in the bucket, one per NDJSON line; each object is also written to `folder` (gzip or
        plain, as landed) for the warehouse SQL."""
        import gzip
        import os

        records = []
        paginator = self.s3.get_paginator("list_objects_v2")
        n = 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix="changes/"):
            for obj in page.get("Contents", []):
                data = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                gz = data[:2] == b"\x1f\x8b"
                n += 1
                with open(os.path.join(folder, f"{n:06d}.json" + (".gz" if gz else "")), "wb") as f:
                    f.write(data)
                text = gzip.decompress(data).decode() if gz else data.decode()
                records += [json.loads(line) for line in text.splitlines() if line.strip()]
        return records

    def stored_letter(self, key: str) -> bytes:
        """A dead letter's payload in the letter store."""
        return self.s3.get_object(Bucket=self.letter_bucket, Key=key)["Body"].read()

    def secret(self, name: str, value: dict) -> str:
        return self.sm.create_secret(Name=f"{STACK}/{name}", SecretString=json.dumps(value))["ARN"]

    def drain(self, url: str) -> list[dict]:
        """Every message currently in a queue (removed)."""
        return drain(self.sqs, url)

    def depth(self, url: str) -> int:
        a = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

"""Shared by the issue-7 figure scripts: paths, the functions' environments (docs/contract.md), realistic events and
the figures table. The local stack's pieces (tests/localstack: moto_server, the Reltio and Salesforce simulators,
the Runtime API host) are imported from the repository, not copied."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# $BENCH_RELEASE_DIR measures other builds of the binaries (a before/after comparison) with the same harness.
RELEASE = Path(os.environ.get("BENCH_RELEASE_DIR") or ROOT / "target" / "release")
FUNCTIONS = ("cdc-ingest", "webhook-receiver", "crm-updater", "stream-consumer", "analytics-sink")
LOCALSTACK = ROOT / "tests" / "localstack"
CDC_MAPPING = LOCALSTACK / "cdc-mapping.toml"
CRM_MAPPING = LOCALSTACK / "crm-mapping.toml"
ANALYTICS_MAPPING = LOCALSTACK / "analytics-mapping.toml"
WEBHOOK_SECRET = "bench-webhook-secret"
ENTITY_TYPE = "configuration/entityTypes/Individual"
SFDC = "configuration/sources/SFDC_CONTACT"


def binary(name: str) -> str:
    p = RELEASE / name
    if not p.exists():
        raise SystemExit(f"{p} missing: run `make release` first")
    return str(p)


def lambda_env(name: str, runtime_api: str) -> dict:
    """What Lambda sets for every function (as tests/localstack/runtime.py sets it)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUST_LOG": "info",
    }


def function_env(name: str, *, aws: str, reltio_api: str, reltio_auth: str, salesforce_secret: str,
                 reltio_secret: str, webhook_secret: str, queue: str, cdc_dlq: str, crm_dlq: str,
                 table: str, delivery_stream: str = "mdm-sync-analytics") -> dict:
    """docs/contract.md's settings of `name` (documented defaults left unset)."""
    common = {"AWS_ENDPOINT_URL": aws, "METRICS_NAMESPACE": "MdmSync/bench"}
    reltio = {"RELTIO_API_URL": reltio_api, "RELTIO_AUTH_URL": reltio_auth, "RELTIO_SECRET_ID": reltio_secret}
    if name == "cdc-ingest":
        return {**common, **reltio, "CDC_MAPPING_FILE": str(CDC_MAPPING), "CDC_DLQ_URL": cdc_dlq}
    if name == "webhook-receiver":
        return {**common, "WEBHOOK_SECRET_ID": webhook_secret, "EVENT_QUEUE_URL": queue}
    if name == "crm-updater":
        return {**common, **reltio, "SALESFORCE_SECRET_ID": salesforce_secret, "CRM_MAPPING_FILE": str(CRM_MAPPING),
                "SYNC_STATE_TABLE": table, "CRM_DLQ_URL": crm_dlq}
    if name == "stream-consumer":
        # Its poison records go to a queue of their own in the template; any queue does for the figures.
        return {**common, "EVENT_QUEUE_URL": queue, "STREAM_DLQ_URL": cdc_dlq}
    if name == "analytics-sink":
        # No dedup table and no Reltio fetch: the template's optional settings left unset.
        return {**common, "FIREHOSE_STREAM_NAME": delivery_stream, "ANALYTICS_MAPPING_FILE": str(ANALYTICS_MAPPING),
                "ANALYTICS_DLQ_URL": crm_dlq}
    raise ValueError(name)


class LocalStack:
    """moto_server (Secrets Manager, Kinesis, SQS, DynamoDB), the Reltio and Salesforce simulators and the
    secrets the functions read: the local stack's pieces, on 127.0.0.1, without its pollers and workload."""

    def __init__(self, prefix: str):
        from tests.localstack.aws import Moto, Resources
        from tests.localstack.reltio_sim import ReltioSim
        from tests.localstack.salesforce_sim import SalesforceSim

        self.log_dir = tempfile.mkdtemp(prefix=prefix)
        self.closers = []
        self.moto = Moto(os.path.join(self.log_dir, "moto.log"))
        self.closers.append(self.moto.close)
        self.res = res = Resources(self.moto, shards=1)
        res.fan_out(analytics=True, visibility_timeout=60)  # Firehose (into S3) for analytics-sink
        self.reltio = ReltioSim(token_ttl_s=3600)
        self.closers.append(self.reltio.server.close)
        self.sf = SalesforceSim(token_ttl_s=3600)
        self.closers.append(self.sf.server.close)
        self.secrets = {
            "reltio_secret": res.secret("reltio", {"client_id": self.reltio.client[0],
                                                   "client_secret": self.reltio.client[1]}),
            "webhook_secret": res.secret("webhook", {"secrets": [WEBHOOK_SECRET]}),
            "salesforce_secret": res.secret("salesforce", {"token_url": self.sf.token_url,
                                                           "client_id": self.sf.client[0],
                                                           "client_secret": self.sf.client[1]}),
        }

    def host(self, name: str, extra: dict | None = None, timeout_s: float = 60):
        """`name`'s release binary under a Runtime API host (one process = one execution environment)."""
        from tests.localstack.runtime import FunctionHost

        res = self.res
        env = function_env(name, aws=self.moto.endpoint, reltio_api=self.reltio.api_url,
                           reltio_auth=self.reltio.auth_url, queue=res.event_queue, cdc_dlq=res.cdc_dlq,
                           crm_dlq=res.crm_dlq, table=res.table, delivery_stream=res.delivery_stream,
                           **self.secrets)
        host = FunctionHost(name, binary(name), {**env, **(extra or {})}, timeout_s=timeout_s,
                            log_path=os.path.join(self.log_dir, f"{name}.log"))
        # Stopping the process resets its kept-alive Runtime API connection: not worth a traceback.
        host.server.httpd.handle_error = lambda *_: None
        return host

    def close(self):
        for c in reversed(self.closers):
            try:
                c()
            except Exception:
                pass
        self.closers = []


# ---------------------------------------------------------------------------------------------- events
def kafka_event(topic: str, values: list[tuple[str, bytes]], partition: int = 0, first_offset: int = 0) -> dict:
    """Lambda's self-managed Kafka event: `values` as (key, value) records of one partition, in offset order."""
    records = [{"topic": topic, "partition": partition, "offset": first_offset + i, "timestamp": 1764151200000 + i,
                "timestampType": "CREATE_TIME", "key": base64.b64encode(k.encode()).decode(),
                "value": base64.b64encode(v).decode(), "headers": []}
               for i, (k, v) in enumerate(values)]
    return {"eventSource": "SelfManagedKafka", "bootstrapServers": "127.0.0.1:9092",
            "records": {f"{topic}-{partition}": records}}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def dms_record(i: int, op: str = "insert", first: str | None = None, email: bool = False) -> bytes:
    """One AWS DMS JSON record (json-unformatted, with transaction details) of `public.customer` row `i`.
    No e-mail by default: the Reltio simulator's match rule compares every entity's e-mail on each change, which
    would make the simulator, not the function, the bottleneck of a 1,000-entity run."""
    ms = int(time.time() * 1000)
    row = {"id": i, "first_name": first or f"First{i}", "last_name": f"Last{i}",
           "email": f"person.{i}@example.com" if email else None, "phone": f"+1-512-555-{i % 10000:04d}"}
    meta = {"timestamp": _iso(ms), "record-type": "data", "operation": op, "partition-key-type": "primary-key",
            "partition-key-value": f"public.customer.{i}", "schema-name": "public", "table-name": "customer",
            "transaction-id": 1000 + i, "commit-timestamp": _iso(ms),
            "stream-position": f"00000002/7C00{i:04d}.3.00000002/7C00{i:04d}", "transaction-record-id": 1}
    rec = {"data": row, "metadata": meta}
    if op == "update":
        rec["before-image"] = {}
    return json.dumps(rec, separators=(",", ":")).encode()


def kinesis_event(stream_arn: str, shard: str, datas: list[tuple[str, bytes]], first_seq: int = 1) -> dict:
    """A Kinesis Lambda event of `(partition key, data)` records, in sequence order."""
    now = round(time.time(), 3)  # as Kinesis gives it: seconds with millisecond precision
    records = []
    for n, (pk, data) in enumerate(datas):
        seq = f"4959{first_seq + n:052d}"
        records.append({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": pk, "sequenceNumber": seq,
                        "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": now},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{seq}",
            "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/cdc-ingest",
            "awsRegion": "us-east-1", "eventSourceARN": stream_arn})
    return {"Records": records}


def reltio_event(e: int, version: int, contacts: list[str], *, last: str = "Doe", pad_to: int = 0) -> dict:
    """An ENTITY_CHANGED event with the full snapshot Reltio streams, grown with crosswalks to `pad_to` bytes."""
    uri = f"entities/0B{e:06d}"
    ms = int(time.time() * 1000)

    def attr(name, n, value):
        return {"type": f"{ENTITY_TYPE}/attributes/{name}", "ov": True, "value": value,
                "uri": f"{uri}/attributes/{name}/{n}"}

    xws = [{"uri": f"{uri}/crosswalks/{i}", "type": SFDC, "value": c, "createDate": ms, "updateDate": ms}
           for i, c in enumerate(contacts)]
    event = {"type": "ENTITY_CHANGED", "tenantId": "BENCH1", "objectVersion": version, "updatedTime": ms,
             "object": {"uri": uri, "type": ENTITY_TYPE, "createdTime": ms - 60_000, "updatedTime": ms,
                        "attributes": {"FirstName": [attr("FirstName", 1, f"Person{e}")],
                                       "LastName": [attr("LastName", 2, f"{last}{e}")],
                                       "Email": [attr("Email", 3, f"person.{e}@example.com")],
                                       "Phone": [attr("Phone", 4, f"+1-512-555-{e % 10000:04d}")]},
                        "crosswalks": xws},
             "ovChanged": True}
    n = 0
    while len(json.dumps(event)) < pad_to:
        n += 1
        xws.append({"uri": f"{uri}/crosswalks/c{n}", "type": "configuration/sources/CRM_DB",
                    "value": f"{1000 * e + n}", "sourceTable": "CUSTOMER", "createDate": ms, "updateDate": ms})
    return event


def event_id(event: dict) -> str:
    return f"{event['object']['uri'].split('/')[-1]}-{event['objectVersion']}-{event['type']}"


def sqs_event(queue_arn: str, events: list[dict]) -> dict:
    """An SQS Lambda event carrying Reltio events with docs/contract.md's message attributes."""
    records = []
    for ev in events:
        body = json.dumps(ev)
        attrs = {"eventType": ev["type"], "tenantId": ev["tenantId"], "sourceObjectUri": ev["object"]["uri"],
                 "objectVersion": str(ev["objectVersion"]), "eventId": event_id(ev)}
        records.append({
            "messageId": str(uuid.uuid4()), "receiptHandle": "rh-" + uuid.uuid4().hex, "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
            "messageAttributes": {k: {"stringValue": v, "stringListValues": [], "binaryListValues": [],
                                      "dataType": "String"} for k, v in attrs.items()},
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(), "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn, "awsRegion": "us-east-1"})
    return {"Records": records}


def webhook_event(body: bytes, secret: str, delivery_id: str) -> dict:
    """An API Gateway HTTP API (payload 2.0) event of a signed Reltio webhook, as tests/localstack/webhook.py
    builds it."""
    ts = int(time.time())
    sig = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    now = datetime.now(timezone.utc)
    headers = {"content-type": "application/json", "user-agent": "Reltio-Webhook/1.0",
               "x-reltio-timestamp": str(ts), "x-reltio-signature": sig, "x-reltio-event-id": delivery_id,
               "x-forwarded-proto": "https", "x-forwarded-port": "443", "x-forwarded-for": "203.0.113.7",
               "content-length": str(len(body))}
    return {
        "version": "2.0", "routeKey": "POST /webhook", "rawPath": "/webhook", "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench.execute-api.localhost",
            "domainPrefix": "bench",
            "http": {"method": "POST", "path": "/webhook", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "Reltio-Webhook/1.0"},
            "requestId": str(uuid.uuid4()), "routeKey": "POST /webhook", "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000)},
        "body": body.decode(), "isBase64Encoded": False}


# ---------------------------------------------------------------------------------------------- output
def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))]


def table(title: str, rows: list[tuple]) -> None:
    """A markdown table: figure | measured | target (| notes)."""
    print(f"\n### {title}\n")
    print("| figure | measured | target | notes |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        r = tuple(r) + ("",) * (4 - len(r))
        print("| " + " | ".join(str(x) for x in r) + " |")
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "" if ok else "  NOT MET"

"""Starts and stops what runs in the local stack: two moto_servers with the template's resources, the Reltio and
Salesforce simulators, the Firehose gate, the Kafka broker, and each function's release binary as a FunctionPool
under the Runtime API stand-in, with the template's settings (scaled down) in its environment."""
from __future__ import annotations

import os
from pathlib import Path

from .aws import Moto, Resources, endpoints_env
from .faults import Faults
from .reltio_sim import ReltioSim
from .runtime import FunctionPool
from .salesforce_sim import SalesforceSim
from .scenario import SHARDS, Scenario
from .util import close_all

HERE = Path(__file__).resolve().parent
WEBHOOK_SECRET = "local-stack-webhook-secret"
API_VERSION = "v66.0"


def binary(s: Scenario, name: str) -> str | None:
    p = Path(s.target_dir) / name
    return str(p) if p.exists() else None


class Processes:
    """Every process and server of one run. `start()` starts them (the functions' instances start on demand);
    `close()` stops all of them at once, also when `start()` failed half way."""

    def __init__(self, s: Scenario, es: dict, log_dir: str):
        self.s, self.es, self.log_dir = s, es, log_dir
        self.closers = []  # closed together at the end
        self.hosts: dict[str, FunctionPool] = {}
        self.firehose_gate = None
        self.broker = None
        self.stream_dlq = self.stream_failures = None

    def log(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.log")

    def start(self):
        self._start_aws()
        self._start_simulators()
        self._start_functions()

    def close(self):
        def quietly(c):
            try:
                c()
            except Exception:
                pass

        close_all([lambda c=c: quietly(c) for c in self.closers])
        self.closers = []

    def _start_aws(self):
        s, es = self.s, self.es
        # Two moto_servers, one for the queues and one for Kinesis, DynamoDB and Secrets Manager: one Python
        # process for all of them was the local stack's bottleneck under load.
        self.moto = Moto(self.log("moto"), wait=False)
        self.closers.append(self.moto.close)
        self.moto_sqs = Moto(self.log("moto-sqs"), wait=False)
        self.closers.append(self.moto_sqs.close)
        self.moto.wait_ready()
        self.moto_sqs.wait_ready()
        self.res = Resources(self.moto, sqs_moto=self.moto_sqs, shards=SHARDS, fifo=s.fifo,
                             visibility_timeout=es["sqs"]["visibility_timeout_s"])
        if s.fanout:
            self.res.fan_out(analytics=s.analytics, visibility_timeout=es["sqs"]["visibility_timeout_s"])

    def _start_simulators(self):
        s = self.s
        faults_r = Faults(error_rate=s.fault_rate, drop_rate=s.drop_rate, latency_ms=s.latency_ms, seed=s.seed)
        faults_s = Faults(error_rate=s.fault_rate, drop_rate=s.drop_rate, latency_ms=s.latency_ms, seed=s.seed + 1)
        self.reltio = ReltioSim(faults_r, token_ttl_s=s.token_ttl_s)
        if s.fail_500:
            self.reltio.fail_500["1000"] = s.fail_500
        self.closers.append(self.reltio.close)
        self.sf = SalesforceSim(faults_s, token_ttl_s=s.token_ttl_s)
        self.closers.append(self.sf.close)

    # ------------------------------------------------------------------ the functions
    def _reltio_env(self, tag: str) -> dict:
        """Each execution environment talks to the simulators on listeners of its own, so that a kill waits for
        that environment's own first downstream request (and the report can tell the environments apart)."""
        api, auth = self.reltio.listener(tag)
        return {"RELTIO_API_URL": api, "RELTIO_AUTH_URL": auth}

    def _crm_env(self, i: int) -> dict:
        tag = f"crm-updater#{i}"
        secret = self.res.secret(f"salesforce-{i}", {"token_url": self.sf.listener(tag), **self._sf_client})
        return {**self._reltio_env(tag), "SALESFORCE_SECRET_ID": secret}

    def _topic_env(self) -> dict:
        """EVENT_TOPIC_ARN when the stack fans out (the receivers publish there instead of the event queue)."""
        topic = getattr(self.res, "topic", None)
        return {"EVENT_TOPIC_ARN": topic} if topic else {}

    def _pool(self, name: str, path: str, env: dict, timeout_s: float, **kw) -> FunctionPool:
        pool = FunctionPool(name, path, env, timeout_s=timeout_s, size=self.es["instances"][name],
                            log_path=self.log(name), **kw)
        self.hosts[name] = pool
        self.closers.append(pool.close)
        return pool

    def _start_functions(self):
        s, res, reltio = self.s, self.res, self.reltio
        reltio_secret = res.secret("reltio", {"client_id": reltio.client[0], "client_secret": reltio.client[1]})
        self._webhook_secret = res.secret("webhook", {"secrets": [WEBHOOK_SECRET, "previous-secret"]})
        self._sf_client = {"client_id": self.sf.client[0], "client_secret": self.sf.client[1]}
        # JSON logs, as Lambda's advanced logging controls give them: the report follows a change through them.
        self._common = {**endpoints_env(res), "RUST_LOG": "info", "AWS_LAMBDA_LOG_FORMAT": "JSON",
                        "METRICS_NAMESPACE": "MdmSync/local", "RELTIO_SECRET_ID": reltio_secret,
                        "LETTER_STORE_BUCKET": res.letter_bucket}
        common = self._common
        cdc = binary(s, "cdc-ingest")
        if not cdc:
            raise RuntimeError(f"{s.target_dir}/cdc-ingest missing: run `cargo build --release -p cdc-ingest`")
        self._pool("cdc-ingest", cdc, {
            **common, "CDC_MAPPING_FILE": str(HERE / "cdc-mapping.toml"), "CDC_DLQ_URL": res.cdc_dlq,
            "RELTIO_BATCH_SIZE": "10", **({"CDC_KEY_LEDGER_TABLE": res.key_ledger()} if s.cdc_key_ledger else {})},
            timeout_s=30, env_for=lambda i: self._reltio_env(f"cdc-ingest#{i}"),
            probe_for=lambda i: lambda: reltio.calls_of(f"cdc-ingest#{i}", "POST /entities"))
        crm = binary(s, "crm-updater")
        if crm:
            self._pool("crm-updater", crm, {
                **common, "SALESFORCE_API_VERSION": API_VERSION,
                "CRM_MAPPING_FILE": str(HERE / "crm-mapping.toml"), "SYNC_STATE_TABLE": res.table,
                "CRM_DLQ_URL": res.crm_dlq,
                # The ledger lease outlives an invocation; locally it is scaled down with the timeout (300 s
                # would hold a killed invocation's entities for 5 minutes, past maxReceiveCount).
                "CRM_LEASE_SECONDS": str(self.es["sqs"]["crm_lease_s"])}, timeout_s=s.crm_timeout_s,
                env_for=self._crm_env, probe_for=lambda i: lambda: self.sf.calls_of(f"crm-updater#{i}"))
        wh = binary(s, "webhook-receiver")
        if s.path == "webhook" and wh:
            self._pool("webhook-receiver", wh, {
                **common, "WEBHOOK_SECRET_ID": self._webhook_secret, "EVENT_QUEUE_URL": res.event_queue,
                **self._topic_env(), "WEBHOOK_REQUIRE_TIMESTAMP": "true"}, timeout_s=10)
        elif s.path == "kafka":
            self._start_kafka()
        sink = binary(s, "analytics-sink")
        if getattr(res, "analytics", False) and sink:
            self._start_analytics(sink)

    def _start_kafka(self):
        """Reltio's Kafka stream: the Tansu broker (its log in moto's S3 when it is to restart), the stream DLQ,
        the template's stream failure queue (the Kafka event source's on-failure destination) and stream-consumer."""
        from .kafka import KafkaBroker

        sc = binary(self.s, "stream-consumer")
        if not sc:
            raise RuntimeError(f"{self.s.target_dir}/stream-consumer missing: run `make release`")
        res = self.res
        s3 = None
        if self.s.restart_broker:  # a broker that can restart with its log: kept in moto's S3
            bucket = f"{res.stream_name}-tansu".lower()
            self.moto.client("s3").create_bucket(Bucket=bucket)
            s3 = (self.moto.endpoint, bucket)
        self.broker = KafkaBroker(self.log("tansu"), s3=s3)
        self.closers.append(self.broker.close)
        self.stream_dlq = res.sqs.create_queue(QueueName=f"{res.stream_name}-stream-dlq")["QueueUrl"]
        self.stream_failures = res.sqs.create_queue(QueueName=f"{res.stream_name}-stream-failures")["QueueUrl"]
        self._pool("stream-consumer", sc, {
            **self._common, "EVENT_QUEUE_URL": res.event_queue, **self._topic_env(),
            "STREAM_DLQ_URL": self.stream_dlq}, timeout_s=10)

    def _start_analytics(self, sink: str):
        """analytics-sink, writing to Firehose through the gate that fails a share of each batch's records (moto
        never fails a record; Firehose can) when the scenario injects faults."""
        s, res = self.s, self.res
        rate = s.fault_rate if s.firehose_fault_rate is None else s.firehose_fault_rate
        gate = {}
        if rate > 0:
            from .firehose_gate import FirehoseGate
            self.firehose_gate = FirehoseGate(self.moto.port, rate, seed=s.seed + 3)
            self.closers.append(self.firehose_gate.close)
            gate = {"AWS_ENDPOINT_URL_FIREHOSE": self.firehose_gate.url}
        self._pool("analytics-sink", sink, {
            **self._common, **gate, "FIREHOSE_STREAM_NAME": res.delivery_stream,
            "ANALYTICS_MAPPING_FILE": str(HERE / "analytics-mapping.toml"),
            "ANALYTICS_DLQ_URL": res.analytics_dlq, "ANALYTICS_DEDUP_TABLE": res.analytics_table,
            "ANALYTICS_EVENT_BUS": "default", **self._reltio_env("analytics-sink")}, timeout_s=s.crm_timeout_s)

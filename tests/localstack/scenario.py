"""What a local stack run is: its options (`Scenario`) and the event source and concurrency settings they give
(`event_sources`; the defaults are infra/template.yaml's event source mappings)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 2


@dataclass
class Scenario:
    persons: int = 20
    seed: int = 42
    bad_inputs: bool = False
    fault_rate: float = 0.0          # share of transient errors at Reltio and Salesforce
    drop_rate: float = 0.0           # share of dropped connections at Reltio and Salesforce
    latency_ms: tuple = (0, 0)
    duplicate_rate: float = 0.0      # pollers and the webhook sender deliver some batches twice
    reorder: bool = False            # SQS batches shuffled; several webhook senders in parallel
    kill: tuple = ()                 # functions killed mid-batch once (at the start of phase 2)
    kinesis_max_retries: int = -1    # MaximumRetryAttempts of the Kinesis event source (-1: bounded by age only)
    kinesis_max_age_s: float = 600.0 # MaximumRecordAgeInSeconds (scaled down from the template's day)
    reltio_outage_s: float = 0.0     # Reltio answers every call with `reltio_outage_status` for this long (phase 1)
    reltio_outage_status: int = 503
    late_merge: bool = False         # workload: merges whose loser is objectVersions ahead of the winner
    partial_images: bool = False     # workload: Contact updates carry the key and the changed column only
    fail_500: int = 0                # Reltio answers 500 to this many POSTs carrying customer 1000's crosswalk
    path: str = "webhook"            # "webhook" (signed webhooks → receiver), "native" (Reltio's own stream into
                                     # the fan-out topic; without it, onto the event queue) or "kafka" (Reltio's
                                     # Kafka stream on Tansu → stream-consumer → SQS)
    reltio_format: str = "zip"       # native path: the destination's format, "json" or "zip" (JSON_ZIP_BASE64)
    payload: str = "snapshot"        # native path: payload type, "snapshot", "snapshot-with-delta", "deltas" or
                                     # "skip" (skipPayload)
    fifo: bool = False
    restart_broker: bool = False     # kafka path: the broker keeps its log in S3 (moto) and is restarted in phase 2
    cdc_key_ledger: bool = False     # the template's CdcKeyLedger: cdc-ingest skips changes older than those applied
    fanout: bool = True              # the template's event topic: the receivers publish once, each consumer has a queue
    analytics: bool = True           # analytics-sink on its own subscription queue, Firehose into S3, DuckDB checks
    firehose_fault_rate: float | None = None  # share of records Firehose fails in a PutRecordBatch (None: fault_rate)
    # Event sources and concurrency; the defaults are infra/template.yaml's event source mappings.
    cdc_batch_size: int = 500          # CdcBatchSize
    cdc_window_s: float = 1.0          # CdcBatchWindowSeconds
    cdc_parallelization: int = 1       # CdcParallelizationFactor (1-10): concurrent batches per shard
    crm_batch_size: int | None = None  # CrmBatchSize 100 (FIFO: 10)
    crm_window_s: float | None = None  # MaximumBatchingWindowInSeconds 5 (FIFO: none)
    crm_concurrency: int = 5           # ScalingConfig.MaximumConcurrency (CrmMaximumConcurrency)
    analytics_batch_size: int = 500    # AnalyticsBatchSize (FIFO: 10)
    analytics_window_s: float = 10.0   # the analytics event source's batching window
    analytics_concurrency: int = 2     # AnalyticsMaximumConcurrency
    webhook_concurrency: int = 10      # webhook-receiver environments (the template reserves none)
    webhook_senders: int | None = None # Reltio's concurrent webhook deliveries (None: webhook_concurrency)
    one_instance: bool = False         # one execution environment per function, one webhook sender
    rate: float | None = None          # records per second the workload puts (None: each phase at once)
    # crm-updater's timeout, ledger lease and the event queue's visibility timeout keep the template's order
    # (timeout 60 s <= lease 300 s < visibility 370 s), scaled down so that a killed batch comes back soon.
    crm_timeout_s: int = 15            # a batch of 100 takes 4-6 s, at times over 10 s, on 2 loaded cores
    visibility_timeout_s: int | None = None  # None: the crm timeout + the batching window + 1 s
    token_ttl_s: int = 20
    settle_timeout_s: float = 150.0
    target_dir: str = os.environ.get("LOCALSTACK_TARGET_DIR", str(ROOT / "target" / "release"))
    log_dir: str | None = None
    progress: bool = True


def event_sources(s: Scenario) -> dict:
    """The event source and concurrency settings a scenario runs with (Scenario's defaults: the template's)."""
    one = s.one_instance
    pf = 1 if one else max(1, min(10, s.cdc_parallelization))
    senders = s.webhook_senders or (1 if one else s.webhook_concurrency)
    if s.reorder:
        senders = max(senders, 3)  # parallel senders reorder one entity's events
    window = s.crm_window_s if s.crm_window_s is not None else (0.0 if s.fifo else 5.0)
    return {
        "kinesis": {"shards": SHARDS, "batch_size": s.cdc_batch_size, "window_s": s.cdc_window_s,
                    "parallelization_factor": pf},
        "sqs": {"fifo": s.fifo,
                "batch_size": min(10, s.crm_batch_size or 10) if s.fifo else (s.crm_batch_size or 100),
                "window_s": window, "max_concurrency": 1 if one else max(1, s.crm_concurrency),
                # A batch's messages stay invisible while it is gathered and invoked, and until the leases of an
                # invocation that died have expired (lease = timeout locally).
                "visibility_timeout_s": s.visibility_timeout_s or s.crm_timeout_s + round(window) + 1,
                "crm_timeout_s": s.crm_timeout_s, "crm_lease_s": s.crm_timeout_s},
        "webhook": {"concurrency": 1 if one else max(1, s.webhook_concurrency), "senders": senders},
        "analytics": {"batch_size": min(10, s.analytics_batch_size) if s.fifo else s.analytics_batch_size,
                      "window_s": 0.0 if s.fifo else s.analytics_window_s,
                      "max_concurrency": 1 if one else max(1, s.analytics_concurrency)},
        "instances": {"cdc-ingest": 1 if one else SHARDS * pf,
                      "crm-updater": 1 if one else max(1, s.crm_concurrency),
                      "webhook-receiver": 1 if one else max(1, s.webhook_concurrency),
                      # One batch per partition at a time (3 partitions); the harness's poller runs one at a time.
                      "stream-consumer": 1,
                      "analytics-sink": 1 if one else max(1, s.analytics_concurrency)},
    }

"""End-to-end tests of the whole pipeline on the local stack (`make e2e`, part of `make test`).

They run the release binaries in target/release (built by `make e2e`). When functions/crm-updater exists its
binary is required, and the Salesforce leg (Contacts equal to Reltio's golden records, merges re-pointing
children) is checked too.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from .stack import ROOT, Scenario, format_report, run

TARGET = Path(os.environ.get("LOCALSTACK_TARGET_DIR", ROOT / "target" / "release"))
FUNCTIONS = [p.name for p in (ROOT / "functions").iterdir() if (p / "Cargo.toml").exists()]


@pytest.fixture(scope="module", autouse=True)
def release_binaries():
    missing = [f for f in FUNCTIONS if not (TARGET / f).exists()]
    assert not missing, f"release binaries missing: {missing} (run `make release`)"


# The tests run every function with the template's concurrency (Kinesis: 2 shards x parallelization factor,
# 5 crm-updater instances, 10 webhook-receiver instances) but with the small batches and windows the
# single-instance harness used (Kinesis 50 records, no window; SQS 10 messages within 0.3 s; crm-updater timeout
# 10 s), so that a 20-person workload still makes many batches (for duplicates, partial failures and kills to
# land on) and the suite stays short. The template's batches and windows: `python -m tests.localstack`.
SMALL_BATCHES = dict(cdc_batch_size=50, cdc_window_s=0.0, crm_batch_size=10, crm_window_s=0.3, crm_timeout_s=10,
                     analytics_batch_size=10, analytics_window_s=0.3)


def _run(tmp_path, **kw) -> "Report":
    kw = {**SMALL_BATCHES, **kw}
    rep = run(Scenario(target_dir=str(TARGET), log_dir=str(tmp_path / "logs"), progress=False, **kw))
    print(format_report(rep))
    return rep


def test_a_clean_workload_keeps_every_invariant_and_leaves_every_dlq_empty(tmp_path):
    rep = _run(tmp_path, persons=20)
    assert rep.ok, rep.failures
    assert all(n == 0 for n in rep.figures["dlq_depth"].values()), rep.figures["dlq_depth"]
    assert rep.figures["merges"] >= 10
    assert rep.figures["events_enqueued"] == rep.figures["events_emitted"]
    if "crm-updater" in FUNCTIONS:
        assert rep.figures["contacts_matching_golden"] >= 20
    # The fan-out's second consumer: one change record per event on S3, the warehouse views equal to Reltio.
    a = rep.figures["analytics"]
    assert a["distinct events"] == rep.figures["events_emitted"] == a["records"], a
    assert a["current rows"] == rep.figures["entities_live"] and a["history rows"] == a["distinct events"], a
    assert a["refresh signals"] >= 1, a
    if "crm-updater" in FUNCTIONS:
        _assert_changes_are_followed_by_their_ids(rep, every=True)


def _assert_changes_are_followed_by_their_ids(rep, every: bool, every_event: bool = False):
    """The functions' hand-over logs join: crm-updater's applied event and analytics-sink's change record name the
    event id (and the trace, when their message carries it) of the invocation that enqueued it, whose entity URI
    cdc-ingest logged with the source change. `every`: all applied events join (not so when an enqueuer is killed
    between its send and its log line, or, under dropped connections, when cdc-ingest never got the answer naming
    an entity that was merged away before its retry). `every_event`: all applied and recorded events join their
    event, cdc-ingest's lines aside (Reltio's own stream: no enqueuer of ours to be killed)."""
    t = rep.figures["trace"]
    assert t["applied"] > 0
    if every:
        assert t["joined"] == t["applied"], t["unjoined"][:5]
    else:
        assert t["joined"] > 0, t["unjoined"][:5]
    if every or every_event:
        assert t["sourced"] == t["applied"], t["unjoined"][:5]
        assert t["recorded_joined"] == t["recorded"] > 0, t
    path = t["path"]
    assert re.fullmatch(r"\w+\.\w+/\S+@\S+", path["cdc-ingest"]["correlation_id"]), path  # table/key@time
    assert path["crm-updater"]["contact"], path
    enqueuer = rep.figures["trace_enqueuer"]
    assert path["crm-updater"]["event_id"] == path[enqueuer]["event_id"], path
    upstream = path["crm-updater"]["upstream_trace"]
    # Through the fan-out topic moto carries no trace header (AWS does, with the topic's active tracing).
    assert upstream is None or upstream == path[enqueuer]["trace"], path


def test_under_faults_duplicates_reordering_and_a_killed_function_nothing_is_lost(tmp_path):
    # On Reltio's own stream as Reltio sends it by default: zipped snapshots (JSON_ZIP_BASE64) published to the
    # fan-out topic with Reltio's headers only, some twice, from parallel publishers (out of order). The
    # webhook-receiver's kill is test_concurrent_instances'.
    rep = _run(tmp_path, persons=20, seed=7, bad_inputs=True, fault_rate=0.2, drop_rate=0.03,
               latency_ms=(0, 20), duplicate_rate=0.15, reorder=True, fail_500=2, path="native", partial_images=True,
               kill=tuple(f for f in ("cdc-ingest", "crm-updater") if f in FUNCTIONS))
    assert rep.ok, rep.failures
    native = rep.figures["native"]
    assert (native["destination"], native["format"], native["payload"]) == ("topic", "zip", "snapshot"), native
    assert native["duplicates"] > 0, native
    # Compressed Contact updates were partial writes (the invariants: every crosswalk keeps its other attributes,
    # every Contact equals its golden record).
    assert rep.figures["api_calls"]["reltio"].get("POST /entities partialOverride", 0) > 0, rep.figures["api_calls"]
    inj = rep.figures["faults_injected"]["reltio"]
    assert sum(inj.values()) > 0, "faults were injected at Reltio"
    assert rep.figures["pollers"]["kinesis"]["duplicates"] > 0
    # Firehose failed a share of the change records (partial PutRecordBatch failures): every event is still
    # recorded (invariant 7), and the warehouse views still equal Reltio.
    assert rep.figures["analytics"]["firehose record failures injected"] > 0, rep.figures["analytics"]
    # The scheduled 500s became batch item failures: the poller retried from the failed sequence number.
    assert rep.figures["pollers"]["kinesis"]["partial_failures"] >= 1
    # Only the deliberate bad inputs reached a DLQ (the counts are asserted inside the report's invariants).
    assert rep.figures["dlq_depth"]["events-dlq"] == 0
    assert rep.figures["dlq_depth"]["cdc-stream-failures"] == 0
    if "crm-updater" in FUNCTIONS:
        # No function of ours enqueues: every event applied or recorded joins the event Reltio published.
        _assert_changes_are_followed_by_their_ids(rep, every=False, every_event=True)


def test_bad_inputs_end_where_the_contract_says_and_nothing_else_is_lost(tmp_path):
    rep = _run(tmp_path, persons=10, seed=11, bad_inputs=True)
    assert rep.ok, rep.failures
    # Malformed DMS records (one of 300 KB) and a record without its key: cdc-ingest's DLQ, each with its reason.
    dead = [json.loads(b) for b in rep.dlq["cdc-dlq"]]
    assert len({d["sequenceNumber"] for d in dead}) == 3
    assert any("recordBase64" in d and "JSON" in d["reason"] for d in dead), dead
    assert any(d.get("table") == "public.customer" and "key" in d["reason"] for d in dead), dead
    assert all(d["function"] == "cdc-ingest" and d["sequenceNumber"] for d in dead)
    # The 300 KB one does not fit a letter: its letter points at the letter store, which holds its exact bytes (the
    # invariants read the object back).
    stored = [d["recordOmitted"] for d in dead if d.get("recordOmitted", {}).get("bucket")]
    assert stored and all(p["bytes"] == 300_026 and p["key"].startswith("cdc-ingest/") for p in stored), dead
    # The unmapped table was skipped, not dead-lettered: cdc-ingest counted it.
    log = (tmp_path / "logs" / "cdc-ingest.log").read_text(errors="replace")
    assert "SkippedUnmapped" in log
    # The forged webhook was refused (401) and never enqueued (the queue checks find no unknown event id).
    assert rep.figures["webhook"]["forged"] == [401]
    if "crm-updater" in FUNCTIONS:
        dead = [json.loads(b) for b in rep.dlq["crm-dlq"]]
        assert len({d["messageId"] for d in dead}) == 1, dead
        assert dead[0]["eventId"] == "bad-1" and "not a Reltio event" in dead[0]["reason"]


def test_the_native_stream_path_into_a_fifo_queue_keeps_every_invariant(tmp_path):
    # Reltio's own stream with the DELTAS payload type in plain JSON: no event carries a snapshot, so crm-updater
    # and analytics-sink fetch each entity from the Reltio simulator (a merged loser's URI resolves to the winner).
    rep = _run(tmp_path, persons=10, seed=5, path="native", fifo=True, duplicate_rate=0.1, payload="deltas",
               reltio_format="json")
    assert rep.ok, rep.failures
    native = rep.figures["native"]
    assert (native["destination"], native["format"], native["payload"]) == ("topic", "json", "deltas"), native
    changes = sum(n for t, n in rep.figures["events_by_type"].items() if t in ("ENTITY_CREATED", "ENTITY_CHANGED"))
    assert rep.figures["api_calls"]["reltio"].get("GET entity", 0) >= changes > 0, rep.figures["api_calls"]
    if "crm-updater" in FUNCTIONS:
        _assert_changes_are_followed_by_their_ids(rep, every=True)


def test_reltios_kafka_stream_path_keeps_every_invariant_under_faults_duplicates_a_kill_and_a_broker_restart(
        tmp_path):
    # Reltio's events on a Tansu topic (some produced twice; one entity's events in one partition, the partitions
    # interleaved), stream-consumer fed by the Kafka poller (one of its invocations killed mid-batch, bisect on),
    # a poison record on the topic, the broker restarted (its log in S3) while phase 2 is produced, faults at
    # Reltio and Salesforce, reordered SQS batches: every invariant of the webhook path, the poison record alone in
    # the stream DLQ, nothing on the on-failure queue, no consumer lag left.
    rep = _run(tmp_path, persons=20, seed=11, path="kafka", bad_inputs=True, fault_rate=0.2, drop_rate=0.03,
               duplicate_rate=0.15, reorder=True, restart_broker=True,
               kill=tuple(f for f in ("stream-consumer", "crm-updater") if f in FUNCTIONS))
    assert rep.ok, rep.failures
    k = rep.figures["kafka"]
    assert k["duplicates_produced"] > 0 and k["final_consumer_lag"] == 0 and k["max_consumer_lag"] > 0, k
    assert rep.figures["dlq_depth_stream"] >= 1
    assert rep.figures["invocations"]["stream-consumer"]["killed"] == 1
    assert k["broker_restarts"] == 1 and rep.figures["stream_failure_batches"] == 0, k
    _assert_changes_are_followed_by_their_ids(rep, every=False)


def test_a_record_that_keeps_failing_goes_to_the_on_failure_queue_after_bounded_retries(tmp_path):
    # Reltio answers 500 to every POST of customer 1000: cdc-ingest reports it as a batch item failure each time;
    # after MaximumRetryAttempts the poller sends the batch metadata to the on-failure queue and discards the
    # rest of that batch (Lambda's rule), and the shard moves on: later records are applied.
    rep = _run(tmp_path, persons=6, seed=3, fail_500=10_000, kinesis_max_retries=2)
    assert any("CRM_DB/1000 " in f and f.startswith("lost change") for f in rep.failures), rep.failures
    assert rep.figures["dlq_depth"]["cdc-stream-failures"] >= 1
    info = json.loads(rep.dlq["cdc-stream-failures"][0])["KinesisBatchInfo"]
    assert info["shardId"] and info["startSequenceNumber"] and info["streamArn"]
    kinds = ("lost change", "stale write", "Kinesis on-failure queue", "Contact", "events never enqueued")
    assert all(f.startswith(kinds) or "Contact" in f for f in rep.failures), rep.failures
    crosswalk_failures = [f for f in rep.failures if f.startswith(("lost change", "stale write"))]
    assert len(crosswalk_failures) < rep.figures["changes_produced"] / 3, "the shard was not blocked"
    assert rep.figures["pollers"]["kinesis"]["on_failure"] >= 1


@pytest.mark.parametrize("status", [503, 401])
def test_a_reltio_outage_longer_than_the_in_invocation_retries_loses_nothing(tmp_path, status):
    # Reltio (API and token endpoint) answers `status` to everything for 35 s: longer than an invocation's own
    # retries (the local cdc-ingest times out at 30 s). The stream's retries are bounded by record age, not by
    # a count: once Reltio is back every change is applied, in order, and no failure queue holds anything.
    rep = _run(tmp_path, persons=6, seed=17, reltio_outage_s=35, reltio_outage_status=status)
    assert rep.ok, rep.failures
    assert rep.figures["faults_injected"]["reltio"].get(f"outage {status}", 0) > 0
    assert all(n == 0 for n in rep.figures["dlq_depth"].values()), rep.figures["dlq_depth"]
    assert rep.figures["pollers"]["kinesis"]["on_failure"] == 0


def test_a_change_after_a_merge_whose_loser_was_versions_ahead_reaches_salesforce(tmp_path):
    if "crm-updater" not in FUNCTIONS:
        pytest.skip("needs crm-updater")
    rep = _run(tmp_path, persons=10, seed=13, late_merge=True)
    assert rep.ok, rep.failures


def test_concurrent_instances_keep_each_keys_order_and_lose_nothing(tmp_path):
    # Kinesis parallelization factor 4 (8 concurrent batches over 2 shards, each partition key in one of them),
    # 5 crm-updater and 10 webhook-receiver instances, parallel webhook senders, duplicates, reordered SQS
    # batches, and one instance of cdc-ingest, of crm-updater and of webhook-receiver killed mid-batch (the others
    # keep going; the killed one is started again; the webhook is delivered again). Every invariant holds, and per
    # crosswalk key the writes reach Reltio in the source's order.
    kill = tuple(f for f in ("cdc-ingest", "crm-updater", "webhook-receiver") if f in FUNCTIONS)
    rep = _run(tmp_path, persons=20, seed=29, cdc_parallelization=4, duplicate_rate=0.1, reorder=True, kill=kill)
    assert rep.ok, rep.failures
    inv, kinesis = rep.figures["invocations"], rep.figures["pollers"]["kinesis"]
    assert kinesis["lanes_used"] >= 4, kinesis
    assert inv["cdc-ingest"]["peak_concurrent"] >= 2, inv["cdc-ingest"]
    assert rep.figures["reltio_writes_out_of_source_order"] == 0
    for name in kill:
        assert inv[name]["killed"] == 1 and inv[name]["restarts"] >= 1, inv[name]
    if "crm-updater" in FUNCTIONS:
        assert inv["crm-updater"]["peak_concurrent"] >= 2, inv["crm-updater"]
    assert inv["webhook-receiver"]["peak_concurrent"] >= 2, inv["webhook-receiver"]

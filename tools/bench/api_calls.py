"""API calls per 1,000 records, counted by the local stack's simulators (issue 7).

1. Reltio: 1,000 DMS records of distinct customers written to a one-shard moto Kinesis stream and handed to
   cdc-ingest as one Kinesis batch (one invocation), RELTIO_BATCH_SIZE at its documented default; the Reltio
   simulator counts `POST /entities`. Target: ≤ ⌈1000 / RELTIO_BATCH_SIZE⌉.
2. Salesforce: 1,000 Contacts, each the SFDC_CONTACT crosswalk of its own Reltio entity (no merges), change
   once; Reltio's own SQS stream (zipped snapshots, its headers) puts the 1,000 ENTITY_CHANGED events on a
   standard moto queue and the local stack's SQS poller feeds crm-updater with the template's standard-queue
   settings (BatchSize 100, MaximumBatchingWindowInSeconds 5); no faults. The Salesforce simulator counts REST
   API calls (what `Sforce-Limit-Info` counts) and, apart, OAuth token requests. Target: ≤ 10 API calls.

    .venv/bin/python tools/bench/api_calls.py
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import table, verdict  # noqa: E402

from tests.localstack.pollers import KinesisPoller, SqsPoller  # noqa: E402
from tests.localstack.util import install_signal_handlers  # noqa: E402
from tests.localstack.native import NativeStream  # noqa: E402

RECORDS = 1000
RELTIO_BATCH_SIZE = 100  # cdc-ingest's DEFAULT_BATCH_SIZE (docs/contract.md: documented default; template: 100)
CRM_BATCH_SIZE, CRM_WINDOW_S = 100, 5  # infra/template.yaml: CrmBatchSize default, standard-queue window
SF_TARGET = 10


def reltio_posts(stack) -> tuple:
    res, reltio = stack.res, stack.reltio
    for i in range(0, RECORDS, 500):
        r = res.kinesis.put_records(StreamName=res.stream_name, Records=[
            {"PartitionKey": f"public.customer.{k}", "Data": common.dms_record(k)} for k in range(i, i + 500)])
        assert r.get("FailedRecordCount", 0) == 0, r
    shard = res.kinesis.list_shards(StreamName=res.stream_name)["Shards"][0]["ShardId"]
    it = res.kinesis.get_shard_iterator(StreamName=res.stream_name, ShardId=shard,
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    recs = []
    while len(recs) < RECORDS:
        r = res.kinesis.get_records(ShardIterator=it, Limit=10000)
        it = r["NextShardIterator"]
        recs.extend(r["Records"])
    # The poller's event builder (it only needs the stream ARN), without starting its shard threads.
    event = KinesisPoller._event(SimpleNamespace(res=res), shard, recs)
    host = stack.host("cdc-ingest")
    before = dict(reltio.calls)
    try:
        answer = host.invoke(event)
    finally:
        host.close()
    calls = {k: v - before.get(k, 0) for k, v in reltio.calls.items() if v != before.get(k, 0)}
    posts = calls.get("POST /entities", 0)
    target = math.ceil(RECORDS / RELTIO_BATCH_SIZE)
    written = sum(1 for k in reltio.writes if k[0].endswith("/CRM_DB"))
    failures = len((answer or {}).get("batchItemFailures") or [])
    notes = (f"one invocation of {len(recs)} records; {written} crosswalks written; {failures} batch item "
             f"failures; all Reltio calls: {calls}")
    return (f"Reltio POSTs per {RECORDS:,} CDC records in one Kinesis batch (RELTIO_BATCH_SIZE {RELTIO_BATCH_SIZE})",
            posts, f"<= {target}{verdict(posts <= target and failures == 0)}", notes)


def salesforce_calls(stack) -> tuple:
    res, reltio, sf = stack.res, stack.reltio, stack.sf
    ids = [f"003BC{n:013d}" for n in range(RECORDS)]
    for n, cid in enumerate(ids):
        sf.insert("Contact", {"FirstName": f"Person{n}", "LastName": "Before", "Email": None}, cid)

    def post(n, last):
        return reltio.post_entity({"type": common.ENTITY_TYPE, "crosswalks": [{"type": common.SFDC, "value": ids[n]}],
                                   "attributes": {"FirstName": [{"value": f"Person{n}"}],
                                                  "LastName": [{"value": last}],
                                                  "Phone": [{"value": f"+1-512-555-{n:04d}"}]}}, partial=False)

    reltio.sink = None
    for n in range(RECORDS):  # the entities exist before the run (no events)
        post(n, "Before")
    reltio.sink = NativeStream(res).submit
    t0 = time.time()
    for n in range(RECORDS):  # one change each: 1,000 ENTITY_CHANGED events on the standard queue
        post(n, f"After{n}")
    reltio.sink = None
    queued = res.depth(res.event_queue)
    merges_before = reltio.merges
    host = stack.host("crm-updater")
    before = dict(sf.calls)
    poller = SqsPoller(res, host, batch_size=CRM_BATCH_SIZE, window_s=CRM_WINDOW_S)
    try:
        end, quiet = time.time() + 300, 0
        while time.time() < end and quiet < 4:
            quiet = quiet + 1 if not poller.busy and res.depth(res.event_queue) == 0 else 0
            time.sleep(0.25)
    finally:
        poller.close()
        host.close()
    calls = {k: v - before.get(k, 0) for k, v in sf.calls.items() if v != before.get(k, 0)}
    tokens = calls.pop("token", 0)
    api = sum(calls.values())
    updated = sum(1 for cid in ids if (sf.contact(cid) or {}).get("LastName", "").startswith("After"))
    st = poller.stats
    notes = (f"{queued} events queued; {st.batches} invocations ({st.records} messages done, "
             f"{st.failed_invocations} failed, {st.partial_failures} partial); {updated} Contacts updated; "
             f"merges {reltio.merges - merges_before}; calls {calls}; OAuth token requests {tokens} (not API "
             f"calls); {time.time() - t0:.0f} s")
    return (f"Salesforce API calls per {RECORDS:,} Contact updates (standard queue, BatchSize {CRM_BATCH_SIZE}, "
            f"window {CRM_WINDOW_S} s)", api, f"<= {SF_TARGET}{verdict(api <= SF_TARGET and updated == RECORDS)}",
            notes)


def main():
    install_signal_handlers()
    stack = common.LocalStack("mdm-bench-calls-")
    try:
        rows = [reltio_posts(stack), salesforce_calls(stack)]
    finally:
        stack.close()
    table("API calls (local stack, no faults)", rows)
    print(f"\nlogs: {stack.log_dir}")


if __name__ == "__main__":
    main()

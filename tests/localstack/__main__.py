"""`python -m tests.localstack [options]`: run the local stack once and print the report (exit 1 on a failed
invariant)."""
import argparse
import json
import sys

from .reltio_stream import FORMATS, PAYLOADS
from .stack import Scenario, format_report, run
from .util import install_signal_handlers


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.localstack", description=__doc__)
    p.add_argument("--persons", type=int, default=20)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bad-inputs", action="store_true", help="add a malformed DMS record, a record without its key, "
                   "an unmapped table, a forged webhook and a non-event queue message")
    p.add_argument("--faults", type=float, default=0.0, help="share of transient errors at Reltio and Salesforce")
    p.add_argument("--drops", type=float, default=0.0, help="share of dropped connections at both APIs")
    p.add_argument("--duplicates", type=float, default=0.0)
    p.add_argument("--reorder", action="store_true")
    p.add_argument("--kill", action="append", default=[], help="function one of whose instances is killed mid-batch, once (repeatable)")
    p.add_argument("--fail-500", type=int, default=0, help="Reltio answers 500 to the first N POSTs of one key "
                   "(exercises Kinesis checkpointing at the failed sequence number)")
    p.add_argument("--late-merge", action="store_true", help="merges whose loser is objectVersions ahead of the "
                   "winner, followed by a change of the winner (see README: known crm-updater issue)")
    p.add_argument("--partial-images", action="store_true", help="Contact updates carry the key and the changed "
                   "column only (GoldenGate's compressed updates): partial writes that keep the other attributes")
    p.add_argument("--path", choices=["webhook", "native", "kafka"], default="webhook",
                   help="how Reltio delivers its events: signed webhooks to webhook-receiver, its own stream "
                   "(SNS) into the fan-out topic (with --no-fanout: SQS, onto the event queue), or its Kafka "
                   "stream to stream-consumer")
    p.add_argument("--reltio-format", choices=FORMATS, default="zip", help="native path: the "
                   "destination's format, JSON or JSON_ZIP_BASE64 (gzip, then base64; the default)")
    p.add_argument("--payload", choices=PAYLOADS, default="snapshot",
                   help="native path: the destination's payload type (SNAPSHOT, SNAPSHOT_WITH_DELTA, DELTAS, or "
                   "skipPayload); without a snapshot the consumers fetch the entity from Reltio")
    p.add_argument("--fifo", action="store_true")
    p.add_argument("--no-fanout", action="store_true", help="the receivers send straight to the event queue (no "
                   "topic; no analytics)")
    p.add_argument("--no-analytics", action="store_true", help="the topic with the crm-updater alone")
    p.add_argument("--key-ledger", action="store_true", help="cdc-ingest with the CDC key ledger (CdcKeyLedger=true)")
    p.add_argument("--restart-broker", action="store_true", help="kafka path: keep the broker's log in S3 (moto) "
                   "and restart the broker while phase 2 is put")
    d = Scenario()
    g = p.add_argument_group("event sources and concurrency (defaults: infra/template.yaml's event source mappings)")
    g.add_argument("--parallelization-factor", type=int, default=d.cdc_parallelization, metavar="F",
                   help="Kinesis batches per shard at once, 1-10 (cdc-ingest runs up to 2 shards x F instances)")
    g.add_argument("--cdc-batch-size", type=int, default=d.cdc_batch_size)
    g.add_argument("--cdc-window", type=float, default=d.cdc_window_s, metavar="S", help="Kinesis batching window")
    g.add_argument("--crm-concurrency", type=int, default=d.crm_concurrency, metavar="N",
                   help="SQS MaximumConcurrency: crm-updater instances")
    g.add_argument("--crm-batch-size", type=int, help="default 100 (FIFO: 10)")
    g.add_argument("--crm-window", type=float, metavar="S", help="SQS batching window, default 5 (FIFO: 0)")
    g.add_argument("--webhook-concurrency", type=int, default=d.webhook_concurrency, metavar="N",
                   help="webhook-receiver instances (the template reserves none)")
    g.add_argument("--webhook-senders", type=int, metavar="N",
                   help="webhooks Reltio delivers at once (default: the webhook concurrency)")
    g.add_argument("--one-instance", action="store_true", help="one instance of each function and one webhook "
                   "sender (Kinesis parallelization factor 1, both shards share the cdc-ingest instance)")
    g.add_argument("--visibility-timeout", type=int, metavar="S", help="event queue visibility timeout (default: "
                   "the crm-updater timeout + the crm batching window + 1 s; template 370 s)")
    g.add_argument("--crm-timeout", type=int, default=d.crm_timeout_s, metavar="S",
                   help="crm-updater timeout and ledger lease (template: 60 s and 300 s)")
    g.add_argument("--rate", type=float, metavar="R", help="records per second the workload puts (default: each "
                   "phase at once)")
    p.add_argument("--target-dir", default=d.target_dir, help="where the functions' release binaries are "
                   "(default: $LOCALSTACK_TARGET_DIR, else target/release)")
    p.add_argument("--log-dir")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args(argv)
    install_signal_handlers()
    s = Scenario(persons=a.persons, seed=a.seed, bad_inputs=a.bad_inputs, fault_rate=a.faults, drop_rate=a.drops,
                 duplicate_rate=a.duplicates, reorder=a.reorder, kill=tuple(a.kill), fail_500=a.fail_500,
                 late_merge=a.late_merge, partial_images=a.partial_images, path=a.path, reltio_format=a.reltio_format, payload=a.payload,
                 fifo=a.fifo, restart_broker=a.restart_broker,
                 cdc_key_ledger=a.key_ledger,
                 fanout=not a.no_fanout, analytics=not (a.no_analytics or a.no_fanout), log_dir=a.log_dir,
                 cdc_parallelization=a.parallelization_factor, cdc_batch_size=a.cdc_batch_size,
                 cdc_window_s=a.cdc_window, crm_concurrency=a.crm_concurrency, crm_batch_size=a.crm_batch_size,
                 crm_window_s=a.crm_window, webhook_concurrency=a.webhook_concurrency,
                 webhook_senders=a.webhook_senders, one_instance=a.one_instance, rate=a.rate,
                 visibility_timeout_s=a.visibility_timeout, crm_timeout_s=a.crm_timeout,
                 target_dir=a.target_dir)
    rep = run(s)
    print(format_report(rep))
    if a.json:
        print(json.dumps(rep.figures, indent=2, default=str))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The local stack under load: 200 persons through the whole pipeline (tests/localstack), clean and with faults, and
the variants that show what limits it. Prints one markdown table: latency source commit → Salesforce (p50 / p95 /
p99) beside the issue's targets, throughput, and whether every invariant held.

    .venv/bin/python tools/bench/localstack_load.py              # clean and faults (about 4 minutes)
    .venv/bin/python tools/bench/localstack_load.py --all        # and the variants (about 15 minutes)
    .venv/bin/python tools/bench/localstack_load.py --persons 50 --only clean

Uses the release binaries in target/release as they are (`make release` builds them). Timings depend on the
machine and on what else runs on it: run it on an otherwise idle machine, and more than once.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import common  # noqa: F401  (puts the repository on sys.path)
from tests.localstack.stack import Scenario, run  # noqa: E402
from tests.localstack.util import install_signal_handlers  # noqa: E402

FAULTS = dict(fault_rate=0.2, drop_rate=0.03, duplicate_rate=0.15, reorder=True,
              kill=("cdc-ingest", "crm-updater", "webhook-receiver"))
SINGLE_INSTANCE_HARNESS = dict(one_instance=True, cdc_batch_size=50, cdc_window_s=0.0, crm_batch_size=10,
                               crm_window_s=0.3, crm_timeout_s=10)
# name -> (scenario settings, p99 target in ms or None, what it shows)
SCENARIOS = {
    "clean": ({}, 10_000, "template event source settings and concurrency"),
    "faults": (FAULTS, 30_000, "20 % transient errors, 3 % drops, 15 % duplicates, reordering, one kill each"),
    "fifo": (dict(fifo=True), None, "FIFO event queue: one entity's events in one batch at a time, batches of 10"),
    "crm-window-1s": (dict(crm_window_s=1.0), None, "SQS batching window 1 s instead of the template's 5 s"),
    "one-instance": (dict(one_instance=True), None, "one instance of each function, template batches"),
    "single-instance-harness": (SINGLE_INSTANCE_HARNESS, None, "as the harness ran before: one instance each, "
                                "Kinesis batches of 50, SQS batches of 10 within 0.3 s"),
    "paced-14": (dict(rate=14), None, "the workload puts 14 records/s instead of each phase at once"),
}
DEFAULT = ("clean", "faults")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--persons", type=int, default=200)
    p.add_argument("--all", action="store_true", help="every scenario, not only clean and faults")
    p.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="these scenarios (repeatable)")
    a = p.parse_args()
    install_signal_handlers()
    names = a.only or (list(SCENARIOS) if a.all else list(DEFAULT))
    rows = []
    for name in names:
        settings, target, what = SCENARIOS[name]
        t0 = time.time()
        rep = run(Scenario(persons=a.persons, progress=False, **settings))
        f = rep.figures
        lat = f.get("latency_ms", {}).get("source→salesforce") or {50: None, 95: None, 99: None}
        thr = f.get("throughput", {})
        load = os.getloadavg()[0]
        met = "" if target is None else ("met" if lat[99] is not None and lat[99] <= target else "NOT MET")
        rows.append((name, f"{lat[50]} / {lat[95]} / {lat[99]}", f"≤ {target}" if target else "", met,
                     thr.get("end to end (changes/s)"), thr.get("to Salesforce (changes/s)"),
                     "hold" if rep.ok else f"FAILED ({len(rep.failures)}): {rep.failures[0][:80]}",
                     f"{time.time() - t0:.0f} s, load {load:.1f}", what))
        print(f"{name}: done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"\n### Local stack under load ({a.persons} persons; ms; load = 1-minute load average at the end)\n")
    print("| scenario | source → Salesforce p50 / p95 / p99 | p99 target | | end to end (changes/s) | "
          "to Salesforce (changes/s) | invariants | run | what |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join("" if x is None else str(x) for x in r) + " |")


if __name__ == "__main__":
    main()

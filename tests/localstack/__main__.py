"""`python -m tests.localstack [options]`: run the local stack once and print the report (exit 1 on a failed
invariant)."""
import argparse
import json
import sys

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
    p.add_argument("--kill", action="append", default=[], help="function to kill mid-batch once (repeatable)")
    p.add_argument("--fail-500", type=int, default=0, help="Reltio answers 500 to the first N POSTs of one key "
                   "(exercises Kinesis checkpointing at the failed sequence number)")
    p.add_argument("--late-merge", action="store_true", help="merges whose loser is objectVersions ahead of the "
                   "winner, followed by a change of the winner (see README: known crm-updater issue)")
    p.add_argument("--path", choices=["webhook", "native"], default="webhook")
    p.add_argument("--fifo", action="store_true")
    p.add_argument("--log-dir")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args(argv)
    install_signal_handlers()
    s = Scenario(persons=a.persons, seed=a.seed, bad_inputs=a.bad_inputs, fault_rate=a.faults, drop_rate=a.drops,
                 duplicate_rate=a.duplicates, reorder=a.reorder, kill=tuple(a.kill), fail_500=a.fail_500, late_merge=a.late_merge, path=a.path, fifo=a.fifo,
                 log_dir=a.log_dir)
    rep = run(s)
    print(format_report(rep))
    if a.json:
        print(json.dumps(rep.figures, indent=2, default=str))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())

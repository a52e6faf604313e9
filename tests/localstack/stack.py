"""The local stack: starts every piece (processes.py), feeds the functions as AWS and Reltio do (sources.py), runs
a workload through it, checks the invariants (invariants.py), reports (report.py), and stops everything it started
(also on Ctrl-C or failure). `Stack` is the one handle the tests and the CLI use; `run` does all of it once."""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

from . import invariants
from . import report
from . import workload as wlmod
from .observed import Outcome
from .processes import Processes
from .report import Report, format_report  # noqa: F401 (the stack's report, for its callers)
from .scenario import ROOT, Scenario, event_sources  # noqa: F401 (the stack's settings, for its callers)
from .sources import EventSources
from .util import now_ms
from .webhook import WebhookDeliverer


class Stack:
    """One run's stack: `start()`, `run()` (the workload, then `check()`), `close()`. `settle()` waits until
    nothing is in flight; `check()` reads the end state into the report's figures and runs every invariant (the
    CLI's tests call it themselves after `run(check=False)` and their own steps)."""

    def __init__(self, s: Scenario):
        self.s = s
        self.log_dir = s.log_dir or tempfile.mkdtemp(prefix="mdm-localstack-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.es = event_sources(s)
        self.procs = Processes(s, self.es, self.log_dir)
        self.sources = EventSources(s, self.es, self.procs)

    # The pieces the tests reach for.
    @property
    def res(self):
        return self.procs.res

    @property
    def reltio(self):
        return self.procs.reltio

    @property
    def sf(self):
        return self.procs.sf

    @property
    def hosts(self):
        return self.procs.hosts

    @property
    def deliverer(self):
        return self.sources.deliverer

    def start(self):
        self.cpu0 = report.own_cpu()
        self.procs.start()
        self.sources.start()

    def close(self):
        """What feeds the functions first, one after the other; then every process and server at once."""
        self.sources.stop()
        self.procs.close()

    # ------------------------------------------------------------------ running
    def _progress(self, label, done, total):
        if not self.s.progress:
            return
        tty = sys.stderr.isatty()
        if not tty and getattr(self, "_last_label", None) == label:
            return
        self._last_label = label
        width = 30
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        sfw = sum(len(v) for v in self.sf.contact_writes.values())
        acc = len(self.deliverer.accepted)
        sys.stderr.write(f"\r[{bar}] {label:<22} reltio writes {sum(len(v) for v in self.reltio.writes.values()):4d}"
                         f"  events {len(self.reltio.events):4d}/{acc:4d} queued  contact writes {sfw:4d} " + ("" if tty else "\n"))
        sys.stderr.flush()

    def settle(self, label, done, total, timeout):
        """Waits until nothing is in flight (`EventSources.quiet`, four times in a row, 0.25 s apart); False when
        that did not happen within `timeout` seconds."""
        end = time.time() + timeout
        stable = 0
        while time.time() < end:
            self._progress(label, done, total)
            if self.sources.quiet():
                stable += 1
                if stable >= 4:
                    return True
            else:
                stable = 0
            time.sleep(0.25)
        return False

    def run(self, check: bool = True) -> Report:
        """Runs the workload and (`check`) checks the invariants, which drains the DLQs; without it the queues stay
        as the run left them (for the CLI's tests)."""
        s = self.s
        wl = wlmod.generate(persons=s.persons, seed=s.seed, bad_inputs=s.bad_inputs, late_merge=s.late_merge,
                              partial_images=s.partial_images)
        self.wl = wl
        for cid, fields in wl.contacts.items():
            self.sf.insert("Contact", fields, cid)
        for obj, fields in wl.children:
            self.sf.insert(obj, fields)
        rep = Report()
        t0 = time.time()
        total = len(wl.phases)
        put = 0
        self.phase_marks = []  # per phase: when its first record was put and when the last one was
        for i, phase in enumerate(wl.phases):
            if i == 1:
                for name in s.kill:
                    if name in self.hosts:
                        self.hosts[name].arm_kill()  # one environment, mid-batch; Lambda starts it again
            if i == 1 and s.restart_broker and self.procs.broker:
                # Restarted as phase 2 is put: its events reach the topic while the broker is down and after.
                threading.Thread(target=self.procs.broker.restart, kwargs={"down_s": 2.0}, daemon=True).start()
            if i == 0 and s.reltio_outage_s:
                self.reltio.outage(s.reltio_outage_s, s.reltio_outage_status)
            start = now_ms()
            put += wlmod.put_phase(self.res, phase, rate=s.rate)
            self.phase_marks.append((start, now_ms()))
            if not self.settle(f"phase {i + 1}/{total}", i, total, s.settle_timeout_s):
                rep.failures.append(f"phase {i + 1} did not settle within {s.settle_timeout_s} s")
                break
        if s.bad_inputs:
            self._put_bad_inputs()
            self.settle("bad inputs", total, total, 60)
        self._progress("done", total, total)
        if s.progress:
            sys.stderr.write("\n")
        rep.figures["wall_seconds"] = round(time.time() - t0, 1)
        rep.figures["records_put"] = put
        if not check:
            return rep
        o = self.check(wl, rep)
        report.add_trace(o, rep, self.enqueuer())
        return rep

    def _put_bad_inputs(self):
        """The bad inputs past the workload's own (its malformed, keyless and unmapped records): a forged webhook
        (its answer is checked with the invariants), a poison record on the Kafka stream, and a message that is not
        a Reltio event on the event queue and on the analytics queue."""
        s, res = self.s, self.res
        if isinstance(self.deliverer, WebhookDeliverer):
            self.deliverer.forge({"type": "ENTITY_CHANGED", "tenantId": "LOCAL1", "objectVersion": 999,
                                  "object": {"uri": "entities/FORGED", "type": "configuration/entityTypes/Individual",
                                             "attributes": {}, "crosswalks": []}})
        if s.path == "kafka":  # a record on the stream that is not a Reltio event: the stream DLQ's
            self.deliverer.produce_raw(b"entities/POISON", b"not a reltio event")
        # A message on the event queue that is not a Reltio event: the crm-updater must dead-letter it.
        res.sqs.send_message(QueueUrl=res.event_queue, MessageBody="not a reltio event",
                             MessageAttributes={"eventId": {"DataType": "String", "StringValue": "bad-1"}},
                             **({"MessageGroupId": "bad", "MessageDeduplicationId": "bad-1"} if s.fifo else {}))
        if self.sources.analytics_poller is not None:  # ... and on the analytics queue: its DLQ's
            res.sqs.send_message(
                QueueUrl=res.analytics_queue, MessageBody="not a reltio event",
                MessageAttributes={"eventId": {"DataType": "String", "StringValue": "bad-2"}},
                **({"MessageGroupId": "bad", "MessageDeduplicationId": "bad-2"} if s.fifo else {}))

    def enqueuer(self) -> str | None:
        """The function that puts Reltio's events on the event queue (none on the native path: Reltio's own stream
        publishes them)."""
        return {"webhook": "webhook-receiver", "kafka": "stream-consumer"}.get(self.s.path)

    def check(self, wl, rep: Report) -> Outcome:
        """The run's figures and every invariant's failures into `rep` (drains the DLQs); returns what was read."""
        o = Outcome(self, wl)
        report.add_figures(o, rep)
        rep.failures += invariants.check(o)
        return o


def run(s: Scenario) -> Report:
    st = Stack(s)
    try:
        st.start()
        return st.run()
    finally:
        st.close()

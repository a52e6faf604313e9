"""The local stack: starts every piece (processes.py), feeds the functions as AWS and Reltio do (sources.py), runs
a workload through it, checks the invariants, reports, and stops everything it started (also on Ctrl-C or
failure)."""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import trace
from . import workload as wlmod
from .processes import Processes
from .scenario import ROOT, Scenario, event_sources  # noqa: F401 (the stack's settings, for its callers)
from .sources import EventSources
from .util import drain, now_ms, percentiles
from .webhook import WebhookDeliverer

# Reltio attribute → Contact field, as tests/localstack/crm-mapping.toml maps them.
CONTACT_FIELDS = {"FirstName": "FirstName", "LastName": "LastName", "Email": "Email", "Phone": "Phone"}


@dataclass
class Report:
    figures: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    dlq: dict = field(default_factory=dict)

    @property
    def ok(self):
        return not self.failures


def _own_cpu() -> float:
    """CPU seconds this Python process (the pollers, simulators, senders, Runtime APIs) has used."""
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


class Stack:
    def __init__(self, s: Scenario):
        self.s = s
        self.log_dir = s.log_dir or tempfile.mkdtemp(prefix="mdm-localstack-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.es = event_sources(s)
        self.procs = Processes(s, self.es, self.log_dir)
        self.sources = EventSources(s, self.es, self.procs)

    def start(self):
        self._cpu0 = _own_cpu()
        self.procs.start()
        self.sources.start()
        # The pieces the run and the checks (and the tests) use.
        p, src = self.procs, self.sources
        self.moto, self.moto_sqs, self.res, self.reltio, self.sf = p.moto, p.moto_sqs, p.res, p.reltio, p.sf
        self.hosts, self.firehose_gate, self.stream_dlq, self.stream_failures = \
            p.hosts, p.firehose_gate, p.stream_dlq, p.stream_failures
        if p.broker:
            self.broker = p.broker
        self.deliverer, self.kinesis, self.kafka_poller = src.deliverer, src.kinesis, src.kafka_poller
        self.sqs_poller, self.analytics_poller = src.sqs_poller, src.analytics_poller

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
        wl = wlmod.generate(persons=s.persons, seed=s.seed, bad_inputs=s.bad_inputs, late_merge=s.late_merge)
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
            if i == 1 and s.restart_broker and getattr(self, "broker", None):
                # Restarted as phase 2 is put: its events reach the topic while the broker is down and after.
                import threading
                threading.Thread(target=self.broker.restart, kwargs={"down_s": 2.0}, daemon=True).start()
            if i == 0 and s.reltio_outage_s:
                self.reltio.outage(s.reltio_outage_s, s.reltio_outage_status)
            start = now_ms()
            put += wlmod.put_phase(self.res, phase, rate=s.rate)
            self.phase_marks.append((start, now_ms()))
            if not self.settle(f"phase {i + 1}/{total}", i, total, s.settle_timeout_s):
                rep.failures.append(f"phase {i + 1} did not settle within {s.settle_timeout_s} s")
                break
        if s.bad_inputs:
            if isinstance(self.deliverer, WebhookDeliverer):
                st = self.deliverer.forge({"type": "ENTITY_CHANGED", "tenantId": "LOCAL1", "objectVersion": 999,
                                           "object": {"uri": "entities/FORGED", "type": "configuration/entityTypes/Individual",
                                                      "attributes": {}, "crosswalks": []}})
                if st != 401:
                    rep.failures.append(f"forged webhook answered {st}, expected 401")
            if s.path == "kafka":  # a record on the stream that is not a Reltio event: the stream DLQ's
                self.deliverer.produce_raw(b"entities/POISON", b"not a reltio event")
            # A message on the event queue that is not a Reltio event: the crm-updater must dead-letter it.
            self.res.sqs.send_message(QueueUrl=self.res.event_queue, MessageBody="not a reltio event",
                                      MessageAttributes={"eventId": {"DataType": "String", "StringValue": "bad-1"}},
                                      **({"MessageGroupId": "bad", "MessageDeduplicationId": "bad-1"} if s.fifo else {}))
            if self.analytics_poller is not None:  # ... and on the analytics queue: its DLQ's
                self.res.sqs.send_message(
                    QueueUrl=self.res.analytics_queue, MessageBody="not a reltio event",
                    MessageAttributes={"eventId": {"DataType": "String", "StringValue": "bad-2"}},
                    **({"MessageGroupId": "bad", "MessageDeduplicationId": "bad-2"} if s.fifo else {}))
            self.settle("bad inputs", total, total, 60)
        self._progress("done", total, total)
        if s.progress:
            sys.stderr.write("\n")
        rep.figures["wall_seconds"] = round(time.time() - t0, 1)
        rep.figures["records_put"] = put
        if not check:
            return rep
        self.check(wl, rep)
        if self.enqueuer() and "crm-updater" in self.hosts:
            # Complete: the functions are idle once settled, and Rust flushes stdout at every line.
            rep.figures["trace"] = trace.follow(self.log_dir, self.enqueuer())
            rep.figures["trace_enqueuer"] = self.enqueuer()
        return rep

    def enqueuer(self) -> str | None:
        """The function that puts Reltio's events on the event queue (none on the native SQS path)."""
        return {"webhook": "webhook-receiver", "kafka": "stream-consumer"}.get(self.s.path)

    # ------------------------------------------------------------------ invariants and figures
    def check(self, wl, rep: Report):
        s, res, reltio, sf = self.s, self.res, self.reltio, self.sf
        f = rep.figures
        f["changes_produced"] = len([c for c in wl.changes if not any(c in x.also for x in wl.changes)])
        f["crosswalk_writes"] = sum(len(v) for v in reltio.writes.values())
        f["entities_live"] = len(reltio.live_entities())
        f["entities_created"] = len(reltio.entities)
        f["merges"] = reltio.merges
        f["events_emitted"] = len(reltio.events)
        f["events_enqueued"] = len(self.deliverer.accepted)
        f["api_calls"] = {"reltio": dict(reltio.calls), "salesforce": dict(sf.calls)}
        f["faults_injected"] = {"reltio": dict(reltio.faults.injected), "salesforce": dict(sf.faults.injected)}
        f["event_sources"] = self.es
        f["invocations"] = {n: h.figures() for n, h in self.hosts.items()}
        for name in s.kill:
            if name in self.hosts and self.hosts[name].kills != 1:
                rep.failures.append(f"{name} was to be killed mid-batch once, killed {self.hosts[name].kills} times")
        f["pollers"] = {"kinesis": {**self.kinesis.stats.figures(), "lanes_used": self.kinesis.lanes_used()}}
        if self.sqs_poller:
            f["pollers"]["sqs"] = {**self.sqs_poller.stats.figures(), "peak_concurrent": self.sqs_poller.peak}
        if self.analytics_poller:
            f["pollers"]["analytics sqs"] = {**self.analytics_poller.stats.figures(),
                                             "peak_concurrent": self.analytics_poller.peak}
        f["cpu_seconds"] = {"harness (python)": round(_own_cpu() - self._cpu0, 1),
                            "moto": round(self.moto.cpu() or 0, 1), "moto (SQS)": round(self.moto_sqs.cpu() or 0, 1),
                            **{n: round(h.cpu(), 1) for n, h in self.hosts.items()}}
        if s.path == "kafka":
            f["kafka"] = {**self.deliverer.figures(), "poller": self.kafka_poller.figures()}
            if self.kafka_poller.error:
                rep.failures.append(f"Kafka poller stopped: {self.kafka_poller.error}")
            failures = res.drain(self.stream_failures)
            f["stream_failure_batches"] = len(failures)
            if failures:
                rep.failures.append(f"Kafka on-failure queue holds {len(failures)} batches: "
                                    f"{[m['Body'][:200] for m in failures][:2]}")
            if s.restart_broker:
                f["kafka"]["broker_restarts"] = self.broker.restarts
                if self.broker.restarts != 1:
                    rep.failures.append(f"the broker was to restart once, restarted {self.broker.restarts} times")
            stream_dl = res.drain(self.stream_dlq)
            positions = {(json.loads(m["Body"]).get("partition"), json.loads(m["Body"]).get("offset"))
                         for m in stream_dl}
            f["dlq_depth_stream"] = len(stream_dl)
            if len(positions) != (1 if s.bad_inputs else 0):
                rep.failures.append(f"stream DLQ holds {len(positions)} distinct records, expected "
                                    f"{1 if s.bad_inputs else 0}: {[m['Body'][:200] for m in stream_dl][:3]}")
        if isinstance(self.deliverer, WebhookDeliverer):
            f["webhook"] = {"attempts": self.deliverer.attempts, "statuses": dict(self.deliverer.statuses),
                            "gave_up": len(self.deliverer.given_up), "forged": self.deliverer.forged}

        # 1. Reltio holds exactly the source's end state, crosswalk by crosswalk.
        history = {}
        for c in wl.changes:
            history.setdefault(c.key, []).append(c.expected)
        for key, exp in wl.expected.items():
            got = reltio.contribution(key)
            if got == "absent" or got != exp:
                kind = "stale write" if got in history[key][:-1] else "lost change"
                rep.failures.append(f"{kind}: crosswalk {key[0].split('/')[-1]}/{key[1]} holds {got}, source says {exp}")

        # 2. Every emitted event reached the queue; nothing forged did.
        emitted = {e["id"] for e in reltio.events}
        missing = emitted - set(self.deliverer.accepted)
        if missing:
            rep.failures.append(f"{len(missing)} Reltio events never enqueued (e.g. {sorted(missing)[:3]})")
        if getattr(self.deliverer, "given_up", None):
            rep.failures.append(f"webhook sender gave up on {len(self.deliverer.given_up)} events")

        # 3. Dead-letter queues: only the deliberate bad inputs, each with its reason.
        dl = {"cdc-dlq": res.drain(res.cdc_dlq), "cdc-stream-failures": res.drain(res.cdc_failure),
              "events-dlq": res.drain(res.event_dlq), "crm-dlq": res.drain(res.crm_dlq)}
        rep.dlq = {k: [m["Body"] for m in v] for k, v in dl.items()}
        f["dlq_depth"] = {k: len(v) for k, v in dl.items()}
        expected_cdc = sum(wl.bad.values())
        reasons = []
        for m in dl["cdc-dlq"]:
            try:
                reasons.append(json.loads(m["Body"]).get("reason", ""))
            except ValueError:
                reasons.append("<unreadable DLQ body>")
        f["cdc_dlq_reasons"] = reasons
        # A redelivered batch (at least once) can dead-letter the same record again: count distinct records.
        seqs = set()
        for m in dl["cdc-dlq"]:
            try:
                seqs.add(json.loads(m["Body"]).get("sequenceNumber"))
            except ValueError:
                seqs.add(m["Body"])
        f["cdc_dlq_distinct_records"] = len(seqs)
        if len(seqs) != expected_cdc:
            rep.failures.append(f"cdc DLQ holds {len(seqs)} distinct records, the workload deliberately caused "
                                f"{expected_cdc}: {reasons}")
        if dl["cdc-stream-failures"]:
            rep.failures.append(f"Kinesis on-failure queue holds {len(dl['cdc-stream-failures'])} batches")
        if dl["events-dlq"]:
            rep.failures.append(f"event DLQ holds {len(dl['events-dlq'])} messages: "
                                f"{[m['Body'][:120] for m in dl['events-dlq']][:3]}")
        if "crm-updater" in self.hosts:
            expected_crm = 1 if s.bad_inputs else 0
            crm_bodies = [m["Body"] for m in dl["crm-dlq"]]
            distinct = set()
            for b in crm_bodies:  # a redelivered message may be dead-lettered again: count distinct messages
                try:
                    distinct.add(json.loads(b).get("messageId") or b)
                except ValueError:
                    distinct.add(b)
            f["crm_dlq_distinct_messages"] = len(distinct)
            if len(distinct) != expected_crm:
                rep.failures.append(f"crm DLQ holds {len(crm_bodies)} messages, expected {expected_crm}: "
                                    f"{[b[:200] for b in crm_bodies][:3]}")
            self.check_salesforce(rep)
        else:
            rep.notes.append("crm-updater binary not built: the Salesforce leg was not run")
            self.check_queue_messages(rep)

        # Latency: source commit → Reltio write (cdc hop).
        cdc_lat = []
        first_write = {}
        for c in wl.changes:
            later = history[c.key][history[c.key].index(c.expected):] if c.expected in history[c.key] else [c.expected]
            for ms, state in reltio.writes.get(c.key, []):
                if ms >= c.commit_ms - 5 and state in later:
                    cdc_lat.append(ms - c.commit_ms)
                    first_write[id(c)] = ms
                    break
        ev_ms = {e["id"]: e["ms"] for e in reltio.events}
        q_lat = [self.deliverer.accepted[i] - ev_ms[i] for i in self.deliverer.accepted if i in ev_ms]
        f["latency_ms"] = {"source→reltio": percentiles(cdc_lat), "reltio→queue": percentiles(q_lat)}
        if hasattr(self, "_sf_lat"):
            f["latency_ms"]["reltio→salesforce"] = percentiles(self._sf_lat)
            overall = []
            for c in wl.changes:
                t_r = first_write.get(id(c))
                e = reltio.entity_of(c.key)
                if t_r is None or e is None:
                    continue
                t = self._sf_applied_at(e, t_r)
                if t is not None:
                    overall.append(t - c.commit_ms)
            f["latency_ms"]["source→salesforce"] = percentiles(overall)
            f["changes_reaching_salesforce"] = len(overall)
        # 7. The analytics sink: every emitted event recorded once on S3, the warehouse views equal Reltio.
        if self.analytics_poller is not None:
            self.check_analytics(rep)
        # 6. Per crosswalk key, the writes reach Reltio in the source's order (redeliveries repeat, never regress).
        f["reltio_writes_out_of_source_order"] = self._out_of_order_writes(history)
        if f["reltio_writes_out_of_source_order"]:
            rep.failures.append(f"{f['reltio_writes_out_of_source_order']} Reltio writes carried an older version of "
                                "their source row than a write before them (per-key order lost)")
        self._throughput(f)

    def _out_of_order_writes(self, history) -> int:
        """Writes to a crosswalk that carried an older version of its source row than a write before them (each
        partition key's records are delivered in order, so per key the versions only move forward)."""
        bad = 0
        for key, hist in history.items():
            high = -1
            for _, state in self.reltio.writes.get(key, []):
                idx = max((i for i, h in enumerate(hist) if h == state), default=None)
                if idx is None:
                    continue
                if idx < high and hist[high] != state:
                    bad += 1
                high = max(high, idx)
        return bad

    def _throughput(self, f):
        """Changes per second: while the workload puts them, and per stage while the stage is busy (per phase,
        from the phase's first put to the stage's last effect in it; the pauses in which a phase settles and
        the next one waits are left out)."""
        marks = getattr(self, "phase_marks", [])
        if not marks:
            return
        starts = [m[0] for m in marks] + [float("inf")]

        def busy_s(times):
            total = 0
            for i, (start, _) in enumerate(marks):
                inside = [t for t in times if starts[i] <= t < starts[i + 1]]
                if inside:
                    total += max(inside) - start
            return total / 1000

        stages = {
            "reltio writes": [ms for v in self.reltio.writes.values() for ms, _ in v],
            "events enqueued": list(self.deliverer.accepted.values()),
        }
        if "crm-updater" in self.hosts:
            stages["contact writes"] = [ms for v in self.sf.contact_writes.values() for ms, _ in v]
        changes = f["changes_produced"]
        put_s = sum(end - start for start, end in marks) / 1000
        out = {"workload put (changes/s)": round(changes / put_s, 1) if put_s else None}
        for name, times in stages.items():
            b = busy_s(times)
            out[f"{name} (/s)"] = round(len(times) / b, 1) if b else None
        e2e = busy_s([t for ts in stages.values() for t in ts])
        out["end to end (changes/s)"] = round(changes / e2e, 1) if e2e else None
        if "changes_reaching_salesforce" in f and stages.get("contact writes"):
            b = busy_s(stages["contact writes"])
            out["to Salesforce (changes/s)"] = round(f["changes_reaching_salesforce"] / b, 1) if b else None
        out["busy seconds"] = round(e2e, 1)
        out["wall clock (changes/s)"] = round(changes / f["wall_seconds"], 1) if f.get("wall_seconds") else None
        f["throughput"] = out

    def check_analytics(self, rep: Report):
        """Invariant 7: every event Reltio emitted is on S3 as one change record (matched by entity, version and
        type: the receivers' event ids are hashes of the signed events), nothing else is; the analytics DLQ holds
        only the deliberate bad input; and the shipped warehouse SQL (DuckDB) over the landed files gives, per live
        entity, its golden values as `current`, no `current` row for a merged-away entity, and one `history` row
        per distinct record."""
        from . import analytics_sql

        res, f = self.res, rep.figures
        folder = os.path.join(self.log_dir, "analytics-landed")
        os.makedirs(folder, exist_ok=True)
        records = res.landed_records(folder)
        ids = [r.get("event_id") for r in records]
        distinct = {r["event_id"]: r for r in records}
        landed = {(r["entity_uri"], str(r["object_version"]), r["event_type"]) for r in distinct.values()}
        emitted = {(e["uri"], str(e["version"]), e["type"]) for e in self.reltio.events}
        signals = len(drain(res.signals_sqs, res.signals))
        a = {"records": len(records), "distinct events": len(distinct), "duplicates": len(ids) - len(distinct),
             "objects": len(os.listdir(folder)), "refresh signals": signals,
             "firehose record failures injected": self.firehose_gate.injected if self.firehose_gate else 0}
        if emitted - landed:
            rep.failures.append(f"{len(emitted - landed)} emitted events have no change record "
                                f"(e.g. {sorted(emitted - landed)[:3]})")
        if landed - emitted:
            rep.failures.append(f"{len(landed - emitted)} change records match no emitted event "
                                f"(e.g. {sorted(landed - emitted)[:3]})")
        if records and not signals:
            rep.failures.append("records were written but no refresh signal reached its rule's target")
        dead = res.drain(res.analytics_dlq)
        expected_dead = 1 if self.s.bad_inputs else 0
        if len({json.loads(m["Body"]).get("messageId") for m in dead}) != expected_dead:
            rep.failures.append(f"analytics DLQ holds {len(dead)} messages, expected {expected_dead}: "
                                f"{[m['Body'][:160] for m in dead][:3]}")
        stuck = res.drain(res.analytics_queue_dlq)
        if stuck:
            rep.failures.append(f"analytics queue DLQ holds {len(stuck)} messages")
        if records:
            con = analytics_sql.open_changes(folder)
            current = {r["entity_uri"]: r for r in analytics_sql.current(con)}
            history = analytics_sql.history(con)
            a.update({"current rows": len(current), "history rows": len(history)})
            columns = {"first_name": "FirstName", "last_name": "LastName", "email": "Email", "phone": "Phone"}
            live = {e.uri: e for e in self.reltio.live_entities()}
            for uri, e in live.items():
                golden = e.golden_simple()
                want = {col: (golden.get(attr) or [None])[0] for col, attr in columns.items()}
                row = current.get(uri)
                got = {col: row.get(col) for col in columns} if row else None
                if got != want:
                    rep.failures.append(f"warehouse current row of {uri} is {got}, the golden record {want}")
            for uri in set(current) - set(live):
                rep.failures.append(f"warehouse current holds {uri}, which is merged away or unknown")
            if len(history) != len(distinct):
                rep.failures.append(f"warehouse history has {len(history)} rows for {len(distinct)} distinct records")
        f["analytics"] = a

    def check_queue_messages(self, rep: Report):
        """Without a consumer the event queue keeps what the receiver enqueued: check docs/contract.md's format."""
        msgs = self.res.drain(self.res.event_queue)
        # The receiver's event ids are hashes of the signed events (the sender's X-Reltio-Event-Id is not signed):
        # messages are matched to the simulator's events by what the event is.
        emitted = {(e["uri"], str(e["version"]), e["type"]): e for e in self.reltio.events}
        seen = set()
        for m in msgs:
            a = {k: v.get("StringValue") for k, v in (m.get("MessageAttributes") or {}).items()}
            eid = a.get("eventId")
            if eid == "bad-1":
                continue
            try:
                body = json.loads(m["Body"])
            except ValueError:
                rep.failures.append(f"queue message {eid} body is not the event JSON")
                continue
            key = (a.get("sourceObjectUri"), a.get("objectVersion"), a.get("eventType"))
            ev = emitted.get(key)
            if ev is None:
                rep.failures.append(f"queue message with unknown eventId {eid!r} (forged or altered)")
                continue
            seen.add(key)
            want = {"eventType": ev["type"], "tenantId": "LOCAL1", "sourceObjectUri": ev["uri"],
                    "objectVersion": str(ev["version"])}
            bad = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
            if bad or body.get("type") != ev["type"]:
                rep.failures.append(f"queue message {eid}: attributes (got, want) {bad}")
        rep.figures["queue_messages"] = len(msgs)
        if set(emitted) - seen:
            rep.failures.append(f"{len(set(emitted) - seen)} emitted events are not on the queue")

    def _contact_view(self, golden: dict) -> dict:
        out = {}
        for attr, fld in CONTACT_FIELDS.items():
            v = golden.get(attr)
            out[fld] = v[0] if v else None
        return out

    @staticmethod
    def _holds(row: dict, view: dict) -> bool:
        return all(row.get(k) == v for k, v in view.items())

    def _sf_applied_at(self, e, t_ms):
        """When Salesforce first held entity `e` as of `t_ms` or newer: the first write to its surviving Contact
        at or after `t_ms` whose mapped fields equal the golden view of a version of `e` made at or after `t_ms`
        (a newer version supersedes). None when there is no such write, or when nothing had to change (the
        Contact already held that view), so that a change is not timed until some later change's write."""
        ids = sorted(xw["value"] for k, xw in e.crosswalks.items()
                     if k[0].endswith("/SFDC_CONTACT") and not xw.get("deleteDate"))
        if not ids:
            return None
        views = [self._contact_view(g) for _, ms, g in self.reltio.versions.get(e.id, []) if ms >= t_ms]
        if not views:
            return None
        writes = self.sf.contact_writes.get(ids[0], [])
        prior = next((row for ms, row in reversed(writes) if ms < t_ms), None) or self.wl.contacts.get(ids[0], {})
        if self._holds(prior, views[0]):
            return None
        for ms, row in writes:
            if ms >= t_ms and any(self._holds(row, v) for v in views):
                return ms
        return None

    def check_salesforce(self, rep: Report):
        """Per live entity with live SFDC_CONTACT crosswalks (crm-mapping.toml: survivor = lowest Id, merge
        strategy archive): the survivor Contact holds the golden record's mapped fields, every other Contact is
        archived pointing at the survivor, and no child record points at an archived Contact."""
        reltio, sf = self.reltio, self.sf
        survivors = archived = 0
        self._sf_lat = []
        for e in reltio.live_entities():
            sf_ids = sorted(xw["value"] for k, xw in e.crosswalks.items()
                            if k[0].endswith("/SFDC_CONTACT") and not xw.get("deleteDate"))
            if not sf_ids:
                continue
            want = self._contact_view(e.golden_simple())
            survivor, losers = sf_ids[0], sf_ids[1:]
            row = sf.contact(survivor) or {}
            got = {k: row.get(k) for k in want}
            if got != want:
                rep.failures.append(f"Contact {survivor} of {e.uri} differs from the golden record: "
                                    f"got {got}, golden {want}")
            else:
                survivors += 1
            for cid in losers:
                r = sf.contact(cid) or {}
                if r.get("MDM_Status__c") != "Merged" or r.get("Merged_Into__c") != survivor:
                    rep.failures.append(f"Contact {cid} merged into {survivor} ({e.uri}) is not archived: "
                                        f"{ {k: r.get(k) for k in ('MDM_Status__c', 'Merged_Into__c')} }")
                else:
                    archived += 1
                for obj, child in sf.children_of(cid):
                    rep.failures.append(f"{obj} {child} still points at merged-away Contact {cid}")
            # Stale write: a Contact write whose values are those of an older entity version than an earlier
            # write already applied (only after the entity's last merge, where one version history applies).
            since = reltio.merged_at.get(e.id, 0)
            views = [(ms, self._contact_view(g)) for _, ms, g in reltio.versions.get(e.id, []) if ms >= since]
            high = -1
            for wms, wrow in sf.contact_writes.get(survivor, []):
                if wms < since:
                    continue
                idx = max((i for i, (vms, v) in enumerate(views)
                           if vms <= wms and all(wrow.get(k) == x for k, x in v.items())), default=None)
                if idx is None:
                    continue
                if idx < high and views[idx][1] != views[high][1]:
                    rep.failures.append(f"stale write: Contact {survivor} of {e.uri} got version #{idx}'s values "
                                        f"after version #{high}'s")
                high = max(high, idx)
            for vers, ms, golden in reltio.versions.get(e.id, []):
                t = self._sf_applied_at(e, ms)
                if t is not None:
                    self._sf_lat.append(t - ms)
        moved = 0
        for obj in ("Case", "Task", "OpportunityContactRole"):
            for r in sf.rows[obj].values():
                fld = "WhoId" if obj == "Task" else "ContactId"
                if not r.get("Subject", "").endswith(r.get(fld) or ""):
                    moved += 1
        rep.figures["contacts_written"] = len(sf.contact_writes)
        rep.figures["contact_writes"] = sum(len(v) for v in sf.contact_writes.values())
        rep.figures["contacts_matching_golden"] = survivors
        rep.figures["contacts_archived"] = archived
        rep.figures["child_records_repointed"] = moved


def format_report(rep: Report) -> str:
    f = rep.figures
    lines = ["", "mdm-sync local stack report", "=" * 27]
    order = ["wall_seconds", "records_put", "changes_produced", "crosswalk_writes", "entities_created",
             "entities_live", "merges", "events_emitted", "events_enqueued", "contacts_written", "contact_writes",
             "contacts_matching_golden", "contacts_archived", "child_records_repointed"]
    for k in order:
        if k in f:
            lines.append(f"  {k.replace('_', ' '):<28} {f[k]}")
    lines.append("  DLQ depth                    " + ", ".join(f"{k} {v}" for k, v in f.get("dlq_depth", {}).items()))
    for r in f.get("cdc_dlq_reasons", []):
        lines.append(f"    cdc DLQ reason: {r[:140]}")
    for target, calls in f.get("api_calls", {}).items():
        lines.append(f"  API calls {target:<18} " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())))
    for target, inj in f.get("faults_injected", {}).items():
        if inj:
            lines.append(f"  faults injected {target:<12} " + ", ".join(f"{k} {v}" for k, v in sorted(inj.items())))
    es = f.get("event_sources")
    if es:
        k, q, w = es["kinesis"], es["sqs"], es["webhook"]
        lines.append(f"  event sources                Kinesis {k['shards']} shards x parallelization {k['parallelization_factor']},"
                     f" batch {k['batch_size']}, window {k['window_s']} s; SQS{' FIFO' if q['fifo'] else ''} batch"
                     f" {q['batch_size']}, window {q['window_s']} s, max concurrency {q['max_concurrency']},"
                     f" visibility timeout {q['visibility_timeout_s']} s; crm-updater timeout {q['crm_timeout_s']} s,"
                     f" lease {q['crm_lease_s']} s;"
                     f" webhook concurrency {w['concurrency']}, senders {w['senders']}")
    for n, v in f.get("invocations", {}).items():
        lines.append(f"  {n:<28} {v}")
    for n, v in f.get("pollers", {}).items():
        lines.append(f"  poller {n:<21} {v}")
    if "cpu_seconds" in f:
        lines.append("  CPU seconds                  " + ", ".join(f"{k} {v}" for k, v in f["cpu_seconds"].items()))
    if "throughput" in f:
        lines.append("  throughput                   " + ", ".join(f"{k} {v}" for k, v in f["throughput"].items()))
    if "reltio_writes_out_of_source_order" in f:
        lines.append(f"  reltio writes out of order   {f['reltio_writes_out_of_source_order']}")
    if "webhook" in f:
        lines.append(f"  webhook deliveries           {f['webhook']}")
    if "kafka" in f:
        k = f["kafka"]
        lines.append(f"  kafka stream                 {k['records_produced']} records ({k['duplicates_produced']} duplicates),"
                     f" consumer lag max {k['max_consumer_lag']} / final {k['final_consumer_lag']},"
                     f" stream DLQ {f.get('dlq_depth_stream', 0)}")
    if "analytics" in f:
        lines.append("  analytics (S3, DuckDB)       " + ", ".join(f"{k} {v}" for k, v in f["analytics"].items()))
    if "trace" in f:
        lines += trace.format_path(f["trace"], f["trace_enqueuer"])
    lines.append("  latency ms (p50 / p95 / p99)")
    for hop, p in f.get("latency_ms", {}).items():
        lines.append(f"    {hop:<24} {p[50]} / {p[95]} / {p[99]}")
    for n in rep.notes:
        lines.append(f"  note: {n}")
    if rep.failures:
        lines.append(f"INVARIANTS FAILED ({len(rep.failures)}):")
        lines += [f"  - {x}" for x in rep.failures[:40]]
    elif any("crm-updater binary not built" in n for n in rep.notes):
        lines.append("All invariants checked hold (Reltio side and queue; the Salesforce leg did not run): no change "
                     "lost, no stale write, DLQs hold only the deliberate bad inputs.")
    else:
        lines.append("All invariants hold: no change lost, no stale write, every Contact matches its golden record, "
                     "DLQs hold only the deliberate bad inputs.")
    return "\n".join(lines)


def run(s: Scenario) -> Report:
    st = Stack(s)
    try:
        st.start()
        return st.run()
    finally:
        st.close()
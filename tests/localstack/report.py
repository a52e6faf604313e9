"""The report of a run: its figures (what was produced, written and dead-lettered, invocations, pollers, CPU,
throughput, latencies; `add_figures`), the failed invariants, and the printed summary (`format_report`)."""
from __future__ import annotations

import resource
from collections import Counter
from dataclasses import dataclass, field

from . import trace
from .native import NativeStream
from .observed import Outcome
from .util import percentiles
from .webhook import WebhookDeliverer


# The hop that put an event on the queues on the native path, in the trace's path.
NATIVE_HOP = "reltio-stream"


@dataclass
class Report:
    figures: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    dlq: dict = field(default_factory=dict)

    @property
    def ok(self):
        return not self.failures


def own_cpu() -> float:
    """CPU seconds this Python process (the pollers, simulators, senders, Runtime APIs) has used."""
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


def add_figures(o: Outcome, rep: Report):
    """Every figure of the run into `rep` (the dead letters' bodies into `rep.dlq`)."""
    s, reltio, sf, src = o.s, o.reltio, o.sf, o.sources
    f = rep.figures
    wl = o.wl
    f["changes_produced"] = len([c for c in wl.changes if not any(c in x.also for x in wl.changes)])
    f["crosswalk_writes"] = sum(len(v) for v in reltio.writes.values())
    f["entities_live"] = len(reltio.live_entities())
    f["entities_created"] = len(reltio.entities)
    f["merges"] = reltio.merges
    f["events_emitted"] = len(reltio.events)
    f["events_by_type"] = dict(Counter(e["type"] for e in reltio.events))
    f["events_enqueued"] = len(o.deliverer.accepted)
    f["api_calls"] = {"reltio": dict(reltio.calls), "salesforce": dict(sf.calls)}
    f["faults_injected"] = {"reltio": dict(reltio.faults.injected), "salesforce": dict(sf.faults.injected)}
    f["event_sources"] = o.es
    f["invocations"] = {n: h.figures() for n, h in o.hosts.items()}
    f["pollers"] = {"kinesis": {**src.kinesis.stats.figures(), "lanes_used": src.kinesis.lanes_used()}}
    if src.sqs_poller:
        f["pollers"]["sqs"] = {**src.sqs_poller.stats.figures(), "peak_concurrent": src.sqs_poller.peak}
    if src.analytics_poller:
        f["pollers"]["analytics sqs"] = {**src.analytics_poller.stats.figures(),
                                         "peak_concurrent": src.analytics_poller.peak}
    f["cpu_seconds"] = {"harness (python)": round(own_cpu() - o.cpu0, 1),
                        "moto": round(o.procs.moto.cpu() or 0, 1),
                        "moto (SQS)": round(o.procs.moto_sqs.cpu() or 0, 1),
                        **{n: round(h.cpu(), 1) for n, h in o.hosts.items()}}
    if s.path == "kafka":
        f["kafka"] = {**o.deliverer.figures(), "poller": src.kafka_poller.figures()}
        f["stream_failure_batches"] = len(o.stream_failures)
        if s.restart_broker:
            f["kafka"]["broker_restarts"] = o.procs.broker.restarts
        f["dlq_depth_stream"] = len(o.stream_dead)
    if isinstance(o.deliverer, WebhookDeliverer):
        d = o.deliverer
        f["webhook"] = {"attempts": d.attempts, "statuses": dict(d.statuses), "gave_up": len(d.given_up),
                        "forged": d.forged}
    if isinstance(o.deliverer, NativeStream):
        d = o.deliverer
        f["native"] = {"destination": "topic" if d.topic else "queue", "format": d.fmt, "payload": d.payload,
                       "published": sum(len(v) for v in d.published.values()) + d.duplicates,
                       "duplicates": d.duplicates, "gave_up": len(d.given_up)}
    rep.dlq = {k: [m["Body"] for m in v] for k, v in o.dlq.items()}
    f["dlq_depth"] = {k: len(v) for k, v in o.dlq.items()}
    f["cdc_dlq_reasons"] = o.cdc_dlq_reasons
    f["cdc_dlq_distinct_records"] = len(o.cdc_dlq_records)
    if o.crm:
        f["crm_dlq_distinct_messages"] = len(o.crm_dlq_messages)
        _contact_figures(o, f)
    else:
        rep.notes.append("crm-updater binary not built: the Salesforce leg was not run")
        f["queue_messages"] = len(o.queue_messages)
    _latency(o, f)
    if o.analytics:
        _analytics_figures(o, f)
    f["reltio_writes_out_of_source_order"] = o.out_of_order_writes
    _throughput(o, f)


def add_trace(o: Outcome, rep: Report, enqueuer: str | None):
    """One change followed through the functions' logs (complete: the functions are idle once settled, and Rust
    flushes stdout at every line), when crm-updater ran and an enqueuer did, or Reltio's own stream published the
    events (`NATIVE_HOP`: the events it published stand for the enqueuer's lines)."""
    if not o.crm:
        return
    if enqueuer:
        rep.figures["trace"] = trace.follow(o.log_dir, enqueuer)
    elif isinstance(o.deliverer, NativeStream):
        enqueuer = NATIVE_HOP
        rep.figures["trace"] = trace.follow(o.log_dir, enqueuer, o.deliverer.published)
    else:
        return
    rep.figures["trace_enqueuer"] = enqueuer


def _contact_figures(o: Outcome, f: dict):
    sf = o.sf
    survivors = archived = 0
    for e, survivor, losers in o.contact_entities:
        survivors += o.contact_mismatch(e, survivor) is None
        archived += sum(o.archived_into(cid, survivor) for cid in losers)
    moved = 0
    for obj in ("Case", "Task", "OpportunityContactRole"):
        for r in sf.rows[obj].values():
            fld = "WhoId" if obj == "Task" else "ContactId"
            if not r.get("Subject", "").endswith(r.get(fld) or ""):
                moved += 1
    f["contacts_written"] = len(sf.contact_writes)
    f["contact_writes"] = sum(len(v) for v in sf.contact_writes.values())
    f["contacts_matching_golden"] = survivors
    f["contacts_archived"] = archived
    f["child_records_repointed"] = moved


def _latency(o: Outcome, f: dict):
    """Latency in ms: source commit → Reltio write, Reltio event → queue, and with crm-updater Reltio change →
    Salesforce write and source commit → Salesforce write (a change counts as applied in Salesforce at the first
    write that holds its entity version's golden view or a later one's)."""
    reltio, wl, history = o.reltio, o.wl, o.history
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
    accepted = o.deliverer.accepted
    q_lat = [accepted[i] - ev_ms[i] for i in accepted if i in ev_ms]
    f["latency_ms"] = {"source→reltio": percentiles(cdc_lat), "reltio→queue": percentiles(q_lat)}
    if not o.crm:
        return
    sf_lat = []
    for e, _, _ in o.contact_entities:
        for _, ms, _ in reltio.versions.get(e.id, []):
            t = o.sf_applied_at(e, ms)
            if t is not None:
                sf_lat.append(t - ms)
    f["latency_ms"]["reltio→salesforce"] = percentiles(sf_lat)
    overall = []
    for c in wl.changes:
        t_r = first_write.get(id(c))
        e = reltio.entity_of(c.key)
        if t_r is None or e is None:
            continue
        t = o.sf_applied_at(e, t_r)
        if t is not None:
            overall.append(t - c.commit_ms)
    f["latency_ms"]["source→salesforce"] = percentiles(overall)
    f["changes_reaching_salesforce"] = len(overall)


def _analytics_figures(o: Outcome, f: dict):
    gate = o.procs.firehose_gate
    a = {"records": len(o.landed), "distinct events": len(o.distinct_records),
         "duplicates": len(o.landed) - len(o.distinct_records), "objects": o.landed_objects,
         "refresh signals": o.refresh_signals, "firehose record failures injected": gate.injected if gate else 0}
    if o.warehouse is not None:
        current, history = o.warehouse
        a.update({"current rows": len(current), "history rows": len(history)})
    f["analytics"] = a


def _throughput(o: Outcome, f: dict):
    """Changes per second: while the workload puts them, and per stage while the stage is busy (per phase,
    from the phase's first put to the stage's last effect in it; the pauses in which a phase settles and
    the next one waits are left out)."""
    marks = o.phase_marks
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
        "reltio writes": [ms for v in o.reltio.writes.values() for ms, _ in v],
        "events enqueued": list(o.deliverer.accepted.values()),
    }
    if o.crm:
        stages["contact writes"] = [ms for v in o.sf.contact_writes.values() for ms, _ in v]
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


def format_report(rep: Report) -> str:
    """The printed summary: the figures, one traced change's path, latencies, notes, and the failed invariants
    (or that all hold)."""
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
    if "native" in f:
        lines.append(f"  reltio's own stream          {f['native']}")
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

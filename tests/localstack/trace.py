"""Follows changes across the functions' logs by the ids each hop logs at its hand-over (JSON log lines):

- cdc-ingest, `written to Reltio`: the source change (`correlation_id`, table/key@commit time) and the entity URI
  Reltio answered;
- webhook-receiver or stream-consumer, `enqueued`: the entity URI, `objectVersion`, the event id, and the
  invocation's X-Ray trace id (the span's `xrayTraceId`), which the queue message carries as `AWSTraceHeader`;
- crm-updater, `applied`: the entity URI, the event id, that trace (`upstream_trace`) and the Contact written;
- analytics-sink, `recorded`: the entity URI, the event id and that trace.

The entity URI joins the CDC hop to the event; the event id joins the event to the Salesforce write and to the
change record. The trace joins them too where the queue message carries it: on a queue the receiver sends to
directly (`AWSTraceHeader`); through the fan-out topic AWS carries it when the topic traces actively, which moto
does not, so locally the trace is matched only when present.

On Reltio's own stream (`--path native`) no function of ours enqueues: the events Reltio published take the
enqueued lines' place (`published`: by the event id the consumers derive from the message body, the SHA-256 of its
JSON), and a consumer's line joins one when its event id, entity and objectVersion are the published event's.
"""
from __future__ import annotations

import json
import os


def _lines(path: str, message: str):
    """The fields (and the invocation's span) of every JSON log line with `message` in one function's log."""
    if not os.path.exists(path):
        return
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                d = json.loads(line)
            except ValueError:
                continue
            fields = d.get("fields", {})
            if fields.get("message") == message:
                yield fields, d.get("span", {})


def _enqueued(log_dir: str, enqueuer: str) -> dict[str, list[dict]]:
    """Event id -> the enqueuer's enqueued lines of it (one per delivery)."""
    enqueued: dict[str, list[dict]] = {}
    for f, span in _lines(os.path.join(log_dir, f"{enqueuer}.log"), "enqueued"):
        enqueued.setdefault(f.get("event_id"), []).append({
            "entity": f.get("entity"), "object_version": f.get("object_version"), "event_id": f.get("event_id"),
            "trace": span.get("xrayTraceId"), "record": f.get("record")})
    return enqueued


def _published(published: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Event id -> the events Reltio's own stream published under it, as enqueued lines (no trace: Reltio sends
    none) that also require the consumer's objectVersion to be the event's."""
    return {eid: [{"entity": e["entity"], "object_version": e["object_version"], "event_id": eid, "trace": None,
                   "record": None, "version_must_match": True} for e in events]
            for eid, events in published.items()}


def follow(log_dir: str, enqueuer: str = "webhook-receiver", published: dict | None = None) -> dict:
    """Joins the hops. Returns `applied` (crm-updater's applied events), `joined` (those whose upstream trace and
    event id match an enqueued line of the same entity, and whose entity was written by cdc-ingest), `sourced`
    (those that match an enqueued line, whether or not cdc-ingest logged their entity: it does not when Reltio
    applied a write whose answer was lost and the entity was merged away before the retry), the events whose join
    failed, and one complete path (the first entity in URI order that has one). With `published` (the native path's
    events by event id) those stand for the enqueued lines and `enqueuer` only names the hop."""
    written: dict[str, list[dict]] = {}
    for f, span in _lines(os.path.join(log_dir, "cdc-ingest.log"), "written to Reltio"):
        if f.get("entity"):
            written.setdefault(f["entity"], []).append({"correlation_id": f.get("correlation_id"),
                                                         "trace": span.get("xrayTraceId")})
    enqueued = _published(published) if published is not None else _enqueued(log_dir, enqueuer)

    def source(f: dict) -> dict | None:
        """The enqueued line a consumer's line comes from: the same event and entity (and objectVersion, on the
        native path), and the same trace when the consumer was handed one."""
        upstream = f.get("upstream_trace")
        for e in enqueued.get(f.get("event_id"), []):
            if e["entity"] != f.get("entity") or (upstream is not None and e["trace"] != upstream):
                continue
            if e.get("version_must_match") and e["object_version"] != f.get("object_version"):
                continue
            return e
        return None

    applied = list(_lines(os.path.join(log_dir, "crm-updater.log"), "applied"))
    joined, sourced, unjoined, paths = 0, 0, [], {}
    for f, _span in applied:
        e = source(f)
        sourced += e is not None
        if e is None or f.get("entity") not in written:
            unjoined.append({k: f.get(k) for k in ("entity", "event_id", "upstream_trace")})
            continue
        joined += 1
        paths.setdefault(f["entity"], {"cdc-ingest": written[f["entity"]][-1], enqueuer: e,
                                       "crm-updater": {"contact": f.get("contact"), "event_id": f.get("event_id"),
                                                       "object_version": f.get("object_version"),
                                                       "upstream_trace": f.get("upstream_trace")}})
    recorded = list(_lines(os.path.join(log_dir, "analytics-sink.log"), "recorded"))
    recorded_joined = sum(1 for f, _ in recorded if source(f) is not None)
    one = paths[min(paths)] if paths else None
    return {"applied": len(applied), "joined": joined, "sourced": sourced, "unjoined": unjoined, "path": one,
            "entity": min(paths) if paths else None, "recorded": len(recorded), "recorded_joined": recorded_joined}


def format_path(t: dict, enqueuer: str) -> list[str]:
    """The report's lines for one change's path."""
    p = t.get("path")
    if not p:
        return ["  one change's path            none complete in the logs"]
    c, e, s = p["cdc-ingest"], p[enqueuer], p["crm-updater"]
    where = f" (record {e['record']})" if e.get("record") else ""
    return [f"  one change's path            {t['entity']}",
            f"    cdc-ingest                 {c['correlation_id']} -> {t['entity']}",
            f"    {enqueuer:<26} event {e['event_id']} v{e['object_version']}{where}, trace {e['trace']}",
            f"    crm-updater                event {s['event_id']} v{s['object_version']} -> Contact {s['contact']},"
            f" upstream trace {s['upstream_trace']}",
            f"  applied events followed      {t['joined']} of {t['applied']} back to their source change"
            + (f"; change records {t['recorded_joined']} of {t['recorded']} back to their event"
               if t.get("recorded") else "")]

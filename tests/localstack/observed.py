"""What a finished run left (`Outcome`), gathered once for the invariants (invariants.py) and the report
(report.py): the stack's pieces, the dead-letter and failure queues (drained: checking empties them), the change
records landed on S3, and the views of them both use (a Contact's golden view, when a change reached Salesforce)."""
from __future__ import annotations

import json
import os
from functools import cached_property

from .util import drain

# Reltio attribute → Contact field, as tests/localstack/crm-mapping.toml maps them.
CONTACT_FIELDS = {"FirstName": "FirstName", "LastName": "LastName", "Email": "Email", "Phone": "Phone"}


class Outcome:
    """The run's end state. Built once the stack has settled; building it drains the queues the checks read."""

    def __init__(self, st, wl):
        procs, sources = st.procs, st.sources
        self.s, self.es, self.wl, self.log_dir = st.s, st.es, wl, st.log_dir
        self.procs, self.sources = procs, sources
        self.res, self.reltio, self.sf, self.hosts = procs.res, procs.reltio, procs.sf, procs.hosts
        self.deliverer = sources.deliverer
        self.phase_marks = getattr(st, "phase_marks", [])  # per phase: (first put, last put) in ms
        self.cpu0 = st.cpu0
        self.crm = "crm-updater" in self.hosts
        self.analytics = sources.analytics_poller is not None
        res = self.res
        if self.s.path == "kafka":
            self.stream_failures = res.drain(procs.stream_failures)
            self.stream_dead = res.drain(procs.stream_dlq)
        self.dlq = {"cdc-dlq": res.drain(res.cdc_dlq), "cdc-stream-failures": res.drain(res.cdc_failure),
                    "events-dlq": res.drain(res.event_dlq), "crm-dlq": res.drain(res.crm_dlq)}
        # Without a consumer the event queue keeps what the receiver enqueued.
        self.queue_messages = None if self.crm else res.drain(res.event_queue)
        if self.analytics:
            self.landed_folder = os.path.join(self.log_dir, "analytics-landed")
            os.makedirs(self.landed_folder, exist_ok=True)
            self.landed = res.landed_records(self.landed_folder)
            self.landed_objects = len(os.listdir(self.landed_folder))
            self.refresh_signals = len(drain(res.signals_sqs, res.signals))
            self.analytics_dead = res.drain(res.analytics_dlq)
            self.analytics_stuck = res.drain(res.analytics_queue_dlq)

    # ------------------------------------------------------------------ the source side
    @cached_property
    def history(self) -> dict:
        """Crosswalk key -> the states its source row went through, in source order."""
        history = {}
        for c in self.wl.changes:
            history.setdefault(c.key, []).append(c.expected)
        return history

    @cached_property
    def out_of_order_writes(self) -> int:
        """Writes to a crosswalk that carried an older version of its source row than a write before them (each
        partition key's records are delivered in order, so per key the versions only move forward)."""
        bad = 0
        for key, hist in self.history.items():
            high = -1
            for _, state in self.reltio.writes.get(key, []):
                idx = max((i for i, h in enumerate(hist) if h == state), default=None)
                if idx is None:
                    continue
                if idx < high and hist[high] != state:
                    bad += 1
                high = max(high, idx)
        return bad

    # ------------------------------------------------------------------ dead letters
    @cached_property
    def cdc_dlq_reasons(self) -> list:
        reasons = []
        for m in self.dlq["cdc-dlq"]:
            try:
                reasons.append(json.loads(m["Body"]).get("reason", ""))
            except ValueError:
                reasons.append("<unreadable DLQ body>")
        return reasons

    @cached_property
    def cdc_dlq_records(self) -> set:
        """The distinct records on cdc-ingest's DLQ (a redelivered batch, at least once, can dead-letter one
        record again)."""
        seqs = set()
        for m in self.dlq["cdc-dlq"]:
            try:
                seqs.add(json.loads(m["Body"]).get("sequenceNumber"))
            except ValueError:
                seqs.add(m["Body"])
        return seqs

    @cached_property
    def crm_dlq_messages(self) -> set:
        """The distinct messages on crm-updater's DLQ (a redelivered message may be dead-lettered again)."""
        distinct = set()
        for m in self.dlq["crm-dlq"]:
            b = m["Body"]
            try:
                distinct.add(json.loads(b).get("messageId") or b)
            except ValueError:
                distinct.add(b)
        return distinct

    # ------------------------------------------------------------------ Salesforce
    @cached_property
    def contact_entities(self) -> list:
        """(entity, survivor Contact Id, merged-away Contact Ids) per live entity with live SFDC_CONTACT
        crosswalks (crm-mapping.toml: the survivor is the lowest Id)."""
        out = []
        for e in self.reltio.live_entities():
            ids = live_contact_ids(e)
            if ids:
                out.append((e, ids[0], ids[1:]))
        return out

    def contact_mismatch(self, e, survivor: str):
        """(got, golden) when the survivor Contact's mapped fields differ from the entity's golden record."""
        want = contact_view(e.golden_simple())
        row = self.sf.contact(survivor) or {}
        got = {k: row.get(k) for k in want}
        return None if got == want else (got, want)

    def archived_into(self, cid: str, survivor: str) -> bool:
        """Contact `cid` is archived as merged into `survivor` (crm-mapping.toml's merge strategy)."""
        r = self.sf.contact(cid) or {}
        return r.get("MDM_Status__c") == "Merged" and r.get("Merged_Into__c") == survivor

    def sf_applied_at(self, e, t_ms):
        """When Salesforce first held entity `e` as of `t_ms` or newer: the first write to its surviving Contact
        at or after `t_ms` whose mapped fields equal the golden view of a version of `e` made at or after `t_ms`
        (a newer version supersedes). None when there is no such write, or when nothing had to change (the
        Contact already held that view), so that a change is not timed until some later change's write."""
        ids = live_contact_ids(e)
        if not ids:
            return None
        views = [contact_view(g) for _, ms, g in self.reltio.versions.get(e.id, []) if ms >= t_ms]
        if not views:
            return None
        writes = self.sf.contact_writes.get(ids[0], [])
        prior = next((row for ms, row in reversed(writes) if ms < t_ms), None) or self.wl.contacts.get(ids[0], {})
        if holds(prior, views[0]):
            return None
        for ms, row in writes:
            if ms >= t_ms and any(holds(row, v) for v in views):
                return ms
        return None

    # ------------------------------------------------------------------ analytics
    @cached_property
    def emitted_keys(self) -> set:
        """What each emitted event is (entity URI, version, type): the receivers' event ids are hashes of the
        signed events, so records and messages are matched to the simulator's events by these."""
        return {(e["uri"], str(e["version"]), e["type"]) for e in self.reltio.events}

    @cached_property
    def distinct_records(self) -> dict:
        """The landed change records, one per event id."""
        return {r["event_id"]: r for r in self.landed}

    @cached_property
    def landed_keys(self) -> set:
        return {(r["entity_uri"], str(r["object_version"]), r["event_type"]) for r in self.distinct_records.values()}

    @cached_property
    def warehouse(self):
        """(current rows by entity URI, history rows) of the shipped DuckDB SQL over the landed files; None when
        nothing landed."""
        if not self.landed:
            return None
        from . import analytics_sql

        con = analytics_sql.open_changes(self.landed_folder)
        return {r["entity_uri"]: r for r in analytics_sql.current(con)}, analytics_sql.history(con)


def live_contact_ids(e) -> list:
    """The Contact Ids of an entity's live SFDC_CONTACT crosswalks, lowest first."""
    return sorted(xw["value"] for k, xw in e.crosswalks.items()
                  if k[0].endswith("/SFDC_CONTACT") and not xw.get("deleteDate"))


def contact_view(golden: dict) -> dict:
    """A golden record as crm-updater maps it onto a Contact."""
    out = {}
    for attr, fld in CONTACT_FIELDS.items():
        v = golden.get(attr)
        out[fld] = v[0] if v else None
    return out


def holds(row: dict, view: dict) -> bool:
    return all(row.get(k) == v for k, v in view.items())

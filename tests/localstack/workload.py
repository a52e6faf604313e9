"""Workload generator: source-table changes written to Kinesis as AWS DMS JSON (json-unformatted), plus the
expected end state of every crosswalk (what Reltio must hold) and the deliberate bad inputs.

Put with boto3 against moto (the issue names aws-sdk-kinesis; the local stack is Python test tooling).
Tables: public.customer (source CRM_DB) and crm.contact (Salesforce Contacts, source SFDC_CONTACT).
Changes: inserts, updates, deletes, primary-key changes, the same person in both tables and duplicate Contacts
of one person (so Reltio merges them), in phases; each phase is applied before the next is written (a primary-key
change is partitioned by the new key, so its order against the old key's earlier changes is not guaranteed by
Kinesis: DMS users get the same race).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .util import now_ms

CRM_DB = ("configuration/sources/CRM_DB", "CUSTOMER")
SFDC = ("configuration/sources/SFDC_CONTACT", "")


def contact_id(n: int) -> str:
    return f"003LS{n:013d}"


@dataclass
class Change:
    key: tuple            # crosswalk key (type, value, sourceTable)
    commit_ms: int
    expected: object      # simple contribution after the change, or None (end-dated)
    table: str
    also: list = field(default_factory=list)  # the old key's retirement of a primary-key change


@dataclass
class Workload:
    phases: list = field(default_factory=list)       # [[(partition_key, bytes, Change|None)]]
    expected: dict = field(default_factory=dict)     # crosswalk key -> contribution or None
    contacts: dict = field(default_factory=dict)     # Contact Id -> initial fields (seeded in the Salesforce sim)
    children: list = field(default_factory=list)     # (object, fields) child records of Contacts
    bad: dict = field(default_factory=dict)          # kind -> count of deliberate bad inputs
    unmapped: int = 0
    changes: list = field(default_factory=list)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _contribution(table, row):
    if table == "public.customer":
        m = {"first_name": "FirstName", "last_name": "LastName", "email": "Email", "phone": "Phone"}
    else:
        m = {"FirstName": "FirstName", "LastName": "LastName", "Email": "Email"}
    out = {}
    for col, attr in m.items():
        v = row.get(col)
        if v is None:
            continue
        v = str(v).strip()
        if attr == "Email":
            v = v.lower()
        if v:
            out[attr] = [v]
    return out


class _Writer:
    def __init__(self, wl: Workload):
        self.wl = wl
        self.txn = 1000
        self.cur: list = []

    def phase(self):
        if self.cur:
            self.wl.phases.append(self.cur)
        self.cur = []

    def record(self, table, op, row, before=None, keycol=None, partial=False):
        """Appends a DMS data record; returns its Change (None for unmapped tables). `partial`: the image holds only
        what it names (the key and the changed columns, as GoldenGate compresses updates by default): the mapping
        reads the table's absent columns as unchanged, so the crosswalk keeps its other attributes."""
        self.txn += 1
        ms = now_ms()
        schema, name = table.split(".")
        meta = {"timestamp": _iso(ms), "record-type": "data", "operation": op, "partition-key-type": "primary-key",
                "partition-key-value": f"{table}.{row[keycol]}", "schema-name": schema, "table-name": name,
                "transaction-id": self.txn, "commit-timestamp": _iso(ms),
                "stream-position": f"0000000{self.txn}/7C00{self.txn}", "transaction-record-id": 1}
        rec = {"data": row, "metadata": meta}
        if op == "update":
            rec["before-image"] = before or {}
        src = {"public.customer": CRM_DB, "crm.contact": SFDC}.get(table)
        change = None
        if src:
            key = (src[0], str(row[keycol]), src[1])
            exp = None if op == "delete" else _contribution(table, row)
            if partial and exp is not None:
                exp = {**(self.wl.expected.get(key) or {}), **exp}
            change = Change(key, ms, exp, table)
            self.wl.expected[key] = exp
            self.wl.changes.append(change)
            if before and str(before.get(keycol)) != str(row[keycol]):
                old = (src[0], str(before[keycol]), src[1])
                self.wl.expected[old] = None
                oc = Change(old, ms, None, table)
                self.wl.changes.append(oc)
                change.also.append(oc)
        self.cur.append((f"{table}.{row[keycol]}", json.dumps(rec, separators=(",", ":")).encode(), change))
        return change

    def raw(self, pk, data: bytes):
        self.cur.append((pk, data, None))


# A truncated DMS record of 300 KB (Kinesis takes up to 1 MB): the bytes its dead letter's stored payload must hold.
OVERSIZED = b'{"data":{"id":77,"notes":"' + b"x" * 300_000

FIRST = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kai", "Lea", "Max", "Nia"]
LAST = ["Smith", "Jones", "Brown", "Garcia", "Khan", "Novak", "Okafor", "Rossi", "Silva", "Tanaka"]


def generate(persons: int = 20, seed: int = 42, bad_inputs: bool = False, late_merge: bool = False,
             partial_images: bool = False) -> Workload:
    """`persons` people, each with a Contact; most also in the customer table (→ merges); some customers have no
    Contact; updates, deletes, primary-key changes; every 10th person has a duplicate Contact with children.
    `late_merge`: every 10th person's customer row has an e-mail typo that is fixed after a few updates, so an
    entity several objectVersions ahead loses a merge to the Contact's entity, which then changes again.
    `partial_images`: a Contact's later updates carry its Id and the changed LastName only (compressed images:
    the Contact table's mapping reads absent columns as unchanged)."""
    rng = random.Random(seed)
    wl = Workload()
    w = _Writer(wl)
    people = []
    for i in range(persons):
        fn, ln = rng.choice(FIRST), rng.choice(LAST)
        email = f"{fn}.{ln}.{i}@example.com".lower()
        people.append({"i": i, "fn": fn, "ln": ln, "email": email})
    next_contact = 1
    # Phase 1: Contacts (one per person, a duplicate for every 10th) and customers.
    for p in people:
        cid = contact_id(next_contact)
        next_contact += 1
        p["contact"] = cid
        wl.contacts[cid] = {"FirstName": p["fn"], "LastName": "Old-" + p["ln"], "Email": p["email"]}
        w.record("crm.contact", "insert", {"Id": cid, "FirstName": p["fn"], "LastName": p["ln"],
                                           "Email": p["email"].upper()}, keycol="Id")
        if p["i"] % 10 == 3:
            dup = contact_id(next_contact)
            next_contact += 1
            p["dup"] = dup
            wl.contacts[dup] = {"FirstName": p["fn"], "LastName": p["ln"], "Email": p["email"]}
            for obj, field_ in (("Case", "ContactId"), ("Task", "WhoId"), ("OpportunityContactRole", "ContactId")):
                wl.children.append((obj, {field_: dup, "Subject": f"child of {dup}"}))
    w.phase()
    for p in people:
        if late_merge and p["i"] % 10 == 7:  # a typo in the e-mail: matched only once it is fixed, after several changes
            p["late"] = 1000 + p["i"]
            w.record("public.customer", "insert", {"id": p["late"], "first_name": p["fn"], "last_name": p["ln"],
                                                   "email": "typo." + p["email"], "phone": "+1-555-0001"}, keycol="id")
        elif p["i"] % 4 != 1:  # most people are customers too: same e-mail → merged with the Contact's entity
            p["cust"] = 1000 + p["i"]
            w.record("public.customer", "insert", {"id": p["cust"], "first_name": p["fn"], "last_name": p["ln"],
                                                   "email": f"  {p['email'].title()} ", "phone": f"+1-555-{p['i']:04d}"},
                     keycol="id")
    for j in range(max(2, persons // 5)):  # customers without a Contact
        w.record("public.customer", "insert", {"id": 9000 + j, "first_name": "Solo", "last_name": f"Person{j}",
                                               "email": f"solo{j}@example.net", "phone": None}, keycol="id")
    for p in people:
        if "dup" in p:
            w.record("crm.contact", "insert", {"Id": p["dup"], "FirstName": p["fn"], "LastName": p["ln"],
                                               "Email": p["email"]}, keycol="Id")
    if bad_inputs:
        w.raw("public.customer.bad", b"{this is not json")
        wl.bad["malformed"] = 1
        # Malformed and larger than a dead letter may be (256 KiB): its letter points at the letter store.
        w.raw("public.customer.big", OVERSIZED)
        wl.bad["oversized"] = 1
        w.record("public.customer", "insert", {"id": None, "first_name": "No", "last_name": "Key",
                                               "email": "nokey@example.org"}, keycol="id")
        wl.expected.pop((CRM_DB[0], "None", CRM_DB[1]), None)
        wl.changes = [c for c in wl.changes if c.key != (CRM_DB[0], "None", CRM_DB[1])]
        wl.bad["missing-key"] = 1
        w.raw("public.audit_log.1", json.dumps({"data": {"id": 1, "what": "login"}, "metadata": {
            "record-type": "data", "operation": "insert", "schema-name": "public", "table-name": "audit_log",
            "timestamp": _iso(now_ms())}}).encode())
        wl.unmapped += 1
    w.phase()
    # Phase 2: updates (names, phones, twice for some), primary-key changes, deletes.
    for p in people:
        if "cust" in p and p["i"] % 3 == 0:
            p["fn2"] = p["fn"] + "ette"
            w.record("public.customer", "update", {"id": p["cust"], "first_name": p["fn2"], "last_name": p["ln"],
                                                   "email": p["email"], "phone": f"+1-555-{p['i']:04d}"},
                     before={}, keycol="id")
            w.record("public.customer", "update", {"id": p["cust"], "first_name": p["fn2"], "last_name": p["ln"],
                                                   "email": p["email"], "phone": f"+1-777-{p['i']:04d}"},
                     before={}, keycol="id")
        if "late" in p:
            w.record("public.customer", "update", {"id": p["late"], "first_name": p["fn"], "last_name": p["ln"],
                                                   "email": "typo." + p["email"], "phone": "+1-555-0002"},
                     before={}, keycol="id")
        if p["i"] % 5 == 2:
            w.record("crm.contact", "update", _compressed({"Id": p["contact"], "FirstName": p["fn"],
                                                           "LastName": p["ln"] + "-Lee", "Email": p["email"]},
                                                          partial_images), before={}, keycol="Id",
                     partial=partial_images)
    w.phase()
    for p in people:
        if "cust" in p and p["i"] % 6 == 2:  # primary-key change: the old crosswalk is retired
            old, new = p["cust"], 5000 + p["i"]
            p["cust"] = new
            w.record("public.customer", "update", {"id": new, "first_name": p["fn"], "last_name": p["ln"],
                                                   "email": p["email"], "phone": "+1-555-0000"},
                     before={"id": old}, keycol="id")
        elif "cust" in p and p["i"] % 7 == 5:  # the customer row is deleted: its contribution is end-dated
            w.record("public.customer", "delete", {"id": p["cust"], "first_name": None, "last_name": None,
                                                   "email": None, "phone": None}, keycol="id")
    w.record("public.customer", "delete", {"id": 9000, "first_name": None, "last_name": None, "email": None,
                                           "phone": None}, keycol="id")
    for p in people:
        if "late" in p:
            w.record("public.customer", "update", {"id": p["late"], "first_name": p["fn"], "last_name": p["ln"],
                                                   "email": "typo." + p["email"], "phone": "+1-555-0003"},
                     before={}, keycol="id")
    w.phase()
    for p in people:
        if "late" in p:  # the typo is fixed: the customer's entity (several versions old) merges into the Contact's
            w.record("public.customer", "update", {"id": p["late"], "first_name": p["fn"], "last_name": p["ln"],
                                                   "email": p["email"], "phone": "+1-555-0005"},
                     before={}, keycol="id")
    w.phase()
    for p in people:
        if "late" in p:  # and the Contact's own row changes after the merge: it must reach Salesforce
            w.record("crm.contact", "update", _compressed({"Id": p["contact"], "FirstName": p["fn"],
                                                           "LastName": p["ln"] + "-After", "Email": p["email"]},
                                                          partial_images), before={}, keycol="Id",
                     partial=partial_images)
    w.phase()
    return wl


def _compressed(row: dict, partial: bool) -> dict:
    """A Contact update's image: whole, or (partial) the key and the changed LastName only."""
    return {"Id": row["Id"], "LastName": row["LastName"]} if partial else row


def _stamp(item):
    """The record with its commit time set to now (the Change's commit_ms too)."""
    pk, data, change = item
    try:
        rec = json.loads(data)
    except ValueError:
        return pk, data
    ms = now_ms()
    if isinstance(rec.get("metadata"), dict):
        rec["metadata"]["timestamp"] = rec["metadata"]["commit-timestamp"] = _iso(ms)
    if change is not None:
        change.commit_ms = ms
        for c in change.also:
            c.commit_ms = ms
    return pk, json.dumps(rec, separators=(",", ":")).encode()


def put_phase(res, phase, rate: float | None = None) -> int:
    """Writes one phase's records to the stream, setting commit times to the time they are put: at once
    (PutRecords, 500 per call) or, with `rate`, paced at `rate` records per second (ten calls a second)."""
    chunk = 500 if not rate else max(1, min(500, int(rate / 10)))
    t0 = time.time()
    n = 0
    for i in range(0, len(phase), chunk):
        if rate:
            time.sleep(max(0.0, t0 + i / rate - time.time()))
        recs = [_stamp(item) for item in phase[i:i + chunk]]
        r = res.kinesis.put_records(StreamName=res.stream_name, Records=[
            {"PartitionKey": pk, "Data": data} for pk, data in recs])
        assert r.get("FailedRecordCount", 0) == 0, r
        n += len(recs)
    return n

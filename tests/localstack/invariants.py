"""The local stack's invariants: each a function of the run's `Outcome` that returns its failures (empty when it
holds). `INVARIANTS` lists them in the order the report prints their failures; the README's numbers are in the
docstrings. To add one, write a function here and add it to the list: the report runs every one."""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from . import reltio_stream
from .observed import Outcome, contact_view
from .webhook import WebhookDeliverer
from .workload import OVERSIZED


def killed_functions_were_killed_once(o: Outcome) -> list[str]:
    """5. A function scheduled to be killed mid-batch was killed exactly once (one of its instances)."""
    return [f"{name} was to be killed mid-batch once, killed {o.hosts[name].kills} times"
            for name in o.s.kill if name in o.hosts and o.hosts[name].kills != 1]


def kafka_poller_kept_running(o: Outcome) -> list[str]:
    """Kafka path: the Kafka event source never stopped on an error of its own."""
    poller = o.sources.kafka_poller
    if o.s.path != "kafka" or not poller.error:
        return []
    return [f"Kafka poller stopped: {poller.error}"]


def kafka_on_failure_queue_is_empty(o: Outcome) -> list[str]:
    """Kafka path: no batch was given up on (the template's stream failure queue stays empty)."""
    if o.s.path != "kafka" or not o.stream_failures:
        return []
    return [f"Kafka on-failure queue holds {len(o.stream_failures)} batches: "
            f"{[m['Body'][:200] for m in o.stream_failures][:2]}"]


def broker_restarted_once(o: Outcome) -> list[str]:
    """Kafka path with `restart_broker`: the broker was restarted exactly once."""
    if o.s.path != "kafka" or not o.s.restart_broker or o.procs.broker.restarts == 1:
        return []
    return [f"the broker was to restart once, restarted {o.procs.broker.restarts} times"]


def stream_dlq_holds_only_the_poison_record(o: Outcome) -> list[str]:
    """3. Kafka path: the stream DLQ holds the deliberate poison record (with bad inputs) and nothing else,
    counted by distinct topic position."""
    if o.s.path != "kafka":
        return []
    positions = {(json.loads(m["Body"]).get("partition"), json.loads(m["Body"]).get("offset"))
                 for m in o.stream_dead}
    expected = 1 if o.s.bad_inputs else 0
    if len(positions) == expected:
        return []
    return [f"stream DLQ holds {len(positions)} distinct records, expected {expected}: "
            f"{[m['Body'][:200] for m in o.stream_dead][:3]}"]


def reltio_holds_the_source_end_state(o: Outcome) -> list[str]:
    """1. Every crosswalk in Reltio holds exactly the mapped last version of its source row (a deleted row's or an
    old primary key's crosswalk is end-dated). A mismatch is a lost change, or a stale write when Reltio holds an
    older version of the row."""
    out = []
    for key, exp in o.wl.expected.items():
        got = o.reltio.contribution(key)
        if got == "absent" or got != exp:
            kind = "stale write" if got in o.history[key][:-1] else "lost change"
            out.append(f"{kind}: crosswalk {key[0].split('/')[-1]}/{key[1]} holds {got}, source says {exp}")
    return out


def every_emitted_event_was_enqueued(o: Outcome) -> list[str]:
    """2. Every event Reltio emitted was accepted by the receiver (2xx; on the Kafka path: acknowledged by the
    broker; on the native path: published to the topic or sent to the queue), and Reltio's sender gave up on
    none."""
    out = []
    missing = {e["id"] for e in o.reltio.events} - set(o.deliverer.accepted)
    if missing:
        out.append(f"{len(missing)} Reltio events never enqueued (e.g. {sorted(missing)[:3]})")
    if getattr(o.deliverer, "given_up", None):
        out.append(f"Reltio's sender gave up on {len(o.deliverer.given_up)} events")
    return out


def the_forged_webhook_was_refused(o: Outcome) -> list[str]:
    """3. With bad inputs on the webhook path: the webhook signed with the wrong secret was answered 401."""
    if not isinstance(o.deliverer, WebhookDeliverer):
        return []
    return [f"forged webhook answered {status}, expected 401" for status in o.deliverer.forged if status != 401]


def cdc_dlq_holds_only_the_bad_records(o: Outcome) -> list[str]:
    """3. cdc-ingest's DLQ holds exactly the workload's deliberately bad records (the malformed and the keyless
    one), counted as distinct records."""
    expected = sum(o.wl.bad.values())
    if len(o.cdc_dlq_records) == expected:
        return []
    return [f"cdc DLQ holds {len(o.cdc_dlq_records)} distinct records, the workload deliberately caused "
            f"{expected}: {o.cdc_dlq_reasons}"]


def stored_letter_payloads_are_kept(o: Outcome) -> list[str]:
    """3. A dead letter too large for its queue points at its payload in the letter store: the object is there,
    with the pointer's size and SHA-256; with bad inputs the oversized record's letter is one of them, its payload
    the record's bytes."""
    out, stored = [], 0
    for queue, messages in o.dlq.items():
        for m in messages:
            try:
                letter = json.loads(m["Body"])
            except ValueError:
                continue
            for field, pointer in letter.items():
                if not (field.endswith("Omitted") and isinstance(pointer, dict) and pointer.get("key")):
                    continue
                stored += 1
                try:
                    data = o.res.stored_letter(pointer["key"])
                except Exception as e:  # noqa: BLE001 - reported as the invariant's failure
                    out.append(f"{queue}: the letter store has no {pointer['key']}: {e}")
                    continue
                if len(data) != pointer.get("bytes") or hashlib.sha256(data).hexdigest() != pointer.get("sha256"):
                    out.append(f"{queue}: {pointer['key']} does not match its letter's size and SHA-256")
                elif o.s.bad_inputs and queue == "cdc-dlq" and data != OVERSIZED:
                    out.append(f"{queue}: {pointer['key']} is not the oversized record")
    if o.s.bad_inputs and stored == 0:
        out.append("the oversized bad record's letter does not point at the letter store")
    return out


def kinesis_on_failure_queue_is_empty(o: Outcome) -> list[str]:
    """3. No Kinesis batch was given up on (cdc-ingest's on-failure queue stays empty)."""
    failed = o.dlq["cdc-stream-failures"]
    return [f"Kinesis on-failure queue holds {len(failed)} batches"] if failed else []


def event_dlq_is_empty(o: Outcome) -> list[str]:
    """3. No event queue message went past maxReceiveCount (the event queue's redrive DLQ stays empty)."""
    dead = o.dlq["events-dlq"]
    if not dead:
        return []
    return [f"event DLQ holds {len(dead)} messages: {[m['Body'][:120] for m in dead][:3]}"]


def crm_dlq_holds_only_the_bad_message(o: Outcome) -> list[str]:
    """3. With crm-updater: its DLQ holds the deliberate non-event queue message (with bad inputs) and nothing
    else, counted as distinct messages."""
    if not o.crm:
        return []
    expected = 1 if o.s.bad_inputs else 0
    if len(o.crm_dlq_messages) == expected:
        return []
    bodies = [m["Body"] for m in o.dlq["crm-dlq"]]
    return [f"crm DLQ holds {len(bodies)} messages, expected {expected}: {[b[:200] for b in bodies][:3]}"]


def contacts_equal_their_golden_records(o: Outcome) -> list[str]:
    """4. With crm-updater, per live entity with live SFDC_CONTACT crosswalks (crm-mapping.toml: survivor = lowest
    Id, merge strategy archive): the survivor Contact holds the golden record's mapped fields, every other Contact
    is archived pointing at the survivor, and no child record points at an archived Contact."""
    if not o.crm:
        return []
    out = []
    for e, survivor, losers in o.contact_entities:
        mismatch = o.contact_mismatch(e, survivor)
        if mismatch:
            out.append(f"Contact {survivor} of {e.uri} differs from the golden record: "
                       f"got {mismatch[0]}, golden {mismatch[1]}")
        for cid in losers:
            if not o.archived_into(cid, survivor):
                r = o.sf.contact(cid) or {}
                out.append(f"Contact {cid} merged into {survivor} ({e.uri}) is not archived: "
                           f"{ {k: r.get(k) for k in ('MDM_Status__c', 'Merged_Into__c')} }")
            for obj, child in o.sf.children_of(cid):
                out.append(f"{obj} {child} still points at merged-away Contact {cid}")
    return out


def no_stale_contact_writes(o: Outcome) -> list[str]:
    """4. With crm-updater: no write to a survivor Contact carries the values of an older entity version than a
    write before it (counted from the entity's last merge, after which one version history applies)."""
    if not o.crm:
        return []
    out = []
    for e, survivor, _ in o.contact_entities:
        since = o.reltio.merged_at.get(e.id, 0)
        views = [(ms, contact_view(g)) for _, ms, g in o.reltio.versions.get(e.id, []) if ms >= since]
        high = -1
        for wms, wrow in o.sf.contact_writes.get(survivor, []):
            if wms < since:
                continue
            idx = max((i for i, (vms, v) in enumerate(views)
                       if vms <= wms and all(wrow.get(k) == x for k, x in v.items())), default=None)
            if idx is None:
                continue
            if idx < high and views[idx][1] != views[high][1]:
                out.append(f"stale write: Contact {survivor} of {e.uri} got version #{idx}'s values "
                           f"after version #{high}'s")
            high = max(high, idx)
    return out


def queue_holds_the_emitted_events(o: Outcome) -> list[str]:
    """2. Without crm-updater (nothing consumes the event queue): every emitted event is on the queue with
    docs/contract.md's attributes (on the native path, Reltio's headers, and the body in the stream's format), and
    nothing else is (the deliberate non-event message aside)."""
    if o.crm:
        return []
    out, seen = [], set()
    emitted = {(e["uri"], str(e["version"]), e["type"]): e for e in o.reltio.events}
    for m in o.queue_messages:
        a = {k: v.get("StringValue") for k, v in (m.get("MessageAttributes") or {}).items()}
        eid = a.get("eventId")
        if eid == "bad-1":
            continue
        try:
            body = reltio_stream.decode(m["Body"])
        except ValueError:
            out.append(f"queue message {eid} body is not the event JSON (plain or zipped)")
            continue
        key = (a.get("sourceObjectUri"), a.get("objectVersion"), a.get("eventType"))
        ev = emitted.get(key)
        if ev is None:
            out.append(f"queue message with unknown eventId {eid!r} (forged or altered)")
            continue
        seen.add(key)
        want = {"eventType": ev["type"], "tenantId": "LOCAL1", "sourceObjectUri": ev["uri"],
                "objectVersion": str(ev["version"])}
        bad = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
        if bad or body.get("type") != ev["type"]:
            out.append(f"queue message {eid}: attributes (got, want) {bad}")
    if set(emitted) - seen:
        out.append(f"{len(set(emitted) - seen)} emitted events are not on the queue")
    return out


def every_event_is_one_change_record(o: Outcome) -> list[str]:
    """7. With analytics: every event Reltio emitted is a change record on S3 (matched by entity, version and
    type) and nothing else is; a duplicate record of one event is counted, not failed (the views drop it)."""
    if not o.analytics:
        return []
    out = []
    unrecorded, unknown = o.emitted_keys - o.landed_keys, o.landed_keys - o.emitted_keys
    if unrecorded:
        out.append(f"{len(unrecorded)} emitted events have no change record (e.g. {sorted(unrecorded)[:3]})")
    if unknown:
        out.append(f"{len(unknown)} change records match no emitted event (e.g. {sorted(unknown)[:3]})")
    return out


def written_batches_sent_their_refresh_signal(o: Outcome) -> list[str]:
    """7. With analytics: records were written, so a refresh signal reached its EventBridge rule's target."""
    if not o.analytics or not o.landed or o.refresh_signals:
        return []
    return ["records were written but no refresh signal reached its rule's target"]


def analytics_dlqs_hold_only_the_bad_input(o: Outcome) -> list[str]:
    """7. With analytics: analytics-sink's DLQ holds the deliberate non-event message (with bad inputs) and nothing
    else, counted by message id; the analytics queue's redrive DLQ holds nothing."""
    if not o.analytics:
        return []
    out = []
    expected = 1 if o.s.bad_inputs else 0
    if len({json.loads(m["Body"]).get("messageId") for m in o.analytics_dead}) != expected:
        out.append(f"analytics DLQ holds {len(o.analytics_dead)} messages, expected {expected}: "
                   f"{[m['Body'][:160] for m in o.analytics_dead][:3]}")
    if o.analytics_stuck:
        out.append(f"analytics queue DLQ holds {len(o.analytics_stuck)} messages")
    return out


def warehouse_views_equal_reltio(o: Outcome) -> list[str]:
    """7. With analytics: the shipped DuckDB SQL over the landed files gives, per live entity, its golden values as
    `current` (no row for a merged-away or unknown entity), and one `history` row per distinct record."""
    if not o.analytics or o.warehouse is None:
        return []
    current, history = o.warehouse
    out = []
    columns = {"first_name": "FirstName", "last_name": "LastName", "email": "Email", "phone": "Phone"}
    live = {e.uri: e for e in o.reltio.live_entities()}
    for uri, e in live.items():
        golden = e.golden_simple()
        want = {col: (golden.get(attr) or [None])[0] for col, attr in columns.items()}
        row = current.get(uri)
        got = {col: row.get(col) for col in columns} if row else None
        if got != want:
            out.append(f"warehouse current row of {uri} is {got}, the golden record {want}")
    for uri in set(current) - set(live):
        out.append(f"warehouse current holds {uri}, which is merged away or unknown")
    if len(history) != len(o.distinct_records):
        out.append(f"warehouse history has {len(history)} rows for {len(o.distinct_records)} distinct records")
    return out


def reltio_writes_follow_the_source_order(o: Outcome) -> list[str]:
    """6. Per crosswalk key, no Reltio write carries an older version of the row than a write before it
    (redeliveries repeat a version, never go back: each key's records are delivered in order)."""
    n = o.out_of_order_writes
    if not n:
        return []
    return [f"{n} Reltio writes carried an older version of their source row than a write before them "
            "(per-key order lost)"]


Invariant = Callable[[Outcome], list[str]]

INVARIANTS: list[Invariant] = [
    killed_functions_were_killed_once,
    kafka_poller_kept_running,
    kafka_on_failure_queue_is_empty,
    broker_restarted_once,
    stream_dlq_holds_only_the_poison_record,
    reltio_holds_the_source_end_state,
    every_emitted_event_was_enqueued,
    the_forged_webhook_was_refused,
    cdc_dlq_holds_only_the_bad_records,
    stored_letter_payloads_are_kept,
    kinesis_on_failure_queue_is_empty,
    event_dlq_is_empty,
    crm_dlq_holds_only_the_bad_message,
    contacts_equal_their_golden_records,
    no_stale_contact_writes,
    queue_holds_the_emitted_events,
    every_event_is_one_change_record,
    written_batches_sent_their_refresh_signal,
    analytics_dlqs_hold_only_the_bad_input,
    warehouse_views_equal_reltio,
    reltio_writes_follow_the_source_order,
]


def check(o: Outcome) -> list[str]:
    """Every invariant's failures, in the list's order."""
    return [failure for invariant in INVARIANTS for failure in invariant(o)]

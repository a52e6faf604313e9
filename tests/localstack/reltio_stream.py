"""Reltio's own stream (SNS or SQS destination) as Reltio's message-streaming documentation describes it
(docs/reference.md, "Reltio streaming to SNS/SQS"), built from the simulator's events; the shapes mirror the
testkit's tests/src/reltio_stream.rs, which the consumers' stream_formats tests use:

- payload types: `snapshot` (`type`, `object`, `ovChanged`), `snapshot-with-delta` (adds `uri` and `deltas`),
  `deltas` (`type`, `uri`, `deltas`: no object), `skip` (skipPayload: `type` and `ovChanged` only); merge events
  (`ENTITIES_MERGED`, `ENTITY_LOST_MERGE`, `ENTITIES_SPLITTED`) carry `type` and `uris` in every payload type;
- formats: `json`, and `zip` (JSON_ZIP_BASE64: the UTF-8 JSON gzipped, then base64);
- headers, sent as String message attributes (whether Reltio's arrive as attributes is unverified): `tenantId`,
  `eventType`, `sourceObjectUri`, and `objectVersion` (sent when the filtering fields list it; the stack lists it).
  Nothing else: the `eventId` and `entityType` attributes are our receivers', not Reltio's.

The tenant and the version travel in the headers only (the documented bodies have neither), so the consumers read
them from there. A message without an `eventId` attribute gets its event id from its body in the consumers (the hex
SHA-256 of the unzipped JSON: shared/domain/src/reltio/message.rs); `event_id` computes the same here.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json

FORMATS = ("json", "zip")
PAYLOADS = ("snapshot", "snapshot-with-delta", "deltas", "skip")
MERGE_EVENTS = ("ENTITIES_MERGED", "ENTITY_LOST_MERGE", "ENTITIES_SPLITTED")


def entity_uri(event: dict) -> str | None:
    """The entity an event is about: its object's URI, else its `uri`, else the first of its `uris` (a merge's
    winner for ENTITIES_MERGED, the loser for ENTITY_LOST_MERGE)."""
    return (event.get("object") or {}).get("uri") or event.get("uri") or (event.get("uris") or [None])[0]


def _values(snapshot: dict | None) -> dict[str, list[dict]]:
    """Attribute name → its values as `{"value", "ov"}`, in the snapshot's order (golden values first)."""
    out = {}
    for name, items in ((snapshot or {}).get("attributes") or {}).items():
        out[name] = [{"value": i.get("value"), "ov": bool(i.get("ov"))} for i in items]
    return out


def deltas(before: dict | None, after: dict, ov_changed: bool) -> dict:
    """The change from snapshot `before` (None: the entity is new) to `after`, per attribute value, in the
    documented shape (`type`, `attributeType`, `newValue`/`oldValue` as `{"value", "ov"}`): a value that replaced
    one is ATTRIBUTE_CHANGED, one more is ATTRIBUTE_ADDED, one fewer ATTRIBUTE_REMOVED."""
    etype = after.get("type", "")
    old, new = _values(before), _values(after)
    delta = []
    for name in sorted(set(old) | set(new)):
        came, gone = list(new.get(name, [])), []  # the values' multisets: what is left of each after the other
        for v in old.get(name, []):
            if v in came:
                came.remove(v)
            else:
                gone.append(v)
        attribute = f"{etype}/attributes/{name}"
        for i in range(max(len(gone), len(came))):
            item = {"type": "ATTRIBUTE_CHANGED", "attributeType": attribute}
            if i < len(came):
                item["newValue"] = came[i]
            if i < len(gone):
                item["oldValue"] = gone[i]
            if "oldValue" not in item:
                item["type"] = "ATTRIBUTE_ADDED"
            elif "newValue" not in item:
                item["type"] = "ATTRIBUTE_REMOVED"
            delta.append(item)
    return {"ovChanged": ov_changed, "delta": delta}


def event_json(event: dict, payload: str, before: dict | None = None) -> str:
    """The simulator's `event` (its webhook form: `type`, `tenantId`, `objectVersion`, `updatedTime`, `object` or
    `uris`, `ovChanged`) as Reltio streams it with `payload`, as compact JSON text; `before` is the entity's
    previous snapshot (for the deltas)."""
    etype = event["type"]
    ov_changed = event.get("ovChanged", True)
    if etype in MERGE_EVENTS:
        body = {"type": etype, "uris": event.get("uris") or [entity_uri(event)]}
    elif payload == "skip":
        body = {"type": etype, "ovChanged": ov_changed}
    else:
        obj = event.get("object") or {}
        if payload == "snapshot":
            body = {"type": etype, "object": obj, "ovChanged": ov_changed}
        elif payload == "snapshot-with-delta":
            body = {"type": etype, "object": obj, "ovChanged": ov_changed, "uri": obj.get("uri"),
                    "deltas": deltas(before, obj, ov_changed)}
        elif payload == "deltas":
            body = {"type": etype, "uri": obj.get("uri"), "deltas": deltas(before, obj, ov_changed)}
        else:
            raise ValueError(f"unknown payload type {payload!r} (one of {', '.join(PAYLOADS)})")
    return json.dumps(body, separators=(",", ":"))


def body(text: str, fmt: str) -> str:
    """A message body in `fmt`: the JSON as it is, or JSON_ZIP_BASE64 (gzip, then base64)."""
    if fmt == "json":
        return text
    if fmt == "zip":
        return base64.b64encode(gzip.compress(text.encode("utf-8"))).decode("ascii")
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def decode(message_body: str) -> dict:
    """A message body of either format back to the event (`base64 --decode | gunzip`, as Reltio's example);
    ValueError when it is neither."""
    try:
        return json.loads(message_body)
    except ValueError:
        pass
    try:
        return json.loads(gzip.decompress(base64.b64decode(message_body, validate=True)))
    except (OSError, EOFError) as e:  # not gzip, or cut short
        raise ValueError(f"neither JSON nor JSON_ZIP_BASE64: {e}") from e


def headers(event: dict) -> dict[str, str]:
    """Reltio's headers of the simulator's `event`: `tenantId`, `eventType`, `sourceObjectUri`, `objectVersion`."""
    h = {"tenantId": event.get("tenantId"), "eventType": event["type"], "sourceObjectUri": entity_uri(event),
         "objectVersion": None if event.get("objectVersion") is None else str(event["objectVersion"])}
    return {k: v for k, v in h.items() if v is not None}


def event_id(text: str, headers: dict[str, str] | None = None) -> str:
    """The event id the consumers give a message without an `eventId` attribute: the hex SHA-256 of its JSON, with
    the `sourceObjectUri` and `objectVersion` headers when the message carries either (shared/domain/src/reltio/
    message.rs: bodies of the same text, such as skipPayload's, are told apart by them)."""
    headers = headers or {}
    uri, version = headers.get("sourceObjectUri"), headers.get("objectVersion")
    if uri is not None or version is not None:
        text = f"{text}\n{uri or ''}\n{version or ''}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

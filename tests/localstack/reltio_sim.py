"""Reltio simulator: OAuth tokens that expire, crosswalk-keyed entity upserts (full and partialOverride),
crosswalks attached to an existing entity through its contributor crosswalk (`"dataProvider": false,
"contributorProvider": true`: the write-back of a Salesforce Contact Id), crosswalk end-dating (deleteDate) and
deletion, GET of entities (a merged loser resolves to its winner), a deterministic match rule, and change/merge
events with objectVersion.

Survivorship (the golden value of an attribute): the value from the active (not end-dated) crosswalk whose
contribution was updated last (Reltio's default "LUD" strategy); it is marked `ov: true`.
Match rule: two live entities whose golden Email values are equal after trim+lowercase are merged at once.
Winner: the entity created first (lowest creation sequence); the loser's crosswalks move to the winner, its
URI keeps resolving to the winner. A merge emits ENTITY_CHANGED (winner snapshot), ENTITIES_MERGED (uris: winner
first) and ENTITY_LOST_MERGE (the loser), as docs/reference.md describes.
"""
from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import Faults
from .util import QuietHandler, Server, close_all, now_ms

TENANT = "LOCAL1"


def simple(values):
    """Attribute values without Reltio's decorations: ["Jane"], [{"City": ["Austin"]}]."""
    out = []
    for v in values or []:
        x = v.get("value") if isinstance(v, dict) else v
        if isinstance(x, dict):
            x = {k: simple(vs) for k, vs in sorted(x.items())}
        out.append(x)
    return out


def xw_key(xw) -> tuple:
    return (xw.get("type"), str(xw.get("value")), xw.get("sourceTable") or "")


class Entity:
    def __init__(self, seq, etype):
        self.seq = seq
        self.id = f"0L{seq:06d}"
        self.uri = f"entities/{self.id}"
        self.type = etype
        self.created = now_ms()
        self.updated = self.created
        self.version = 0
        self.crosswalks: dict[tuple, dict] = {}  # key -> {type,value,sourceTable,deleteDate,attrs,updated}
        self.merged_into: str | None = None

    def golden(self) -> dict:
        best: dict[str, tuple] = {}
        for key, xw in self.crosswalks.items():
            if xw.get("deleteDate"):
                continue
            for name, values in xw["attrs"].items():
                if values and (name not in best or xw["updated"] > best[name][0]):
                    best[name] = (xw["updated"], key, values)
        return {name: (key, values) for name, (_, key, values) in best.items()}

    def golden_simple(self) -> dict:
        return {name: simple(values) for name, (_, values) in self.golden().items()}

    def snapshot(self) -> dict:
        golden = self.golden()
        attrs: dict[str, list] = {}
        n = 0
        for key, xw in sorted(self.crosswalks.items(), key=lambda kv: kv[1]["updated"]):
            if xw.get("deleteDate"):
                continue
            for name, values in xw["attrs"].items():
                for v in values:
                    n += 1
                    ov = golden.get(name, (None,))[0] == key
                    item = {"type": f"{self.type}/attributes/{name}", "ov": ov, "value": v.get("value"),
                            "uri": f"{self.uri}/attributes/{name}/{n}"}
                    attrs.setdefault(name, []).append(item)
        for name in attrs:  # golden values first, as Reltio lists OV values first
            attrs[name].sort(key=lambda i: not i["ov"])
        xws = []
        for i, xw in enumerate(self.crosswalks.values()):
            c = {"uri": f"{self.uri}/crosswalks/{i}", "type": xw["type"], "value": xw["value"],
                 "createDate": xw["created"], "updateDate": xw["updated"]}
            if xw["sourceTable"]:
                c["sourceTable"] = xw["sourceTable"]
            if xw.get("deleteDate"):
                c["deleteDate"] = xw["deleteDate"]
            xws.append(c)
        return {"uri": self.uri, "type": self.type, "createdTime": self.created, "updatedTime": self.updated,
                "attributes": attrs, "crosswalks": xws}


class ReltioSim:
    def __init__(self, faults: Faults | None = None, token_ttl_s: int = 30, client=("reltio-local", "s3cret")):
        self.faults = faults or Faults()
        self.token_ttl_s = token_ttl_s
        self.client = client
        self.lock = threading.RLock()
        self.tokens: dict[str, float] = {}
        self.entities: dict[str, Entity] = {}
        self.index: dict[tuple, str] = {}
        self.seq = 0
        self.events: list[dict] = []  # (meta) every event emitted, in order
        self.sink = None  # callable(event_body_dict, event_id)
        self.calls: dict[str, int] = {}
        self.calls_by: dict[str, dict[str, int]] = {}  # listener tag -> calls served by that listener
        self.writes: dict[tuple, list] = {}  # crosswalk key -> [(ms, simple contribution or None if end-dated)]
        self.versions: dict[str, list] = {}  # entity id -> [(version, ms, golden_simple)]
        self.merges = 0
        self.merged_at: dict[str, int] = {}  # winner id -> time of its last merge
        # crosswalk value -> number of POSTs carrying it still to be answered 500 (not retried in-process by
        # cdc-ingest, so the record becomes a batch item failure and the poller retries from its sequence number)
        self.fail_500: dict[str, int] = {}
        self.outage_until = 0.0
        self.outage_status = 503
        # Webhook registrations (`POST/PUT {tenant}/configuration/webhooks`, the integration guide's shape): name ->
        # registration. Deliveries follow the registered retry policy (`retry_policy`).
        self.webhooks: dict[str, dict] = {}
        self.server = Server(_Handler, sim=self, tag=None)
        self.listeners: list[Server] = []
        self.url = self.server.url
        self.api_url = f"{self.url}/reltio/api/{TENANT}"
        self.auth_url = f"{self.url}/oauth/token"

    def listener(self, tag: str) -> tuple[str, str]:
        """Another port onto the same tenant whose calls are also counted under `tag` (one per execution
        environment, so a kill can wait for that environment's own first request). Returns (api_url, auth_url)."""
        srv = Server(_Handler, sim=self, tag=tag)
        with self.lock:
            self.listeners.append(srv)
            self.calls_by.setdefault(tag, {})
        return f"{srv.url}/reltio/api/{TENANT}", f"{srv.url}/oauth/token"

    def calls_of(self, tag: str, name: str | None = None) -> int:
        with self.lock:
            c = self.calls_by.get(tag, {})
            return c.get(name, 0) if name else sum(c.values())

    def close(self):
        close_all([srv.close for srv in [self.server, *self.listeners]])

    def _stamp(self) -> int:
        """Now, in epoch ms, strictly after every earlier stamp: two updates within one millisecond keep their
        order (the contribution updated last wins the golden value, and an entity's updatedTime grows)."""
        with self.lock:
            self._last_ms = max(now_ms(), getattr(self, "_last_ms", 0) + 1)
            return self._last_ms

    # ------------------------------------------------------------------ model
    def resolve(self, eid: str) -> Entity | None:
        e = self.entities.get(eid)
        while e is not None and e.merged_into:
            e = self.entities[e.merged_into]
        return e

    def _emit(self, body: dict, entity_uri: str):
        eid = f"{entity_uri.split('/')[-1]}-{body.get('objectVersion')}-{body['type']}"
        self.events.append({"id": eid, "type": body["type"], "uri": entity_uri, "ms": now_ms(),
                            "version": body.get("objectVersion")})
        if self.sink:
            self.sink(body, eid)

    def _changed(self, e: Entity, created: bool):
        e.version += 1
        e.updated = self._stamp()
        self.versions.setdefault(e.id, []).append((e.version, e.updated, e.golden_simple()))
        self._emit({"type": "ENTITY_CREATED" if created else "ENTITY_CHANGED", "tenantId": TENANT,
                    "objectVersion": e.version, "updatedTime": e.updated, "object": e.snapshot(),
                    "ovChanged": True}, e.uri)
        self._match(e)

    def _email(self, e: Entity):
        v = e.golden_simple().get("Email")
        return str(v[0]).strip().lower() if v and isinstance(v[0], str) and v[0].strip() else None

    def _match(self, e: Entity):
        mail = self._email(e)
        if not mail:
            return
        for other in list(self.entities.values()):
            if other is e or other.merged_into or other.type != e.type or self._email(other) != mail:
                continue
            winner = self._merge(e, other)
            return self._match(winner) if winner is not e else None

    def _merge(self, a: Entity, b: Entity) -> Entity:
        """Merges two live entities (the one created first wins, the loser's crosswalks move to it) with the
        merge's three events. Returns the winner."""
        winner, loser = (a, b) if a.seq < b.seq else (b, a)
        for key, xw in loser.crosswalks.items():
            winner.crosswalks[key] = xw
            self.index[key] = winner.id
        loser.crosswalks = {}
        loser.merged_into = winner.id
        self.merges += 1
        merged = self._stamp()
        self.merged_at[winner.id] = merged
        winner.version += 1
        winner.updated = merged
        self.versions.setdefault(winner.id, []).append((winner.version, winner.updated, winner.golden_simple()))
        self._emit({"type": "ENTITY_CHANGED", "tenantId": TENANT, "objectVersion": winner.version,
                    "updatedTime": winner.updated, "object": winner.snapshot(), "ovChanged": True}, winner.uri)
        self._emit({"type": "ENTITIES_MERGED", "tenantId": TENANT, "objectVersion": winner.version,
                    "updatedTime": winner.updated, "uris": [winner.uri, loser.uri]}, winner.uri)
        loser.version += 1
        self._emit({"type": "ENTITY_LOST_MERGE", "tenantId": TENANT, "objectVersion": loser.version,
                    "updatedTime": winner.updated, "uris": [loser.uri, winner.uri],
                    "object": {"uri": loser.uri, "type": loser.type}}, loser.uri)
        return winner

    def post_entity(self, body: dict, partial: bool) -> dict:
        etype = body.get("type")
        xws = body.get("crosswalks") or []
        attrs = body.get("attributes") or {}
        if not isinstance(etype, str) or not etype.startswith("configuration/entityTypes/") or not xws:
            return {"successful": False, "errors": {"errorCode": 400, "errorMessage": "type and crosswalks required"}}
        for name, values in attrs.items():
            if not isinstance(values, list) or any(not isinstance(v, dict) or "value" not in v for v in values):
                return {"successful": False,
                        "errors": {"errorCode": 400, "errorMessage": f"invalid attribute {name}"}}
        anchors = [x for x in xws if isinstance(x, dict) and x.get("contributorProvider")]
        if anchors:
            return self._post_to_contributor(xws, anchors, attrs, partial)
        xw = xws[0]
        key = xw_key(xw)
        with self.lock:
            e = self.resolve(self.index.get(key, ""))
            created = e is None
            if created:
                self.seq += 1
                e = Entity(self.seq, etype)
                self.entities[e.id] = e
                self.index[key] = e.id
            ms = self._stamp()
            cur = e.crosswalks.get(key)
            before = copy.deepcopy(cur)
            if cur is None:
                cur = {"type": key[0], "value": key[1], "sourceTable": key[2], "attrs": {}, "created": ms,
                       "updated": ms, "deleteDate": None}
                e.crosswalks[key] = cur
            if partial:
                cur["attrs"].update({k: v for k, v in attrs.items()})
            else:
                cur["attrs"] = dict(attrs)
            # A posted crosswalk without deleteDate is live again (unverified against a live tenant).
            cur["deleteDate"] = xw.get("deleteDate")
            changed = before is None or before["attrs"] != cur["attrs"] or before["deleteDate"] != cur["deleteDate"]
            if changed:
                cur["updated"] = ms
            self.writes.setdefault(key, []).append(
                (ms, None if cur["deleteDate"] else {k: simple(v) for k, v in cur["attrs"].items()}))
            if changed:
                self._changed(e, created)
            return {"uri": e.uri, "status": "OK", "successful": True}

    def _post_to_contributor(self, xws: list, anchors: list, attrs: dict, partial: bool) -> dict:
        """A POST naming an existing crosswalk with `"dataProvider": false, "contributorProvider": true`: that
        crosswalk identifies the entity and is left as it is; every other crosswalk of the body joins that entity
        (docs/reference.md, "Reltio": attaching a crosswalk), a data provider one with the body's attributes
        (replacing its contribution, or merged into it under partialOverride), a `"dataProvider": false` one with
        none. A crosswalk another entity holds brings that entity along: the two merge, as two entities sharing a
        crosswalk do in Reltio. One ENTITY_CHANGED when a crosswalk was added or a contribution changed; none when
        the post changes nothing."""
        if any(a.get("dataProvider") is not False for a in anchors):
            return _item_error(400, "contributorProvider can be used only for non-dataProvider crosswalks")
        if len(anchors) > 1:
            return _item_error(400, "only one contributorProvider crosswalk can be posted for an existing entity")
        with self.lock:
            e = self.resolve(self.index.get(xw_key(anchors[0]), ""))
            if e is None:
                # Reltio's answer here is unverified (docs/reference.md): the simulator refuses the item.
                return _item_error(404, f"no entity holds the contributor crosswalk {xw_key(anchors[0])}")
            changed, merges = False, self.merges
            for xw in xws:
                if xw is anchors[0] or not isinstance(xw, dict):
                    continue
                e, one = self._join(e, xw, attrs, partial)
                changed = changed or one
            if changed:
                self._changed(e, False)
            elif self.merges != merges:
                self._match(e)  # a merge's winner is matched again, as after a merge by the match rule
            return {"uri": e.uri, "status": "OK", "successful": True}

    def _join(self, e: Entity, xw: dict, attrs: dict, partial: bool) -> tuple[Entity, bool]:
        """Puts crosswalk `xw` on entity `e` (merging in the entity that holds it, if another does). Returns the
        entity it is on now (the merge's winner) and whether anything changed beyond a merge."""
        key = xw_key(xw)
        owner = self.resolve(self.index.get(key, ""))
        if owner is not None and owner is not e:
            e = self._merge(e, owner)
        ms = self._stamp()
        cur = e.crosswalks.get(key)
        before = copy.deepcopy(cur)
        if cur is None:
            cur = {"type": key[0], "value": key[1], "sourceTable": key[2], "attrs": {}, "created": ms,
                   "updated": ms, "deleteDate": None}
            e.crosswalks[key] = cur
            self.index[key] = e.id
        if xw.get("dataProvider") is not False:
            # A data provider's slice is overwritten by the body's attributes, as in any POST.
            cur["attrs"] = {**cur["attrs"], **attrs} if partial else dict(attrs)
            cur["deleteDate"] = xw.get("deleteDate")
            self.writes.setdefault(key, []).append(
                (ms, None if cur["deleteDate"] else {k: simple(v) for k, v in cur["attrs"].items()}))
        changed = before is None or before["attrs"] != cur["attrs"] or before["deleteDate"] != cur["deleteDate"]
        if changed:
            cur["updated"] = ms
        return e, changed

    def delete_crosswalk(self, key) -> bool:
        with self.lock:
            e = self.resolve(self.index.get(key, ""))
            if e is None or key not in e.crosswalks:
                return False
            del e.crosswalks[key]
            del self.index[key]
            self.writes.setdefault(key, []).append((now_ms(), None))
            self._changed(e, False)
            return True

    # ------------------------------------------------------------------ views for the checks
    def live_entities(self):
        with self.lock:
            return [e for e in self.entities.values() if not e.merged_into]

    def contribution(self, key):
        """The crosswalk's current contribution (simple values), None when end-dated, missing when absent."""
        with self.lock:
            e = self.resolve(self.index.get(key, ""))
            if e is None or key not in e.crosswalks:
                return "absent"
            xw = e.crosswalks[key]
            return None if xw.get("deleteDate") else {k: simple(v) for k, v in xw["attrs"].items()}

    def retry_policy(self) -> tuple[int, float, float]:
        """(maxRetries, retryDelay in seconds, backoffMultiplier) of the webhook registration, else Reltio's
        defaults (3, 5 s, 2.0)."""
        with self.lock:
            reg = next(iter(self.webhooks.values()), None)
        p = (reg or {}).get("retryPolicy") or {}
        return (int(p.get("maxRetries", 3)), float(p.get("retryDelay", 5000)) / 1000,
                float(p.get("backoffMultiplier", 2.0)))

    def outage(self, seconds: float, status: int = 503):
        """Every call (the token endpoint included) answers `status` for `seconds`: 503 an outage, 401 a refused
        credential."""
        self.outage_status = status
        self.outage_until = time.time() + seconds

    def entity_of(self, key):
        with self.lock:
            return self.resolve(self.index.get(key, ""))


def _item_error(code: int, message: str) -> dict:
    """A refused item of a POST /entities answer (the simulator's shape: Reltio's is unverified)."""
    return {"successful": False, "errors": {"errorCode": code, "errorMessage": message}}


class _Handler(QuietHandler):
    @property
    def sim(self) -> ReltioSim:
        return self.server.sim

    def _count(self, name):
        with self.sim.lock:
            self.sim.calls[name] = self.sim.calls.get(name, 0) + 1
            tag = self.server.tag
            if tag is not None:
                by = self.sim.calls_by.setdefault(tag, {})
                by[name] = by.get(name, 0) + 1

    def _down(self) -> bool:
        if time.time() >= self.sim.outage_until:
            return False
        with self.sim.lock:
            k = f"outage {self.sim.outage_status}"
            self.sim.faults.injected[k] = self.sim.faults.injected.get(k, 0) + 1
        status = self.sim.outage_status
        body = {"error": "invalid_client"} if status == 401 else {"errorMessage": "unavailable", "errorCode": status}
        self.send(status, body)
        return True

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        tok = auth[7:] if auth.lower().startswith("bearer ") else ""
        exp = self.sim.tokens.get(tok)
        if exp is None or exp < time.time():
            self.send(401, {"error": "invalid_token", "error_description": "Access token expired"})
            return False
        return True

    def _fault(self):
        # 500 is not retried in-process (Reltio's guidance): it exercises the event source's checkpointing.
        f = self.sim.faults.decide(statuses=(429, 500, 502, 503, 504))
        if f and f[0] == "status":
            self.send(f[1], {"errorMessage": "injected fault", "errorCode": f[1]},
                      {"Retry-After": "0"} if f[1] == 429 else None)
            return "done"
        if f and f[0] == "drop-before":
            self.drop()
            return "done"
        return f[0] if f else None

    def do_POST(self):
        u = urlsplit(self.path)
        body = self.read_body()
        if self._down():
            return
        if u.path == "/oauth/token":
            self._count("token")
            auth = self.headers.get("Authorization", "")
            try:
                cid, csec = base64.b64decode(auth.split(" ", 1)[1]).decode().split(":", 1)
            except Exception:
                cid = csec = None
            if (cid, csec) != self.sim.client or b"grant_type=client_credentials" not in body:
                return self.send(401, {"error": "invalid_client"})
            with self.sim.lock:
                live = [t for t, exp in self.sim.tokens.items() if exp - time.time() > 1]
                tok = live[0] if live else secrets.token_urlsafe(16)
                self.sim.tokens.setdefault(tok, time.time() + self.sim.token_ttl_s)
                left = int(self.sim.tokens[tok] - time.time())
            return self.send(200, {"access_token": tok, "token_type": "bearer", "expires_in": left})
        if u.path == f"/reltio/api/{TENANT}/configuration/webhooks":
            return self._register_webhook(body, None)
        if u.path == f"/reltio/api/{TENANT}/entities":
            self._count("POST /entities")
            if not self._authorised():
                return
            fault = self._fault()
            if fault == "done":
                return
            q = parse_qs(u.query)
            partial = "partialOverride" in ",".join(q.get("options", []))
            if partial:
                self._count("POST /entities partialOverride")
            try:
                items = json.loads(body)
                assert isinstance(items, list)
            except Exception:
                return self.send(400, {"errorMessage": "body must be a JSON array"})
            with self.sim.lock:
                values = [str(x) for it in items if isinstance(it, dict)
                          for x in [((it.get("crosswalks") or [{}])[0]).get("value")]]
                hit = next((v for v in values if self.sim.fail_500.get(v, 0) > 0), None)
                if hit is not None:
                    self.sim.fail_500[hit] -= 1
                    self.sim.faults.injected["500 (scheduled)"] = self.sim.faults.injected.get("500 (scheduled)", 0) + 1
            if hit is not None:
                return self.send(500, {"errorMessage": "scheduled failure", "errorCode": 500})
            out = []
            for i, item in enumerate(items):
                r = self.sim.post_entity(item, partial) if isinstance(item, dict) else {
                    "successful": False, "errors": {"errorMessage": "not an object"}}
                out.append({"index": i, **r})
            if fault == "drop-after":
                return self.drop()
            return self.send(200, out)
        self.send(404, {"errorMessage": "not found"})

    def do_PUT(self):
        u = urlsplit(self.path)
        body = self.read_body()
        prefix = f"/reltio/api/{TENANT}/configuration/webhooks/"
        if not u.path.startswith(prefix):
            return self.send(404, {"errorMessage": "not found"})
        return self._register_webhook(body, unquote(u.path[len(prefix):]))

    def _register_webhook(self, body: bytes, name: str | None):
        """POST (create) or PUT (update, by name) of a webhook registration; a POST of a name that exists is a
        conflict, as a duplicate registration would be."""
        self._count("POST webhook" if name is None else "PUT webhook")
        if not self._authorised():
            return
        try:
            reg = json.loads(body)
            assert isinstance(reg, dict) and reg.get("name") and reg.get("url")
        except Exception:
            return self.send(400, {"errorMessage": "a webhook has a name and a url"})
        with self.sim.lock:
            if name is None and reg["name"] in self.sim.webhooks:
                return self.send(409, {"errorMessage": f"webhook {reg['name']} exists"})
            if name is not None and name not in self.sim.webhooks:
                return self.send(404, {"errorMessage": f"no webhook {name}"})
            self.sim.webhooks[reg["name"]] = reg
        return self.send(200, reg)

    def do_DELETE(self):
        if self._down():
            return
        u = urlsplit(self.path)
        prefix = f"/reltio/api/{TENANT}/entities/_byCrosswalk/"
        if not u.path.startswith(prefix):
            return self.send(404, {"errorMessage": "not found"})
        self._count("DELETE crosswalk")
        if not self._authorised():
            return
        fault = self._fault()
        if fault == "done":
            return
        q = parse_qs(u.query)
        key = (q.get("type", [None])[0], unquote(u.path[len(prefix):]), q.get("sourceTable", [""])[0])
        found = self.sim.delete_crosswalk(key)
        if fault == "drop-after":
            return self.drop()
        self.send(200 if found else 404, {"status": "OK"} if found else {"errorMessage": "crosswalk not found"})

    def do_GET(self):
        if self._down():
            return
        u = urlsplit(self.path)
        if u.path == f"/reltio/api/{TENANT}/configuration/webhooks":
            if not self._authorised():
                return
            with self.sim.lock:
                return self.send(200, list(self.sim.webhooks.values()))
        base = f"/reltio/api/{TENANT}/entities/"
        if not u.path.startswith(base):
            return self.send(404, {"errorMessage": "not found"})
        self._count("GET entity")
        if not self._authorised():
            return
        if self._fault() == "done":
            return
        rest = u.path[len(base):]
        with self.sim.lock:
            if rest.startswith("_byCrosswalk/"):
                q = parse_qs(u.query)
                value = unquote(rest[len("_byCrosswalk/"):])
                typ = q.get("type", [None])[0]
                e = next((self.sim.resolve(eid) for k, eid in self.sim.index.items()
                          if k[0] == typ and k[1] == value), None)
            else:
                e = self.sim.resolve(rest.split("/")[0])
            if e is None:
                return self.send(404, {"errorMessage": "entity not found", "errorCode": 404})
            snap = e.snapshot()
        self.send(200, snap)

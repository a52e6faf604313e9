"""Salesforce simulator: client-credentials tokens that expire (401 INVALID_SESSION_ID), sObject rows
(GET/PATCH/POST/DELETE), sObject Collections (PATCH/POST/DELETE/GET composite/sobjects, and upsert by external id:
PATCH composite/sobjects/{SObject}/{ExternalIdField}, docs/reference.md "Salesforce"), a SOQL subset
(SELECT fields FROM object WHERE a = 'x' AND b IN ('y','z') AND c != null [ORDER BY ..] [LIMIT n]), child
records to re-point (Case.ContactId, Task.WhoId, OpportunityContactRole.ContactId; CampaignMember.ContactId is
not updateable, as in Salesforce), and `Sforce-Limit-Info` on every answer.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from .faults import Faults
from .util import QuietHandler, Server, close_all, now_ms

PREFIX = {"Contact": "003", "Case": "500", "Task": "00T", "OpportunityContactRole": "00K", "CampaignMember": "00v",
          "Account": "001"}
NOT_UPDATEABLE = {("CampaignMember", "ContactId")}
DAILY_LIMIT = 100000
MAX_RECORDS = 200  # an sObject Collections request carries at most 200 records


class SalesforceSim:
    def __init__(self, faults: Faults | None = None, token_ttl_s: int = 30, client=("sf-local", "sf-s3cret")):
        self.faults = faults or Faults()
        self.token_ttl_s = token_ttl_s
        self.client = client
        self.lock = threading.RLock()
        self.tokens: dict[str, float] = {}
        self.rows: dict[str, dict[str, dict]] = {o: {} for o in PREFIX}
        self.counter = 0
        self.calls: dict[str, int] = {}
        self.calls_by: dict[str, dict[str, int]] = {}  # listener tag -> calls served by that listener
        self.api_usage = 0
        self.contact_writes: dict[str, list] = {}  # Contact Id -> [(ms, fields after the write)]
        # Contacts a validation rule refuses (FIELD_CUSTOM_VALIDATION_EXCEPTION, a permanent failure): by Id for
        # updates, by external id value for the Contact an upsert would create (a new record has no Id yet)
        self.validation_rules: set[str] = set()
        self.creates: list[tuple[str, str]] = []  # (object, Id) of every record an upsert created, in order
        # Call names (as counted) whose next request is served and then its connection dropped, once each: the
        # change is made, the client never hears of it.
        self.drop_after_next: list[str] = []
        self.server = Server(_Handler, sim=self, tag=None)
        self.listeners: list[Server] = []
        self.url = self.server.url
        self.token_url = f"{self.url}/services/oauth2/token"

    def listener(self, tag: str) -> str:
        """Another port onto the same org whose calls are also counted under `tag` (one per execution
        environment). Its token answers name it as `instance_url`. Returns its token URL."""
        srv = Server(_Handler, sim=self, tag=tag)
        with self.lock:
            self.listeners.append(srv)
            self.calls_by.setdefault(tag, {})
        return f"{srv.url}/services/oauth2/token"

    def calls_of(self, tag: str) -> int:
        with self.lock:
            return sum(self.calls_by.get(tag, {}).values())

    def close(self):
        close_all([srv.close for srv in [self.server, *self.listeners]])

    def new_id(self, obj):
        self.counter += 1
        return f"{PREFIX.get(obj, '00X')}LS{self.counter:013d}"

    def insert(self, obj, fields: dict, id_: str | None = None) -> str:
        with self.lock:
            rid = id_ or self.new_id(obj)
            row = {"Id": rid, "IsDeleted": False, **fields}
            self.rows.setdefault(obj, {})[rid] = row
            return rid

    def update(self, obj, rid, fields) -> tuple[bool, list]:
        with self.lock:
            row = self.rows.get(obj, {}).get(rid)
            if row is None:
                return False, [{"statusCode": "ENTITY_IS_DELETED" if False else "NOT_FOUND",
                                "message": "entity not found", "fields": []}]
            if obj == "Contact" and rid in self.validation_rules:
                return False, [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                "message": "Contact failed the validation rule Phone_Format", "fields": ["Phone"]}]
            bad = [f for f in fields if (obj, f) in NOT_UPDATEABLE or f in ("Id", "IsDeleted")]
            if bad:
                return False, [{"statusCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
                                "message": f"Unable to create/update fields: {', '.join(bad)}", "fields": bad}]
            row.update(fields)
            if obj == "Contact":
                self.contact_writes.setdefault(rid, []).append((now_ms(), dict(row)))
            return True, []

    def delete(self, obj, rid) -> bool:
        with self.lock:
            return self.rows.get(obj, {}).pop(rid, None) is not None

    # ------------------------------------------------------------------ upsert by external id
    def upsert(self, obj, field_, records: list) -> list[dict]:
        """sObject Collections upsert (allOrNone false): one UpsertResult per record, in order. A record whose
        external id value matches one row updates it (created false), none creates a row (created true). Matching
        is exact (Salesforce matches case-insensitively only for fields marked so); a deleted row is gone, so it
        is not matched. One request runs under the lock: concurrent upserts of one new value do not race."""
        with self.lock:
            seen = Counter(str(r.get(field_)) for r in records if not _has_id(r) and _present(r.get(field_)))
            repeated = {v for v, n in seen.items() if n > 1}
            return [self._upsert_one(obj, field_, r, repeated) for r in records]

    def _upsert_one(self, obj, field_, rec, repeated) -> dict:
        fields = {k: v for k, v in rec.items() if k != "attributes"}
        value = fields.get(field_)
        if _has_id(rec):
            return _failed("INVALID_FIELD_FOR_INSERT_UPDATE", "Id is not allowed in an upsert by external id",
                           [k for k in ("Id", "id") if k in rec])
        if not _present(value):
            return _failed("MISSING_ARGUMENT", f"{field_} not specified", [])
        if str(value) in repeated:
            # Every record carrying the value fails, none is created or updated (upsert(): "those records are
            # marked as errors").
            return _failed("DUPLICATE_VALUE", f"Duplicate external id specified: {value}", [field_])
        matches = [rid for rid, row in self.rows.get(obj, {}).items() if str(row.get(field_)) == str(value)]
        if len(matches) > 1:
            return _failed("DUPLICATE_EXTERNAL_ID", f"more than one record found for external id field: {matches}",
                           [field_])
        if matches:
            ok, errors = self.update(obj, matches[0], fields)
            return {"id": matches[0], "success": True, "created": False, "errors": []} if ok else \
                _failed(errors[0]["statusCode"], errors[0]["message"], errors[0]["fields"])
        if obj == "Contact" and str(value) in self.validation_rules:
            return _failed("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Contact failed the validation rule Phone_Format",
                           ["Phone"])
        if "IsDeleted" in fields:
            return _failed("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: IsDeleted",
                           ["IsDeleted"])
        rid = self.insert(obj, fields)
        self.creates.append((obj, rid))
        if obj == "Contact":
            self.contact_writes.setdefault(rid, []).append((now_ms(), dict(self.rows[obj][rid])))
        return {"id": rid, "success": True, "created": True, "errors": []}

    # ------------------------------------------------------------------ SOQL subset
    def query(self, soql: str) -> list[dict]:
        m = re.match(r"\s*SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+(.+?))?(?:\s+ORDER\s+BY\s+.+?)?"
                     r"(?:\s+LIMIT\s+(\d+))?\s*$", soql, re.I | re.S)
        if not m:
            raise ValueError("MALFORMED_QUERY")
        fields = [f.strip() for f in m.group(1).split(",")]
        obj = m.group(2)
        if obj not in self.rows:
            raise ValueError(f"INVALID_TYPE: sObject type '{obj}' is not supported.")
        conds = [c for c in re.split(r"\s+AND\s+", m.group(3) or "", flags=re.I) if c.strip()]
        preds = [self._predicate(c) for c in conds]
        with self.lock:
            out = []
            for row in self.rows[obj].values():
                if all(p(row) for p in preds):
                    rec = {"attributes": {"type": obj, "url": f"/services/data/v66.0/sobjects/{obj}/{row['Id']}"}}
                    for f in fields:
                        rec[f] = row.get(f)
                    out.append(rec)
        if m.group(4):
            out = out[: int(m.group(4))]
        return out

    @staticmethod
    def _literal(text):
        text = text.strip()
        if text.lower() == "null":
            return None
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("\\'", "'")
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"MALFORMED_QUERY: {text}")

    def _predicate(self, cond):
        cond = cond.strip().strip("()").strip() if cond.strip().startswith("(") and cond.strip().endswith(")") else cond
        m = re.match(r"\s*(\w+)\s+(NOT\s+IN|IN)\s*\((.*)\)\s*$", cond, re.I | re.S)
        if m:
            vals = {self._literal(v) for v in re.findall(r"'(?:[^'\\]|\\.)*'|[^,\s]+", m.group(3))}
            neg = m.group(2).upper().startswith("NOT")
            return lambda row, f=m.group(1): (row.get(f) in vals) != neg
        m = re.match(r"\s*(\w+)\s*(=|!=|<>)\s*(.+?)\s*$", cond, re.S)
        if not m:
            raise ValueError(f"MALFORMED_QUERY: {cond}")
        val = self._literal(m.group(3))
        if m.group(2) == "=":
            return lambda row, f=m.group(1): row.get(f) == val
        return lambda row, f=m.group(1): row.get(f) != val

    # ------------------------------------------------------------------ views for the checks
    def contact(self, rid):
        with self.lock:
            r = self.rows["Contact"].get(rid)
            return dict(r) if r else None

    def by_external_id(self, field_, value, obj="Contact"):
        """The row whose external id field holds `value` (exact match), None when there is none."""
        with self.lock:
            r = next((r for r in self.rows.get(obj, {}).values() if str(r.get(field_)) == str(value)), None)
            return dict(r) if r else None

    def children_of(self, rid):
        with self.lock:
            out = []
            for obj, field_ in (("Case", "ContactId"), ("Task", "WhoId"), ("OpportunityContactRole", "ContactId"),
                                ("CampaignMember", "ContactId")):
                out += [(obj, r["Id"]) for r in self.rows[obj].values() if r.get(field_) == rid]
            return out


def _has_id(rec) -> bool:
    return "Id" in rec or "id" in rec


def _present(value) -> bool:
    return value is not None and value != ""


def _failed(code, message, fields) -> dict:
    """A failed UpsertResult: no id (the UpsertResult object's `id` is null on error), not created."""
    return {"id": None, "success": False, "created": False,
            "errors": [{"statusCode": code, "message": message, "fields": fields}]}


def _malformed_upsert(obj, body) -> tuple[str, str] | None:
    """Why a Collections upsert request is not well formed (400, nothing processed), or None. The error codes
    are the simulator's choice (docs/reference.md: unverified)."""
    if obj not in PREFIX:
        return "INVALID_TYPE", f"sObject type '{obj}' is not supported."
    recs = body.get("records") if isinstance(body, dict) else None
    if not isinstance(recs, list) or any(not isinstance(r, dict) for r in recs):
        return "JSON_PARSER_ERROR", "records must be a list of sObjects"
    if body.get("allOrNone") is True:
        # Not modelled: refused loudly rather than answered as if partial success were allowed.
        return "INVALID_INPUT", "the simulator does not model allOrNone: true"
    if len(recs) > MAX_RECORDS:
        return "EXCEEDED_ID_LIMIT", f"more than {MAX_RECORDS} records"
    for r in recs:
        attrs = r.get("attributes")
        typ = attrs.get("type") if isinstance(attrs, dict) else None
        if not typ:
            return "INVALID_INPUT", "every record needs attributes.type"
        if typ != obj:
            return "INVALID_TYPE", f"record of type {typ} in an upsert of {obj}"
    return None


class _Handler(QuietHandler):
    @property
    def sim(self) -> SalesforceSim:
        return self.server.sim

    def _reply(self, status, body=b""):
        self.send(status, body, {"Sforce-Limit-Info": f"api-usage={self.sim.api_usage}/{DAILY_LIMIT}"})

    def _count(self, name):
        with self.sim.lock:
            self.sim.calls[name] = self.sim.calls.get(name, 0) + 1
            tag = self.server.tag
            if tag is not None:
                by = self.sim.calls_by.setdefault(tag, {})
                by[name] = by.get(name, 0) + 1

    @property
    def base_url(self) -> str:
        """The listener this request came in on (an environment's own port, or the main one)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _begin(self, name) -> str | None:
        """Counts the call, checks the session and injects faults. Returns None when already answered."""
        self._count(name)
        with self.sim.lock:
            self.sim.api_usage += 1
        auth = self.headers.get("Authorization", "")
        tok = auth[7:] if auth.lower().startswith("bearer ") else ""
        exp = self.sim.tokens.get(tok)
        if exp is None or exp < time.time():
            self._reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
            return None
        f = self.sim.faults.decide(statuses=(503, 502))
        with self.sim.lock:
            if name in self.sim.drop_after_next:
                self.sim.drop_after_next.remove(name)
                f = ("drop-after",)
        if f and f[0] == "status":
            self._reply(f[1], [{"message": "injected fault", "errorCode": "SERVER_UNAVAILABLE"}])
            return None
        if f and f[0] == "drop-before":
            self.drop()
            return None
        return f[0] if f else "ok"

    def _after(self, fault, status, body=b""):
        if fault == "drop-after":
            return self.drop()
        self._reply(status, body)

    def _route(self):
        u = urlsplit(self.path)
        m = re.match(r"^/services/data/(v\d+\.\d+)/(.*)$", u.path)
        return u, (m.group(2) if m else None)

    def _json(self):
        try:
            return json.loads(self.read_body() or b"null")
        except ValueError:
            return None

    def do_POST(self):
        u, rest = self._route()
        if u.path == "/services/oauth2/token":
            self._count("token")
            form = parse_qs(self.read_body().decode())
            ok = (form.get("grant_type") == ["client_credentials"]
                  and (form.get("client_id", [""])[0], form.get("client_secret", [""])[0]) == self.sim.client)
            if not ok:
                return self._reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
            tok = "00DLS!" + secrets.token_urlsafe(24)
            with self.sim.lock:
                self.sim.tokens[tok] = time.time() + self.sim.token_ttl_s
            return self._reply(200, {"access_token": tok, "instance_url": self.base_url, "token_type": "Bearer",
                                     "issued_at": str(now_ms()), "id": f"{self.base_url}/id/00D/005",
                                     "signature": "local"})
        if rest is None:
            return self._reply(404, [{"errorCode": "NOT_FOUND", "message": "not found"}])
        if rest == "composite/sobjects":
            fault = self._begin("POST composite/sobjects")
            if fault is None:
                return
            body = self._json() or {}
            out = []
            for r in body.get("records", []):
                fields = {k: v for k, v in r.items() if k != "attributes"}
                out.append({"id": self.sim.insert(r["attributes"]["type"], fields), "success": True, "errors": []})
            return self._after(fault, 200, out)
        m = re.match(r"^sobjects/(\w+)/?$", rest)
        if m:
            fault = self._begin(f"POST sobjects/{m.group(1)}")
            if fault is None:
                return
            rid = self.sim.insert(m.group(1), self._json() or {})
            return self._after(fault, 201, {"id": rid, "success": True, "errors": []})
        self._reply(404, [{"errorCode": "NOT_FOUND", "message": "not found"}])

    def do_PATCH(self):
        u, rest = self._route()
        if rest == "composite/sobjects":
            fault = self._begin("PATCH composite/sobjects")
            if fault is None:
                return
            body = self._json() or {}
            recs = body.get("records", [])
            if len(recs) > 200:
                return self._reply(400, [{"errorCode": "EXCEEDED_ID_LIMIT", "message": "more than 200 records"}])
            out = []
            for r in recs:
                obj = (r.get("attributes") or {}).get("type")
                rid = r.get("id") or r.get("Id")
                fields = {k: v for k, v in r.items() if k not in ("attributes", "id", "Id")}
                ok, errors = self.sim.update(obj, rid, fields)
                out.append({"id": rid, "success": ok, "errors": errors})
            return self._after(fault, 200, out)
        m = re.match(r"^composite/sobjects/(\w+)/(\w+)$", rest or "")
        if m:
            return self._upsert(m.group(1), m.group(2))
        m = re.match(r"^sobjects/(\w+)/(\w+)$", rest or "")
        if m:
            fault = self._begin(f"PATCH sobjects/{m.group(1)}")
            if fault is None:
                return
            ok, errors = self.sim.update(m.group(1), m.group(2), self._json() or {})
            if ok:
                return self._after(fault, 204)
            code = 404 if errors[0]["statusCode"] == "NOT_FOUND" else 400
            return self._after(fault, code, [{"errorCode": e["statusCode"], "message": e["message"],
                                              "fields": e["fields"]} for e in errors])
        self._reply(404, [{"errorCode": "NOT_FOUND", "message": "not found"}])

    def _upsert(self, obj, field_):
        """PATCH composite/sobjects/{obj}/{field_}: 400 for a request that is not well formed, else 200 with one
        UpsertResult per record (counted, session-checked and fault-injected as every call)."""
        fault = self._begin(f"PATCH composite/sobjects/{obj}/{field_}")
        if fault is None:
            return
        body = self._json()
        bad = _malformed_upsert(obj, body)
        if bad:
            return self._reply(400, [{"errorCode": bad[0], "message": bad[1]}])
        return self._after(fault, 200, self.sim.upsert(obj, field_, body["records"]))

    def do_DELETE(self):
        u, rest = self._route()
        if rest == "composite/sobjects":
            fault = self._begin("DELETE composite/sobjects")
            if fault is None:
                return
            ids = ",".join(parse_qs(u.query).get("ids", [""])).split(",")
            out = []
            for rid in [i for i in ids if i]:
                obj = next((o for o, p in PREFIX.items() if rid.startswith(p)), None)
                ok = obj is not None and self.sim.delete(obj, rid)
                out.append({"id": rid, "success": ok, "errors": [] if ok else [
                    {"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]})
            return self._after(fault, 200, out)
        m = re.match(r"^sobjects/(\w+)/(\w+)$", rest or "")
        if m:
            fault = self._begin(f"DELETE sobjects/{m.group(1)}")
            if fault is None:
                return
            ok = self.sim.delete(m.group(1), m.group(2))
            return self._after(fault, 204 if ok else 404, b"" if ok else [
                {"errorCode": "ENTITY_IS_DELETED", "message": "entity is deleted"}])
        self._reply(404, [{"errorCode": "NOT_FOUND", "message": "not found"}])

    def do_GET(self):
        u, rest = self._route()
        if rest == "query" or rest == "query/":
            fault = self._begin("GET query")
            if fault is None:
                return
            q = parse_qs(u.query).get("q", [""])[0]
            try:
                recs = self.sim.query(q)
            except ValueError as e:
                return self._reply(400, [{"errorCode": str(e).split(":")[0], "message": str(e)}])
            return self._after(fault, 200, {"totalSize": len(recs), "done": True, "records": recs})
        m = re.match(r"^sobjects/(\w+)/(\w+)$", rest or "")
        if m:
            fault = self._begin(f"GET sobjects/{m.group(1)}")
            if fault is None:
                return
            with self.sim.lock:
                row = self.sim.rows.get(m.group(1), {}).get(m.group(2))
                row = dict(row) if row else None
            if row is None:
                return self._after(fault, 404, [{"errorCode": "NOT_FOUND", "message": "not found"}])
            return self._after(fault, 200, {"attributes": {"type": m.group(1)}, **row})
        self._reply(404, [{"errorCode": "NOT_FOUND", "message": "not found"}])

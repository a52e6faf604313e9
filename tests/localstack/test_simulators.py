"""The simulators behave like the documented APIs (docs/reference.md) — fast checks without the binaries."""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from .faults import Faults
from .reltio_sim import ReltioSim
from .salesforce_sim import SalesforceSim


def call(method, url, body=None, headers=None, form=None):
    data = None
    h = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        h["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
            return r.status, dict(r.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, dict(e.headers), json.loads(raw) if raw else None


def reltio_token(sim):
    basic = base64.b64encode(f"{sim.client[0]}:{sim.client[1]}".encode()).decode()
    st, _, body = call("POST", sim.auth_url, form={"grant_type": "client_credentials"},
                       headers={"Authorization": f"Basic {basic}"})
    assert st == 200
    return body


def test_reltio_tokens_are_reused_while_valid_and_refused_once_expired():
    sim = ReltioSim(token_ttl_s=2)
    try:
        a, b = reltio_token(sim), reltio_token(sim)
        assert a["access_token"] == b["access_token"] and a["token_type"] == "bearer"
        time.sleep(2.1)
        st, _, body = call("GET", f"{sim.api_url}/entities/x", headers={"Authorization": f"Bearer {a['access_token']}"})
        assert st == 401 and body["error"] == "invalid_token"
    finally:
        sim.server.close()


def test_reltio_upserts_by_crosswalk_merges_same_email_and_resolves_losers_to_the_winner():
    sim = ReltioSim()
    events = []
    sim.sink = lambda body, eid: events.append(body)
    try:
        auth = {"Authorization": f"Bearer {reltio_token(sim)['access_token']}"}
        ind = "configuration/entityTypes/Individual"
        a = {"type": ind, "attributes": {"Email": [{"value": "jo@x.org"}], "FirstName": [{"value": "Jo"}]},
             "crosswalks": [{"type": "configuration/sources/A", "value": "1"}]}
        st, _, out = call("POST", f"{sim.api_url}/entities?returnObjects=false", [a], auth)
        assert st == 200 and out[0]["status"] == "OK"
        first = out[0]["uri"]
        b = {"type": ind, "attributes": {"Email": [{"value": "Jo@X.org "}], "FirstName": [{"value": "Joanna"}]},
             "crosswalks": [{"type": "configuration/sources/B", "value": "9", "sourceTable": "T"}]}
        st, _, out = call("POST", f"{sim.api_url}/entities", [b], auth)
        loser = out[0]["uri"]
        assert [e["type"] for e in events] == ["ENTITY_CREATED", "ENTITY_CREATED", "ENTITY_CHANGED",
                                               "ENTITIES_MERGED", "ENTITY_LOST_MERGE"]
        assert events[3]["uris"] == [first, loser]
        st, _, ent = call("GET", f"{sim.api_url}/{loser}", headers=auth)
        assert st == 200 and ent["uri"] == first and len(ent["crosswalks"]) == 2
        golden = [v["value"] for v in ent["attributes"]["FirstName"] if v["ov"]]
        assert golden == ["Joanna"]  # the contribution changed last wins
        # Partial override keeps the other attributes; deleteDate end-dates the contribution.
        call("POST", f"{sim.api_url}/entities?options=partialOverride",
             [{"type": ind, "attributes": {}, "crosswalks": [{"type": "configuration/sources/B", "value": "9",
                                                               "sourceTable": "T", "deleteDate": "2026-01-01T00:00:00.000Z"}]}], auth)
        assert sim.contribution(("configuration/sources/B", "9", "T")) is None
        st, _, _ = call("DELETE", f"{sim.api_url}/entities/_byCrosswalk/1?type=configuration/sources/A", headers=auth)
        assert st == 200 and sim.contribution(("configuration/sources/A", "1", "")) == "absent"
        st, _, _ = call("DELETE", f"{sim.api_url}/entities/_byCrosswalk/1?type=configuration/sources/A", headers=auth)
        assert st == 404
    finally:
        sim.server.close()


def sf_token(sim):
    st, _, body = call("POST", sim.token_url, form={"grant_type": "client_credentials", "client_id": sim.client[0],
                                                    "client_secret": sim.client[1]})
    assert st == 200 and body["instance_url"] == sim.url
    return {"Authorization": f"Bearer {body['access_token']}"}


def test_salesforce_sessions_expire_with_invalid_session_id_and_every_answer_reports_limits():
    sim = SalesforceSim(token_ttl_s=1)
    try:
        auth = sf_token(sim)
        sim.insert("Contact", {"Email": "a@x.org"}, "003LS0000000000001")
        st, h, _ = call("GET", f"{sim.url}/services/data/v66.0/sobjects/Contact/003LS0000000000001", headers=auth)
        assert st == 200 and h["Sforce-Limit-Info"].startswith("api-usage=")
        time.sleep(1.1)
        st, _, body = call("GET", f"{sim.url}/services/data/v66.0/sobjects/Contact/003LS0000000000001", headers=auth)
        assert st == 401 and body[0]["errorCode"] == "INVALID_SESSION_ID"
    finally:
        sim.server.close()


def test_salesforce_collections_soql_and_children():
    sim = SalesforceSim()
    try:
        auth = sf_token(sim)
        base = f"{sim.url}/services/data/v66.0"
        a = sim.insert("Contact", {"Email": "a@x.org", "LastName": "A"})
        b = sim.insert("Contact", {"Email": "b@x.org", "LastName": "B"})
        case = sim.insert("Case", {"ContactId": b})
        cm = sim.insert("CampaignMember", {"ContactId": b})
        st, _, out = call("PATCH", f"{base}/composite/sobjects", {"allOrNone": False, "records": [
            {"attributes": {"type": "Contact"}, "id": a, "LastName": "Ay"},
            {"attributes": {"type": "Case"}, "id": case, "ContactId": a},
            {"attributes": {"type": "CampaignMember"}, "id": cm, "ContactId": a},
            {"attributes": {"type": "Contact"}, "id": "003LSmissing", "LastName": "x"}]}, auth)
        assert st == 200 and [r["success"] for r in out] == [True, True, False, False]
        assert out[2]["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        q = urllib.parse.quote(f"SELECT Id, LastName FROM Contact WHERE Id IN ('{a}', '{b}') AND Email != null")
        st, _, res = call("GET", f"{base}/query?q={q}", headers=auth)
        assert st == 200 and res["totalSize"] == 2 and {r["LastName"] for r in res["records"]} == {"Ay", "B"}
        q = urllib.parse.quote(f"SELECT Id FROM Case WHERE ContactId = '{a}'")
        assert call("GET", f"{base}/query?q={q}", headers=auth)[2]["records"][0]["Id"] == case
    finally:
        sim.server.close()


def test_fault_injection_answers_the_configured_share_with_errors():
    f = Faults(error_rate=0.2, drop_rate=0.05, seed=1)
    outcomes = [f.decide() for _ in range(2000)]
    errors = sum(1 for o in outcomes if o and o[0] == "status")
    drops = sum(1 for o in outcomes if o and o[0].startswith("drop"))
    assert 330 < errors < 470 and 60 < drops < 150

"""The simulators behave like the documented APIs (docs/reference.md), Reltio's own stream has its documented forms,
and the fan-out filter is the template's — fast checks without the binaries."""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import yaml

from . import reltio_stream
from .aws import ENTITY_EVENTS_FILTER, ROOT, Moto
from .faults import Faults
from .native import NativeStream
from .reltio_sim import ReltioSim, xw_key
from .salesforce_sim import SalesforceSim
from .util import drain


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


IND = "configuration/entityTypes/Individual"
SFDC = "configuration/sources/SFDC_CONTACT"


def write_back(anchor, contact_id, **flags):
    """The crm-updater's write-back: the entity's existing crosswalk as its contributor, the Contact's crosswalk."""
    return {"type": IND, "crosswalks": [{**anchor, "dataProvider": False, "contributorProvider": True},
                                        {"type": SFDC, "value": contact_id, **flags}]}


def test_reltio_write_back_attaches_the_contact_crosswalk_and_changes_no_attribute():
    sim = ReltioSim()
    events = []
    sim.sink = lambda body, eid: events.append(body)
    try:
        auth = {"Authorization": f"Bearer {reltio_token(sim)['access_token']}"}
        crm = {"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "customer"}
        st, _, out = call("POST", f"{sim.api_url}/entities", [{"type": IND, "crosswalks": [crm], "attributes": {
            "Email": [{"value": "ada@x.org"}], "FirstName": [{"value": "Ada"}]}}], auth)
        uri = out[0]["uri"]
        _, _, before = call("GET", f"{sim.api_url}/{uri}", headers=auth)
        version, golden, n_events = sim.entity_of(xw_key(crm)).version, sim.entity_of(xw_key(crm)).golden_simple(), \
            len(events)
        st, _, out = call("POST", f"{sim.api_url}/entities", [write_back(crm, "003LS0000000000007")], auth)
        assert st == 200 and out[0]["successful"] is True and out[0]["uri"] == uri
        st, _, found = call("GET", f"{sim.api_url}/entities/_byCrosswalk/003LS0000000000007?type={SFDC}", headers=auth)
        assert st == 200 and found["uri"] == uri
        assert found["attributes"] == before["attributes"]  # no value and no golden flag moved
        assert [(c["type"], c["value"]) for c in found["crosswalks"]] == [(crm["type"], "42"),
                                                                          (SFDC, "003LS0000000000007")]
        e = sim.entity_of(xw_key(crm))
        assert e.golden_simple() == golden and sim.contribution(xw_key(crm)) == golden
        assert [(ev["type"], ev["objectVersion"]) for ev in events[n_events:]] == [("ENTITY_CHANGED", version + 1)]
        assert {c["value"] for c in events[-1]["object"]["crosswalks"]} == {"42", "003LS0000000000007"}
        # The same write-back again (a retry, a redelivered event) changes nothing and emits nothing.
        st, _, out = call("POST", f"{sim.api_url}/entities", [write_back(crm, "003LS0000000000007")], auth)
        assert out[0]["successful"] is True and len(events) == n_events + 1 and e.version == version + 1
        # Per item: an unknown contributor crosswalk and a contributorProvider that is a data provider are
        # refused, the valid item beside them is applied; nothing is created for the refused ones.
        unknown = write_back({"type": crm["type"], "value": "nobody", "sourceTable": "customer"}, "003LS0000000000008")
        provider = write_back(crm, "003LS0000000000009")
        del provider["crosswalks"][0]["dataProvider"]
        st, _, out = call("POST", f"{sim.api_url}/entities", [unknown, provider, write_back(crm, "003LS000000000000A")],
                          auth)
        assert st == 200 and [(r["index"], r["successful"]) for r in out] == [(0, False), (1, False), (2, True)]
        assert out[0]["errors"]["errorMessage"] and out[1]["errors"]["errorMessage"]
        assert len(sim.live_entities()) == 1 and len(events) == n_events + 2
        for value in ("003LS0000000000008", "003LS0000000000009"):
            st, _, _ = call("GET", f"{sim.api_url}/entities/_byCrosswalk/{value}?type={SFDC}", headers=auth)
            assert st == 404, value
    finally:
        sim.close()


def test_reltio_write_back_of_a_crosswalk_with_a_contribution_or_on_another_entity():
    sim = ReltioSim()
    events = []
    sim.sink = lambda body, eid: events.append(body)
    try:
        crm = {"type": "configuration/sources/CRM_DB", "value": "1"}
        contact = {"type": SFDC, "value": "003LS0000000000001"}
        sim.post_entity({"type": IND, "crosswalks": [crm], "attributes": {"Email": [{"value": "a@x.org"}]}}, False)
        sim.post_entity({"type": IND, "crosswalks": [contact], "attributes": {"Phone": [{"value": "555"}]}}, False)
        first, second = (sim.entity_of(xw_key(x)) for x in (crm, contact))
        assert first is not second and len(events) == 2
        two = write_back(crm, "003LS0000000000002")  # two contributors named for one existing entity: refused
        two["crosswalks"].append({**contact, "dataProvider": False, "contributorProvider": True})
        assert sim.post_entity(two, False)["successful"] is False and len(events) == 2
        # The Contact's crosswalk is already another entity's: the two merge (the first created wins), its
        # contribution stays when it is posted as a non data provider.
        r = sim.post_entity(write_back(crm, contact["value"], dataProvider=False), False)
        assert r["successful"] and r["uri"] == first.uri and sim.entity_of(xw_key(contact)) is first
        assert [ev["type"] for ev in events[2:]] == ["ENTITY_CHANGED", "ENTITIES_MERGED", "ENTITY_LOST_MERGE"]
        assert events[3]["uris"] == [first.uri, second.uri] and second.merged_into == first.id
        assert first.golden_simple() == {"Email": ["a@x.org"], "Phone": ["555"]}
        assert sim.post_entity(write_back(crm, contact["value"], dataProvider=False), False)["successful"]
        assert len(events) == 5
        # As a data provider (no flag) its slice is overwritten by the body's attributes, as in any POST: none
        # under a full override, untouched under partialOverride.
        assert sim.post_entity(write_back(crm, contact["value"]), True)["successful"] and len(events) == 5
        assert sim.post_entity(write_back(crm, contact["value"]), False)["successful"]
        assert sim.contribution(xw_key(contact)) == {} and first.golden_simple() == {"Email": ["a@x.org"]}
        assert [ev["type"] for ev in events[5:]] == ["ENTITY_CHANGED"]
    finally:
        sim.close()


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


def upsert_body(*records, typ="Contact"):
    return {"allOrNone": False, "records": [{"attributes": {"type": typ}, **r} for r in records]}


class _FaultsOnce:
    """Fault injection that answers the next call with `fault` (e.g. ("drop-after",)), then serves normally."""

    def __init__(self, fault):
        self.fault = fault
        self.injected = {}

    def decide(self, statuses=()):
        fault, self.fault = self.fault, None
        return fault


def test_salesforce_upsert_by_external_id_creates_once_then_updates_the_same_contact():
    sim = SalesforceSim()
    try:
        auth = sf_token(sim)
        url = f"{sim.url}/services/data/v66.0/composite/sobjects/Contact/Reltio_Id__c"
        seeded = sim.insert("Contact", {"Reltio_Id__c": "0Old", "LastName": "Stale"})
        st, _, out = call("PATCH", url, upsert_body({"Reltio_Id__c": "0Abc", "LastName": "Ada"},
                                                    {"Reltio_Id__c": "0Old", "LastName": "Fresh"}), auth)
        assert st == 200 and [(r["success"], r["created"], r["errors"]) for r in out] == [(True, True, []),
                                                                                         (True, False, [])]
        new = out[0]["id"]
        assert len(new) == 18 and new.startswith("003") and out[1]["id"] == seeded
        assert sim.by_external_id("Reltio_Id__c", "0Abc")["Id"] == new and sim.contact(seeded)["LastName"] == "Fresh"
        assert sim.creates == [("Contact", new)] and sim.contact_writes[new][-1][1]["LastName"] == "Ada"
        # The same record again updates the Contact it created: same Id, created false, nothing new.
        st, _, out = call("PATCH", url, upsert_body({"Reltio_Id__c": "0Abc", "LastName": "Lovelace"}), auth)
        assert st == 200 and (out[0]["id"], out[0]["created"]) == (new, False) and len(sim.creates) == 1
        assert sim.contact(new)["LastName"] == "Lovelace"
        # A retry after an answer lost on the way back (the upsert took effect) finds the Contact it created.
        sim.faults = _FaultsOnce(("drop-after",))
        body = upsert_body({"Reltio_Id__c": "0New", "LastName": "Hopper"})
        try:
            call("PATCH", url, body, auth)
            raise AssertionError("the answer should have been dropped")
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
            pass
        created = sim.by_external_id("Reltio_Id__c", "0New")["Id"]
        st, _, out = call("PATCH", url, body, auth)
        assert st == 200 and (out[0]["id"], out[0]["created"]) == (created, False) and len(sim.creates) == 2
        # An injected 503 has no effect; matching is exact; a deleted Contact is not matched (a new one is made).
        sim.faults = _FaultsOnce(("status", 503))
        st, _, _ = call("PATCH", url, upsert_body({"Reltio_Id__c": "0Lost", "LastName": "X"}), auth)
        assert st == 503 and sim.by_external_id("Reltio_Id__c", "0Lost") is None
        st, _, out = call("PATCH", url, upsert_body({"Reltio_Id__c": "0abc", "LastName": "Other"}), auth)
        assert out[0]["created"] is True and out[0]["id"] != new
        sim.delete("Contact", created)
        st, _, out = call("PATCH", url, upsert_body({"Reltio_Id__c": "0New", "LastName": "Hopper"}), auth)
        assert out[0]["created"] is True and out[0]["id"] != created
        assert sim.calls["PATCH composite/sobjects/Contact/Reltio_Id__c"] == 7
    finally:
        sim.close()


def test_salesforce_upsert_refuses_malformed_requests_whole_and_bad_records_one_by_one():
    sim = SalesforceSim()
    try:
        auth = sf_token(sim)
        url = f"{sim.url}/services/data/v66.0/composite/sobjects/Contact/Reltio_Id__c"
        st, _, body = call("PATCH", url, upsert_body({"Reltio_Id__c": "0A", "LastName": "A"}))
        assert st == 401 and body[0]["errorCode"] == "INVALID_SESSION_ID"
        many = upsert_body(*({"Reltio_Id__c": f"0R{i}", "LastName": "R"} for i in range(201)))
        no_type = upsert_body({"Reltio_Id__c": "0A", "LastName": "A"})
        no_type["records"].append({"Reltio_Id__c": "0B", "LastName": "B"})
        other_type = upsert_body({"Reltio_Id__c": "0A", "LastName": "A"})
        other_type["records"].append({"attributes": {"type": "Case"}, "Reltio_Id__c": "0B"})
        for bad in (many, no_type, other_type):
            st, _, body = call("PATCH", url, bad, auth)
            assert st == 400 and body[0]["errorCode"] and body[0]["message"], body
        assert sim.creates == [] and sim.rows["Contact"] == {}  # nothing of a refused request was processed
        st, _, out = call("PATCH", url, upsert_body(*many["records"][:200]), auth)  # 200 is allowed
        assert st == 200 and len(out) == 200 and all(r["created"] for r in out)

        kept = sim.insert("Contact", {"Reltio_Id__c": "0Kept", "LastName": "Kept"})
        sim.validation_rules |= {kept, "0Refused"}
        st, _, out = call("PATCH", url, upsert_body(
            {"Id": "003LS0000000000001", "Reltio_Id__c": "0WithId", "LastName": "I"},
            {"LastName": "No external id"},
            {"Reltio_Id__c": "0Twice", "LastName": "One"},
            {"Reltio_Id__c": "0Good", "LastName": "Good"},
            {"Reltio_Id__c": "0Twice", "LastName": "Two"},
            {"Reltio_Id__c": "0Refused", "LastName": "New"},
            {"Reltio_Id__c": "0Kept", "LastName": "Changed"}), auth)
        assert st == 200
        codes = [r["errors"][0]["statusCode"] if r["errors"] else None for r in out]
        assert codes == ["INVALID_FIELD_FOR_INSERT_UPDATE", "MISSING_ARGUMENT", "DUPLICATE_VALUE", None,
                         "DUPLICATE_VALUE", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "FIELD_CUSTOM_VALIDATION_EXCEPTION"]
        assert [r["success"] for r in out] == [False, False, False, True, False, False, False]
        assert all(r["id"] is None and r["created"] is False for r in out if not r["success"])
        assert out[2]["errors"][0]["fields"] == ["Reltio_Id__c"]
        for value in ("0WithId", "0Twice", "0Refused"):
            assert sim.by_external_id("Reltio_Id__c", value) is None, value
        assert sim.contact(kept)["LastName"] == "Kept" and sim.by_external_id("Reltio_Id__c", "0Good")
        assert len(sim.creates) == 201
    finally:
        sim.close()


def test_fault_injection_answers_the_configured_share_with_errors():
    f = Faults(error_rate=0.2, drop_rate=0.05, seed=1)
    outcomes = [f.decide() for _ in range(2000)]
    errors = sum(1 for o in outcomes if o and o[0] == "status")
    drops = sum(1 for o in outcomes if o and o[0].startswith("drop"))
    assert 330 < errors < 470 and 60 < drops < 150


def _sim_events():
    """The simulator's events of a creation, a change and a merge (webhook form), with their ids."""
    sim = ReltioSim()
    events = []
    sim.sink = lambda body, eid: events.append((body, eid))
    ind = "configuration/entityTypes/Individual"
    try:
        for first_name in ("Jo", "Joe"):
            sim.post_entity({"type": ind, "attributes": {"Email": [{"value": "jo@x.org"}],
                                                         "FirstName": [{"value": first_name}]},
                             "crosswalks": [{"type": "configuration/sources/A", "value": "1"}]}, partial=False)
        sim.post_entity({"type": ind, "attributes": {"Email": [{"value": "JO@x.org"}]},
                         "crosswalks": [{"type": "configuration/sources/B", "value": "2"}]}, partial=False)
    finally:
        sim.close()
    return events


def test_reltios_stream_forms_follow_the_documented_payload_types_formats_and_headers():
    events = _sim_events()
    assert [b["type"] for b, _ in events] == ["ENTITY_CREATED", "ENTITY_CHANGED", "ENTITY_CREATED", "ENTITY_CHANGED",
                                              "ENTITIES_MERGED", "ENTITY_LOST_MERGE"]
    (created, _), (changed, _) = events[0], events[1]
    uri = created["object"]["uri"]
    first_name = "configuration/entityTypes/Individual/attributes/FirstName"
    # SNAPSHOT: type, object, ovChanged; the tenant and the version only as headers.
    snap = json.loads(reltio_stream.event_json(changed, "snapshot", created["object"]))
    assert set(snap) == {"type", "object", "ovChanged"} and snap["object"] == changed["object"]
    # SNAPSHOT_WITH_DELTA adds uri and deltas; DELTAS has no object; the deltas name each value that changed.
    with_delta = json.loads(reltio_stream.event_json(changed, "snapshot-with-delta", created["object"]))
    assert set(with_delta) == {"type", "object", "ovChanged", "uri", "deltas"} and with_delta["uri"] == uri
    deltas = json.loads(reltio_stream.event_json(changed, "deltas", created["object"]))
    assert set(deltas) == {"type", "uri", "deltas"} and deltas["deltas"]["ovChanged"] is True
    assert deltas["deltas"]["delta"] == [{"type": "ATTRIBUTE_CHANGED", "attributeType": first_name,
                                          "newValue": {"value": "Joe", "ov": True},
                                          "oldValue": {"value": "Jo", "ov": True}}]
    born = json.loads(reltio_stream.event_json(created, "deltas", None))["deltas"]["delta"]
    assert sorted(d["type"] for d in born) == ["ATTRIBUTE_ADDED", "ATTRIBUTE_ADDED"]
    # skipPayload: type and ovChanged only; merge events: type and uris, in every payload type.
    assert json.loads(reltio_stream.event_json(changed, "skip")) == {"type": "ENTITY_CHANGED", "ovChanged": True}
    merged, lost = events[4][0], events[5][0]
    for payload in reltio_stream.PAYLOADS:
        assert json.loads(reltio_stream.event_json(merged, payload)) == {"type": "ENTITIES_MERGED",
                                                                        "uris": merged["uris"]}
        assert json.loads(reltio_stream.event_json(lost, payload)) == {"type": "ENTITY_LOST_MERGE",
                                                                      "uris": lost["uris"]}
    # JSON_ZIP_BASE64: `base64 --decode | gunzip` gives the JSON back.
    text = reltio_stream.event_json(changed, "snapshot")
    zipped = reltio_stream.body(text, "zip")
    assert gzip.decompress(base64.b64decode(zipped)).decode() == text == reltio_stream.body(text, "json")
    assert reltio_stream.decode(zipped) == reltio_stream.decode(text) == json.loads(text)
    # Reltio's headers, nothing else; the loser's headers name the loser.
    assert reltio_stream.headers(changed) == {"tenantId": "LOCAL1", "eventType": "ENTITY_CHANGED",
                                              "sourceObjectUri": uri, "objectVersion": "2"}
    assert reltio_stream.headers(lost)["sourceObjectUri"] == lost["uris"][0] != uri
    assert reltio_stream.event_id(text) == hashlib.sha256(text.encode()).hexdigest()
    with_headers = f"{text}\n{uri}\n2".encode()
    assert reltio_stream.event_id(text, reltio_stream.headers(changed)) == hashlib.sha256(with_headers).hexdigest()


def test_the_fan_out_filter_is_the_templates_and_lets_reltios_stream_through_with_its_headers_only():
    template = (ROOT / "infra" / "template.yaml").read_text()
    policies = [yaml.safe_load(line.split("FilterPolicy:", 1)[1]) for line in template.splitlines()
                if line.strip().startswith("FilterPolicy:")]
    assert policies and all(p == ENTITY_EVENTS_FILTER for p in policies), policies
    moto = Moto()
    try:
        sns, sqs = moto.client("sns"), moto.client("sqs")
        topic = sns.create_topic(Name="events")["TopicArn"]
        queue = sqs.create_queue(QueueName="events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={
            "RawMessageDelivery": "true", "FilterPolicy": json.dumps(ENTITY_EVENTS_FILTER)})
        res = SimpleNamespace(fifo=False, sns=sns, sqs=sqs, event_queue=queue)
        stream = NativeStream(res, topic=topic)  # Reltio's default: zipped snapshots
        body, eid = _sim_events()[1]
        stream.submit(body, eid)
        sns.publish(TopicArn=topic, Message="no attributes")  # passes: the consumer decides
        sns.publish(TopicArn=topic, Message="a relationship", MessageAttributes={
            "eventType": {"DataType": "String", "StringValue": "RELATIONSHIP_CHANGED"}})  # filtered out
        got = drain(sqs, queue)
        assert stream.accepted.keys() == {eid} and stream.idle()
        assert sorted(m["Body"] for m in got if m["Body"] == "no attributes") == ["no attributes"]
        [native] = [m for m in got if m["Body"] != "no attributes"]
        assert len(got) == 2
        attrs = {k: v["StringValue"] for k, v in native["MessageAttributes"].items()}
        assert attrs == reltio_stream.headers(body) and "eventId" not in attrs and "entityType" not in attrs
        event = reltio_stream.decode(native["Body"])
        assert event == {"type": body["type"], "object": body["object"], "ovChanged": True}
        text = gzip.decompress(base64.b64decode(native["Body"])).decode()
        assert list(stream.published) == [reltio_stream.event_id(text, attrs)]
    finally:
        moto.close()

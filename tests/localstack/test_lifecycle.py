"""crm-updater through a golden record's life, end to end: target/release/crm-updater (the runtime API emulator)
against the Reltio and Salesforce simulators, with its ledger on moto DynamoDB and its DLQ on moto SQS. A person
mastered only in the CDC source becomes one Contact (upsert by the entity id) whose Id Reltio then holds as a
crosswalk; the write-back's own change event and redeliveries (also after a dropped upsert answer) write nothing
more; the entity's removal archives its Contact, and a late update does not bring it back. The events are the ones
the Reltio simulator emits (docs/reference.md), handed to the function as Lambda's SQS event source would.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from .aws import Moto
from .reltio_sim import ReltioSim
from .runtime import FunctionPool
from .salesforce_sim import SalesforceSim
from .util import close_all, drain

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("LOCALSTACK_TARGET_DIR", ROOT / "target" / "release"))
SFDC = "configuration/sources/SFDC_CONTACT"
QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:events"
MAPPING = f"""
entity_types = ["Individual"]
event_types = ["CREATE", "UPDATE", "MERGE", "DELETE"]
crosswalk_type = "{SFDC}"
create = true
external_id_field = "Reltio_Id__c"
require = ["LastName"]
on_delete = "archive"
delete_fields = {{ Status__c = "Removed in MDM" }}

[[fields]]
attribute = "FirstName"
field = "FirstName"

[[fields]]
attribute = "LastName"
field = "LastName"
"""


@pytest.fixture(scope="module")
def infra(tmp_path_factory):
    binary = TARGET / "crm-updater"
    assert binary.exists(), f"{binary} missing (run `make release`)"
    logs = tmp_path_factory.mktemp("lifecycle-logs")
    mapping = logs / "crm-mapping.toml"
    mapping.write_text(MAPPING)
    moto = reltio = sf = pool = None
    try:
        moto = Moto(str(logs / "moto.log"), wait=False)
        reltio, sf = ReltioSim(), SalesforceSim()
        emitted: list[tuple[dict, str]] = []
        reltio.sink = lambda body, eid: emitted.append((json.loads(json.dumps(body)), eid))
        moto.wait_ready()
        sqs, ddb, sm = (moto.client(s) for s in ("sqs", "dynamodb", "secretsmanager"))
        dlq = sqs.create_queue(QueueName="crm-dlq")["QueueUrl"]
        ddb.create_table(TableName="sync-state", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        secret = lambda name, v: sm.create_secret(Name=name, SecretString=json.dumps(v))["ARN"]  # noqa: E731
        env = {"AWS_ENDPOINT_URL": moto.endpoint, "RELTIO_API_URL": reltio.api_url,
               "RELTIO_AUTH_URL": reltio.auth_url,
               "RELTIO_SECRET_ID": secret("reltio", {"client_id": reltio.client[0],
                                                     "client_secret": reltio.client[1]}),
               "SALESFORCE_SECRET_ID": secret("salesforce", {"token_url": sf.listener("crm-updater"),
                                                             "client_id": sf.client[0],
                                                             "client_secret": sf.client[1]}),
               "SALESFORCE_API_VERSION": "v66.0", "CRM_MAPPING_FILE": str(mapping),
               "SYNC_STATE_TABLE": "sync-state", "CRM_DLQ_URL": dlq, "CRM_RETRY_BACKOFF_SECONDS": "0",
               "RUST_LOG": "info", "METRICS_NAMESPACE": "MdmSync/local"}
        pool = FunctionPool("crm-updater", str(binary), env, timeout_s=15, size=1,
                            log_path=str(logs / "crm-updater.log"))
        yield SimpleNamespace(reltio=reltio, sf=sf, pool=pool, sqs=sqs, dlq=dlq, emitted=emitted)
    finally:
        close_all([c.close for c in (pool, sf, reltio, moto) if c is not None])


def deliver(infra, events: list[tuple[dict, str]]) -> list[str]:
    """One SQS batch of Reltio's events (as Reltio's SQS destination sends them); the failed message ids."""
    records = []
    for n, (body, eid) in enumerate(events):
        text = json.dumps(body)
        attrs = {"eventId": eid, "objectVersion": str(body.get("objectVersion", ""))}
        records.append({"messageId": f"m-{eid}-{n}", "receiptHandle": f"rh-{n}", "body": text,
                        "attributes": {"ApproximateReceiveCount": "1"},
                        "messageAttributes": {k: {"stringValue": v, "stringListValues": [], "binaryListValues": [],
                                                  "dataType": "String"} for k, v in attrs.items() if v},
                        "md5OfBody": hashlib.md5(text.encode()).hexdigest(), "eventSource": "aws:sqs",
                        "eventSourceARN": QUEUE_ARN, "awsRegion": "us-east-1"})
    answer = infra.pool.invoke({"Records": records})
    return [f["itemIdentifier"] for f in answer.get("batchItemFailures", [])]


def customer(sim: ReltioSim, key: str, first: str, last: str | None) -> str:
    """A row of the CDC source mastered into Reltio (as cdc-ingest posts it); the entity id."""
    attrs = {"FirstName": [{"value": first}]}
    if last:
        attrs["LastName"] = [{"value": last}]
    r = sim.post_entity({"type": "configuration/entityTypes/Individual", "attributes": attrs,
                         "crosswalks": [{"type": "configuration/sources/CRM_DB", "value": key,
                                         "sourceTable": "CUSTOMER"}]}, False)
    assert r["successful"], r
    return r["uri"].split("/")[-1]


def sfdc_crosswalks(sim: ReltioSim, entity_id: str) -> list[str]:
    e = sim.resolve(entity_id)
    return [k[1] for k, c in e.crosswalks.items() if k[0] == SFDC and not c.get("deleteDate")]


def test_a_new_golden_record_becomes_one_contact_reltio_holds_and_its_removal_archives_it(infra):
    reltio, sf = infra.reltio, infra.sf
    start = len(infra.emitted)
    eid = customer(reltio, "c-1", "Ann", "Lee")
    nameless = customer(reltio, "c-2", "Bo", None)
    created = infra.emitted[start:]
    assert [b["type"] for b, _ in created] == ["ENTITY_CREATED", "ENTITY_CREATED"], created
    # The creates, one delivered twice in the batch.
    assert deliver(infra, created + created[:1]) == []
    contact = sf.by_external_id("Reltio_Id__c", eid)
    assert contact and contact["LastName"] == "Lee" and contact["FirstName"] == "Ann", contact
    assert [c for _, c in sf.creates] == [contact["Id"]], sf.creates
    # Reltio holds the Contact's Id as a crosswalk of the entity, its golden values unchanged.
    assert sfdc_crosswalks(reltio, eid) == [contact["Id"]]
    assert reltio.resolve(eid).golden_simple().get("LastName") == ["Lee"]
    # The person without a LastName waits (no Contact) until a change gives one.
    assert sf.by_external_id("Reltio_Id__c", nameless) is None

    # The write-back's own change event, and the create again (at least once): no Salesforce write at all.
    echo = [(b, e) for b, e in infra.emitted[start + 2:] if b["type"] == "ENTITY_CHANGED"]
    assert len(echo) == 1, infra.emitted[start + 2:]
    writes_before = dict(sf.calls)
    assert deliver(infra, echo + created[:1]) == []
    changed_calls = {k: v - writes_before.get(k, 0) for k, v in sf.calls.items() if v != writes_before.get(k, 0)}
    assert not [k for k in changed_calls if k != "token"], changed_calls

    # A dropped answer to the upsert of the second person (Salesforce did create the Contact): the retry finds it
    # by the entity id instead of creating another.
    start2 = len(infra.emitted)
    reltio.post_entity({"type": "configuration/entityTypes/Individual",
                        "attributes": {"LastName": [{"value": "Nash"}]},
                        "crosswalks": [{"type": "configuration/sources/CRM_DB", "value": "c-2",
                                        "sourceTable": "CUSTOMER"}]}, True)
    named = [(b, e) for b, e in infra.emitted[start2:] if b["type"] == "ENTITY_CHANGED"]
    assert len(named) == 1
    sf.drop_after_next.append("PATCH composite/sobjects/Contact/Reltio_Id__c")
    upserts = sf.calls.get("PATCH composite/sobjects/Contact/Reltio_Id__c", 0)
    # Retried within the invocation or, reported as a batch item failure, by the event source.
    if deliver(infra, named):
        assert deliver(infra, named) == []
    assert sf.calls["PATCH composite/sobjects/Contact/Reltio_Id__c"] - upserts == 2
    assert "PATCH composite/sobjects/Contact/Reltio_Id__c" not in sf.drop_after_next
    second = sf.by_external_id("Reltio_Id__c", nameless)
    assert second and second["LastName"] == "Nash"
    assert [c for _, c in sf.creates].count(second["Id"]) == 1, sf.creates
    assert sfdc_crosswalks(reltio, nameless) == [second["Id"]]

    # The first person is removed in Reltio: their Contact is archived; a late update (from before) is stale.
    removed = {"type": "ENTITY_REMOVED", "objectVersion": reltio.resolve(eid).version + 1,
               "updatedTime": reltio.resolve(eid).updated + 1,
               "object": {"uri": f"entities/{eid}", "type": "configuration/entityTypes/Individual",
                          "crosswalks": [{"type": SFDC, "value": contact["Id"]}]}}
    assert deliver(infra, [(removed, f"{eid}-removed")]) == []
    assert sf.contact(contact["Id"])["Status__c"] == "Removed in MDM"
    late = json.loads(json.dumps(echo[0][0]))
    late["object"]["attributes"]["LastName"] = [{"value": "Lee-Late", "ov": True}]
    assert deliver(infra, [(late, f"{eid}-late")]) == []
    after = sf.contact(contact["Id"])
    assert after["Status__c"] == "Removed in MDM" and after["LastName"] == "Lee", after
    assert drain(infra.sqs, infra.dlq) == []

"""cdc-ingest from Kafka end to end: Debezium (PostgreSQL connector, schemas on and off) and GoldenGate (Kafka
handler, JSON, compressed updates) change events for a mapped table → Tansu → KafkaPoller (Lambda's self-managed
Kafka event source) → target/release/cdc-ingest → the Reltio simulator, with the CDC key ledger on moto DynamoDB
and the DLQ on moto SQS. The invariants of the DMS path: nothing lost (every key ends with its last change's
values, or retired), order per key (no older state written after a newer one), bad input dead-lettered with where
it is, offsets committed to the end of every partition. Message formats from the tools' documentation (see
docs/reference.md, "Debezium and GoldenGate on Kafka").
"""
from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from .aws import Moto
from .kafka import KafkaBroker, KafkaPoller
from .reltio_sim import ReltioSim
from .runtime import FunctionPool
from .util import close_all, drain, wait_for

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TARGET = Path(os.environ.get("LOCALSTACK_TARGET_DIR", ROOT / "target" / "release"))
SOURCE = "configuration/sources/CRM_DB"
DBZ_TOPIC, DBZ_PARTITIONS = "dbserver1.public.customer", 3
GG_TOPIC, GG_PARTITIONS = "ogg.public.customer", 2
PLACEHOLDER = "__debezium_unavailable_value"  # Debezium's default unavailable.value.placeholder
T0_US = int((time.time() - 120) * 1e6)  # the workload's first commit (two minutes ago), µs since the epoch


def key(id_: int) -> tuple:
    return (SOURCE, str(id_), "CUSTOMER")


def row(id_: int, v: int) -> dict:
    return {"id": id_, "first_name": f"First{id_}", "last_name": f"Last{id_}",
            "email": f" P{id_}.V{v}@Example.com ", "phone": f"+1555{id_:04d}"}


def contribution(id_: int, v: int) -> dict:
    """What the mapping (tests/localstack/cdc-mapping.toml) makes of row(id_, v) in the simulator's terms."""
    return {"FirstName": [f"First{id_}"], "LastName": [f"Last{id_}"], "Email": [f"p{id_}.v{v}@example.com"],
            "Phone": [f"+1555{id_:04d}"]}


class Clock:
    """Commit times and log positions, increasing in produce order."""

    def __init__(self):
        self.n = 0

    def tick(self) -> tuple[int, int]:
        self.n += 1
        return T0_US + self.n * 1000, 0x2000_0000 + self.n * 64


def debezium(clock: Clock, op: str, before, after, *, schema: bool = False) -> bytes:
    ts_us, lsn = clock.tick()
    event = {"before": before, "after": after, "op": op, "ts_ms": ts_us // 1000 + 3,
             "source": {"version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1",
                        "ts_ms": ts_us // 1000, "ts_us": ts_us, "snapshot": "false", "db": "crm",
                        "schema": "public", "table": "customer", "txId": 5000 + clock.n, "lsn": lsn}}
    if schema:  # the JSON converter with schemas on (no logical types in these columns)
        event = {"schema": {"type": "struct", "name": "dbserver1.public.customer.Envelope", "fields": []},
                 "payload": event}
    return json.dumps(event).encode()


def goldengate(clock: Clock, op_type: str, before, after) -> bytes:
    ts_us, _ = clock.tick()
    secs, micros = divmod(ts_us, 1_000_000)
    t = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return json.dumps({"table": "CRM.public.customer", "op_type": op_type, "op_ts": f"{t}.{micros:06d}",
                       "current_ts": f"{t.replace(' ', 'T')}.{micros:06d}", "pos": f"{clock.n:020d}",
                       "primary_keys": ["id"], "before": before, "after": after}).encode()


def id_key(id_: int) -> bytes:
    return json.dumps({"id": id_}).encode()


def workload():
    """(Debezium records, GoldenGate records, expected end state per key, the versions each key may go through in
    order). A record is (key, value, headers). Expected: a contribution dict, or None for a retired key."""
    clock = Clock()
    dbz, gg, expected, history = [], [], {}, {}
    for v in (1, 2, 3):
        for i in range(1, 21):
            op = "c" if v == 1 else "u"
            before = row(i, v - 1) if v > 1 else None
            dbz.append((id_key(i), debezium(clock, op, before, row(i, v), schema=(i % 4 == 0)), []))
            history.setdefault(key(i), []).append(contribution(i, v))
        for i in range(101, 111):
            if v == 1:
                gg.append((id_key(i), goldengate(clock, "I", None, row(i, v)), []))
            else:  # compressed: the key and the changed column in after, the whole row in before
                after = {"id": i, "email": row(i, v)["email"]}
                gg.append((id_key(i), goldengate(clock, "U", row(i, v - 1), after), []))
            history.setdefault(key(i), []).append(contribution(i, v))
    for i in list(range(1, 21)) + list(range(101, 111)):
        expected[key(i)] = contribution(i, 3)
    # A Debezium update whose unchanged TOASTed columns carry the connector's placeholder (PostgreSQL without REPLICA
    # IDENTITY FULL): only the phone changed; the name and e-mail stay as they were, the placeholder never lands.
    for i in (2, 3):
        after = {**row(i, 3), "first_name": PLACEHOLDER, "email": PLACEHOLDER, "phone": f"+1999{i:04d}"}
        dbz.append((id_key(i), debezium(clock, "u", row(i, 3), after, schema=(i % 4 == 0)), []))
        expected[key(i)] = {**contribution(i, 3), "Phone": [f"+1999{i:04d}"]}
        history[key(i)].append(expected[key(i)])
    # Deletes: Debezium's is followed by a tombstone.
    for i in (5, 10):
        dbz.append((id_key(i), debezium(clock, "d", {"id": i, "first_name": None, "last_name": None,
                                                     "email": None, "phone": None}, None), []))
        dbz.append((id_key(i), None, []))
        expected[key(i)] = None
    gg.append((id_key(105), goldengate(clock, "D", {"id": 105}, None), []))
    expected[key(105)] = None
    # Primary-key changes: 7 → 1007 and 13 → 1013, as Debezium sends them (the create half under the new key, so
    # in another partition, probably).
    for old, new in ((7, 1007), (13, 1013)):
        delete = debezium(clock, "d", row(old, 3), None)
        dbz.append((id_key(old), delete, [("__debezium.newkey", id_key(new))]))
        dbz.append((id_key(old), None, []))
        moved = {**row(old, 3), "id": new}
        dbz.append((id_key(new), debezium(clock, "c", None, moved), [("__debezium.oldkey", id_key(old))]))
        expected[key(old)] = None
        expected[key(new)] = {**contribution(old, 3)}
    return dbz, gg, expected, history


BAD = [(b"k-bad-1", b"not json {", []),
       (id_key(3), json.dumps({"before": None, "after": {"id": 3}, "op": "x",
                               "source": {"schema": "public", "table": "customer"}}).encode(), [])]


@pytest.fixture(scope="module")
def infra(tmp_path_factory):
    binary = TARGET / "cdc-ingest"
    assert binary.exists(), f"{binary} missing (run `make release`)"
    logs = tmp_path_factory.mktemp("kafka-cdc-logs")
    mapping = logs / "cdc-mapping.toml"
    # The local stack's mapping with the Debezium topic named; the GoldenGate topic's format is told from its
    # messages.
    mapping.write_text((HERE / "cdc-mapping.toml").read_text() + f'\n[topics]\n"{DBZ_TOPIC}" = "debezium"\n')
    moto = broker = reltio = None
    try:
        moto = Moto(str(logs / "moto.log"), wait=False)
        broker = KafkaBroker(str(logs / "tansu.log"))
        reltio = ReltioSim()
        moto.wait_ready()
        sqs, ddb, sm = (moto.client(s) for s in ("sqs", "dynamodb", "secretsmanager"))
        dlq = sqs.create_queue(QueueName="cdc-dlq")["QueueUrl"]
        ddb.create_table(TableName="cdc-key-ledger", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        secret = sm.create_secret(Name="reltio", SecretString=json.dumps(
            {"client_id": reltio.client[0], "client_secret": reltio.client[1]}))["ARN"]
        for topic, n in ((DBZ_TOPIC, DBZ_PARTITIONS), (GG_TOPIC, GG_PARTITIONS)):
            broker.create_topic(topic, n)
        env = {"AWS_ENDPOINT_URL": moto.endpoint, "RELTIO_API_URL": reltio.api_url,
               "RELTIO_AUTH_URL": reltio.auth_url, "RELTIO_SECRET_ID": secret, "CDC_MAPPING_FILE": str(mapping),
               "CDC_DLQ_URL": dlq, "CDC_KEY_LEDGER_TABLE": "cdc-key-ledger",
               # One entity per POST: a failing entity's neighbours are written, so its failure is a partial one.
               "RELTIO_BATCH_SIZE": "1",
               "RUST_LOG": "info", "METRICS_NAMESPACE": "MdmSync/local"}
        yield SimpleNamespace(moto=moto, sqs=sqs, broker=broker, reltio=reltio, dlq=dlq, env=env, logs=logs,
                              binary=str(binary))
    finally:
        close_all([c.close for c in (reltio, broker, moto) if c is not None])


def start(infra, topic: str, instances: int):
    """cdc-ingest fed by one event source mapping per topic (the template's CdcKafkaEventSource)."""
    pool = FunctionPool("cdc-ingest", infra.binary, infra.env, timeout_s=30, size=instances,
                        log_path=str(infra.logs / f"cdc-ingest-{topic}.log"))
    poller = KafkaPoller(infra.broker, topic, pool, group_id=f"mdm-sync-cdc-ingest-{topic}", batch_size=25,
                         window_s=0.3)
    return pool, poller


def settle(infra, poller, topic, partitions, ends):
    wait_for(lambda: poller.committed == ends or poller.error, 60, f"{topic} committed to {ends}")
    assert poller.committed == ends and not poller.error, poller.figures()
    assert infra.broker.committed(poller.group_id, topic, partitions) == ends


def test_debezium_and_goldengate_changes_reach_reltio_complete_and_in_order(infra):
    dbz, gg, expected, history = workload()
    dbz = dbz[:17] + [BAD[0]] + dbz[17:40] + [BAD[1]] + dbz[40:]
    # Two POSTs carrying crosswalk 12 are answered 500 (not retried in-process): the record becomes a partial batch
    # failure of its partition, which the event source delivers again from there.
    infra.reltio.fail_500["12"] = 2
    dbz_placed, dbz_ends = infra.broker.produce(DBZ_TOPIC, dbz)
    _, gg_ends = infra.broker.produce(GG_TOPIC, gg)
    assert len(dbz_ends) == DBZ_PARTITIONS and len(gg_ends) == GG_PARTITIONS
    pools_pollers = [start(infra, DBZ_TOPIC, 1), start(infra, GG_TOPIC, 1)]
    try:
        settle(infra, pools_pollers[0][1], DBZ_TOPIC, DBZ_PARTITIONS, dbz_ends)
        settle(infra, pools_pollers[1][1], GG_TOPIC, GG_PARTITIONS, gg_ends)
        dbz_figures = pools_pollers[0][1].figures()
    finally:
        for pool, poller in pools_pollers:
            poller.close()
            pool.close()

    # Nothing lost: every key ends as its last change left it (retired keys end-dated).
    wrong = {k: (infra.reltio.contribution(k), want) for k, want in expected.items()
             if infra.reltio.contribution(k) != want}
    assert not wrong, f"{len(wrong)} keys wrong, e.g. {list(wrong.items())[:3]}"
    # The placeholder never reached Reltio.
    assert not [k for k, w in infra.reltio.writes.items() for _, c in w if c and PLACEHOLDER in json.dumps(c)]
    # Order per key: the states written to a key follow its history; nothing older after something newer, and a
    # retired key never comes back.
    for k, steps in history.items():
        written = [c for _, c in infra.reltio.writes.get(k, [])]
        positions = [steps.index(c) if c in steps else None for c in written]
        live = [p for p in positions if p is not None]
        assert live == sorted(live), f"{k}: states written out of order: {positions}"
        if expected[k] is None and None in positions:
            assert all(p is None for p in positions[positions.index(None):]), f"{k} revived: {positions}"
    assert infra.reltio.faults.injected.get("500 (scheduled)") == 2
    assert dbz_figures["partial_failures"] >= 1 and dbz_figures["redelivered"] >= 1, dbz_figures
    # Bad input: dead-lettered with where it is, nothing else.
    letters = [json.loads(m["Body"]) for m in drain(infra.sqs, infra.dlq)]
    located = sorted((d["topic"], d["partition"], d["offset"]) for d in letters)
    bad_at = sorted((DBZ_TOPIC, *dbz_placed[dbz.index(b)]) for b in BAD)
    assert located == bad_at, (located, bad_at)
    assert all(d["function"] == "cdc-ingest" and d["reason"] for d in letters), letters

"""The warehouse views (infra/analytics/) derive the right current and history tables from analytics-sink's
change records — on DuckDB, with the shipped SQL — whatever the duplicates, files and delivery order; and the
Snowflake and Databricks copies parse in their dialects and select the same columns. Local files only."""
from __future__ import annotations

import copy
import gzip
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from . import analytics_sql

ANALYTICS = Path(__file__).resolve().parents[2] / "infra" / "analytics"
# Milliseconds in the base time: the views must keep them.
T0 = datetime(2026, 12, 6, 10, 0, 0, 123000, tzinfo=timezone.utc)
ATTRIBUTES = ("first_name", "last_name", "email", "phone")
EVENT_TYPES = {"CREATE": "ENTITY_CREATED", "UPDATE": "ENTITY_CHANGED", "MERGE": "ENTITIES_MERGED",
               "LOST_MERGE": "ENTITY_LOST_MERGE", "UNMERGE": "ENTITIES_SPLITTED", "REMOVE": "ENTITY_REMOVED"}


def ms(seconds: float) -> int:
    return round((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


def ts(seconds: float) -> datetime:
    """What the views give for updated_at / valid_from / valid_to: a naive UTC datetime."""
    return (T0 + timedelta(seconds=seconds)).replace(tzinfo=None)


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def cw(source: str, value: str, table: str | None = None) -> dict:
    return {"type": f"configuration/sources/{source}", "value": value, "source_table": table}


def rec(event_id, change_type, uri, version, seconds, snapshot=None, entity_type="Individual", omit=False, **extra):
    """One change record as the sink writes it. `omit`: leave the attribute keys out (no snapshot), as a sink may;
    union_by_name must still line the files up."""
    r = {"event_id": event_id, "event_type": EVENT_TYPES[change_type], "change_type": change_type,
         "entity_uri": f"entities/{uri}", "entity_type": entity_type, "tenant_id": "LOCAL1",
         "object_version": version, "updated_time": ms(seconds), "updated_at": iso(ms(seconds)),
         "has_snapshot": snapshot is not None}
    snap = snapshot or {}
    if not omit:
        r.update({a: snap.get(a) for a in ATTRIBUTES})
    r.update({"crosswalks": snap.get("crosswalks"), "merged_into": None, "merged_uris": None,
              "removed": change_type == "REMOVE", "received_at": iso(ms(seconds) + 1500)})
    r.update(extra)
    return r


def person(first, last, email=None, phone=None, crosswalks=()):
    return {"first_name": first, "last_name": last, "email": email, "phone": phone, "crosswalks": list(crosswalks)}


ANN_1 = person("Ann", "Lee", "ann@example.com", None, [cw("CRM", "a-1", "contacts")])
ANN_2 = person("Ann", "Lee", "ann.lee@example.com", "+1 555 0100", [cw("CRM", "a-1", "contacts")])
WEN = person("Wendy", "Wu", "wendy@example.com", None, [cw("CRM", "w-1", "contacts")])
WOO = person("Wendy", "Woo", "wendy@example.org", None, [cw("ERP", "l-1")])
PAT_1 = person("Pat", "Kim", None, None, [cw("CRM", "p-1", "contacts")])
PAT_3 = person("Pat", "Kim", "pat@example.com", None, [cw("CRM", "p-1", "contacts")])
QUIN_1 = person("Quinn", "Kim", None, "+1 555 0199", [cw("ERP", "q-1")])
QUIN_3 = person("Quinn", "Kimm", None, "+1 555 0199", [cw("ERP", "q-1")])
RAY = person("Ray", "Ode", None, None, [cw("CRM", "r-1", "contacts")])
NINA = [person("Nina", "Ng", None, None, [cw("CRM", "n-1", "contacts")]),
        person("Nina", "Ng", "nina@example.com", None, [cw("CRM", "n-1", "contacts")]),
        person("Nina", "Ng", "nina@example.com", "+1 555 0103", [cw("CRM", "n-1", "contacts")]),
        person("Nina", "Ng-Lo", "nina@example.com", "+1 555 0104", [cw("CRM", "n-1", "contacts")])]
MAX_1 = person("Max", "Moe", None, None, [cw("CRM", "m-1", "contacts")])
MAX_0 = person("Maxwell", "Moe", None, None, [cw("CRM", "m-1", "contacts")])

RECORDS = [
    # A: created, then updated.
    rec("evt-a1", "CREATE", "A", 1, 0, ANN_1),
    rec("evt-a2", "UPDATE", "A", 2, 60, ANN_2),
    # W absorbs L and stays merged: the winner's MERGE record has no snapshot, the loser's LOST_MERGE neither.
    rec("evt-w1", "CREATE", "W", 1, 0, WEN),
    rec("evt-l1", "CREATE", "L", 1, 10, WOO),
    rec("evt-w2", "MERGE", "W", 2, 120, merged_uris=["entities/L"]),
    rec("evt-l2", "LOST_MERGE", "L", 2, 120, omit=True, merged_into="entities/W"),
    # P absorbs Q, then they are unmerged: Q comes back with a later version, both with snapshots.
    rec("evt-p1", "CREATE", "P", 1, 0, PAT_1),
    rec("evt-q1", "CREATE", "Q", 1, 5, QUIN_1),
    rec("evt-p2", "MERGE", "P", 2, 100, merged_uris=["entities/Q"]),
    rec("evt-q2", "LOST_MERGE", "Q", 2, 100, merged_into="entities/P"),
    rec("evt-p3", "UNMERGE", "P", 3, 300, PAT_3),
    rec("evt-q3", "UNMERGE", "Q", 3, 300, QUIN_3),
    # R: created, then removed.
    rec("evt-r1", "CREATE", "R", 1, 0, RAY),
    rec("evt-r2", "REMOVE", "R", 2, 50),
    # N: no object_version at all, so updated_time orders; evt-n3 and evt-n4 share a millisecond and event_id
    # breaks the tie.
    rec("evt-n1", "CREATE", "N", None, 0, NINA[0]),
    rec("evt-n2", "UPDATE", "N", None, 30, NINA[1]),
    rec("evt-n3", "UPDATE", "N", None, 90, NINA[2]),
    rec("evt-n4", "UPDATE", "N", None, 90, NINA[3]),
    # M: a record without object_version sorts before the versioned one, however late it is.
    rec("evt-m1", "CREATE", "M", 1, 0, MAX_1),
    rec("evt-m0", "UPDATE", "M", None, 200, MAX_0),
    # X: only a record without snapshot, so nothing to show as current.
    rec("evt-x1", "UPDATE", "X", 5, 0, entity_type="Organization"),
]


def current_row(uri, version, seconds, snapshot_event_id, snap, entity_type="Individual"):
    return {"entity_uri": f"entities/{uri}", "entity_type": entity_type, "object_version": version,
            "updated_at": ts(seconds), "snapshot_event_id": snapshot_event_id,
            **{a: snap[a] for a in ATTRIBUTES}, "crosswalks": snap["crosswalks"]}


EXPECTED_CURRENT = [
    current_row("A", 2, 60, "evt-a2", ANN_2),
    current_row("M", 1, 0, "evt-m1", MAX_1),
    current_row("N", None, 90, "evt-n4", NINA[3]),
    current_row("P", 3, 300, "evt-p3", PAT_3),
    current_row("Q", 3, 300, "evt-q3", QUIN_3),
    # The latest record is the MERGE, without snapshot: its version and time, the attributes of evt-w1.
    current_row("W", 2, 120, "evt-w1", WEN),
]

# (entity, event_id, version, valid_from, valid_to, is_current) in each entity's order; seconds after T0.
EXPECTED_HISTORY = [
    ("A", "evt-a1", 1, 0, 60, False),
    ("A", "evt-a2", 2, 60, None, True),
    ("L", "evt-l1", 1, 10, 120, False),
    ("L", "evt-l2", 2, 120, None, False),
    ("M", "evt-m0", None, 200, 0, False),
    ("M", "evt-m1", 1, 0, None, True),
    ("N", "evt-n1", None, 0, 30, False),
    ("N", "evt-n2", None, 30, 90, False),
    ("N", "evt-n3", None, 90, 90, False),
    ("N", "evt-n4", None, 90, None, True),
    ("P", "evt-p1", 1, 0, 100, False),
    ("P", "evt-p2", 2, 100, 300, False),
    ("P", "evt-p3", 3, 300, None, True),
    ("Q", "evt-q1", 1, 5, 100, False),
    ("Q", "evt-q2", 2, 100, 300, False),
    ("Q", "evt-q3", 3, 300, None, True),
    ("R", "evt-r1", 1, 0, 50, False),
    ("R", "evt-r2", 2, 50, None, False),
    ("W", "evt-w1", 1, 0, 120, False),
    ("W", "evt-w2", 2, 120, None, True),
    # X has no current row (no snapshot) but its only record is the entity's latest state.
    ("X", "evt-x1", 5, 0, None, True),
]
HISTORY_COLUMNS = ["entity_uri", "entity_type", "event_id", "event_type", "change_type", "version", "valid_from",
                   "valid_to", "is_current", "merged_into", "merged_uris", "has_snapshot", *ATTRIBUTES, "crosswalks"]


def write_ndjson(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_current_and_history(tmp_path):
    write_ndjson(tmp_path / "changes.ndjson", RECORDS)
    con = analytics_sql.open_changes(tmp_path)

    assert analytics_sql.current(con) == EXPECTED_CURRENT

    hist = analytics_sql.history(con)
    assert [list(row) for row in hist] == [HISTORY_COLUMNS] * len(hist)
    assert [(r["entity_uri"], r["event_id"], r["version"], r["valid_from"], r["valid_to"], r["is_current"])
            for r in hist] == [(f"entities/{u}", e, v, ts(f), None if t is None else ts(t), c)
                               for u, e, v, f, t, c in EXPECTED_HISTORY]
    # Every other column is the record's own, as recorded: attributes null where it had no snapshot.
    by_id = {r["event_id"]: r for r in RECORDS}
    for row in hist:
        r = by_id[row["event_id"]]
        assert row["change_type"] == r["change_type"] and row["event_type"] == r["event_type"]
        assert row["entity_type"] == r["entity_type"] and row["has_snapshot"] == r["has_snapshot"]
        assert row["merged_into"] == r["merged_into"] and row["merged_uris"] == r["merged_uris"]
        assert row["crosswalks"] == r["crosswalks"]
        assert {a: row[a] for a in ATTRIBUTES} == {a: r.get(a) for a in ATTRIBUTES}


def redelivered(records: list[dict], rng: random.Random) -> list[dict]:
    """~30% of the records written twice (the copy received later), the whole lot shuffled."""
    out = copy.deepcopy(records)
    for r in rng.sample(records, k=round(len(records) * 0.3)):
        dup = copy.deepcopy(r)
        dup["received_at"] = iso(ms(3600) + rng.randrange(600_000))
        out.append(dup)
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_duplicates_files_and_order_change_nothing(tmp_path, seed):
    rng = random.Random(seed)
    records = redelivered(RECORDS, rng)
    # Firehose-like objects: several gzip files per entity_type=<T>/dt=<D>/ folder, records spread at random.
    files: dict[Path, list[dict]] = {}
    for r in records:
        day = f"2026-12-0{rng.choice([6, 7])}"
        part = tmp_path / "mdm-changes" / f"entity_type={r['entity_type']}" / f"dt={day}" / \
            f"mdm-changes-{rng.randrange(3)}.gz"
        files.setdefault(part, []).append(r)
    for path, recs in files.items():
        write_ndjson(path, recs)
    assert len(files) >= 3

    con = analytics_sql.open_changes(tmp_path / "mdm-changes")
    assert con.execute("SELECT count(*) FROM mdm_changes").fetchone()[0] == len(records)
    assert con.execute("SELECT count(*) FROM mdm_changes_distinct").fetchone()[0] == len(RECORDS)

    write_ndjson(tmp_path / "once" / "changes.ndjson", RECORDS)
    reference = analytics_sql.open_changes(tmp_path / "once")
    assert analytics_sql.current(con) == analytics_sql.current(reference) == EXPECTED_CURRENT
    assert analytics_sql.history(con) == analytics_sql.history(reference)


def test_open_changes_takes_files_and_folders(tmp_path):
    write_ndjson(tmp_path / "a" / "one.json.gz", RECORDS[:8])
    write_ndjson(tmp_path / "b" / "two.ndjson", RECORDS[8:])
    con = analytics_sql.open_changes([tmp_path / "a" / "one.json.gz", tmp_path / "b"])
    assert analytics_sql.current(con) == EXPECTED_CURRENT
    with pytest.raises(FileNotFoundError):
        analytics_sql.open_changes(tmp_path / "empty-folder-that-does-not-exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        analytics_sql.open_changes(tmp_path / "empty")


# --- Snowflake and Databricks: they cannot run here, so they must parse and keep DuckDB's shape. ---

VIEW_FILES = ("changes_distinct.sql", "current.sql", "history.sql")


def statements(folder: str, name: str) -> list[exp.Expression]:
    """The file's statements, parsed in its dialect (the folder is named after it)."""
    text = (ANALYTICS / folder / name).read_text()
    return [s for s in sqlglot.parse(text, read=folder) if s is not None]


def output_columns(create: exp.Expression, landing_only: frozenset[str] = frozenset()) -> list:
    """The view's select list: output names, and for each star its qualifier and what it excludes (less the
    landing table's own metadata columns, which only the distinct view has to drop)."""
    select = create.expression
    assert isinstance(select, exp.Select), create.sql()
    out: list = []
    for e in select.expressions:
        star = e if isinstance(e, exp.Star) else (e.this if isinstance(e, exp.Column) and e.is_star else None)
        if star is None:
            out.append(e.alias_or_name.lower())
        else:
            excluded = {c.name.lower() for c in (star.args.get("except_") or [])}
            assert excluded, f"{create.this.name}: a bare * would let contract columns through twice"
            out.append((e.table if isinstance(e, exp.Column) else "", excluded - landing_only))
    return out


def window_orders(create: exp.Expression) -> list[str]:
    """Every window's partition and order, dialect-neutral: the dedup and ordering rules."""
    return [w.sql("duckdb", comments=False).split(" OVER ", 1)[1].upper() for w in create.find_all(exp.Window)]


@pytest.mark.parametrize("folder", ["snowflake", "databricks"])
def test_warehouse_sql_parses_in_its_dialect(folder):
    for name in sorted(p.name for p in (ANALYTICS / folder).glob("*.sql")):
        for stmt in statements(folder, name):
            if isinstance(stmt, exp.Command):
                # sqlglot has no grammar for CREATE PIPE; its COPY INTO must parse on its own.
                text = " ".join((stmt.args["this"] + stmt.args["expression"]).split())
                assert text.upper().startswith("CREATE PIPE "), f"{name}: unparsed statement {text[:80]!r}"
                copy_stmt = sqlglot.parse_one(text[text.upper().index(" AS COPY ") + 4:], read=folder)
                assert isinstance(copy_stmt, exp.Copy)
            else:
                assert isinstance(stmt, exp.Create), f"{name}: {stmt.sql(folder)[:80]}"


@pytest.mark.parametrize("folder", ["snowflake", "databricks"])
@pytest.mark.parametrize("name", VIEW_FILES)
def test_warehouse_views_match_duckdb(folder, name):
    (duck,) = statements("duckdb", name)
    (other,) = statements(folder, name)
    assert other.this.name == duck.this.name
    # The landing tables' own metadata columns (source_file, loaded_at / _rescued_data) are dropped by the
    # distinct view; from there on every view has the same columns in the same order.
    landing_only = frozenset({"snowflake": {"source_file", "loaded_at"},
                              "databricks": {"source_file", "_rescued_data"}}[folder])
    assert output_columns(other, landing_only) == output_columns(duck)
    assert window_orders(other) == window_orders(duck)

"""The warehouse views over analytics-sink's change records, run locally on DuckDB.

Executes the shipped SQL (infra/analytics/duckdb/: load.sql, then the views) over NDJSON files, gzip or plain,
so the tests and the local stack check the very statements a deployment uses; Snowflake's and Databricks' copies
are kept parallel to them. Depends on duckdb only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

import duckdb

SQL_DIR = Path(__file__).resolve().parents[2] / "infra" / "analytics" / "duckdb"
# In execution order: the landing view, then each view over the one before.
SQL_FILES = ("load.sql", "changes_distinct.sql", "current.sql", "history.sql")
# load.sql reads the sink's prefix with this literal; we put the list of files found in its place.
ROOT_PLACEHOLDER = "'<root>/**/*.gz'"
# What a landed object may be called: Firehose's gzip objects, or plain NDJSON written by hand or by a test.
SUFFIXES = (".gz", ".json", ".ndjson", ".jsonl")

PathLike = Union[str, os.PathLike]


def change_files(paths_or_root: Union[PathLike, Iterable[PathLike]]) -> list[str]:
    """Files to read: a folder is searched recursively (entity_type=<T>/dt=<D>/...), a file is taken as is."""
    items = [paths_or_root] if isinstance(paths_or_root, (str, os.PathLike)) else list(paths_or_root)
    files: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*")
                      if f.is_file() and f.name.endswith(SUFFIXES) and not f.name.startswith(".")]
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    # Sorted so that the inferred column order does not depend on the file system's listing order.
    return sorted(set(files))


def _sql_list(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def open_changes(paths_or_root: Union[PathLike, Iterable[PathLike]],
                 con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A connection (new, in memory, unless given) with mdm_changes over the files and the views over it."""
    files = change_files(paths_or_root)
    if not files:
        # read_json has no schema to give an empty list: say so rather than fail inside DuckDB.
        raise FileNotFoundError(f"no change record files ({', '.join(SUFFIXES)}) in {paths_or_root}")
    con = con if con is not None else duckdb.connect()
    for name in SQL_FILES:
        sql = (SQL_DIR / name).read_text()
        if name == "load.sql":
            if ROOT_PLACEHOLDER not in sql:
                raise ValueError(f"{SQL_DIR / name} no longer reads {ROOT_PLACEHOLDER}: nothing to substitute")
            sql = sql.replace(ROOT_PLACEHOLDER, _sql_list(files))
        con.execute(sql)
    return con


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def current(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """mdm_current's rows by entity_uri; timestamps are naive datetimes in UTC."""
    return _rows(con, "SELECT * FROM mdm_current ORDER BY entity_uri")


def history(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """mdm_history's rows, each entity's in its records' order."""
    return _rows(con, "SELECT * FROM mdm_history"
                      " ORDER BY entity_uri, version ASC NULLS FIRST, valid_from, event_id")

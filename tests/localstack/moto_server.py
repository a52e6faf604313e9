"""moto_server for the local stack: tools/moto_server_atomic.py (DynamoDB requests one at a time, so that the
crm-updater's concurrent ledger claims race as on DynamoDB) plus speed-ups of moto's hot paths that leave what it
answers unchanged. Same command line as moto_server.

Under load moto, not the functions, was the local stack's bottleneck (profiled with py-spy at 200 persons):
- `unix_time()` builds two datetimes per call, and SQS calls it for every message on every visibility check:
  now `time.time()` (the same value) when no datetime is given.
- SQS's retention check runs once per received message and recomputes every queue attribute (several passes
  over all messages each): ReceiveMessage was quadratic in the queue's length. Now it reads the queue's
  retention period directly.
- The request dispatcher lists moto's package directory (one stat per service) under a lock on every request
  whose backend it has to infer: now listed once.
- Every answer's body is searched with a regular expression for an XML `<RequestId>` to fill in, JSON bodies
  (DynamoDB's) too: now only bodies that contain one.
- TransactWriteItems deep-copies every table it names, to roll back a cancelled transaction: the ledger's
  merge claims (one transaction each) grew slower with every entity. Now it backs up only the items the
  transaction names, and puts them back when it is cancelled (a table with a range key is still copied whole).
- werkzeug's access log (a line per request, under a lock shared by every request thread): warnings only;
  instead, requests slower than a second are logged.
"""
from __future__ import annotations

import copy
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Run as a script: its own directory (the local stack's modules: util, runtime, ...) must not shadow anything.
sys.path[0] = str(ROOT / "tools")

import moto_server_atomic  # noqa: E402,F401  (patches moto's dispatcher: atomic DynamoDB requests)
from moto import backends, server  # noqa: E402
from moto.core import utils  # noqa: E402
from moto.core.responses import BaseResponse  # noqa: E402
from moto.utilities.aws_headers import gen_amzn_requestid_long  # noqa: E402
from moto.dynamodb import models as ddb_models  # noqa: E402
from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402
from moto.sqs import models as sqs_models  # noqa: E402

_unix_time = utils.unix_time


def unix_time(dt=None) -> float:
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None) -> float:
    return unix_time(dt) * 1000.0


for module in (utils, sqs_models):
    module.unix_time = unix_time
    module.unix_time_millis = unix_time_millis


def is_message_valid_based_on_retention_period(self, queue_name, message) -> bool:
    retention = int(self.get_queue(queue_name).message_retention_period)
    return retention + message.sent_timestamp / 1000 > unix_time()


sqs_models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period

_enrich_response = BaseResponse._enrich_response


def enrich_response(headers, body):
    if isinstance(body, str) and "<RequestId>" not in body:
        if "status" in headers:
            headers["status"] = str(headers["status"])
        gen_amzn_requestid_long(headers)
        return headers, body
    return _enrich_response(headers, body)


BaseResponse._enrich_response = staticmethod(enrich_response)

class _CopyButTables:
    """moto.dynamodb.models' `copy`: deepcopy leaves Table objects alone (transact_write_items backs them up)."""

    @staticmethod
    def deepcopy(x, memo=None):
        return x if isinstance(x, Table) else copy.deepcopy(x, memo)


ddb_models.copy = _CopyButTables
_transact_write_items = ddb_models.DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    items, tables = [], {}  # (table, hash key, the item as it was or None); table name -> a copy of it all
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        name = op.get("TableName")
        table = self.tables.get(name)
        key = op.get("Key") or op.get("Item") or {}
        if table is None:
            continue  # moto answers the error as before
        if table.has_range_key or table.hash_key_attr not in key:
            tables.setdefault(name, copy.deepcopy(table))
            continue
        h = DynamoType(key[table.hash_key_attr])
        items.append((table, h, copy.deepcopy(table.items[h]) if h in table.items else None))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, h, item in reversed(items):
            if item is None:
                table.items.pop(h, None)
            else:
                table.items[h] = item
        self.tables.update(tables)
        raise


ddb_models.DynamoDBBackend.transact_write_items = transact_write_items

_modules = list(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _modules

logging.getLogger("werkzeug").setLevel(logging.WARNING)

_dispatcher = server.DomainDispatcherApplication


class _SlowRequestLog(_dispatcher):
    """Logs (to stderr: moto.log) every request other than a ReceiveMessage (a long poll) that took longer than
    a second, with its API target: a sign that moto, not the functions, is what is slow."""

    def __call__(self, environ, start_response):
        t0 = time.time()
        try:
            return super().__call__(environ, start_response)
        finally:
            took = time.time() - t0
            target = environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO", "")
            if took > 1.0 and not target.endswith("ReceiveMessage"):
                print(f"slow request: {took:.2f} s {target}", file=sys.stderr, flush=True)


server.DomainDispatcherApplication = _SlowRequestLog

if __name__ == "__main__":
    sys.exit(server.main())

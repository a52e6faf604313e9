"""Cold start and peak memory of each release binary (issue 7).

Cold start: a minimal Lambda Runtime API on a free 127.0.0.1 port; each run execs target/release/<function> with
docs/contract.md's settings pointing at a loopback "sentinel" port (nothing else is reachable) and times exec → the
first `GET /2018-06-01/runtime/invocation/next`. Any connection to the sentinel before that request is network
I/O during initialisation, which the design rules out; it is reported. Median and p95 over --runs runs (after
--warmup discarded runs; the binary is in the page cache, as on a warm Lambda host but not a cold one).

Peak memory: each binary serves --invocations invocations of a realistic event in one process (one execution
environment) under the local stack's Runtime API host, against moto_server (Secrets Manager, SQS, DynamoDB) and
the Reltio and Salesforce simulators, all on 127.0.0.1. Peak RSS is VmHWM of /proc/<pid>/status afterwards.

    .venv/bin/python tools/bench/coldstart_rss.py [--runs 30] [--invocations 1000] [--only cdc-ingest]
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import FUNCTIONS, binary, function_env, lambda_env, percentile, table, verdict  # noqa: E402

NEXT = b"GET /2018-06-01/runtime/invocation/next"
COLD_START_TARGET_MS = 10.0
RSS_TARGET_MB = 32.0


def _listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _drain(sock: socket.socket) -> int:
    """Accepts (and closes) every pending connection; how many there were."""
    n = 0
    sock.setblocking(False)
    try:
        while True:
            conn, _ = sock.accept()
            conn.close()
            n += 1
    except (BlockingIOError, OSError):
        pass
    sock.setblocking(True)
    return n


def cold_start_once(path: str, env: dict, api: socket.socket, sentinel: socket.socket, timeout: float = 10.0):
    """(ms exec → first `next` request, VmHWM kB at that moment, sentinel connections before it)."""
    _drain(sentinel)
    t0 = time.perf_counter()
    p = subprocess.Popen([path], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([api], [], [], timeout)
        if not ready:
            err = p.stderr.read1(2000).decode(errors="replace") if p.poll() is not None else ""
            raise RuntimeError(f"{path}: no Runtime API request within {timeout} s {err}")
        conn, _ = api.accept()
        with conn:
            conn.settimeout(timeout)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            t1 = time.perf_counter()
            hwm = _status_kb(p.pid, "VmHWM")
            early = _drain(sentinel)
            if not data.startswith(NEXT):
                raise RuntimeError(f"{path}: first Runtime API request was {data[:200]!r}, not invocation/next "
                                   f"(initialisation failed?)")
    finally:
        p.kill()
        p.wait()
        p.stderr.close()
    return (t1 - t0) * 1000, hwm, early


def cold_starts(runs: int, warmup: int, only: list[str]) -> list[tuple]:
    api, sentinel = _listener(), _listener()
    sport = sentinel.getsockname()[1]
    nowhere = f"http://127.0.0.1:{sport}"
    rows = []
    try:
        for name in only:
            env = {**lambda_env(name, f"127.0.0.1:{api.getsockname()[1]}"), **function_env(
                name, aws=nowhere, reltio_api=f"{nowhere}/reltio/api/BENCH1", reltio_auth=f"{nowhere}/oauth/token",
                salesforce_secret="mdm-sync/salesforce", reltio_secret="mdm-sync/reltio",
                webhook_secret="mdm-sync/webhook", queue=f"{nowhere}/123456789012/mdm-sync-events",
                cdc_dlq=f"{nowhere}/123456789012/mdm-sync-cdc-dlq",
                crm_dlq=f"{nowhere}/123456789012/mdm-sync-crm-dlq", table="mdm-sync-sync-state")}
            path = binary(name)
            times, hwms, early = [], [], 0
            for i in range(warmup + runs):
                ms, hwm, e = cold_start_once(path, env, api, sentinel)
                if i >= warmup:
                    times.append(ms)
                    hwms.append(hwm or 0)
                    early += e
            med, p95 = percentile(times, 50), percentile(times, 95)
            size_mb = os.path.getsize(path) / 1e6
            notes = (f"{runs} runs (+{warmup} warm-up); p95 {p95:.2f} ms; min {min(times):.2f} ms; "
                     f"RSS at first `next` {max(hwms) / 1024:.1f} MB; binary {size_mb:.1f} MB; "
                     f"init network connections: {early}")
            rows.append((f"cold start {name} (exec → first `next`, median)", f"{med:.2f} ms",
                         f"<= {COLD_START_TARGET_MS:g} ms median{verdict(med <= COLD_START_TARGET_MS and early == 0)}",
                         notes))
    finally:
        api.close()
        sentinel.close()
    return rows


# ------------------------------------------------------------------------------------------------ peak memory
def _no_batch_failures(r) -> str | None:
    """None when a batch function's answer reports no failed item, else what it answered."""
    return None if isinstance(r, dict) and not r.get("batchItemFailures") else f"answered {str(r)[:200]}"


def _events(name: str, stack: common.LocalStack, n: int):
    """The n-th invocation's event of `name`, and a check of its answer (None when it is a success)."""
    if name == "cdc-ingest":
        # A DMS batch of 100 customer updates over 500 rows: entities are created, then updated.
        datas = [(f"public.customer.{k}", common.dms_record(k, "update", first=f"First{k}v{n}"))
                 for k in ((n * 100 + j) % 500 for j in range(100))]
        event = common.kinesis_event(stack.res.stream_arn, "shardId-000000000000", datas, first_seq=n * 100 + 1)
        return event, _no_batch_failures
    if name == "webhook-receiver":
        # One signed 4 KB ENTITY_CHANGED event (new delivery id each time) → SendMessageBatch to the event queue.
        ev = common.reltio_event(n % 200, n + 1, [f"003BE{n % 200:013d}"], pad_to=4096)
        event = common.webhook_event(json.dumps(ev).encode(), common.WEBHOOK_SECRET, f"bench-{n}")

        def check(r):
            return None if isinstance(r, dict) and r.get("statusCode") == 200 else f"answered {str(r)[:200]}"
        return event, check
    if name == "crm-updater":
        # An SQS batch of 10 ENTITY_CHANGED events (full snapshots) of 10 of 200 entities: ledger claims and
        # commits in DynamoDB, one sObject Collections PATCH.
        evs = [common.reltio_event(e, n + 1, [f"003BE{e:013d}"], last=f"Doe{n}-")
               for e in ((n * 10 + j) % 200 for j in range(10))]
        event = common.sqs_event(stack.res.event_queue_arn, evs)
        return event, _no_batch_failures
    if name == "stream-consumer":
        # A Kafka batch of 10 ENTITY_CHANGED events (full snapshots, 4 KB each) → SendMessageBatch to the event queue.
        evs = [common.reltio_event(e, n + 1, [f"003BE{e:013d}"], pad_to=4096)
               for e in ((n * 10 + j) % 200 for j in range(10))]
        event = common.kafka_event("reltio.BENCH1.entities.changes",
                                   [(ev["object"]["uri"], json.dumps(ev).encode()) for ev in evs],
                                   first_offset=n * 10)
        return event, _no_batch_failures
    if name == "analytics-sink":
        # An SQS batch of 10 ENTITY_CHANGED events (full snapshots, 4 KB each) → one PutRecordBatch to Firehose.
        evs = [common.reltio_event(e, n + 1, [f"003BE{e:013d}"], pad_to=4096)
               for e in ((n * 10 + j) % 200 for j in range(10))]
        event = common.sqs_event(stack.res.analytics_queue_arn, evs)
        return event, _no_batch_failures
    raise ValueError(name)


def peak_memory(invocations: int, only: list[str]) -> list[tuple]:
    from tests.localstack.runtime import InvocationError

    stack = common.LocalStack("mdm-bench-rss-")
    rows = []
    try:
        for e in range(200):  # the Contacts crm-updater writes
            stack.sf.insert("Contact", {"FirstName": "x", "LastName": "y"}, f"003BE{e:013d}")
        for name in only:
            host = stack.host(name, timeout_s=30)
            failed, first_failure = 0, None
            t0 = time.time()
            try:
                for n in range(invocations):
                    event, check = _events(name, stack, n)
                    try:
                        problem = check(host.invoke(event))
                    except InvocationError as err:
                        problem = str(err)
                    if problem:
                        failed += 1
                        first_failure = first_failure or problem
                pid = host.proc.pid
                hwm = _status_kb(pid, "VmHWM") if host.alive() else None
                rss = _status_kb(pid, "VmRSS") if host.alive() else None
                restarts = host.restarts
            finally:
                host.close()
            wall = time.time() - t0
            if hwm is None:
                rows.append((f"peak memory {name}", "n/a", f"<= {RSS_TARGET_MB:g} MB",
                             f"process not alive at the end; logs in {stack.log_dir}"))
                continue
            mb = hwm / 1024
            notes = (f"{invocations} invocations in one process ({restarts} restarts), {failed} failed"
                     + (f" (first: {first_failure[:160]})" if first_failure else "")
                     + f"; RSS at the end {rss / 1024:.1f} MB; {wall:.0f} s")
            rows.append((f"peak memory {name} (max RSS over {invocations} invocations)", f"{mb:.1f} MB",
                         f"<= {RSS_TARGET_MB:g} MB{verdict(mb <= RSS_TARGET_MB)}", notes))
    finally:
        stack.close()
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--invocations", type=int, default=1000)
    p.add_argument("--only", action="append", choices=FUNCTIONS)
    p.add_argument("--skip-rss", action="store_true")
    a = p.parse_args(argv)
    only = a.only or list(FUNCTIONS)
    from tests.localstack.util import install_signal_handlers

    install_signal_handlers()
    table("Cold start (release binaries, local Runtime API)", cold_starts(a.runs, a.warmup, only))
    if not a.skip_rss:
        table("Peak memory (release binaries, local stack)", peak_memory(a.invocations, only))


if __name__ == "__main__":
    main()

"""The operator CLI (tools/mdm-sync) against the local stack, as an on-call engineer uses it (`make e2e`).

A run leaves what production incidents leave: a change Reltio kept refusing (its Kinesis batch given up on after
the mapping's retries, on the on-failure queue), a Contact a Salesforce validation rule refused (crm-updater's
DLQ), and the deliberate bad inputs. The CLI lists and shows them, the causes are fixed, the letters redriven, and
the stack ends where a clean run would: every crosswalk at the source's state, every Contact equal to its golden
record, only the bad inputs left on the DLQs. The Reltio side: `reltio configure` registers the webhook once,
updates it in place, and deliveries follow the registered retry policy.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from .aws import endpoints_env
from .faults import Faults
from .reltio_sim import TENANT, ReltioSim
from .stack import ROOT, Report, Scenario, Stack
from .util import QuietHandler, Server
from .webhook import WebhookDeliverer, sign
from .workload import OVERSIZED, contact_id

TARGET = Path(os.environ.get("LOCALSTACK_TARGET_DIR", ROOT / "target" / "release"))
CLI = Path(os.environ.get("MDM_SYNC_CLI", ROOT / "target" / "debug" / "mdm-sync"))
SMALL_BATCHES = dict(cdc_batch_size=50, cdc_window_s=0.0, crm_batch_size=10, crm_window_s=0.3, crm_timeout_s=10,
                     analytics_batch_size=10, analytics_window_s=0.3)


def cli(*args, env: dict, check_exit: int | None = 0) -> subprocess.CompletedProcess:
    p = subprocess.run([str(CLI), *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    if check_exit is not None:
        assert p.returncode == check_exit, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


@pytest.fixture(scope="module", autouse=True)
def binaries():
    assert CLI.exists(), f"{CLI} missing (run `cargo build -p mdm-sync`)"


def _outputs(st: Stack) -> list[str]:
    r = st.res
    outputs = {"CdcDeadLetterQueueUrl": r.cdc_dlq, "CdcStreamFailureQueueUrl": r.cdc_failure,
               "EventQueueUrl": r.event_queue, "EventDeadLetterQueueUrl": r.event_dlq,
               "CrmDeadLetterQueueUrl": r.crm_dlq, "AnalyticsQueueUrl": r.analytics_queue,
               "AnalyticsDeadLetterQueueUrl": r.analytics_dlq,
               "AnalyticsQueueDeadLetterQueueUrl": r.analytics_queue_dlq, "CdcStreamArn": r.stream_arn}
    return [a for k, v in outputs.items() for a in ("--set", f"{k}={v}")]


def _env(st: Stack) -> dict:
    return {**os.environ, **endpoints_env(st.res), "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "NO_COLOR": "1"}


def _depths(listing: list[dict]) -> dict[str, int]:
    return {q["queue"]: q["depth"] for q in listing}


def test_dlq_list_show_and_redrive_repair_a_run_with_failures(tmp_path):
    # With the CDC key ledger, as the README says to run before redriving: a redriven change older than what
    # was applied since (a discarded batch's record whose key moved on, or whose primary key changed) is skipped.
    st = Stack(Scenario(persons=6, seed=3, bad_inputs=True, fail_500=10_000, kinesis_max_retries=2, cdc_key_ledger=True,
                        target_dir=str(TARGET), log_dir=str(tmp_path / "logs"), progress=False, **SMALL_BATCHES))
    try:
        st.start()
        refused = contact_id(1)
        st.sf.validation_rules.add(refused)
        st.run(check=False)
        env, outs = _env(st), _outputs(st)

        # What the alarm points at: every queue, its depth and its reasons (exit 1: there are findings).
        listing = json.loads(cli("--json", "dlq", "list", *outs, env=env, check_exit=1).stdout)
        depths = _depths(listing)
        assert depths["cdc-failures"] >= 1 and depths["crm"] >= 2, listing
        assert depths["events"] == 0, listing
        reasons = {q["queue"]: [r["reason"] for r in q["reasons"]] for q in listing}
        assert any("FIELD_CUSTOM_VALIDATION_EXCEPTION" in r for r in reasons["crm"]), reasons["crm"]
        assert any("RetryAttemptsExhausted" in r for r in reasons["cdc-failures"]), reasons["cdc-failures"]
        table = cli("dlq", "list", *outs, env=env, check_exit=1).stdout
        assert "cdc-failures" in table and "FIELD_CUSTOM_VALIDATION_EXCEPTION" in table, table

        # The on-failure record resolved to the records Lambda gave up on: customer 1000's change among them.
        shown = json.loads(cli("dlq", "show", "cdc-failures", "--fetch", *outs, env=env).stdout)
        assert shown["body"]["KinesisBatchInfo"]["shardId"], shown
        fetched = shown["fetched"]
        assert fetched and all(r["sequenceNumber"] and r["partitionKey"] for r in fetched), fetched
        assert any((r["record"].get("data") or {}).get("id") == 1000 for r in fetched), fetched

        # A dry run plans and changes nothing.
        dry = json.loads(cli("--json", "dlq", "redrive", "crm", "--dry-run", "--filter", "reason=FIELD_CUSTOM",
                             *outs, env=env).stdout)
        refused_letters = len(dry["planned"])
        assert refused_letters >= 1 and dry["redriven"] == 0, dry
        assert dry["skippedByFilter"] >= 1, dry  # the bad input does not match
        dry = json.loads(cli("--json", "dlq", "redrive", "cdc-failures", "--dry-run", *outs, env=env).stdout)
        assert dry["planned"] and dry["planned"][0]["namedRecords"] >= 1, dry
        assert _depths(json.loads(cli("--json", "dlq", "list", *outs, env=env, check_exit=1).stdout)) == depths

        # The causes fixed, the letters redriven: each message deleted once re-put.
        st.reltio.fail_500.clear()
        st.sf.validation_rules.clear()
        cdc = json.loads(cli("--json", "dlq", "redrive", "cdc-failures", *outs, env=env).stdout)
        assert cdc["redriven"] == depths["cdc-failures"] and cdc["recordsPut"] >= 1 and not cdc["failed"], cdc
        crm = json.loads(cli("--json", "dlq", "redrive", "crm", "--filter", "reason=FIELD_CUSTOM", *outs,
                             env=env).stdout)
        assert crm["redriven"] == refused_letters and not crm["failed"], crm
        assert st.settle("redriven", 1, 1, 120), "the redriven changes did not settle"

        # Nothing left to redrive; the bad inputs stay where they are (a bad input is not redriven blindly).
        again = json.loads(cli("--json", "dlq", "redrive", "cdc-failures", *outs, env=env).stdout)
        assert again["redriven"] == 0, again
        after = _depths(json.loads(cli("--json", "dlq", "list", *outs, env=env, check_exit=1).stdout))
        # The discarded batch held the malformed records too: redriven, they are dead-lettered now.
        assert after["cdc-failures"] == 0 and after["cdc"] >= 2, after
        assert after["crm"] == depths["crm"] - refused_letters, after

        # The 300 KB malformed record's letter points at the letter store: `dlq show` reads the payload back with the
        # operator's credentials, checked against the letter's size and SHA-256.
        peeked = st.res.sqs.receive_message(QueueUrl=st.res.cdc_dlq, MaxNumberOfMessages=10, VisibilityTimeout=0)
        big = [m for m in peeked.get("Messages", []) if '"bucket"' in m["Body"]]
        assert big, [m["Body"][:200] for m in peeked.get("Messages", [])]
        shown = json.loads(cli("dlq", "show", "cdc", "--message-id", big[0]["MessageId"], *outs, env=env).stdout)
        assert shown["fetched"]["from"].startswith(f"s3://{st.res.letter_bucket}/cdc-ingest/"), shown["fetched"]
        assert shown["fetched"]["payload"].encode() == OVERSIZED

        # The stack's own invariants now hold as after a clean run: every crosswalk at the source's state (the
        # writes of customer 1000 and of the rest of its discarded batch included), no write out of per-key order,
        # the refused Contact equal to its golden record, only the deliberate bad inputs dead-lettered.
        rep = Report()
        st.check(st.wl, rep)
        assert rep.failures == [], rep.failures
        assert rep.figures["contacts_matching_golden"] >= 6, rep.figures
        assert st.sf.contact(refused), refused
    finally:
        st.close()


class _Refusing(QuietHandler):
    def do_POST(self):
        self.read_body()
        with self.server.lock:
            self.server.requests.append((self.headers.get("X-Reltio-Timestamp"),
                                         self.headers.get("X-Reltio-Signature")))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_reltio_configure_registers_the_webhook_once_and_deliveries_follow_its_retry_policy(tmp_path):
    import threading

    sim = ReltioSim(Faults())
    hook = Server(_Refusing, requests=[], lock=threading.Lock())
    try:
        secret = "whsec-do-not-print-7f3a"
        env = {**os.environ, "RELTIO_API_URL": f"{sim.url}/reltio/api/{TENANT}", "RELTIO_AUTH_URL": sim.auth_url,
               "RELTIO_CLIENT_ID": sim.client[0], "RELTIO_CLIENT_SECRET": sim.client[1], "WEBHOOK_SECRET": secret,
               "NO_COLOR": "1"}
        sub = tmp_path / "subscription.toml"

        def subscription(retries: int):
            sub.write_text(f"""entity_types = ["Individual"]
event_types = ["CREATE", "UPDATE", "MERGE", "ENTITY_REMOVED"]
[webhook]
name = "mdm-sync-test"
[webhook.retry]
max_retries = {retries}
retry_delay_ms = 50
backoff_multiplier = 1.0
""")

        subscription(1)
        dry = cli("reltio", "configure", "--subscription", sub, "--webhook-url", hook.url, "--dry-run", env=env)
        assert "<redacted>" in dry.stdout and secret not in dry.stdout + dry.stderr, dry.stdout
        assert sim.webhooks == {}
        first = cli("--json", "reltio", "configure", "--subscription", sub, "--webhook-url", hook.url, env=env)
        assert json.loads(first.stdout)["result"] == "created"
        subscription(2)
        second = cli("--json", "reltio", "configure", "--subscription", sub, "--webhook-url", hook.url, env=env)
        assert json.loads(second.stdout)["result"] == "updated"
        for p in (first, second):
            assert secret not in p.stdout + p.stderr
        assert list(sim.webhooks) == ["mdm-sync-test"], sim.webhooks
        reg = sim.webhooks["mdm-sync-test"]
        assert reg["url"] == hook.url and reg["entityTypes"] == ["configuration/entityTypes/Individual"], reg
        assert {"ENTITY_CREATED", "ENTITY_CHANGED", "ENTITIES_MERGED", "ENTITY_REMOVED"} <= set(reg["events"]), reg
        assert reg["signing"]["secret"] == secret, "the receiver's current secret is what Reltio signs with"
        assert sim.retry_policy() == (2, 0.05, 1.0)

        # Deliveries follow the registration: the first try and maxRetries more, each signed with its secret.
        deliverer = WebhookDeliverer(hook.url, reg["signing"]["secret"], scale=1.0, policy=sim.retry_policy)
        body = {"type": "ENTITY_CHANGED", "object": {"uri": "entities/1"}}
        deliverer.submit(body, "ev-1")
        end = time.time() + 10
        while not deliverer.idle() and time.time() < end:
            time.sleep(0.05)
        deliverer.close()
        assert deliverer.given_up == ["ev-1"]
        raw = json.dumps(body).encode()
        assert len(hook.httpd.requests) == 3, hook.httpd.requests
        assert all(sig == sign(secret, raw, int(ts)) for ts, sig in hook.httpd.requests)

        # Refused credentials: a clear error, exit 1, and no secret in it.
        bad = cli("reltio", "configure", "--subscription", sub, "--webhook-url", hook.url,
                  env={**env, "RELTIO_CLIENT_SECRET": "wrong-client-secret"}, check_exit=1)
        assert bad.stderr.startswith("error:") and "wrong-client-secret" not in bad.stderr + bad.stdout, bad.stderr
        # A subscription file with an unknown event type is a usage error (exit 2).
        sub.write_text('event_types = ["CREATE", "EXPLODE"]\n')
        usage = cli("reltio", "configure", "--subscription", sub, "--webhook-url", hook.url, env=env, check_exit=2)
        assert "EXPLODE" in usage.stderr
    finally:
        hook.close()
        sim.close()

"""Operational checks on the SAM template: each returns a list of problems (empty when the template is safe).

They encode the event-source, queue, alarm and IAM rules of docs/reference.md and the README, so that a change to
infra/template.yaml that loses a bounded retry, a DLQ, an alarm or least privilege fails `make test`.
"""

from __future__ import annotations

import re
from pathlib import Path

from cfnlint.decode import cfn_yaml

# docs/contract.md's settings per function (the names are the product's interface).
CONTRACT_VARIABLES = {
    "cdc-ingest": {
        "RELTIO_API_URL", "RELTIO_AUTH_URL", "RELTIO_SECRET_ID", "CDC_MAPPING_FILE", "CDC_DLQ_URL",
        "RELTIO_BATCH_SIZE", "RELTIO_MAX_CONCURRENCY", "METRICS_NAMESPACE",
    },
    "webhook-receiver": {
        "WEBHOOK_SECRET_ID", "EVENT_QUEUE_URL", "EVENT_TOPIC_ARN", "WEBHOOK_TOLERANCE_SECONDS", "WEBHOOK_REQUIRE_TIMESTAMP",
        "WEBHOOK_MAX_BODY_BYTES", "EVENT_TYPES", "ENTITY_TYPES", "METRICS_NAMESPACE",
    },
    "crm-updater": {
        "SALESFORCE_SECRET_ID", "SALESFORCE_API_VERSION", "RELTIO_API_URL", "RELTIO_AUTH_URL",
        "RELTIO_SECRET_ID", "CRM_MAPPING_FILE", "SYNC_STATE_TABLE", "CRM_DLQ_URL", "METRICS_NAMESPACE",
    },
    "stream-consumer": {
        "EVENT_QUEUE_URL", "EVENT_TOPIC_ARN", "STREAM_DLQ_URL", "EVENT_TYPES", "ENTITY_TYPES", "STREAM_MAX_EVENT_BYTES", "METRICS_NAMESPACE",
    },
    "analytics-sink": {
        "FIREHOSE_STREAM_NAME", "ANALYTICS_MAPPING_FILE", "ANALYTICS_DLQ_URL", "ANALYTICS_DEDUP_TABLE",
        "ANALYTICS_DEDUP_TTL_DAYS", "ANALYTICS_EVENT_BUS", "RELTIO_API_URL", "RELTIO_AUTH_URL", "RELTIO_SECRET_ID",
        "METRICS_NAMESPACE",
    },
}

# Services whose actions read or write the product's data (as opposed to logs and metrics).
DATA_PLANE_PREFIXES = ("sqs:", "kinesis:", "dynamodb:", "secretsmanager:", "s3:", "sns:", "kms:")


def load(path: str | Path) -> dict:
    return cfn_yaml.load(str(path))


def contract_variables(contract_md: Path | None) -> dict[str, set[str]]:
    """docs/contract.md's tabled variables per function when the file is at hand, else the embedded copy (which also
    holds the subscription-filter variables the contract names in prose)."""
    if contract_md is None or not contract_md.exists():
        return CONTRACT_VARIABLES
    text = contract_md.read_text()
    found = {}
    for name in CONTRACT_VARIABLES:
        section = re.search(rf"^## {re.escape(name)}.*?(?=^## |\Z)", text, re.S | re.M)
        # The first cell of each table row names the settings ("| `A`, `B` | meaning |").
        rows = re.findall(r"^\| *(`[^|]*)\|", section.group(0), re.M) if section else []
        names = {n for row in rows for n in re.findall(r"`([A-Z][A-Z0-9_]{3,})`", row)}
        found[name] = {n for n in names if not n.startswith("AWS_")} | {"METRICS_NAMESPACE"}
    return found


def resources(t: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in t["Resources"].items() if v.get("Type") == kind}


def ref_name(value) -> str | None:
    """The logical id a !Ref / !GetAtt points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else str(att).split(".")[0]
    return None


def refs_in(value) -> set[str]:
    """Every logical id referenced anywhere inside a value (through !If and friends)."""
    out = set()
    if isinstance(value, dict):
        name = ref_name(value)
        if name:
            out.add(name)
        for v in value.values():
            out |= refs_in(v)
    elif isinstance(value, list):
        for v in value:
            out |= refs_in(v)
    return out


def function_timeout(t: dict, logical_id: str) -> int:
    fn = t["Resources"][logical_id]["Properties"]
    return int(fn.get("Timeout", t.get("Globals", {}).get("Function", {}).get("Timeout", 3)))


def function_env(t: dict, logical_id: str) -> dict:
    fn = t["Resources"][logical_id]["Properties"]
    return fn.get("Environment", {}).get("Variables", {})


def functions_by_binary(t: dict) -> dict[str, str]:
    out = {}
    for lid, r in resources(t, "AWS::Serverless::Function").items():
        binary = r.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if binary:
            out[binary] = lid
    return out


def event_sources(t: dict) -> list[tuple[str, str, dict]]:
    """(source logical id, function logical id, properties) of every stream and queue event source."""
    out = []
    for lid, r in resources(t, "AWS::Lambda::EventSourceMapping").items():
        p = r["Properties"]
        out.append((lid, ref_name(p["FunctionName"]), p))
    for fid, r in resources(t, "AWS::Serverless::Function").items():
        for eid, e in r["Properties"].get("Events", {}).items():
            if e.get("Type") in ("Kinesis", "DynamoDB", "SQS"):
                props = dict(e["Properties"])
                props.setdefault("EventSourceArn", props.get("Stream", props.get("Queue")))
                out.append((f"{fid}.{eid}", fid, props))
    return out


def source_kind(t: dict, props: dict) -> str:
    names = refs_in(props.get("EventSourceArn"))
    types = {t["Resources"][n]["Type"] for n in names if n in t["Resources"]}
    if "AWS::SQS::Queue" in types:
        return "sqs"
    if props.get("StartingPosition"):
        return "stream"
    return "unknown"


def dead_letter_queues(t: dict) -> set[str]:
    dlqs = set()
    for r in resources(t, "AWS::SQS::Queue").values():
        redrive = r.get("Properties", {}).get("RedrivePolicy")
        if redrive:
            dlqs |= refs_in(redrive.get("deadLetterTargetArn"))
    for _, _, p in event_sources(t):
        dlqs |= refs_in(p.get("DestinationConfig", {}).get("OnFailure"))
    for fid in resources(t, "AWS::Serverless::Function"):
        for name, value in function_env(t, fid).items():
            if name.endswith("_DLQ_URL"):
                dlqs |= refs_in(value)
    return dlqs


def resolved(t: dict, value):
    """A literal, or the default of the parameter it references."""
    name = ref_name(value) if isinstance(value, dict) else None
    if name is None:
        return value
    default = t.get("Parameters", {}).get(name, {}).get("Default")
    return int(default) if isinstance(default, (int, str)) and str(default).lstrip("-").isdigit() else default


def check_event_sources(t: dict) -> list[str]:
    problems = []
    for sid, fid, p in event_sources(t):
        if "ReportBatchItemFailures" not in p.get("FunctionResponseTypes", []):
            problems.append(f"{sid}: no ReportBatchItemFailures")
        if source_kind(t, p) == "stream":
            # Retries are bounded by record age (an outage must not turn into skipped records after a few
            # quick retries); the age must be bounded and within the stream's retention.
            age = resolved(t, p.get("MaximumRecordAgeInSeconds"))
            if age is None or age == -1:
                problems.append(f"{sid}: MaximumRecordAgeInSeconds is unbounded")
            elif age > 604800:
                problems.append(f"{sid}: MaximumRecordAgeInSeconds is past the stream's retention")
            retries = resolved(t, p.get("MaximumRetryAttempts"))
            if retries is not None and retries != -1 and retries < 100:
                problems.append(f"{sid}: MaximumRetryAttempts {retries} ends retries long before the record age")
            if not p.get("DestinationConfig", {}).get("OnFailure"):
                problems.append(f"{sid}: no on-failure destination")
            if p.get("BisectBatchOnFunctionError") is not True:
                problems.append(f"{sid}: BisectBatchOnFunctionError is off")
    return problems


def check_queues(t: dict) -> list[str]:
    problems = []
    dlqs = dead_letter_queues(t)
    for qid, q in resources(t, "AWS::SQS::Queue").items():
        props = q.get("Properties", {})
        if qid in dlqs:
            if props.get("MessageRetentionPeriod") != 1209600:
                problems.append(f"{qid}: a DLQ should keep messages 14 days")
            continue
        redrive = props.get("RedrivePolicy")
        if not redrive:
            problems.append(f"{qid}: queue has no DLQ (RedrivePolicy)")
        elif int(redrive.get("maxReceiveCount", 0)) < 5:
            problems.append(f"{qid}: maxReceiveCount below 5")
        if "MaximumMessageSize" not in props:
            problems.append(f"{qid}: MaximumMessageSize not set explicitly")
    return problems


def check_visibility_timeouts(t: dict) -> list[str]:
    problems = []
    for sid, fid, p in event_sources(t):
        if source_kind(t, p) != "sqs":
            continue
        for qid in refs_in(p.get("EventSourceArn")):
            queue = t["Resources"][qid]["Properties"]
            visibility = int(queue.get("VisibilityTimeout", 30))
            window = largest_number(p.get("MaximumBatchingWindowInSeconds", 0))
            needed = 6 * function_timeout(t, fid) + window
            if visibility < needed:
                problems.append(f"{qid}: VisibilityTimeout {visibility} < 6 x {fid} timeout + window = {needed}")
    return problems


def largest_number(value) -> int:
    """A number, or the largest number any branch of an !If can give (NoValue counts as 0)."""
    if isinstance(value, (int, str)):
        return int(value)
    if isinstance(value, dict) and "Fn::If" in value:
        return max(largest_number(v) for v in value["Fn::If"][1:])
    return 0


def alarms(t: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources(t, "AWS::CloudWatch::Alarm").items()}


def check_dlq_alarms(t: dict) -> list[str]:
    problems = []
    for dlq in sorted(dead_letter_queues(t)):
        covered = any(
            a.get("Namespace") == "AWS/SQS"
            and a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and any(dlq in refs_in(d.get("Value")) for d in a.get("Dimensions", []))
            and (
                (a.get("ComparisonOperator") == "GreaterThanOrEqualToThreshold" and float(a.get("Threshold", 99)) <= 1)
                or (a.get("ComparisonOperator") == "GreaterThanThreshold" and float(a.get("Threshold", 99)) < 1)
            )
            and a.get("AlarmActions")
            for a in alarms(t).values()
        )
        if not covered:
            problems.append(f"{dlq}: dead-letter queue has no depth >= 1 alarm")
    return problems


def check_seed_alarms(t: dict) -> list[str]:
    """One alarm per row of the README's alarm table, each with an action and not alarming on missing data."""
    a = list(alarms(t).values())

    def metric_names(alarm):
        names = {alarm.get("MetricName")}
        for m in alarm.get("Metrics", []):
            names.add(m.get("MetricStat", {}).get("Metric", {}).get("MetricName"))
        return names

    rows = {
        "consumer lag (queue backlog > 10,000 for 5 min)": lambda x: "ApproximateNumberOfMessagesVisible" in metric_names(x)
        and float(x.get("Threshold", 0)) == 10000 and int(x.get("Period", 0)) * int(x.get("EvaluationPeriods", 0)) >= 300,
        "consumer lag (Kinesis iterator age)": lambda x: metric_names(x) & {"IteratorAge", "GetRecords.IteratorAgeMilliseconds"},
        "end-to-end latency p99 > 30 s": lambda x: "EndToEndLatency" in metric_names(x)
        and x.get("ExtendedStatistic") == "p99" and float(x.get("Threshold", 0)) == 30000,
        "processing error rate > 0.5 % in 5 min": lambda x: any("Expression" in m for m in x.get("Metrics", []))
        and "Errors" in metric_names(x) and float(x.get("Threshold", 0)) == 0.5,
        "webhook delivery success < 99 % in 1 hour": lambda x: "5xx" in metric_names(x)
        and float(x.get("Threshold", 0)) == 99 and x.get("ComparisonOperator") == "LessThanThreshold"
        and any(m.get("MetricStat", {}).get("Period") == 3600 for m in x.get("Metrics", [])),
        "function errors": lambda x: x.get("MetricName") == "Errors" and x.get("Namespace") == "AWS/Lambda",
        "function throttles": lambda x: x.get("MetricName") == "Throttles",
    }
    problems = [f"missing alarm: {row}" for row, match in rows.items() if not any(match(x) for x in a)]
    for lid, x in alarms(t).items():
        if not x.get("AlarmActions"):
            problems.append(f"{lid}: alarm has no action")
        if x.get("TreatMissingData") not in ("notBreaching", "ignore"):
            problems.append(f"{lid}: alarm would fire on missing data from an idle consumer")
    return problems


def check_contract_variables(t: dict, expected: dict[str, set[str]]) -> list[str]:
    problems = []
    by_binary = functions_by_binary(t)
    for binary, names in expected.items():
        fid = by_binary.get(binary)
        if fid is None:
            problems.append(f"function {binary} is missing")
            continue
        missing = names - set(function_env(t, fid))
        if missing:
            problems.append(f"{binary}: docs/contract.md variables missing: {sorted(missing)}")
    return problems


def statements(t: dict):
    for lid, r in t["Resources"].items():
        props = r.get("Properties", {})
        for policy in props.get("Policies", []) if isinstance(props.get("Policies"), list) else []:
            if isinstance(policy, dict):
                yield from ((lid, s) for s in policy.get("Statement", []))
        if r["Type"] in ("AWS::IAM::Role",):
            for policy in props.get("Policies", []):
                yield from ((lid, s) for s in policy.get("PolicyDocument", {}).get("Statement", []))
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield from ((lid, s) for s in props.get("PolicyDocument", {}).get("Statement", []))


def check_iam(t: dict) -> list[str]:
    problems = []
    for lid, s in statements(t):
        if s.get("Effect") != "Allow":
            continue
        actions = s.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        res = s.get("Resource", [])
        res = [res] if not isinstance(res, list) else res
        wildcard = any(r == "*" for r in res)
        data = [a for a in actions if isinstance(a, str) and (a == "*" or a.lower().startswith(DATA_PLANE_PREFIXES))]
        if wildcard and data:
            problems.append(f"{lid}: {data} granted on '*'")
        if any(isinstance(a, str) and a.endswith(":*") for a in actions):
            problems.append(f"{lid}: wildcard action {actions}")
    return problems


def check_mapping_files(t: dict, layer_root: Path) -> list[str]:
    """Every `*_MAPPING_FILE` under /opt/ must be shipped by a layer the function uses (a missing file stops
    the function at start-up, on every invocation)."""
    problems = []
    for lid in resources(t, "AWS::Serverless::Function"):
        for name, value in function_env(t, lid).items():
            if not name.endswith("_MAPPING_FILE") or not isinstance(value, str):
                continue
            if not value.startswith("/opt/"):
                problems.append(f"{lid}: {name}={value} is not in a layer (/opt/)")
                continue
            shipped = layer_root / value.removeprefix("/opt/")
            if not shipped.is_file() or shipped.stat().st_size == 0:
                problems.append(f"{lid}: {name}={value} is not shipped in {layer_root}")
    return problems


def check_alarm_topic_key(t: dict) -> list[str]:
    """Alarm actions reach their topic: it is not under the AWS-managed SNS key (CloudWatch cannot use it), and a
    customer-managed key lets cloudwatch.amazonaws.com decrypt and generate data keys."""
    problems = []
    topics = {ref_name(a) for x in alarms(t).values() for a in x.get("AlarmActions", [])}
    for tid in sorted(n for n in topics if n):
        topic = t["Resources"].get(tid, {})
        key = topic.get("Properties", {}).get("KmsMasterKeyId")
        if key is None:
            continue
        if isinstance(key, str):
            problems.append(f"{tid}: encrypted with {key}, which CloudWatch cannot use")
            continue
        policy = t["Resources"].get(ref_name(key) or "", {}).get("Properties", {}).get("KeyPolicy", {})
        allowed = set()
        for st in policy.get("Statement", []):
            principal = st.get("Principal", {})
            if st.get("Effect") == "Allow" and principal.get("Service") == "cloudwatch.amazonaws.com":
                actions = st.get("Action", [])
                allowed |= set([actions] if isinstance(actions, str) else actions)
        if not {"kms:Decrypt", "kms:GenerateDataKey*"} <= allowed:
            problems.append(f"{tid}: its key does not let CloudWatch decrypt and generate data keys")
    return problems


def check_reserved_concurrency(t: dict) -> list[str]:
    """Every function's reserved concurrency is a stack parameter (0 leaves it unreserved)."""
    problems = []
    params = t.get("Parameters", {})
    for fid, fn in resources(t, "AWS::Serverless::Function").items():
        value = fn["Properties"].get("ReservedConcurrentExecutions")
        names = refs_in(value) - {"AWS::NoValue"}
        if not any(n in params for n in names):
            problems.append(f"{fid}: ReservedConcurrentExecutions is not set from a parameter")
    return problems


def check_fanout(t: dict) -> list[str]:
    """Every queue subscribed to a topic gets the event as the consumers read it (raw message delivery), keeps
    what the topic could not deliver (a redrive DLQ), and lets that topic, and only it, send to it."""
    problems = []
    policies = resources(t, "AWS::SQS::QueuePolicy").values()
    for sid, sub in resources(t, "AWS::SNS::Subscription").items():
        p = sub["Properties"]
        if p.get("Protocol") != "sqs":
            continue
        if p.get("RawMessageDelivery") not in (True, "true"):
            problems.append(f"{sid}: no raw message delivery (the consumer would get SNS envelopes)")
        if not p.get("RedrivePolicy"):
            problems.append(f"{sid}: no redrive policy (an undeliverable event would be lost)")
        queue, topic = ref_name(p.get("Endpoint")), ref_name(p.get("TopicArn"))
        allowed = any(
            queue in refs_in(pol["Properties"].get("Queues"))
            and any(
                st.get("Effect") == "Allow"
                and st.get("Principal", {}).get("Service") == "sns.amazonaws.com"
                and topic in refs_in(st.get("Condition"))
                for st in pol["Properties"]["PolicyDocument"].get("Statement", [])
            )
            for pol in policies
        )
        if not allowed:
            problems.append(f"{sid}: {queue} has no policy letting {topic} (and only it) send to it")
    return problems


def check_tracing(t: dict) -> list[str]:
    """Every function traces with X-Ray (Globals, or its own Tracing), so one change can be followed across them."""
    default = t.get("Globals", {}).get("Function", {}).get("Tracing")
    return [f"{fid}: no X-Ray active tracing"
            for fid, fn in resources(t, "AWS::Serverless::Function").items()
            if fn["Properties"].get("Tracing", default) != "Active"]


def all_problems(t: dict, contract_md: Path | None = None, layer_root: Path | None = None) -> list[str]:
    return (
        (check_mapping_files(t, layer_root) if layer_root else [])
        +
        check_event_sources(t)
        + check_queues(t)
        + check_visibility_timeouts(t)
        + check_dlq_alarms(t)
        + check_seed_alarms(t)
        + check_contract_variables(t, contract_variables(contract_md))
        + check_iam(t)
        + check_reserved_concurrency(t)
        + check_alarm_topic_key(t)
        + check_tracing(t)
        + check_fanout(t)
    )

"""Operational checks on the SAM template: each returns a list of problems (empty when the template is safe).

They encode the event-source, queue, alarm and IAM rules of docs/reference.md and the README, so that a change to
infra/template.yaml that loses a bounded retry, a DLQ, an alarm or least privilege fails `make test`.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from cfnlint.decode import cfn_yaml

# docs/contract.md's settings per function (the names are the product's interface).
CONTRACT_VARIABLES = {
    "cdc-ingest": {
        "RELTIO_API_URL", "RELTIO_AUTH_URL", "RELTIO_SECRET_ID", "CDC_MAPPING_FILE", "CDC_DLQ_URL",
        "RELTIO_BATCH_SIZE", "RELTIO_MAX_CONCURRENCY", "METRICS_NAMESPACE", "LETTER_STORE_BUCKET",
    },
    "webhook-receiver": {
        "WEBHOOK_SECRET_ID", "EVENT_QUEUE_URL", "EVENT_TOPIC_ARN", "WEBHOOK_TOLERANCE_SECONDS", "WEBHOOK_REQUIRE_TIMESTAMP",
        "WEBHOOK_MAX_BODY_BYTES", "EVENT_TYPES", "ENTITY_TYPES", "METRICS_NAMESPACE",
    },
    "crm-updater": {
        "SALESFORCE_SECRET_ID", "SALESFORCE_API_VERSION", "RELTIO_API_URL", "RELTIO_AUTH_URL",
        "RELTIO_SECRET_ID", "CRM_MAPPING_FILE", "SYNC_STATE_TABLE", "CRM_DLQ_URL", "METRICS_NAMESPACE",
        "LETTER_STORE_BUCKET",
    },
    "stream-consumer": {
        "EVENT_QUEUE_URL", "EVENT_TOPIC_ARN", "STREAM_DLQ_URL", "EVENT_TYPES", "ENTITY_TYPES", "STREAM_MAX_EVENT_BYTES", "METRICS_NAMESPACE",
        "LETTER_STORE_BUCKET",
    },
    "analytics-sink": {
        "FIREHOSE_STREAM_NAME", "ANALYTICS_MAPPING_FILE", "ANALYTICS_DLQ_URL", "ANALYTICS_DEDUP_TABLE",
        "ANALYTICS_DEDUP_TTL_DAYS", "ANALYTICS_EVENT_BUS", "RELTIO_API_URL", "RELTIO_AUTH_URL", "RELTIO_SECRET_ID",
        "METRICS_NAMESPACE", "LETTER_STORE_BUCKET",
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
        for key in _branches(topic.get("Properties", {}).get("KmsMasterKeyId")):
            problems += _alarm_key_problems(t, tid, key)
    return problems


def _branches(value) -> list:
    """Every value an !If can give (a plain value is its only branch)."""
    if isinstance(value, dict) and "Fn::If" in value:
        return _branches(value["Fn::If"][1]) + _branches(value["Fn::If"][2])
    return [value]


def _alarm_key_problems(t: dict, tid: str, key) -> list[str]:
    problems = []
    if key is None or ref_name(key) == "AWS::NoValue":
        return problems
    if isinstance(key, str):
        return [f"{tid}: encrypted with {key}, which CloudWatch cannot use"]
    if ref_name(key) in t.get("Parameters", {}):
        # The customer's key (DataKmsKeyArn): the stack cannot edit its policy; the README gives the statement
        # (CloudWatchPublishesAlarms) that lets CloudWatch use it, and a README test pins that statement.
        return problems
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


# ---------------------------------------------------------------- the template under given parameter values

_NO_VALUE = object()


def parameter_values(t: dict, overrides: dict | None = None) -> dict:
    """Each parameter's default, overridden by `overrides`."""
    values = {name: p.get("Default") for name, p in t.get("Parameters", {}).items()}
    values.update(overrides or {})
    return values


def condition_values(t: dict, params: dict) -> dict[str, bool]:
    """Every condition of the template evaluated on the given parameter values."""
    conditions = t.get("Conditions", {})
    memo: dict[str, bool] = {}

    def operand(x):
        if isinstance(x, dict) and "Ref" in x:
            v = params.get(x["Ref"], x["Ref"])
            return ",".join(map(str, v)) if isinstance(v, list) else ("" if v is None else str(v))
        if isinstance(x, dict) and "Fn::Join" in x:
            # !Join ["", !Ref SomeList]: a CommaDelimitedList is empty when its items join to "".
            separator, items = x["Fn::Join"]
            values = operand(items).split(",") if isinstance(items, dict) else [operand(i) for i in items]
            return separator.join(values)
        return str(x)

    def evaluate(x) -> bool:
        (fn, args), = x.items()
        if fn == "Fn::Equals":
            return operand(args[0]) == operand(args[1])
        if fn == "Fn::Not":
            return not evaluate(args[0])
        if fn == "Fn::And":
            return all(evaluate(a) for a in args)
        if fn == "Fn::Or":
            return any(evaluate(a) for a in args)
        if fn == "Condition":
            return named(args)
        raise ValueError(f"unsupported condition function {fn}")

    def named(name: str) -> bool:
        if name not in memo:
            memo[name] = evaluate(conditions[name])
        return memo[name]

    return {name: named(name) for name in conditions}


def render(t: dict, overrides: dict | None = None) -> dict:
    """The template as CloudFormation would see it with these parameter values: resources and outputs whose
    condition is false are gone, every !If is its chosen branch, AWS::NoValue is dropped and each !Ref to a
    parameter with a value is that value (the parameters' defaults are the values, so a scanner reading the result
    sees them too). Plain dicts and lists: the result can be dumped as JSON."""
    params = parameter_values(t, overrides)
    conds = condition_values(t, params)
    types = {name: p.get("Type") for name, p in t.get("Parameters", {}).items()}

    def walk(x):
        if isinstance(x, dict):
            if len(x) == 1:
                (k, v), = x.items()
                if k == "Fn::If":
                    return walk(v[1] if conds[v[0]] else v[2])
                if k == "Ref" and v == "AWS::NoValue":
                    return _NO_VALUE
                if k == "Ref" and params.get(v) is not None:
                    value = params[v]
                    if types.get(v) == "CommaDelimitedList" and isinstance(value, str):
                        return value.split(",")
                    return value
            out = {}
            for k, v in x.items():
                w = walk(v)
                if w is not _NO_VALUE:
                    out[str(k)] = w
            return out
        if isinstance(x, list):
            return [w for w in map(walk, x) if w is not _NO_VALUE]
        if isinstance(x, str):
            return str(x)
        return x

    out = {}
    for section, body in t.items():
        if section == "Conditions":
            continue
        if section in ("Resources", "Outputs"):
            kept = {}
            for name, item in body.items():
                if isinstance(item, dict) and "Condition" in item:
                    if not conds[item["Condition"]]:
                        continue
                    item = {k: v for k, v in item.items() if k != "Condition"}
                kept[str(name)] = walk(item)
            out[section] = kept
        elif section == "Parameters":
            out[section] = {
                str(name): {**walk(p), **({"Default": params[name]} if params.get(name) is not None else {})}
                for name, p in body.items()
            }
        else:
            out[str(section)] = walk(body)
    return out


def at(value, path):
    """The value at a path of keys and list indexes, or None."""
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


# Parameter values that create every optional resource (Kafka sources, the CDC key ledger, the alarm e-mail...):
# the checks below and the IaC scan look at all of them, not only at what the defaults create.
EVERY_RESOURCE = {
    "ReltioApiUrl": "https://test.reltio.com/reltio/api/TENANT",
    "KinesisStreamArn": "",
    "FanOut": "true",
    "Analytics": "true",
    "CdcKeyLedger": "true",
    "AlarmEmail": "ops@example.com",
    "KafkaSource": "msk",
    "MskClusterArn": "arn:aws:kafka:us-east-1:111122223333:cluster/reltio/abcd1234-ab12-cd34-ef56-abcdef123456-1",
    "KafkaTopic": "reltio.TENANT.entities.changes",
    "KafkaAuth": "SASL_SCRAM_512_AUTH",
    "KafkaSecretArn": "arn:aws:secretsmanager:us-east-1:111122223333:secret:AmazonMSK_reltio-AbCdEf",
    "KafkaRootCaSecretArn": "arn:aws:secretsmanager:us-east-1:111122223333:secret:reltio-ca-AbCdEf",
    "CdcKafkaSource": "self-managed",
    "CdcKafkaBootstrapServers": "broker-1.example.com:9096",
    "CdcKafkaTopic": "cdc.changes",
    "CdcKafkaSecretArn": "arn:aws:secretsmanager:us-east-1:111122223333:secret:cdc-kafka-AbCdEf",
    # Reltio's streaming role (into the event topic): its principals and external id come from Reltio Support.
    "ReltioStreamingPrincipalArns": "arn:aws:iam::222233334444:user/reltio.api,arn:aws:iam::222233334444:user/reltio.dataload",
    "ReltioStreamingExternalId": "0190a5e2-7b3c-7d4e-8f00-1234567890ab",
}
# A customer key (never dereferenced: the template is only rendered and scanned with it).
SAMPLE_DATA_KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SAMPLE_ACCESS_LOG_BUCKET = "example-org-s3-access-logs"
WITH_DATA_KEY = {**EVERY_RESOURCE, "DataKmsKeyArn": SAMPLE_DATA_KEY}
WITH_ACCESS_LOGS = {**EVERY_RESOURCE, "AccessLogBucket": SAMPLE_ACCESS_LOG_BUCKET}

# ---------------------------------------------------------------- one customer key for every store

KEY = object()  # the customer key's ARN
# Where each type of store names its key, and what else must hold for the key to be used, with DataKmsKeyArn set.
# Generic over types: a queue, topic, table, secret, log group or bucket added later is covered as it lands.
DATA_KEY_WIRING: dict[str, list[tuple[tuple, object]]] = {
    "AWS::SQS::Queue": [(("KmsMasterKeyId",), KEY)],
    "AWS::SNS::Topic": [(("KmsMasterKeyId",), KEY)],
    "AWS::DynamoDB::Table": [
        (("SSESpecification", "SSEEnabled"), True),
        (("SSESpecification", "SSEType"), "KMS"),
        (("SSESpecification", "KMSMasterKeyId"), KEY),
    ],
    "AWS::SecretsManager::Secret": [(("KmsKeyId",), KEY)],
    "AWS::Logs::LogGroup": [(("KmsKeyId",), KEY)],
    "AWS::S3::Bucket": [
        (("BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "SSEAlgorithm"), "aws:kms"),
        (("BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "KMSMasterKeyID"), KEY),
    ],
    "AWS::Kinesis::Stream": [(("StreamEncryption", "EncryptionType"), "KMS"), (("StreamEncryption", "KeyId"), KEY)],
    "AWS::KinesisFirehose::DeliveryStream": [
        (("DeliveryStreamEncryptionConfigurationInput", "KeyType"), "CUSTOMER_MANAGED_CMK"),
        (("DeliveryStreamEncryptionConfigurationInput", "KeyARN"), KEY),
        (("ExtendedS3DestinationConfiguration", "EncryptionConfiguration", "KMSEncryptionConfig", "AWSKMSKeyARN"), KEY),
    ],
}
# Without it: encrypted at rest as before, with AWS-managed keys (secrets and log groups always are).
DEFAULT_ENCRYPTION: dict[str, list[tuple[tuple, tuple]]] = {
    "AWS::SQS::Queue": [(("SqsManagedSseEnabled",), (True, "true"))],
    "AWS::DynamoDB::Table": [(("SSESpecification", "SSEEnabled"), (True, "true"))],
    "AWS::S3::Bucket": [(("BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "SSEAlgorithm"), ("AES256", "aws:kms"))],
    "AWS::Kinesis::Stream": [(("StreamEncryption", "EncryptionType"), ("KMS",))],
    "AWS::KinesisFirehose::DeliveryStream": [(("DeliveryStreamEncryptionConfigurationInput", "KeyType"), ("AWS_OWNED_CMK", "CUSTOMER_MANAGED_CMK"))],
}


def _same(value, expected) -> bool:
    if expected is True:
        return value in (True, "true")
    return value == expected


def check_data_key(t: dict) -> list[str]:
    """With DataKmsKeyArn set, every store of a type in DATA_KEY_WIRING uses the customer key; without it, each
    is encrypted with AWS-managed keys as before and names no key (an empty key ARN would fail the deploy)."""
    problems = []
    keyed = render(t, WITH_DATA_KEY)
    for lid, r in sorted(keyed["Resources"].items()):
        for path, expected in DATA_KEY_WIRING.get(r.get("Type"), []):
            want = SAMPLE_DATA_KEY if expected is KEY else expected
            if not _same(at(r.get("Properties", {}), path), want):
                what = "the customer key" if expected is KEY else repr(expected)
                problems.append(f"{lid}: {'.'.join(map(str, path))} is not {what} with DataKmsKeyArn set")
    plain = render(t, EVERY_RESOURCE)
    for lid, r in sorted(plain["Resources"].items()):
        props = r.get("Properties", {})
        for path, expected in DATA_KEY_WIRING.get(r.get("Type"), []):
            if expected is KEY and at(props, path) is not None and r["Type"] not in ("AWS::SNS::Topic", "AWS::Kinesis::Stream"):
                problems.append(f"{lid}: {'.'.join(map(str, path))} is set without DataKmsKeyArn")
        for path, allowed in DEFAULT_ENCRYPTION.get(r.get("Type"), []):
            if at(props, path) not in allowed:
                problems.append(f"{lid}: not encrypted at rest without DataKmsKeyArn ({'.'.join(map(str, path))})")
        if r.get("Type") in ("AWS::SNS::Topic", "AWS::Kinesis::Stream"):
            path = DATA_KEY_WIRING[r["Type"]][-1][0]
            if not at(props, path):
                problems.append(f"{lid}: not encrypted at rest without DataKmsKeyArn ({'.'.join(map(str, path))})")
    return problems


# Services whose stores take the customer key, and the actions that write to them: a writer needs
# kms:GenerateDataKey*, and kms:Decrypt too except a Kinesis producer (SQS and SNS senders, S3 multipart uploads
# and every reader need it). Describe/List actions touch no encrypted data.
KEYED_SERVICES = ("sqs", "sns", "dynamodb", "secretsmanager", "s3", "kinesis")
WRITE_ACTIONS = {
    "sqs:SendMessage", "sns:Publish", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem", "s3:PutObject", "kinesis:PutRecord", "kinesis:PutRecords",
}
PRODUCE_ONLY = {"kinesis:PutRecord", "kinesis:PutRecords"}
METADATA_VERBS = ("Describe", "List", "GetQueueAttributes", "GetBucketLocation")


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _principals(t: dict) -> dict[str, list[dict]]:
    """Allow statements per role (a function's own role, an IAM role), of a rendered template."""
    out: dict[str, list[dict]] = {}
    for lid, s in statements(t):
        if isinstance(s, dict) and s.get("Effect") == "Allow":
            out.setdefault(lid, []).append(s)
    return out


def _via_services(statement: dict) -> set[str]:
    """The services named by a statement's kms:ViaService condition ("sqs.${AWS::Region}.amazonaws.com" -> sqs)."""
    names = set()
    for op in ("StringEquals", "StringLike", "ForAnyValue:StringEquals"):
        for v in _as_list(statement.get("Condition", {}).get(op, {}).get("kms:ViaService")):
            text = v.get("Fn::Sub") if isinstance(v, dict) else v
            if isinstance(text, str):
                names.add(text.split(".")[0])
    return names


def check_data_key_grants(t: dict) -> list[str]:
    """With DataKmsKeyArn set, every role that reads or writes a keyed service may use the customer key, and only
    it, only through those services: kms:Decrypt, plus kms:GenerateDataKey* where it writes. A role added later (an
    IAM role Reltio assumes to publish to the topic) is covered as it lands."""
    problems = []
    keyed = render(t, WITH_DATA_KEY)
    for lid, stmts in sorted(_principals(keyed).items()):
        actions = {
            a for s in stmts for a in _as_list(s.get("Action"))
            if isinstance(a, str) and a.split(":")[0] in KEYED_SERVICES and not a.split(":")[-1].startswith(METADATA_VERBS)
        }
        used = {a.split(":")[0] for a in actions}
        if not used:
            continue
        grants = [s for s in stmts if any(str(a).startswith("kms:") for a in _as_list(s.get("Action")))]
        on_key = [s for s in grants if _as_list(s.get("Resource")) == [SAMPLE_DATA_KEY]]
        if len(on_key) != len(grants):
            problems.append(f"{lid}: a KMS grant is not on the customer key alone")
        granted = {a for s in on_key for a in _as_list(s.get("Action"))}
        if actions - PRODUCE_ONLY and "kms:Decrypt" not in granted:
            problems.append(f"{lid}: uses {sorted(used)} but may not kms:Decrypt with the customer key")
        if actions & WRITE_ACTIONS and not granted & {"kms:GenerateDataKey", "kms:GenerateDataKey*"}:
            problems.append(f"{lid}: writes {sorted(used)} but may not kms:GenerateDataKey with the customer key")
        if on_key:
            via = set().union(*(_via_services(s) for s in on_key))
            if not all(_via_services(s) for s in on_key):
                problems.append(f"{lid}: its customer-key grant is not limited to use through AWS services (kms:ViaService)")
            elif used - via:
                problems.append(f"{lid}: its customer-key grant does not cover {sorted(used - via)} (kms:ViaService)")
    # Without the key, no statement is left with an empty resource (a grant outside its !If would fail the deploy).
    for lid, stmts in sorted(_principals(render(t, EVERY_RESOURCE)).items()):
        if any("" in _as_list(s.get("Resource")) for s in stmts):
            problems.append(f"{lid}: a statement names an empty resource without DataKmsKeyArn")
    return problems


def check_data_protection(t: dict) -> list[str]:
    """Every bucket is versioned and expires noncurrent versions, and logs to AccessLogBucket when it is set; every
    table (ledgers, replay and dedup caches: their loss breaks ordering or deduplication) has point-in-time recovery."""
    problems = []
    logged = render(t, WITH_ACCESS_LOGS)
    for lid, r in sorted(logged["Resources"].items()):
        props = r.get("Properties", {})
        if r.get("Type") == "AWS::S3::Bucket":
            if at(props, ("VersioningConfiguration", "Status")) != "Enabled":
                problems.append(f"{lid}: bucket is not versioned")
            rules = at(props, ("LifecycleConfiguration", "Rules")) or []
            if not any(x.get("Status") == "Enabled" and (x.get("NoncurrentVersionExpiration") or x.get("NoncurrentVersionExpirationInDays")) for x in rules):
                problems.append(f"{lid}: noncurrent versions never expire")
            if at(props, ("LoggingConfiguration", "DestinationBucketName")) != SAMPLE_ACCESS_LOG_BUCKET:
                problems.append(f"{lid}: no server access logs to AccessLogBucket when it is set")
        if r.get("Type") == "AWS::DynamoDB::Table":
            if at(props, ("PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled")) not in (True, "true"):
                problems.append(f"{lid}: no point-in-time recovery")
    return problems


# ---------------------------------------------------------------- the IaC scan's accepted findings

# Every checkov finding this stack accepts, by check id: the resource types that carry its suppression, and what
# lifts it. "DataKmsKeyArn" / "AccessLogBucket": setting that parameter makes the check pass, so the scan of the
# template rendered with it runs without the suppression; "render": a false positive of a check that cannot read
# an !If, gone once the template is rendered; None: a standing exception. The README's Security review table lists
# the same ids, each with its reason; each suppression carries its own one-line reason in the resource's metadata.
ACCEPTED_FINDINGS: dict[str, tuple[frozenset[str], str | None]] = {
    "CKV_AWS_117": (frozenset({"AWS::Serverless::Function"}), None),  # Lambda in a VPC
    "CKV_AWS_116": (frozenset({"AWS::Serverless::Function"}), None),  # Lambda DLQ for asynchronous invocations
    "CKV_AWS_173": (frozenset({"AWS::Serverless::Function"}), None),  # Lambda environment under a customer key
    "CKV_AWS_115": (frozenset({"AWS::Serverless::Function"}), None),  # Lambda reserved concurrency
    "CKV_AWS_27": (frozenset({"AWS::SQS::Queue"}), "DataKmsKeyArn"),  # SQS under a KMS key
    "CKV_AWS_158": (frozenset({"AWS::Logs::LogGroup"}), "DataKmsKeyArn"),  # log group under a KMS key
    "CKV_AWS_149": (frozenset({"AWS::SecretsManager::Secret"}), "DataKmsKeyArn"),  # secret under a customer key
    "CKV_AWS_119": (frozenset({"AWS::DynamoDB::Table"}), "DataKmsKeyArn"),  # table under a customer key
    "CKV_AWS_18": (frozenset({"AWS::S3::Bucket"}), "AccessLogBucket"),  # S3 access logging
    "CKV_AWS_19": (frozenset({"AWS::S3::Bucket"}), "render"),  # S3 encryption (SSEAlgorithm under an !If)
}


def scan_suppressions(resource: dict) -> list[dict]:
    skips = resource.get("Metadata", {}).get("checkov", {}).get("skip", []) if isinstance(resource, dict) else []
    return skips if isinstance(skips, list) else []


def check_scan_suppressions(t: dict) -> list[str]:
    """Every suppression of a scanner finding is one the register accepts, with a one-line reason of its own, and
    every resource of a type the register names carries it (a queue or function added later must say why too)."""
    problems = []
    for lid, r in t["Resources"].items():
        skips = scan_suppressions(r)
        ids = set()
        for skip in skips:
            cid, comment = skip.get("id"), skip.get("comment")
            ids.add(cid)
            if cid not in ACCEPTED_FINDINGS:
                problems.append(f"{lid}: suppression of {cid} is not an accepted finding (README, Security review)")
            if not isinstance(comment, str) or len(comment.strip()) < 30 or "\n" in comment.strip():
                problems.append(f"{lid}: suppression of {cid} has no one-line reason")
        for cid, (types, _) in ACCEPTED_FINDINGS.items():
            if r.get("Type") in types and cid not in ids:
                problems.append(f"{lid}: no suppression of {cid} with its reason")
    return sorted(problems)


def without_suppressions(t: dict, lifted: set[str]) -> dict:
    """A copy of a (rendered) template with the suppressions of the given check ids removed."""
    out = copy.deepcopy(t)
    for r in out["Resources"].values():
        skips = scan_suppressions(r)
        kept = [s for s in skips if s.get("id") not in lifted]
        if skips and len(kept) != len(skips):
            r["Metadata"]["checkov"]["skip"] = kept
    return out


def lifted_by(*reasons: str) -> set[str]:
    return {cid for cid, (_, why) in ACCEPTED_FINDINGS.items() if why in reasons}


def check_security_review(readme: str) -> list[str]:
    """The README's Security review: a table row per accepted finding (no more, no fewer), the parameters it
    documents, and the key-policy statements a customer adds to DataKmsKeyArn's policy (the stack cannot edit an
    external key's policy): CloudWatch for the alarm topic, SNS for delivery to the queues, CloudWatch Logs, and
    the stack's roles through every keyed service."""
    import json

    section = re.search(r"^## Security review\n(.*?)(?=^## )", readme, re.S | re.M)
    if not section:
        return ["README: no Security review section"]
    text = section.group(1)
    problems = []
    rows = set(re.findall(r"^\| `(CKV2?_AWS_\d+)`", text, re.M))
    for cid in sorted(set(ACCEPTED_FINDINGS) - rows):
        problems.append(f"README: accepted finding {cid} is not in the Security review table")
    for cid in sorted(rows - set(ACCEPTED_FINDINGS)):
        problems.append(f"README: {cid} is in the Security review table but not an accepted finding")
    for name in ("DataKmsKeyArn", "AccessLogBucket", "NoncurrentVersionDays"):
        if f"`{name}" not in text:
            problems.append(f"README: Security review does not explain {name}")
    snippet = re.search(r"```json\n(.*?)```", text, re.S)
    try:
        policy = json.loads(snippet.group(1)) if snippet else None
    except json.JSONDecodeError as e:
        return problems + [f"README: the key-policy statements are not valid JSON ({e})"]
    if not isinstance(policy, list):
        return problems + ["README: no key-policy statements (a JSON list) for DataKmsKeyArn"]

    def grants(principal: str, actions: set[str]) -> list[dict]:
        return [
            st for st in policy
            if st.get("Effect") == "Allow"
            and principal in _as_list(st.get("Principal", {}).get("Service")) + _as_list(st.get("Principal", {}).get("AWS"))
            and actions <= set(_as_list(st.get("Action")))
        ]

    for service, why in [
        ("cloudwatch.amazonaws.com", "CloudWatch publish alarms"),
        ("sns.amazonaws.com", "SNS deliver to the queues"),
        ("logs.<region>.amazonaws.com", "CloudWatch Logs encrypt the log groups"),
    ]:
        if not grants(service, {"kms:Decrypt*" if service.startswith("logs.") else "kms:Decrypt", "kms:GenerateDataKey*"}):
            problems.append(f"README: the key policy does not let {why} ({service})")
    roles = [st for st in grants("arn:aws:iam::<account>:root", {"kms:Decrypt", "kms:GenerateDataKey*"})
             if "aws:PrincipalArn" in st.get("Condition", {}).get("ArnLike", {})]
    via = {v.split(".")[0] for st in roles for v in _as_list(st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService"))}
    if not roles:
        problems.append("README: the key policy does not let the stack's roles use the key")
    elif set(KEYED_SERVICES) - via:
        problems.append(f"README: the key policy does not let the stack's roles use the key through {sorted(set(KEYED_SERVICES) - via)}")
    return problems


# ---------------------------------------------------------------- the letter store

LETTER_STORE_VARIABLE = "LETTER_STORE_BUCKET"
# The dead-letter queues keep their letters 14 days: a payload must outlive its letter.
MIN_LETTER_STORE_DAYS = 15


def batch_functions(t: dict) -> dict[str, str]:
    """Function logical id -> binary, of every function an event source feeds (the ones that dead-letter)."""
    fed = {fid for _, fid, _ in event_sources(t)}
    return {lid: binary for binary, lid in functions_by_binary(t).items() if lid in fed}


def _names_bucket(resource, bucket: str) -> bool:
    """Whether a statement's resource is the bucket or objects in it (a !Ref, !GetAtt or !Sub "${Bucket.Arn}/...")."""
    if bucket in refs_in(resource):
        return True
    text = resource.get("Fn::Sub") if isinstance(resource, dict) else None
    text = text[0] if isinstance(text, list) else text
    return isinstance(text, str) and ("${" + bucket + "}" in text or "${" + bucket + ".Arn}" in text)


def _letter_store_grants(t: dict, fid: str, binary: str, bucket: str) -> list[str]:
    """The function may put objects under its own prefix of the letter store, and do nothing else there."""
    problems = []
    rendered = render(t, EVERY_RESOURCE)
    own = "${" + bucket + ".Arn}/" + binary + "/*"
    put = False
    for lid, s in statements(rendered):
        if lid != fid or not isinstance(s, dict) or s.get("Effect") != "Allow":
            continue
        resources_ = [r for r in _as_list(s.get("Resource")) if _names_bucket(r, bucket) or r == "*"]
        actions = [a for a in _as_list(s.get("Action")) if isinstance(a, str) and (a == "*" or a.startswith("s3:"))]
        if not resources_ or not actions:
            continue
        beyond = sorted(set(actions) - {"s3:PutObject"})
        if beyond:
            problems.append(f"{fid}: may {beyond} on the letter store (put only)")
        for r in resources_:
            if (r.get("Fn::Sub") if isinstance(r, dict) else r) != own:
                problems.append(f"{fid}: its letter store grant is not limited to its own prefix {binary}/")
            elif "s3:PutObject" in actions:
                put = True
    if not put:
        problems.append(f"{fid}: may not put to the letter store under {binary}/")
    return problems


def _letter_store_lifecycle(t: dict, bucket: str) -> list[str]:
    """Payloads expire, never before the dead-letter queues' letters do (the parameter's floor included)."""
    rules = at(t["Resources"][bucket].get("Properties", {}), ("LifecycleConfiguration", "Rules")) or []
    expiring = [r for r in rules if r.get("Status") == "Enabled" and r.get("ExpirationInDays") is not None]
    if not expiring:
        return [f"{bucket}: the letter store's payloads never expire"]
    problems = []
    for r in expiring:
        value = r["ExpirationInDays"]
        days = [resolved(t, value)]
        parameter = t.get("Parameters", {}).get(ref_name(value) or "", None)
        if parameter is not None:
            days.append(parameter.get("MinValue", 0))
        if min(int(d) for d in days) < MIN_LETTER_STORE_DAYS:
            problems.append(
                f"{bucket}: payloads may expire within {min(int(d) for d in days)} days, before the dead-letter "
                f"queues' letters ({MIN_LETTER_STORE_DAYS} days at least)"
            )
    return problems


def _letter_store_alarm(t: dict, batch: dict[str, str]) -> list[str]:
    """An alarm fires on any LetterStoreFailures of every batch function (their metrics namespace, the Function
    dimension), each metric part of what it evaluates."""
    def covers(alarm: dict) -> set[str]:
        metrics = alarm.get("Metrics", [])
        # A metric the alarm's expression leaves out does not alarm.
        used = set(re.findall(r"\w+", " ".join(m.get("Expression", "") for m in metrics)))
        parts = [(m.get("Id"), m.get("MetricStat", {}).get("Metric", {})) for m in metrics] or [(None, alarm)]
        covered = set()
        for mid, metric in parts:
            if metric.get("MetricName") != "LetterStoreFailures" or (used and mid not in used):
                continue
            dimensions = {d.get("Name"): d.get("Value") for d in metric.get("Dimensions", [])}
            for fid, binary in batch.items():
                namespace = function_env(t, fid).get("METRICS_NAMESPACE")
                if metric.get("Namespace") == namespace and dimensions == {"Function": binary}:
                    covered.add(fid)
        return covered

    def fires_on_any(alarm: dict) -> bool:
        threshold = float(resolved(t, alarm.get("Threshold", 99)) or 0)
        return (alarm.get("ComparisonOperator") == "GreaterThanThreshold" and threshold < 1) or (
            alarm.get("ComparisonOperator") == "GreaterThanOrEqualToThreshold" and threshold <= 1
        )

    covered = set()
    for a in alarms(t).values():
        if a.get("AlarmActions") and fires_on_any(a):
            covered |= covers(a)
    return [f"{fid}: no alarm on its LetterStoreFailures (any > 0)" for fid in sorted(set(batch) - covered)]


def check_tls_only(t: dict) -> list[str]:
    """Every bucket refuses requests that do not use TLS: a bucket policy denies every action on the bucket and its
    objects to every principal when aws:SecureTransport is false."""
    problems = []
    policies = resources(t, "AWS::S3::BucketPolicy").values()
    for bid in sorted(resources(t, "AWS::S3::Bucket")):
        ok = False
        for pol in policies:
            if bid not in refs_in(pol["Properties"].get("Bucket")):
                continue
            for st in pol["Properties"].get("PolicyDocument", {}).get("Statement", []):
                res = _as_list(st.get("Resource"))
                objects = any(_names_bucket(r, bid) and isinstance(r, dict) and "Fn::Sub" in r and str(r["Fn::Sub"]).endswith("/*") for r in res)
                whole = any(bid in refs_in(r) for r in res if not (isinstance(r, dict) and "Fn::Sub" in r))
                if (
                    st.get("Effect") == "Deny"
                    and st.get("Principal") in ("*", {"AWS": "*"})
                    and "s3:*" in _as_list(st.get("Action"))
                    and objects and whole
                    and str(at(st, ("Condition", "Bool", "aws:SecureTransport"))).lower() == "false"
                ):
                    ok = True
        if not ok:
            problems.append(f"{bid}: no bucket policy refusing requests without TLS (aws:SecureTransport)")
    return problems


def check_letter_store(t: dict) -> list[str]:
    """Every batch function names the stack's letter store (LETTER_STORE_BUCKET) and may only put there, under its
    own prefix; the store keeps payloads longer than the dead-letter queues keep letters; failures alarm."""
    problems = []
    batch = batch_functions(t)
    buckets = set()
    for fid, binary in sorted(batch.items()):
        names = refs_in(function_env(t, fid).get(LETTER_STORE_VARIABLE))
        bucket = next((n for n in sorted(names) if t["Resources"].get(n, {}).get("Type") == "AWS::S3::Bucket"), None)
        if bucket is None:
            problems.append(f"{fid}: {LETTER_STORE_VARIABLE} does not name the stack's letter store bucket")
            continue
        buckets.add(bucket)
        problems += _letter_store_grants(t, fid, binary, bucket)
    if len(buckets) > 1:
        problems.append(f"the batch functions name different letter stores: {sorted(buckets)}")
    for bucket in sorted(buckets):
        problems += _letter_store_lifecycle(t, bucket)
    return problems + _letter_store_alarm(t, batch)


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
        + check_data_key(t)
        + check_data_key_grants(t)
        + check_data_protection(t)
        + check_tls_only(t)
        + check_letter_store(t)
        + check_scan_suppressions(t)
        + _streaming_role_problems(t)
    )


def _streaming_role_problems(t: dict) -> list[str]:
    # Its own module (it renders the template under many parameter sets); imported here, late, because it builds
    # on this one.
    from streaming_role_checks import check_assumable_roles, check_streaming_role

    return check_streaming_role(t) + check_assumable_roles(t)

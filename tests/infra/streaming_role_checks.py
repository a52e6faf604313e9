"""Reltio's streaming role: the IAM role Reltio assumes to write its own event stream (an external queue
destination) into the stack's event topic or event queue. docs/reference.md, "Reltio streaming to SNS/SQS".

`check_streaming_role(t)` renders the template under the parameter sets that matter and returns its problems:

- the role exists only with both ReltioStreamingPrincipalArns and ReltioStreamingExternalId, and the template's
  rules refuse a deploy with one of them alone (a forgotten external id must fail, not silently leave the role out)
  or with ReltioStreamingDestination=topic and no topic (FanOut=false);
- its trust: exactly the given principals (no wildcard, no account root, no service), sts:AssumeRole only, on the
  condition sts:ExternalId = the parameter; the principal parameter refuses "*" and root ARNs; the id is NoEcho;
- no path (Reltio cannot assume a role whose ARN has one); a RoleName, if any, starts with the stack name;
- least privilege: sns:Publish on the event topic alone, or sqs:SendMessage, sqs:GetQueueUrl and
  sqs:GetQueueAttributes on the event queue alone (the topic and the queue of the EventTopicArn and EventQueueUrl
  outputs); with DataKmsKeyArn kms:Decrypt and kms:GenerateDataKey* on that key, through that service only;
- outputs name the role and the destination it may write to.

`check_assumable_roles(t)` holds every role of the stack to the trust rules: none trusts a wildcard, and one
trusted by another AWS account's principals requires an external id.
"""

from __future__ import annotations

import re

import template_checks as checks

ROLE = "ReltioStreamingRole"
PRINCIPALS = "ReltioStreamingPrincipalArns"
EXTERNAL_ID = "ReltioStreamingExternalId"
DESTINATION = "ReltioStreamingDestination"
ROLE_OUTPUT = "ReltioStreamingRoleArn"
DESTINATION_OUTPUT = "ReltioStreamingDestinationArn"

SAMPLE_PRINCIPALS = checks.EVERY_RESOURCE[PRINCIPALS].split(",")
SAMPLE_EXTERNAL_ID = checks.EVERY_RESOURCE[EXTERNAL_ID]
NO_STREAMING = {**checks.EVERY_RESOURCE, PRINCIPALS: "", EXTERNAL_ID: ""}

# What the role may do, per destination: Reltio's documented permissions, nothing more.
ACTIONS = {
    "topic": {"sns:Publish"},
    "queue": {"sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"},
}
SERVICE = {"topic": "sns", "queue": "sqs"}
KEY_ACTIONS = {"kms:Decrypt", "kms:GenerateDataKey*"}

# ARNs the principal parameter must refuse, and ones it must take.
REFUSED_PRINCIPALS = [
    "*",
    "arn:aws:iam::222233334444:root",
    "222233334444",
    "arn:aws:iam::*:user/reltio.api",
    "arn:aws:sts::222233334444:assumed-role/reltio/session",
]
ACCEPTED_PRINCIPALS = ["", *SAMPLE_PRINCIPALS, "arn:aws-cn:iam::222233334444:role/reltio-streaming"]


def _actions(statement: dict) -> set[str]:
    return {a for a in checks._as_list(statement.get("Action")) if isinstance(a, str)}


def _policy_statements(role: dict) -> list[dict]:
    return [
        s
        for policy in role.get("Properties", {}).get("Policies", [])
        for s in policy.get("PolicyDocument", {}).get("Statement", [])
        if isinstance(s, dict)
    ]


def _trust_statements(role: dict) -> list[dict]:
    doc = role.get("Properties", {}).get("AssumeRolePolicyDocument", {})
    return [s for s in doc.get("Statement", []) if isinstance(s, dict)]


def _event_stores(t: dict) -> dict[str, tuple[str, str | None]]:
    """The event topic and queue, as the outputs the README names them: destination -> (logical id, attribute)."""
    outputs = t.get("Outputs", {})
    topic = checks.ref_name(outputs.get("EventTopicArn", {}).get("Value"))
    queue = checks.ref_name(outputs.get("EventQueueUrl", {}).get("Value"))
    return {"topic": (topic, None), "queue": (queue, "Arn")}


def _points_at(value, target: tuple[str, str | None]) -> bool:
    """Whether a resource value is exactly the target: a !Ref (attribute None) or a !GetAtt of that attribute."""
    logical_id, attribute = target
    if attribute is None:
        return value == {"Ref": logical_id}
    att = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    if isinstance(att, str):
        att = att.split(".", 1)
    return att == [logical_id, attribute]


def _trust_problems(role: dict) -> list[str]:
    trust = _trust_statements(role)
    if not trust:
        return [f"{ROLE}: no trust policy"]
    problems = []
    for s in trust:
        principal = s.get("Principal")
        if s.get("Effect") != "Allow":
            continue
        if not isinstance(principal, dict) or set(principal) != {"AWS"}:
            problems.append(f"{ROLE}: trusts {principal!r}, not Reltio's principals alone")
        elif sorted(checks._as_list(principal["AWS"])) != sorted(SAMPLE_PRINCIPALS):
            problems.append(f"{ROLE}: trusts {checks._as_list(principal['AWS'])}, not exactly ReltioStreamingPrincipalArns")
        if _actions(s) != {"sts:AssumeRole"}:
            problems.append(f"{ROLE}: its trust allows {sorted(_actions(s))}, not sts:AssumeRole alone")
        condition = s.get("Condition", {})
        if condition.get("StringEquals", {}).get("sts:ExternalId") != SAMPLE_EXTERNAL_ID:
            problems.append(f"{ROLE}: assuming it does not require the external id (sts:ExternalId)")
    return problems


def _role_problems(rendered: dict, destination: str, keyed: bool) -> list[str]:
    """The role as rendered with both parameters set, for one destination, with or without the customer key."""
    role = rendered["Resources"].get(ROLE)
    if role is None or role.get("Type") != "AWS::IAM::Role":
        return [f"{ROLE}: not created with ReltioStreamingPrincipalArns and ReltioStreamingExternalId set ({destination})"]
    props = role.get("Properties", {})
    problems = _trust_problems(role)
    if props.get("Path", "/") != "/":
        problems.append(f"{ROLE}: has the path {props['Path']!r} (Reltio cannot assume a role whose ARN has a path)")
    name = props.get("RoleName")
    if name is not None:
        text = name.get("Fn::Sub") if isinstance(name, dict) else name
        if not isinstance(text, str) or not text.startswith("${AWS::StackName}-") or "/" in text:
            problems.append(f"{ROLE}: RoleName {name!r} does not start with the stack name (the key policy's role/<stack>-*)")
    target = _event_stores(rendered)[destination]
    statements = [s for s in _policy_statements(role) if s.get("Effect") == "Allow"]
    grants = [s for s in statements if not any(a.startswith("kms:") for a in _actions(s))]
    keys = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    allowed = set().union(*(_actions(s) for s in grants)) if grants else set()
    if allowed != ACTIONS[destination]:
        problems.append(f"{ROLE}: may {sorted(allowed)}, not exactly {sorted(ACTIONS[destination])} ({destination})")
    for s in grants:
        resources = checks._as_list(s.get("Resource"))
        if len(resources) != 1 or not _points_at(resources[0], target):
            problems.append(f"{ROLE}: {sorted(_actions(s))} on {resources}, not on the event {destination} alone")
    if not keyed:
        if keys:
            problems.append(f"{ROLE}: a KMS grant without DataKmsKeyArn")
    else:
        granted = set().union(*(_actions(s) for s in keys)) if keys else set()
        if granted != KEY_ACTIONS:
            problems.append(f"{ROLE}: may {sorted(granted)} with the customer key, not exactly {sorted(KEY_ACTIONS)}")
        for s in keys:
            if checks._as_list(s.get("Resource")) != [checks.SAMPLE_DATA_KEY]:
                problems.append(f"{ROLE}: a KMS grant not on the customer key alone")
            if checks._via_services(s) != {SERVICE[destination]}:
                problems.append(f"{ROLE}: its customer-key grant is not limited to {SERVICE[destination]} (kms:ViaService)")
    outputs = rendered.get("Outputs", {})
    if not _points_at(outputs.get(ROLE_OUTPUT, {}).get("Value"), (ROLE, "Arn")):
        problems.append(f"{ROLE_OUTPUT}: no output with the role's ARN")
    if not _points_at(outputs.get(DESTINATION_OUTPUT, {}).get("Value"), target):
        problems.append(f"{DESTINATION_OUTPUT}: does not name the event {destination} the role may write to")
    return problems


# ---------------------------------------------------------------- the template's rules, evaluated


def _rule_value(x, params: dict, types: dict):
    if isinstance(x, dict) and len(x) == 1:
        (fn, args), = x.items()
        if fn == "Ref":
            v = params.get(args)
            if types.get(args) == "CommaDelimitedList":
                return [] if v is None else (v if isinstance(v, list) else str(v).split(","))
            return "" if v is None else str(v)
        if fn == "Fn::Not":
            return not _rule_value(args[0], params, types)
        if fn == "Fn::And":
            return all(_rule_value(a, params, types) for a in args)
        if fn == "Fn::Or":
            return any(_rule_value(a, params, types) for a in args)
        if fn == "Fn::Equals":
            return _rule_value(args[0], params, types) == _rule_value(args[1], params, types)
        if fn == "Fn::EachMemberEquals":
            return all(m == _rule_value(args[1], params, types) for m in _rule_value(args[0], params, types))
        if fn == "Fn::Contains":
            return _rule_value(args[1], params, types) in _rule_value(args[0], params, types)
        raise ValueError(f"unsupported rule function {fn}")
    return x


def refusing_rules(t: dict, overrides: dict) -> list[str]:
    """The template's rules whose assertions fail on these parameter values (CloudFormation refuses the deploy)."""
    params = checks.parameter_values(t, overrides)
    types = {name: p.get("Type") for name, p in t.get("Parameters", {}).items()}
    failing = []
    for name, rule in t.get("Rules", {}).items():
        condition = rule.get("RuleCondition")
        if condition is not None and not _rule_value(condition, params, types):
            continue
        if not all(_rule_value(a.get("Assert"), params, types) for a in rule.get("Assertions", [])):
            failing.append(name)
    return failing


# Parameter sets a deploy must refuse, and ones it must take.
STREAMING = {PRINCIPALS: checks.EVERY_RESOURCE[PRINCIPALS], EXTERNAL_ID: SAMPLE_EXTERNAL_ID}
REFUSED = {
    "the principals without the external id": {**STREAMING, EXTERNAL_ID: ""},
    "the external id without the principals": {**STREAMING, PRINCIPALS: ""},
    "the topic without FanOut": {**STREAMING, DESTINATION: "topic", "FanOut": "false", "Analytics": "false"},
}
TAKEN = {
    "no streaming role": {},
    "a role for the topic": STREAMING,
    "a role for the queue without FanOut": {**STREAMING, DESTINATION: "queue", "FanOut": "false", "Analytics": "false"},
}


def _rule_problems(t: dict) -> list[str]:
    problems = []
    for what, overrides in REFUSED.items():
        if not refusing_rules(t, overrides):
            problems.append(f"Rules: a deploy with {what} is not refused")
    for what, overrides in TAKEN.items():
        failing = refusing_rules(t, overrides)
        if failing:
            problems.append(f"Rules: a deploy with {what} is refused by {failing}")
    return problems


def _parameter_problems(t: dict) -> list[str]:
    params = t.get("Parameters", {})
    problems = []
    principals = params.get(PRINCIPALS, {})
    if principals.get("Type") != "CommaDelimitedList" or principals.get("Default") != "":
        problems.append(f"{PRINCIPALS}: not a CommaDelimitedList, empty by default (no role)")
    pattern = principals.get("AllowedPattern")
    if not pattern:
        problems.append(f"{PRINCIPALS}: no AllowedPattern (a wildcard or an account root would be trusted)")
    else:
        for arn in REFUSED_PRINCIPALS:
            if re.fullmatch(pattern, arn):
                problems.append(f"{PRINCIPALS}: its AllowedPattern takes {arn!r}")
        for arn in ACCEPTED_PRINCIPALS:
            if not re.fullmatch(pattern, arn):
                problems.append(f"{PRINCIPALS}: its AllowedPattern refuses {arn!r}")
    external = params.get(EXTERNAL_ID, {})
    if external.get("NoEcho") not in (True, "true"):
        problems.append(f"{EXTERNAL_ID}: not NoEcho")
    if external.get("Default") != "":
        problems.append(f"{EXTERNAL_ID}: has a default")
    if set(params.get(DESTINATION, {}).get("AllowedValues", [])) != set(ACTIONS):
        problems.append(f"{DESTINATION}: allowed values are not {sorted(ACTIONS)}")
    return problems


def check_streaming_role(t: dict) -> list[str]:
    problems = _parameter_problems(t) + _rule_problems(t)
    for what, overrides in [
        ("neither parameter", NO_STREAMING),
        ("the principals alone", {**NO_STREAMING, PRINCIPALS: STREAMING[PRINCIPALS]}),
        ("the external id alone", {**NO_STREAMING, EXTERNAL_ID: SAMPLE_EXTERNAL_ID}),
    ]:
        rendered = checks.render(t, overrides)
        if ROLE in rendered["Resources"] or ROLE_OUTPUT in rendered.get("Outputs", {}):
            problems.append(f"{ROLE}: created with {what}")
    for destination in ("topic", "queue"):
        for keyed in (False, True):
            overrides = {**checks.EVERY_RESOURCE, DESTINATION: destination}
            if keyed:
                overrides["DataKmsKeyArn"] = checks.SAMPLE_DATA_KEY
            problems += _role_problems(checks.render(t, overrides), destination, keyed)
    return list(dict.fromkeys(problems))


def check_assumable_roles(t: dict) -> list[str]:
    """Every role the stack creates (every optional one rendered): no trust in a wildcard principal, and a trust in
    principals of an AWS account requires sts:ExternalId (the confused-deputy guard Reltio's setup uses)."""
    problems = []
    rendered = checks.render(t, checks.EVERY_RESOURCE)
    for lid, r in sorted(checks.resources(rendered, "AWS::IAM::Role").items()):
        for s in _trust_statements(r):
            if s.get("Effect") != "Allow":
                continue
            principal = s.get("Principal")
            named = [principal] if isinstance(principal, str) else [
                p for v in (principal or {}).values() for p in checks._as_list(v)
            ]
            if any(isinstance(p, str) and "*" in p for p in named):
                problems.append(f"{lid}: trusts a wildcard principal")
            elif isinstance(principal, dict) and "AWS" in principal:
                if "sts:ExternalId" not in s.get("Condition", {}).get("StringEquals", {}):
                    problems.append(f"{lid}: trusts another account's principals without an external id")
    return problems

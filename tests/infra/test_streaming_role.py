"""Reltio's streaming role: the template check passes on infra/template.yaml and fails on a copy with each rule
broken (a mutation test per rule)."""

import copy
from pathlib import Path

import pytest

import streaming_role_checks as role_checks
import template_checks as checks

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
ROLE = role_checks.ROLE


@pytest.fixture(scope="module")
def template():
    return checks.load(TEMPLATE)


@pytest.fixture
def t(template):
    return copy.deepcopy(template)


def _role(t):
    return t["Resources"][ROLE]["Properties"]


def _trust(t):
    return _role(t)["AssumeRolePolicyDocument"]["Statement"][0]


def _branch(t, sid):
    """The statement of the role's policy with this Sid (inside its !If)."""
    for s in _role(t)["Policies"][0]["PolicyDocument"]["Statement"]:
        branches = s["Fn::If"][1:] if "Fn::If" in s else [s]
        for b in branches:
            if isinstance(b, dict) and b.get("Sid") == sid:
                return b
    raise KeyError(sid)


def test_the_template_pins_the_streaming_role(template):
    assert role_checks.check_streaming_role(template) == []
    assert role_checks.check_assumable_roles(template) == []


def test_the_role_is_rendered_as_reltio_needs_it(template):
    # With both parameters: trusted are exactly Reltio's principals, with the external id; no path; publish to the
    # event topic alone; the outputs name the role and the topic.
    rendered = checks.render(template, checks.EVERY_RESOURCE)
    role = rendered["Resources"][ROLE]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{
        "Sid": "ReltioStreams", "Effect": "Allow", "Principal": {"AWS": role_checks.SAMPLE_PRINCIPALS},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": role_checks.SAMPLE_EXTERNAL_ID}},
    }]
    assert role["Path"] == "/" and "RoleName" not in role
    assert role["Policies"][0]["PolicyDocument"]["Statement"] == [
        {"Sid": "PublishToTheEventTopic", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": {"Ref": "EventTopic"}}
    ]
    assert rendered["Outputs"]["ReltioStreamingRoleArn"]["Value"] == {"Fn::GetAtt": ["ReltioStreamingRole", "Arn"]}
    assert rendered["Outputs"]["ReltioStreamingDestinationArn"]["Value"] == {"Ref": "EventTopic"}
    queue = checks.render(template, {**checks.EVERY_RESOURCE, "ReltioStreamingDestination": "queue"})
    assert queue["Outputs"]["ReltioStreamingDestinationArn"]["Value"] == {"Fn::GetAtt": ["EventQueue", "Arn"]}
    # Defaults: no role, no output.
    plain = checks.render(template)
    assert ROLE not in plain["Resources"] and "ReltioStreamingRoleArn" not in plain["Outputs"]


def test_the_rules_refuse_one_parameter_without_the_other(template):
    assert role_checks.refusing_rules(template, {"ReltioStreamingPrincipalArns": "arn:aws:iam::222233334444:user/r"}) == [
        "ReltioStreamingNeedsItsExternalId"
    ]
    assert role_checks.refusing_rules(template, {"ReltioStreamingExternalId": "abc-123"}) == [
        "ReltioStreamingExternalIdNeedsPrincipals"
    ]
    assert role_checks.refusing_rules(template, {**role_checks.STREAMING, "FanOut": "false"}) == [
        "ReltioStreamingTopicNeedsFanOut"
    ]
    assert role_checks.refusing_rules(template, {}) == []


def test_a_wildcard_principal_is_caught(t):
    _trust(t)["Principal"] = {"AWS": "*"}
    assert f"{ROLE}: trusts ['*'], not exactly ReltioStreamingPrincipalArns" in role_checks.check_streaming_role(t)
    assert role_checks.check_assumable_roles(t) == [f"{ROLE}: trusts a wildcard principal"]


def test_a_trust_in_the_account_root_or_a_service_is_caught(t):
    _trust(t)["Principal"] = {"AWS": "arn:aws:iam::222233334444:root"}
    assert any("not exactly ReltioStreamingPrincipalArns" in p for p in role_checks.check_streaming_role(t))
    _trust(t)["Principal"] = {"Service": "sns.amazonaws.com"}
    assert any("not Reltio's principals alone" in p for p in role_checks.check_streaming_role(t))


def test_a_trust_without_the_external_id_is_caught(t):
    del _trust(t)["Condition"]
    assert role_checks.check_streaming_role(t) == [
        f"{ROLE}: assuming it does not require the external id (sts:ExternalId)"
    ]
    assert role_checks.check_assumable_roles(t) == [f"{ROLE}: trusts another account's principals without an external id"]


def test_a_role_created_without_the_external_id_is_caught(t):
    t["Resources"][ROLE]["Condition"] = "HasReltioStreamingPrincipals"
    t["Outputs"]["ReltioStreamingRoleArn"]["Condition"] = "HasReltioStreamingPrincipals"
    assert f"{ROLE}: created with the principals alone" in role_checks.check_streaming_role(t)


def test_a_missing_rule_is_caught(t):
    del t["Rules"]["ReltioStreamingNeedsItsExternalId"]
    del t["Rules"]["ReltioStreamingTopicNeedsFanOut"]
    assert role_checks.check_streaming_role(t) == [
        "Rules: a deploy with the principals without the external id is not refused",
        "Rules: a deploy with the topic without FanOut is not refused",
    ]


def test_a_rule_that_refuses_the_queue_without_fanout_is_caught(t):
    t["Rules"]["ReltioStreamingTopicNeedsFanOut"]["RuleCondition"] = {
        "Fn::Not": [{"Fn::EachMemberEquals": [{"Ref": "ReltioStreamingPrincipalArns"}, ""]}]
    }
    assert role_checks.check_streaming_role(t) == [
        "Rules: a deploy with a role for the queue without FanOut is refused by ['ReltioStreamingTopicNeedsFanOut']"
    ]


def test_a_path_is_caught(t):
    _role(t)["Path"] = "/service-role/"
    assert role_checks.check_streaming_role(t) == [
        f"{ROLE}: has the path '/service-role/' (Reltio cannot assume a role whose ARN has a path)"
    ]


def test_a_role_name_outside_the_stack_is_caught(t):
    _role(t)["RoleName"] = "reltio-streaming"
    assert any("does not start with the stack name" in p for p in role_checks.check_streaming_role(t))
    _role(t)["RoleName"] = {"Fn::Sub": "${AWS::StackName}-reltio-streaming"}
    assert role_checks.check_streaming_role(t) == []


def test_a_grant_wider_than_the_destination_is_caught(t):
    _branch(t, "PublishToTheEventTopic")["Resource"] = "*"
    problems = role_checks.check_streaming_role(t)
    assert f"{ROLE}: ['sns:Publish'] on ['*'], not on the event topic alone" in problems
    assert f"{ROLE}: ['sns:Publish'] granted on '*'" in checks.check_iam(checks.render(t, checks.EVERY_RESOURCE))


def test_an_extra_action_is_caught(t):
    _branch(t, "SendToTheEventQueue")["Action"].append("sqs:ReceiveMessage")
    assert role_checks.check_streaming_role(t) == [
        f"{ROLE}: may ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage', 'sqs:SendMessage'], "
        "not exactly ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'] (queue)"
    ]


def test_the_wrong_destination_is_caught(t):
    # Granting the alarm topic, or the queue's dead-letter queue, is not the event topic or queue.
    _branch(t, "PublishToTheEventTopic")["Resource"] = {"Ref": "AlarmTopic"}
    _branch(t, "SendToTheEventQueue")["Resource"] = {"Fn::GetAtt": ["EventDeadLetterQueue", "Arn"]}
    problems = role_checks.check_streaming_role(t)
    assert f"{ROLE}: ['sns:Publish'] on [{{'Ref': 'AlarmTopic'}}], not on the event topic alone" in problems
    assert any(p.startswith(f"{ROLE}: ['sqs:GetQueueAttributes'") and "EventDeadLetterQueue" in p for p in problems), problems


def test_a_missing_customer_key_grant_is_caught(t):
    statements = _role(t)["Policies"][0]["PolicyDocument"]["Statement"]
    statements[:] = [s for s in statements if s["Fn::If"][0] != "UseDataKey"]
    assert role_checks.check_streaming_role(t) == [
        f"{ROLE}: may [] with the customer key, not exactly ['kms:Decrypt', 'kms:GenerateDataKey*']"
    ]
    assert checks.check_data_key_grants(t) == [
        f"{ROLE}: uses ['sns'] but may not kms:Decrypt with the customer key",
        f"{ROLE}: writes ['sns'] but may not kms:GenerateDataKey with the customer key",
    ]


def test_a_customer_key_grant_through_the_wrong_service_is_caught(t):
    _branch(t, "DataKey")["Condition"]["StringEquals"]["kms:ViaService"] = [{"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}]
    assert role_checks.check_streaming_role(t) == [f"{ROLE}: its customer-key grant is not limited to sns (kms:ViaService)"]


def test_a_principal_pattern_that_takes_a_wildcard_or_root_is_caught(t):
    t["Parameters"]["ReltioStreamingPrincipalArns"]["AllowedPattern"] = "^$|^arn:aws:iam::.*$"
    problems = role_checks.check_streaming_role(t)
    assert "ReltioStreamingPrincipalArns: its AllowedPattern takes 'arn:aws:iam::222233334444:root'" in problems
    del t["Parameters"]["ReltioStreamingPrincipalArns"]["AllowedPattern"]
    assert "ReltioStreamingPrincipalArns: no AllowedPattern (a wildcard or an account root would be trusted)" in (
        role_checks.check_streaming_role(t)
    )


def test_an_echoed_external_id_is_caught(t):
    del t["Parameters"]["ReltioStreamingExternalId"]["NoEcho"]
    assert role_checks.check_streaming_role(t) == ["ReltioStreamingExternalId: not NoEcho"]


def test_a_missing_output_is_caught(t):
    del t["Outputs"]["ReltioStreamingRoleArn"]
    assert role_checks.check_streaming_role(t) == ["ReltioStreamingRoleArn: no output with the role's ARN"]


def test_the_template_check_runs_the_role_check(t):
    _role(t)["Path"] = "/service-role/"
    assert any("has the path" in p for p in checks.all_problems(t))

"""The SAM template keeps the operational rules: each check passes on infra/template.yaml and fails on a copy
with the rule broken (so the checks themselves are shown to work)."""

import copy
from pathlib import Path

import pytest

import template_checks as checks

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
CONTRACT = ROOT / "docs" / "contract.md"
LAYER = ROOT / "infra" / "mappings-layer"


@pytest.fixture(scope="module")
def template():
    return checks.load(TEMPLATE)


@pytest.fixture
def t(template):
    return copy.deepcopy(template)


def test_the_template_has_no_problems(template):
    assert checks.all_problems(template, CONTRACT, LAYER) == []


def test_a_mapping_file_missing_from_the_layer_is_caught(t):
    env = t["Resources"]["CrmUpdaterFunction"]["Properties"]["Environment"]["Variables"]
    env["CRM_MAPPING_FILE"] = "/opt/mappings/missing.toml"
    assert any("CRM_MAPPING_FILE" in p for p in checks.check_mapping_files(t, LAYER))


def test_contract_md_and_the_embedded_variable_list_agree():
    if not CONTRACT.exists():
        pytest.skip("docs/contract.md is missing")
    parsed = checks.contract_variables(CONTRACT)
    for function, names in checks.CONTRACT_VARIABLES.items():
        assert parsed[function] <= names, function
        assert len(parsed[function]) >= 5, function


def test_an_unbounded_kinesis_record_age_is_caught(t):
    t["Resources"]["CdcIngestEventSource"]["Properties"]["MaximumRecordAgeInSeconds"] = -1
    assert checks.check_event_sources(t) == ["CdcIngestEventSource: MaximumRecordAgeInSeconds is unbounded"]
    t["Parameters"]["CdcMaximumRecordAgeSeconds"]["Default"] = 700000
    t["Resources"]["CdcIngestEventSource"]["Properties"]["MaximumRecordAgeInSeconds"] = {"Ref": "CdcMaximumRecordAgeSeconds"}
    # The CDC Kafka mapping shares the parameter: it is caught too.
    assert checks.check_event_sources(t) == [
        "CdcIngestEventSource: MaximumRecordAgeInSeconds is past the stream's retention",
        "CdcKafkaEventSource: MaximumRecordAgeInSeconds is past the stream's retention",
    ]


def test_a_small_kinesis_retry_count_is_caught(t):
    # Ten quick retries turn a Reltio outage of a few minutes into records sent, unwritten, to the failure queue.
    t["Parameters"]["CdcMaximumRetryAttempts"]["Default"] = 10
    assert checks.check_event_sources(t) == [
        "CdcIngestEventSource: MaximumRetryAttempts 10 ends retries long before the record age"
    ]


def test_a_stream_without_a_failure_destination_is_caught(t):
    del t["Resources"]["CdcIngestEventSource"]["Properties"]["DestinationConfig"]
    assert "CdcIngestEventSource: no on-failure destination" in checks.check_event_sources(t)


def test_the_kafka_mapping_keeps_the_stream_rules(t):
    # The stream-consumer's Kafka mapping is a stream like Kinesis: bounded by record age, an on-failure queue,
    # partial batch responses per partition.
    props = t["Resources"]["StreamConsumerEventSource"]["Properties"]
    props["MaximumRecordAgeInSeconds"] = -1
    del props["DestinationConfig"]
    props["FunctionResponseTypes"] = []
    assert checks.check_event_sources(t) == [
        "StreamConsumerEventSource: no ReportBatchItemFailures",
        "StreamConsumerEventSource: MaximumRecordAgeInSeconds is unbounded",
        "StreamConsumerEventSource: no on-failure destination",
    ]


def test_the_cdc_kafka_mapping_keeps_the_stream_rules(t):
    # cdc-ingest's Kafka mapping (Debezium, GoldenGate) is settled like its Kinesis one.
    props = t["Resources"]["CdcKafkaEventSource"]["Properties"]
    props["MaximumRecordAgeInSeconds"] = -1
    del props["DestinationConfig"]
    props["FunctionResponseTypes"] = []
    assert checks.check_event_sources(t) == [
        "CdcKafkaEventSource: no ReportBatchItemFailures",
        "CdcKafkaEventSource: MaximumRecordAgeInSeconds is unbounded",
        "CdcKafkaEventSource: no on-failure destination",
    ]


def test_the_kafka_dead_letter_queues_need_alarms(t):
    del t["Resources"]["StreamDeadLetterQueueAlarm"]
    del t["Resources"]["StreamFailureQueueAlarm"]
    problems = checks.check_dlq_alarms(t)
    assert any("StreamDeadLetterQueue" in p for p in problems), problems
    assert any("StreamFailureQueue" in p for p in problems), problems


def test_a_source_without_partial_batch_responses_is_caught(t):
    t["Resources"]["CrmUpdaterEventSource"]["Properties"]["FunctionResponseTypes"] = []
    assert checks.check_event_sources(t) == ["CrmUpdaterEventSource: no ReportBatchItemFailures"]


def test_a_queue_without_a_dlq_is_caught(t):
    del t["Resources"]["EventQueue"]["Properties"]["RedrivePolicy"]
    problems = checks.check_queues(t)
    assert "EventQueue: queue has no DLQ (RedrivePolicy)" in problems


def test_a_dlq_without_an_alarm_is_caught(t):
    del t["Resources"]["CrmDeadLetterQueueAlarm"]
    assert checks.check_dlq_alarms(t) == ["CrmDeadLetterQueue: dead-letter queue has no depth >= 1 alarm"]


def test_a_short_visibility_timeout_is_caught(t):
    t["Resources"]["EventQueue"]["Properties"]["VisibilityTimeout"] = 300
    assert checks.check_visibility_timeouts(t) == [
        "EventQueue: VisibilityTimeout 300 < 6 x CrmUpdaterFunction timeout + window = 365"
    ]


def test_a_missing_contract_variable_is_caught(t):
    del t["Resources"]["CdcIngestFunction"]["Properties"]["Environment"]["Variables"]["CDC_DLQ_URL"]
    assert checks.check_contract_variables(t, checks.CONTRACT_VARIABLES) == [
        "cdc-ingest: docs/contract.md variables missing: ['CDC_DLQ_URL']"
    ]


def test_a_data_plane_action_on_star_is_caught(t):
    t["Resources"]["CrmUpdaterFunction"]["Properties"]["Policies"][0]["Statement"].append(
        {"Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": "*"}
    )
    assert checks.check_iam(t) == ["CrmUpdaterFunction: ['dynamodb:PutItem'] granted on '*'"]


@pytest.mark.parametrize(
    "alarm, row",
    [
        ("EventQueueBacklogAlarm", "consumer lag (queue backlog > 10,000 for 5 min)"),
        ("CdcEndToEndLatencyAlarm", None),
        ("WebhookDeliveryAlarm", "webhook delivery success < 99 % in 1 hour"),
    ],
)
def test_a_missing_seed_alarm_is_caught(t, alarm, row):
    if row is None:
        del t["Resources"]["CrmEndToEndLatencyAlarm"]
        row = "end-to-end latency p99 > 30 s"
    del t["Resources"][alarm]
    assert f"missing alarm: {row}" in checks.check_seed_alarms(t)


def test_every_error_rate_alarm_going_missing_is_caught(t):
    for lid in ["CdcInvocationErrorRateAlarm", "WebhookErrorRateAlarm", "CrmErrorRateAlarm"]:
        del t["Resources"][lid]
    assert "missing alarm: processing error rate > 0.5 % in 5 min" in checks.check_seed_alarms(t)


def test_an_alarm_that_fires_on_missing_data_is_caught(t):
    t["Resources"]["CdcIteratorAgeAlarm"]["Properties"]["TreatMissingData"] = "breaching"
    assert checks.check_seed_alarms(t) == [
        "CdcIteratorAgeAlarm: alarm would fire on missing data from an idle consumer"
    ]


def test_a_function_without_a_reserved_concurrency_parameter_is_caught(t):
    del t["Resources"]["CrmUpdaterFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert checks.check_reserved_concurrency(t) == [
        "CrmUpdaterFunction: ReservedConcurrentExecutions is not set from a parameter"
    ]


def test_an_alarm_topic_under_the_aws_managed_key_is_caught(t):
    t["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"] = "alias/aws/sns"
    assert checks.check_alarm_topic_key(t) == [
        "AlarmTopic: encrypted with alias/aws/sns, which CloudWatch cannot use"
    ]


def test_a_key_policy_without_cloudwatch_is_caught(t):
    statements = t["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    t["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"] = [
        s for s in statements if s.get("Sid") != "CloudWatchPublishesAlarms"
    ]
    assert checks.check_alarm_topic_key(t) == [
        "AlarmTopic: its key does not let CloudWatch decrypt and generate data keys"
    ]


def test_a_function_without_active_tracing_is_caught(t):
    t["Resources"]["CrmUpdaterFunction"]["Properties"]["Tracing"] = "PassThrough"
    assert checks.check_tracing(t) == ["CrmUpdaterFunction: no X-Ray active tracing"]
    del t["Globals"]["Function"]["Tracing"]
    assert len(checks.check_tracing(t)) == len(checks.resources(t, "AWS::Serverless::Function"))


@pytest.mark.parametrize("subscription", ["CrmSubscription", "AnalyticsSubscription"])
def test_a_subscription_without_raw_delivery_or_redrive_is_caught(t, subscription):
    props = t["Resources"][subscription]["Properties"]
    del props["RawMessageDelivery"]
    del props["RedrivePolicy"]
    problems = checks.check_fanout(t)
    assert any(subscription in p and "raw message delivery" in p for p in problems), problems
    assert any(subscription in p and "redrive" in p for p in problems), problems


def test_a_subscribed_queue_the_topic_may_not_send_to_is_caught(t):
    del t["Resources"]["AnalyticsQueuePolicy"]
    assert checks.check_fanout(t) == [
        "AnalyticsSubscription: AnalyticsQueue has no policy letting EventTopic (and only it) send to it"
    ]


def test_the_analytics_consumer_keeps_the_queue_rules(t):
    # Its own DLQs alarm, its event source reports partial failures, its queue outlives 6 invocations.
    del t["Resources"]["AnalyticsDeadLetterQueueAlarm"]
    t["Resources"]["AnalyticsSinkEventSource"]["Properties"]["FunctionResponseTypes"] = []
    t["Resources"]["AnalyticsQueue"]["Properties"]["VisibilityTimeout"] = 60
    problems = checks.all_problems(t)
    assert "AnalyticsDeadLetterQueue: dead-letter queue has no depth >= 1 alarm" in problems
    assert "AnalyticsSinkEventSource: no ReportBatchItemFailures" in problems
    assert any(p.startswith("AnalyticsQueue: VisibilityTimeout 60") for p in problems), problems


def test_every_stack_output_the_cli_reads_is_in_the_template(template):
    # tools/mdm-sync finds the queues, the stream and the webhook URL by these outputs (`--stack NAME`).
    source = (ROOT / "tools" / "mdm-sync" / "src" / "stack.rs").read_text()
    import re

    read = set(re.findall(r'pub const \w+: &str = "(\w+)";', source))
    assert len(read) >= 10, read
    assert read - set(template["Outputs"]) == set()

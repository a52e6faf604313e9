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


# ---------------------------------------------------------------- security review: one customer key, data protection

DMS = ROOT / "infra" / "dms.yaml"


def test_rendering_follows_the_parameters(template):
    # The checks below and the IaC scan read the template rendered with parameter values: conditions decide which
    # resources exist, every !If is its branch, AWS::NoValue is gone.
    plain = checks.render(template)
    assert "StreamConsumerFunction" not in plain["Resources"] and "CdcKeyLedgerTable" not in plain["Resources"]
    assert "AlarmTopicKey" in plain["Resources"]
    assert plain["Resources"]["EventQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert "KmsMasterKeyId" not in plain["Resources"]["EventQueue"]["Properties"]
    keyed = checks.render(template, checks.WITH_DATA_KEY)
    assert "StreamConsumerFunction" in keyed["Resources"] and "AlarmTopicKey" not in keyed["Resources"]
    assert keyed["Resources"]["EventQueue"]["Properties"]["KmsMasterKeyId"] == checks.SAMPLE_DATA_KEY
    assert keyed["Parameters"]["DataKmsKeyArn"]["Default"] == checks.SAMPLE_DATA_KEY


@pytest.mark.parametrize(
    "resource, path, other",
    [
        ("EventQueue", ["KmsMasterKeyId"], "alias/aws/sqs"),
        ("EventTopic", ["KmsMasterKeyId"], "alias/aws/sns"),
        ("AlarmTopic", ["KmsMasterKeyId"], {"Ref": "AlarmTopicKey"}),
        ("SyncStateTable", ["SSESpecification", "KMSMasterKeyId"], "alias/aws/dynamodb"),
        ("SalesforceSecret", ["KmsKeyId"], "alias/aws/secretsmanager"),
        ("CrmUpdaterLogGroup", ["KmsKeyId"], {"Ref": "AWS::NoValue"}),
        ("StreamConsumerLogGroup", ["KmsKeyId"], {"Ref": "AWS::NoValue"}),
        ("AnalyticsBucket", ["BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "KMSMasterKeyID"], "alias/aws/s3"),
        ("LetterStoreBucket", ["BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "KMSMasterKeyID"], "alias/aws/s3"),
        ("CdcStream", ["StreamEncryption", "KeyId"], "alias/aws/kinesis"),
        ("AnalyticsDeliveryStream", ["DeliveryStreamEncryptionConfigurationInput"], {"KeyType": "AWS_OWNED_CMK"}),
    ],
)
def test_a_store_without_the_customer_key_is_caught(t, resource, path, other):
    props = t["Resources"][resource]["Properties"]
    *parents, last = path
    for step in parents:
        props = props[step]
    props[last] = other
    problems = checks.check_data_key(t)
    assert any(p.startswith(f"{resource}: ") and "with DataKmsKeyArn set" in p for p in problems), problems


def test_a_store_added_later_is_covered_by_its_type(t):
    # The dead-letter store and Reltio's streaming resources land later: a new queue or bucket must use the key too.
    t["Resources"]["LetterQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}}
    t["Resources"]["LetterBucket"] = {
        "Type": "AWS::S3::Bucket",
        "Properties": {"BucketEncryption": {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}},
    }
    problems = checks.check_data_key(t)
    assert "LetterQueue: KmsMasterKeyId is not the customer key with DataKmsKeyArn set" in problems
    assert any(p.startswith("LetterBucket: ") and "SSEAlgorithm" in p for p in problems), problems
    assert any(p.startswith("LetterBucket: ") and "KMSMasterKeyID" in p for p in problems), problems


def test_a_store_that_loses_its_default_encryption_is_caught(t):
    # Without the parameter the stack stays encrypted with AWS-managed keys, as before.
    del t["Resources"]["CrmDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]
    t["Resources"]["WebhookReplayTable"]["Properties"]["SSESpecification"]["SSEEnabled"] = False
    assert checks.check_data_key(t) == [
        "WebhookReplayTable: SSESpecification.SSEEnabled is not True with DataKmsKeyArn set",
        "CrmDeadLetterQueue: not encrypted at rest without DataKmsKeyArn (SqsManagedSseEnabled)",
        "WebhookReplayTable: not encrypted at rest without DataKmsKeyArn (SSESpecification.SSEEnabled)",
    ]


def test_a_key_named_outside_its_condition_is_caught(t):
    # An empty DataKmsKeyArn must leave no empty key ARN behind (the deploy would fail).
    t["Resources"]["EventQueue"]["Properties"]["KmsMasterKeyId"] = {"Ref": "DataKmsKeyArn"}
    assert checks.check_data_key(t) == ["EventQueue: KmsMasterKeyId is set without DataKmsKeyArn"]


def _drop_data_key_statement(t, function):
    policy = t["Resources"][function]["Properties"]["Policies"][0]["Statement"]
    policy[:] = [s for s in policy if not ("Fn::If" in s and s["Fn::If"][1].get("Sid") == "DataKey")]


def _data_key_statement(t, function):
    policy = t["Resources"][function]["Properties"]["Policies"][0]["Statement"]
    return next(s["Fn::If"][1] for s in policy if "Fn::If" in s and s["Fn::If"][1].get("Sid") == "DataKey")


def test_a_role_without_a_grant_on_the_customer_key_is_caught(t):
    _drop_data_key_statement(t, "CrmUpdaterFunction")
    assert checks.check_data_key_grants(t) == [
        "CrmUpdaterFunction: uses ['dynamodb', 's3', 'secretsmanager', 'sqs'] but may not kms:Decrypt with the customer key",
        "CrmUpdaterFunction: writes ['dynamodb', 's3', 'secretsmanager', 'sqs'] but may not kms:GenerateDataKey with the customer key",
    ]


def test_a_writer_that_may_only_decrypt_is_caught(t):
    _data_key_statement(t, "WebhookReceiverFunction")["Action"] = ["kms:Decrypt"]
    assert checks.check_data_key_grants(t) == [
        # (FanOut, the default: it publishes to the topic rather than sending to the queue)
        "WebhookReceiverFunction: writes ['dynamodb', 'secretsmanager', 'sns'] but may not kms:GenerateDataKey with the customer key"
    ]


def test_a_grant_beyond_the_services_or_the_key_is_caught(t):
    statement = _data_key_statement(t, "StreamConsumerFunction")
    statement["Condition"]["StringEquals"]["kms:ViaService"] = [
        v for v in statement["Condition"]["StringEquals"]["kms:ViaService"] if "sns" not in v["Fn::Sub"]
    ]
    assert checks.check_data_key_grants(t) == ["StreamConsumerFunction: its customer-key grant does not cover ['sns'] (kms:ViaService)"]
    del statement["Condition"]
    assert checks.check_data_key_grants(t) == [
        "StreamConsumerFunction: its customer-key grant is not limited to use through AWS services (kms:ViaService)"
    ]
    statement = _data_key_statement(t, "AnalyticsSinkFunction")
    statement["Resource"] = "*"
    assert "AnalyticsSinkFunction: a KMS grant is not on the customer key alone" in checks.check_data_key_grants(t)


def test_a_role_added_later_needs_the_grant_too(t):
    # Reltio's streaming role (an IAM role Reltio assumes to publish to the topic) lands later: covered by its actions.
    t["Resources"]["ReltioStreamingRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Statement": []},
            "Policies": [{"PolicyName": "publish", "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": ["sns:Publish"], "Resource": {"Ref": "EventTopic"}}
            ]}}],
        },
    }
    assert checks.check_data_key_grants(t) == [
        "ReltioStreamingRole: uses ['sns'] but may not kms:Decrypt with the customer key",
        "ReltioStreamingRole: writes ['sns'] but may not kms:GenerateDataKey with the customer key",
    ]


def test_a_grant_outside_its_condition_is_caught(t):
    policy = t["Resources"]["CdcIngestFunction"]["Properties"]["Policies"][0]["Statement"]
    policy.append(dict(_data_key_statement(t, "CdcIngestFunction")))
    assert checks.check_data_key_grants(t) == ["CdcIngestFunction: a statement names an empty resource without DataKmsKeyArn"]


def test_the_dms_role_may_write_to_the_stream_under_the_customer_key():
    dms = checks.load(DMS)
    assert checks.check_data_key_grants(dms) == []
    statements = dms["Resources"]["DmsKinesisRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    statements[:] = [s for s in statements if "Fn::If" not in s]
    assert checks.check_data_key_grants(dms) == [
        "DmsKinesisRole: writes ['kinesis'] but may not kms:GenerateDataKey with the customer key"
    ]


def test_the_alarm_topic_keeps_a_key_cloudwatch_can_use(t):
    # Without DataKmsKeyArn its own key (CloudWatch in the policy); with it the customer's key (README statement).
    t["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"] = {"Fn::If": ["UseDataKey", {"Ref": "DataKmsKeyArn"}, "alias/aws/sns"]}
    assert checks.check_alarm_topic_key(t) == ["AlarmTopic: encrypted with alias/aws/sns, which CloudWatch cannot use"]


@pytest.mark.parametrize("bucket", ["AnalyticsBucket", "LetterStoreBucket"])
def test_an_unversioned_bucket_is_caught(t, bucket):
    props = t["Resources"][bucket]["Properties"]
    del props["VersioningConfiguration"]
    props["LifecycleConfiguration"]["Rules"] = [r for r in props["LifecycleConfiguration"]["Rules"] if "NoncurrentVersionExpiration" not in r]
    del props["LoggingConfiguration"]
    assert checks.check_data_protection(t) == [
        f"{bucket}: bucket is not versioned",
        f"{bucket}: noncurrent versions never expire",
        f"{bucket}: no server access logs to AccessLogBucket when it is set",
    ]


def test_a_bucket_added_later_is_held_to_the_same_rules(t):
    t["Resources"]["LetterBucket"] = {"Type": "AWS::S3::Bucket", "Properties": {}}
    assert checks.check_data_protection(t) == [
        "LetterBucket: bucket is not versioned",
        "LetterBucket: noncurrent versions never expire",
        "LetterBucket: no server access logs to AccessLogBucket when it is set",
    ]


@pytest.mark.parametrize("table", ["SyncStateTable", "CdcKeyLedgerTable", "WebhookReplayTable", "AnalyticsDedupTable"])
def test_a_table_without_point_in_time_recovery_is_caught(t, table):
    del t["Resources"][table]["Properties"]["PointInTimeRecoverySpecification"]
    assert checks.check_data_protection(t) == [f"{table}: no point-in-time recovery"]


# ---------------------------------------------------------------- security review: the scanner's accepted findings


def test_a_missing_suppression_is_caught(t):
    skips = t["Resources"]["CrmUpdaterFunction"]["Metadata"]["checkov"]["skip"]
    skips[:] = [s for s in skips if s["id"] != "CKV_AWS_117"]
    del t["Resources"]["EventQueue"]["Metadata"]
    assert checks.check_scan_suppressions(t) == [
        "CrmUpdaterFunction: no suppression of CKV_AWS_117 with its reason",
        "EventQueue: no suppression of CKV_AWS_27 with its reason",
    ]


def test_a_suppression_without_a_reason_or_outside_the_register_is_caught(t):
    skips = t["Resources"]["AnalyticsBucket"]["Metadata"]["checkov"]["skip"]
    skips[0]["comment"] = ""
    skips.append({"id": "CKV_AWS_21", "comment": "Versioning is somebody else's problem, we are told by nobody"})
    assert checks.check_scan_suppressions(t) == [
        "AnalyticsBucket: suppression of CKV_AWS_18 has no one-line reason",
        "AnalyticsBucket: suppression of CKV_AWS_21 is not an accepted finding (README, Security review)",
    ]


def test_a_resource_added_later_must_explain_its_findings(t):
    t["Resources"]["LetterQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    assert checks.check_scan_suppressions(t) == ["LetterQueue: no suppression of CKV_AWS_27 with its reason"]


def test_the_scan_lifts_parameter_suppressions_only_where_the_parameter_is_set(template):
    import iac_scan

    scans = iac_scan.variants(template, checks.load(DMS))
    secured, _ = scans["template.data-key-and-access-logs.json"]
    lifted = checks.lifted_by("render", *iac_scan.LIFTED_BY_PARAMETERS)
    assert lifted >= {"CKV_AWS_27", "CKV_AWS_158", "CKV_AWS_149", "CKV_AWS_119", "CKV_AWS_18", "CKV_AWS_19"}
    left = {s["id"] for r in secured["Resources"].values() for s in checks.scan_suppressions(r)}
    assert left and not left & lifted
    every, _ = scans["template.every-resource.json"]
    assert {s["id"] for r in every["Resources"].values() for s in checks.scan_suppressions(r)} >= checks.lifted_by("DataKmsKeyArn")
    control, expected = scans["template.control.json"]
    assert {cid for cid, _ in expected} == checks.lifted_by(*iac_scan.LIFTED_BY_PARAMETERS)
    assert ("CKV_AWS_27", "StreamDeadLetterQueue") in expected


def test_the_scan_skips_nothing_on_the_command_line():
    import iac_scan

    command = iac_scan.checkov_command("checkov", "dir")
    assert not {"--skip-check", "--check", "--soft-fail", "--soft-fail-on", "--skip-framework", "--baseline"} & set(command)
    makefile = (ROOT / "Makefile").read_text()
    assert "iac_scan.py" in makefile and "--skip-check" not in makefile and "--soft-fail" not in makefile


def _scan(failed=(), skipped=(), passed=1):
    return {
        "passed_checks": [{"check_id": "CKV_AWS_1", "resource": "AWS::X.Y"}] * passed,
        "failed_checks": [{"check_id": c, "check_name": "name", "resource": f"AWS::SQS::Queue.{r}"} for c, r in failed],
        "skipped_checks": [{"check_id": c, "resource": f"AWS::SQS::Queue.{r}", "check_result": {"suppress_comment": why}} for c, r, why in skipped],
    }


def test_the_scan_reports_unexplained_failures_and_bare_skips():
    import iac_scan

    _, problems = iac_scan.judge(
        {"a.yaml": _scan(failed=[("CKV_AWS_27", "Q")], skipped=[("CKV_AWS_116", "Q", "")])},
        {"a.yaml": set(), "b.yaml": set()},
    )
    assert problems == [
        "a.yaml: unexplained failure CKV_AWS_27 (name) on AWS::SQS::Queue.Q",
        "a.yaml: CKV_AWS_116 skipped on AWS::SQS::Queue.Q without a reason",
        "b.yaml: checkov scanned nothing (not read as CloudFormation?)",
    ]


def test_the_scan_control_must_fail_what_the_parameters_fix():
    import iac_scan

    _, problems = iac_scan.judge({"c.json": _scan()}, {"c.json": {("CKV_AWS_27", "Q")}})
    assert problems == ["c.json: expected to fail without the parameters, but passed: [('CKV_AWS_27', 'Q')]"]
    _, problems = iac_scan.judge({"c.json": _scan(failed=[("CKV_AWS_27", "Q")])}, {"c.json": {("CKV_AWS_27", "Q")}})
    assert problems == []


README = ROOT / "README.md"


def test_the_readme_explains_every_accepted_finding_and_the_key_policy():
    assert checks.check_security_review(README.read_text()) == []


def test_a_readme_missing_a_finding_or_a_key_policy_statement_is_caught():
    text = README.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `CKV_AWS_117`"))
    mutated = text.replace(row + "\n", "").replace('"Sid": "CloudWatchPublishesAlarms"', '"Sid": "Gone"').replace(
        '"Principal": {"Service": "cloudwatch.amazonaws.com"}', '"Principal": {"Service": "example.amazonaws.com"}'
    ).replace('"s3.<region>.amazonaws.com"', '"ec2.<region>.amazonaws.com"')
    assert checks.check_security_review(mutated) == [
        "README: accepted finding CKV_AWS_117 is not in the Security review table",
        "README: the key policy does not let CloudWatch publish alarms (cloudwatch.amazonaws.com)",
        "README: the key policy does not let the stack's roles use the key through ['s3']",
    ]


# ---------------------------------------------------------------- the letter store (dead letters' oversized payloads)


def _letter_store_statement(t, function):
    policy = t["Resources"][function]["Properties"]["Policies"][0]["Statement"]
    return next(s for s in policy if isinstance(s, dict) and s.get("Sid") == "LetterStore")


def test_the_letter_store_serves_exactly_the_batch_functions(template):
    assert set(checks.batch_functions(template).values()) == {"cdc-ingest", "crm-updater", "stream-consumer", "analytics-sink"}
    assert checks.check_letter_store(template) == []
    assert checks.check_tls_only(template) == []


def test_a_batch_function_without_the_letter_store_is_caught(t):
    del t["Resources"]["StreamConsumerFunction"]["Properties"]["Environment"]["Variables"]["LETTER_STORE_BUCKET"]
    t["Resources"]["CrmUpdaterFunction"]["Properties"]["Environment"]["Variables"]["LETTER_STORE_BUCKET"] = "some-bucket"
    assert checks.check_letter_store(t) == [
        "CrmUpdaterFunction: LETTER_STORE_BUCKET does not name the stack's letter store bucket",
        "StreamConsumerFunction: LETTER_STORE_BUCKET does not name the stack's letter store bucket",
    ]


def test_a_letter_store_grant_beyond_put_or_beyond_its_prefix_is_caught(t):
    _letter_store_statement(t, "CrmUpdaterFunction")["Action"] = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    _letter_store_statement(t, "AnalyticsSinkFunction")["Resource"] = {"Fn::Sub": "${LetterStoreBucket.Arn}/*"}
    _letter_store_statement(t, "StreamConsumerFunction")["Resource"] = {"Fn::Sub": "${LetterStoreBucket.Arn}/crm-updater/*"}
    policy = t["Resources"]["CdcIngestFunction"]["Properties"]["Policies"][0]["Statement"]
    policy[:] = [s for s in policy if not (isinstance(s, dict) and s.get("Sid") == "LetterStore")]
    assert checks.check_letter_store(t) == [
        "AnalyticsSinkFunction: its letter store grant is not limited to its own prefix analytics-sink/",
        "AnalyticsSinkFunction: may not put to the letter store under analytics-sink/",
        "CdcIngestFunction: may not put to the letter store under cdc-ingest/",
        "CrmUpdaterFunction: may ['s3:DeleteObject', 's3:GetObject'] on the letter store (put only)",
        "StreamConsumerFunction: its letter store grant is not limited to its own prefix stream-consumer/",
        "StreamConsumerFunction: may not put to the letter store under stream-consumer/",
    ]
    # A wildcard on the store is caught too (and by the IAM check as a wildcard action).
    _letter_store_statement(t, "CrmUpdaterFunction")["Action"] = ["s3:*"]
    assert "CrmUpdaterFunction: may ['s3:*'] on the letter store (put only)" in checks.check_letter_store(t)
    assert any(p.startswith("CrmUpdaterFunction: wildcard action") for p in checks.check_iam(t))


def test_a_letter_store_that_forgets_before_the_dead_letter_queues_do_is_caught(t):
    t["Parameters"]["LetterStoreRetentionDays"]["MinValue"] = 1
    assert checks.check_letter_store(t) == [
        "LetterStoreBucket: payloads may expire within 1 days, before the dead-letter queues' letters (15 days at least)"
    ]
    t["Parameters"]["LetterStoreRetentionDays"]["MinValue"] = 15
    rules = t["Resources"]["LetterStoreBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiry = next(r for r in rules if r["Id"] == "PayloadsExpire")
    expiry["ExpirationInDays"] = 14
    assert checks.check_letter_store(t) == [
        "LetterStoreBucket: payloads may expire within 14 days, before the dead-letter queues' letters (15 days at least)"
    ]
    rules.remove(expiry)
    assert checks.check_letter_store(t) == ["LetterStoreBucket: the letter store's payloads never expire"]


def test_a_bucket_that_takes_requests_without_tls_is_caught(t):
    del t["Resources"]["LetterStoreBucketPolicy"]
    statement = t["Resources"]["AnalyticsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    statement["Resource"] = [statement["Resource"][0]]
    assert checks.check_tls_only(t) == [
        "AnalyticsBucket: no bucket policy refusing requests without TLS (aws:SecureTransport)",
        "LetterStoreBucket: no bucket policy refusing requests without TLS (aws:SecureTransport)",
    ]


def test_a_letter_store_failure_without_an_alarm_is_caught(t):
    alarm = t["Resources"]["LetterStoreFailuresAlarm"]["Properties"]
    alarm["Metrics"][0]["Expression"] = "FILL(cdc, 0) + FILL(crm, 0) + FILL(analytics, 0)"
    assert checks.check_letter_store(t) == ["StreamConsumerFunction: no alarm on its LetterStoreFailures (any > 0)"]
    alarm["Threshold"] = 5
    assert len(checks.check_letter_store(t)) == 4
    del t["Resources"]["LetterStoreFailuresAlarm"]
    assert checks.check_letter_store(t) == [
        f"{fid}: no alarm on its LetterStoreFailures (any > 0)"
        for fid in ["AnalyticsSinkFunction", "CdcIngestFunction", "CrmUpdaterFunction", "StreamConsumerFunction"]
    ]

//! The fan-out adapters against a local moto_server: the event topic (SNS) delivers each published event to every
//! subscribed queue with raw message delivery, the contract's attributes as SQS message attributes and the
//! subscription's filter policy applied, an event over 256 KiB as its oversized form; Firehose lands the change
//! records in S3 as NDJSON; the refresh signal reaches an EventBridge rule's target.

use aws_sdk_sqs::types::QueueAttributeName;
use mdm_sync_adapters::eventbridge::{RefreshSignal, DETAIL_TYPE, SOURCE};
use mdm_sync_adapters::firehose::FirehoseSink;
use mdm_sync_adapters::sns::SnsTopic;
use mdm_sync_domain::analytics::Report;
use mdm_sync_domain::ports::{MessageSink, RecordSink};
use mdm_sync_domain::queue::OutgoingMessage;
use mdm_sync_testkit::MotoServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

async fn subscribe(sns: &aws_sdk_sns::Client, topic: &str, queue_arn: &str, filter: Option<Value>) {
    let mut s = sns
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true");
    if let Some(f) = filter {
        s = s.attributes("FilterPolicy", f.to_string());
    }
    s.send().await.unwrap();
}

fn event(uri: &str, event_type: &str, pad: usize) -> OutgoingMessage {
    let body = json!({"type": event_type, "tenantId": "T1", "objectVersion": 3, "updatedTime": 7,
                      "object": {"uri": uri, "type": "configuration/entityTypes/Individual",
                                 "attributes": {"Notes": [{"ov": true, "value": "x".repeat(pad)}]}}});
    OutgoingMessage {
        body: body.to_string(),
        attributes: vec![
            ("eventType".into(), event_type.into()),
            ("entityType".into(), "Individual".into()),
            ("sourceObjectUri".into(), uri.into()),
            ("eventId".into(), format!("id-{uri}")),
        ],
        ..Default::default()
    }
}

fn attribute(m: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    m.message_attributes()?
        .get(name)?
        .string_value()
        .map(str::to_owned)
}

#[tokio::test]
async fn each_event_reaches_every_subscription_once_with_its_attributes_and_filters_apply() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = moto.sqs().await;
    let topic = sns
        .create_topic()
        .name("events")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let crm = moto.create_queue("crm").await;
    let analytics = moto.create_queue("analytics").await;
    subscribe(
        &sns,
        &topic,
        &queue_arn(&sqs, &crm).await,
        Some(json!({"eventType": ["ENTITY_CHANGED"]})),
    )
    .await;
    subscribe(&sns, &topic, &queue_arn(&sqs, &analytics).await, None).await;

    let sink = SnsTopic::new(sns, &topic);
    assert!(!sink.is_fifo());
    let messages: Vec<OutgoingMessage> = (0..12)
        .map(|i| {
            event(
                &format!("entities/E{i}"),
                if i % 3 == 0 {
                    "ENTITY_CREATED"
                } else {
                    "ENTITY_CHANGED"
                },
                10,
            )
        })
        .chain([event("entities/BIG", "ENTITY_CHANGED", 300_000)])
        .collect();
    assert!(
        sink.send(&messages).await.is_empty(),
        "every message published"
    );

    let on_analytics = moto.drain_queue(&analytics).await;
    assert_eq!(
        on_analytics.len(),
        13,
        "the unfiltered subscription gets every event"
    );
    let on_crm = moto.drain_queue(&crm).await;
    assert_eq!(
        on_crm.len(),
        9,
        "the filter policy keeps ENTITY_CHANGED only"
    );
    for m in on_analytics.iter().chain(&on_crm) {
        let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
        let uri = attribute(m, "sourceObjectUri").unwrap();
        assert_eq!(
            attribute(m, "eventId").unwrap(),
            format!("id-{uri}"),
            "raw delivery keeps the attributes"
        );
        assert_eq!(attribute(m, "entityType").as_deref(), Some("Individual"));
        if uri == "entities/BIG" {
            assert_eq!(
                body["exceededQueueSizeLimit"], true,
                "over 256 KiB: the oversized form"
            );
            assert_eq!(body["uri"], "entities/BIG");
        } else {
            assert_eq!(
                body["object"]["uri"],
                uri.as_str(),
                "the body as published, not an SNS envelope"
            );
        }
    }
}

#[tokio::test]
async fn a_fifo_topic_keeps_group_and_deduplication_ids() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = moto.sqs().await;
    let topic = sns
        .create_topic()
        .name("events.fifo")
        .attributes("FifoTopic", "true")
        .attributes("ContentBasedDeduplication", "false")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = sqs
        .create_queue()
        .queue_name("crm.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    subscribe(&sns, &topic, &queue_arn(&sqs, &queue).await, None).await;
    let sink = SnsTopic::new(sns, &topic);
    assert!(sink.is_fifo());
    let mut m = event("entities/E1", "ENTITY_CHANGED", 10);
    m.group_id = Some("entities/E1".into());
    m.dedup_id = Some("id-1".into());
    assert!(sink.send(&[m.clone(), m]).await.is_empty());
    let got = moto.drain_queue(&queue).await;
    assert_eq!(got.len(), 1, "the second copy is deduplicated by its id");
}

#[tokio::test]
async fn firehose_lands_every_record_in_s3_as_ndjson() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    moto.create_bucket("landing").await;
    moto.create_delivery_stream("changes", "landing", "changes/")
        .await;
    let sink = FirehoseSink::new(aws_sdk_firehose::Client::new(&sdk), "changes");
    let records: Vec<Vec<u8>> = (0..1203)
        .map(|i| format!("{{\"event_id\":\"e{i}\"}}\n").into_bytes())
        .collect();
    let results = sink
        .put(&records, Instant::now() + Duration::from_secs(30))
        .await;
    assert!(results.iter().all(Result::is_ok));
    let landed = moto.objects_text("landing", "changes/").await;
    let ids: Vec<String> = landed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1203);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1203, "each record once");

    // A stream that does not exist: every record reported failed (transient), none dropped silently.
    let missing = FirehoseSink::new(aws_sdk_firehose::Client::new(&sdk), "absent");
    let results = missing
        .put(&records[..3], Instant::now() + Duration::from_secs(5))
        .await;
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_err_and(|e| e.is_transient())));
}

#[tokio::test]
async fn the_refresh_signal_reaches_a_rules_target() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let sqs = moto.sqs().await;
    let target = moto.create_queue("refresh").await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    events
        .put_rule()
        .name("refresh")
        .event_pattern(json!({"source": [SOURCE], "detail-type": [DETAIL_TYPE]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("refresh")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn(&sqs, &target).await)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let signal = RefreshSignal::new(events, "default", "changes");
    assert_eq!(
        signal.batch_written(&Report::default()).await,
        Ok(false),
        "nothing written, nothing sent"
    );
    let mut report = Report::default();
    report.counts.insert("RecordsWritten", 3);
    report.entity_types.insert("Individual".into());
    report.newest_change = Some(1_780_000_000_123);
    report.oldest_change = Some(1_780_000_000_000);
    assert_eq!(signal.batch_written(&report).await, Ok(true));
    let got = moto.drain_queue(&target).await;
    assert_eq!(got.len(), 1);
    let event: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(event["source"], SOURCE);
    assert_eq!(
        event["detail"],
        json!({"deliveryStream": "changes", "records": 3, "entityTypes": ["Individual"],
               "newestChangeTime": "2026-05-28T20:26:40.123Z", "oldestChangeTime": "2026-05-28T20:26:40.000Z"})
    );
}

//! `SqsVisibility` (`ChangeMessageVisibilityBatch`) against a local moto_server: a received message comes back
//! after the short timeout set on it, on the queue URL derived from the queue's ARN; failures are per entry,
//! never an error; the time bound holds.

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use mdm_sync_adapters::sqs::{queue_url_from_arn, SqsVisibility};
use mdm_sync_domain::backoff::VisibilityChange;
use mdm_sync_domain::ports::MessageVisibility;
use mdm_sync_testkit::MotoServer;
use std::time::{Duration, Instant};

/// Receives what is visible now (at most 10), with its receive count.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .wait_time_seconds(0)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

fn receive_count(m: &Message) -> Option<&str> {
    m.attributes()?
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
        .map(String::as_str)
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

/// The queue's URL as the crm-updater derives it from an event's `eventSourceARN`.
async fn url_from_arn(sqs: &aws_sdk_sqs::Client, created_url: &str) -> String {
    let arn = sqs
        .get_queue_attributes()
        .queue_url(created_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue ARN");
    queue_url_from_arn(&arn).expect("an SQS queue ARN")
}

fn change(m: &Message, seconds: u32) -> VisibilityChange {
    VisibilityChange {
        receipt_handle: m.receipt_handle.clone().expect("receipt handle"),
        seconds,
    }
}

#[tokio::test]
async fn a_received_message_comes_back_after_the_short_timeout_on_the_queue_its_arn_names() {
    let moto = MotoServer::start();
    let sqs = moto.sqs().await;
    // moto's default visibility timeout is 30 s: without the change the message stays away for the test.
    let created = moto.create_queue("events").await;
    let url = url_from_arn(&sqs, &created).await;
    assert!(
        url.starts_with("https://sqs.us-east-1.amazonaws.com/"),
        "{url}"
    );
    send(&sqs, &created, "one").await;
    let first = receive(&sqs, &created).await;
    assert_eq!(first.len(), 1);
    assert_eq!(receive_count(&first[0]), Some("1"));

    let visibility = SqsVisibility::new(sqs.clone());
    let failures = visibility.change(&url, &[change(&first[0], 1)]).await;
    assert!(failures.is_empty(), "{failures:?}");

    assert!(
        receive(&sqs, &created).await.is_empty(),
        "still invisible right after the change"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = receive(&sqs, &created).await;
    assert_eq!(again.len(), 1, "visible again after 1 s, not 30");
    assert_eq!(again[0].body.as_deref(), Some("one"));
    assert_eq!(receive_count(&again[0]), Some("2"));
}

#[tokio::test]
async fn changes_go_in_batches_of_ten_and_failures_are_reported_per_entry() {
    let moto = MotoServer::start();
    let sqs = moto.sqs().await;
    let url = moto.create_queue("events").await;
    for i in 0..11 {
        send(&sqs, &url, &format!("m{i}")).await;
    }
    let mut received = Vec::new();
    while received.len() < 11 {
        let batch = receive(&sqs, &url).await;
        assert!(!batch.is_empty(), "all 11 are received");
        received.extend(batch);
    }
    let mut changes: Vec<VisibilityChange> = received.iter().map(|m| change(m, 1)).collect();
    // An invalid receipt handle at position 5 (12 entries: two calls).
    let bogus = "not-a-receipt-handle-4f1c";
    changes.insert(
        5,
        VisibilityChange {
            receipt_handle: bogus.into(),
            seconds: 1,
        },
    );
    let failures = SqsVisibility::new(sqs.clone()).change(&url, &changes).await;
    assert_eq!(
        failures.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![5],
        "{failures:?}"
    );
    assert!(
        failures[0].reason.contains("ReceiptHandleIsInvalid"),
        "{}",
        failures[0].reason
    );
    assert!(
        !failures[0].reason.contains(bogus),
        "the receipt handle is not in the reason"
    );

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut back = Vec::new();
    loop {
        let batch = receive(&sqs, &url).await;
        if batch.is_empty() {
            break;
        }
        back.extend(batch);
    }
    assert_eq!(back.len(), 11, "every valid change was made");
}

#[tokio::test]
async fn a_missing_queue_fails_every_change_without_an_error() {
    let moto = MotoServer::start();
    let sqs = moto.sqs().await;
    let url = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue";
    let changes = [
        VisibilityChange {
            receipt_handle: "a".into(),
            seconds: 2,
        },
        VisibilityChange {
            receipt_handle: "b".into(),
            seconds: 2,
        },
    ];
    let failures = SqsVisibility::new(sqs).change(url, &changes).await;
    assert_eq!(
        failures.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(
        failures.iter().all(
            |f| f.reason.contains("NonExistentQueue") || f.reason.contains("QueueDoesNotExist")
        ),
        "{failures:?}"
    );
}

#[tokio::test]
async fn an_unanswered_call_is_given_up_within_the_time_limit() {
    // A listener that accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let visibility = SqsVisibility::with_time_limit(
        aws_sdk_sqs::Client::from_conf(config),
        Duration::from_millis(300),
    );
    let changes: Vec<VisibilityChange> = (0..15)
        .map(|i| VisibilityChange {
            receipt_handle: format!("h{i}"),
            seconds: 2,
        })
        .collect();
    let started = Instant::now();
    let failures = visibility
        .change(
            "https://sqs.us-east-1.amazonaws.com/123456789012/events",
            &changes,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        failures.iter().map(|f| f.index).collect::<Vec<_>>(),
        (0..15).collect::<Vec<_>>()
    );
    assert!(
        failures.iter().all(|f| f.reason == "timed out"),
        "{failures:?}"
    );
}

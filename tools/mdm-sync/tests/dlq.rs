//! `mdm-sync dlq` against moto_server: dead letters listed, shown and redriven by the CLI binary, the redriven
//! record and event put back exactly as their letters hold them (numbers no f64 holds keep their digits), or as
//! the letter store holds them for a payload too large for its letter.

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use mdm_sync_adapters::s3::S3LetterStore;
use mdm_sync_domain::letter::{DeadLetter, LetterContext, Origin, Payload};
use mdm_sync_domain::ports::PayloadStore;
use mdm_sync_testkit::MotoServer;
use serde_json::Value;
use std::process::{Command, Output};

/// A record and an event with numbers a re-serialisation of parsed JSON would round, and spacing none would write.
const RECORD: &str = r#"{"data":{"id":46, "balance":98765432109876.54321012,"big":123456789012345678901234},"metadata":{"operation":"update","table-name":"customer","schema-name":"public"}}"#;
const EVENT: &str = r#"{"type":"ENTITY_CHANGED", "tenantId":"T1","object":{"uri":"entities/A","type":"configuration/entityTypes/Individual","attributes":{"Balance":[{"value":98765432109876.54321012}],"Big":[{"value":123456789012345678901234}]}}}"#;

struct Cli<'a> {
    moto: &'a MotoServer,
    outputs: Vec<String>,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_mdm-sync"))
            .args(args)
            .args(&self.outputs)
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env_remove("MDM_SYNC_STACK")
            .output()
            .unwrap();
        eprintln!(
            "mdm-sync {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The `--json` output of a command that exits with `code`.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let out = self.run(&[&["--json"], args].concat());
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn depths(listing: &Value) -> Vec<(String, u64)> {
    listing
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["queue"].as_str().unwrap().to_owned(),
                q["depth"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn dlq_redrive_puts_back_exactly_the_bytes_its_letters_hold() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let sqs = moto.sqs().await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let cdc_dlq = moto.create_queue("cdc-dlq").await;
    let crm_dlq = moto.create_queue("crm-dlq").await;
    let events = moto.create_queue("events").await;
    kinesis
        .create_stream()
        .stream_name("cdc")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let stream_arn = kinesis
        .describe_stream_summary()
        .stream_name("cdc")
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap()
        .stream_arn;

    // The record on the stream, dead-lettered by cdc-ingest (its wire shape: the shard in Lambda's event id).
    let put = kinesis
        .put_record()
        .stream_name("cdc")
        .partition_key("public.customer.46")
        .data(aws_sdk_kinesis::primitives::Blob::new(RECORD))
        .send()
        .await
        .unwrap();
    let (shard, seq) = (put.shard_id, put.sequence_number);
    let cdc_letter = format!(
        r#"{{"function":"cdc-ingest","reason":"Reltio refused the change (400)","table":"public.customer","key":"46","sequenceNumber":"{seq}","partitionKey":"public.customer.46","eventSourceArn":"{stream_arn}","eventId":"{shard}:{seq}","failedAt":"2026-12-07T20:00:00Z","record":{RECORD}}}"#
    );
    // The event, dead-lettered by crm-updater through the runner.
    let crm_letter = format!(
        r#"{{"function":"crm-updater","reason":"FIELD_CUSTOM_VALIDATION_EXCEPTION on FirstName","attempts":3,"failedAt":"2026-12-07T20:00:00Z","messageId":"m-1","eventId":"e-1","entityUri":"entities/A","event":{EVENT}}}"#
    );
    for (url, body) in [(&cdc_dlq, &cdc_letter), (&crm_dlq, &crm_letter)] {
        sqs.send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let cli = Cli {
        moto: &moto,
        outputs: [
            format!("CdcDeadLetterQueueUrl={cdc_dlq}"),
            format!("CrmDeadLetterQueueUrl={crm_dlq}"),
            format!("EventQueueUrl={events}"),
            format!("CdcStreamArn={stream_arn}"),
        ]
        .into_iter()
        .flat_map(|o| ["--set".to_owned(), o])
        .collect(),
    };

    // Listed (exit 1: there are findings) with their reasons; shown in full.
    let listing = cli.json(&["dlq", "list"], 1);
    assert_eq!(
        depths(&listing),
        [("cdc".into(), 1), ("crm".into(), 1)],
        "{listing}"
    );
    assert_eq!(
        listing[1]["reasons"][0]["reason"],
        "FIELD_CUSTOM_VALIDATION_EXCEPTION on FirstName"
    );
    let shown = cli.json(&["dlq", "show", "crm"], 0);
    assert_eq!(
        shown["reason"],
        "FIELD_CUSTOM_VALIDATION_EXCEPTION on FirstName"
    );
    assert_eq!(shown["body"]["eventId"], "e-1");
    let shown = cli.json(&["dlq", "show", "cdc", "--fetch"], 0);
    assert_eq!(
        shown["fetched"], "nothing to fetch: the message holds its payload",
        "{shown}"
    );

    // A dry run plans the record and puts nothing.
    let dry = cli.json(&["dlq", "redrive", "cdc", "--dry-run"], 0);
    assert_eq!(dry["planned"][0]["namedRecords"], 1, "{dry}");
    assert_eq!(dry["redriven"], 0);

    // The record goes back on the stream byte for byte, and its letter is deleted.
    let cdc = cli.json(&["dlq", "redrive", "cdc"], 0);
    assert_eq!(
        (&cdc["redriven"], &cdc["recordsPut"], &cdc["failed"]),
        (&Value::from(1), &Value::from(1), &Value::Array(vec![])),
        "{cdc}"
    );
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name("cdc")
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap()
        .records;
    assert_eq!(records.len(), 2, "the original and its redrive");
    assert_eq!(records[1].partition_key(), Some("public.customer.46"));
    assert_eq!(
        std::str::from_utf8(records[1].data.as_ref()).unwrap(),
        RECORD
    );

    // The event goes back on its queue byte for byte, with its id, and its letter is deleted.
    let crm = cli.json(&["dlq", "redrive", "crm"], 0);
    assert_eq!(
        (&crm["redriven"], &crm["recordsPut"]),
        (&1.into(), &1.into())
    );
    let sent = moto.drain_queue(&events).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body(), Some(EVENT));
    let attribute = |name: &str| {
        sent[0]
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_owned)
    };
    assert_eq!(attribute("eventId").as_deref(), Some("e-1"));
    assert_eq!(attribute("entityType").as_deref(), Some("Individual"));

    // Nothing left: exit 0.
    let listing = cli.json(&["dlq", "list"], 0);
    assert_eq!(
        depths(&listing),
        [("cdc".into(), 0), ("crm".into(), 0)],
        "{listing}"
    );
}

/// A dead letter as the batch runner writes one whose payload did not fit: the payload stored in the letter store
/// (through the functions' own S3 adapter), the letter pointing at it.
async fn stored_letter(store: &S3LetterStore, letter: DeadLetter) -> String {
    let object = letter.payload_object().unwrap();
    let at = store.put(&object).await.unwrap();
    let pointing = letter.with_payload_stored(&at.bucket, &object);
    let message = pointing.to_message(false);
    assert!(message.size() <= 256 * 1024);
    message.body
}

#[tokio::test]
async fn dlq_show_and_redrive_follow_a_letters_pointer_into_the_letter_store() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let sqs = moto.sqs().await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    moto.create_bucket("letters").await;
    let s3 = mdm_sync_adapters::s3::client(&sdk);
    let store = S3LetterStore::new(s3.clone(), "letters");
    let crm_dlq = moto.create_queue("crm-dlq").await;
    let cdc_dlq = moto.create_queue("cdc-dlq").await;
    // The event queue takes 1 MiB messages, as the template's does.
    let events = sqs
        .create_queue()
        .queue_name("events")
        .attributes(QueueAttributeName::MaximumMessageSize, "1048576")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    kinesis
        .create_stream()
        .stream_name("cdc")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let stream_arn = kinesis
        .describe_stream_summary()
        .stream_name("cdc")
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap()
        .stream_arn;

    // A 900 KB malformed message crm-updater gave up on (the case once dead-lettered with `event: null`), and a
    // second one whose stored object was altered since.
    let malformed = format!(
        r#"{{"type":"ENTITY_CHANGED", "object":{{"uri":"entities/A","attributes":{{"Notes":[{{"value":"é{}"#,
        "n".repeat(900 * 1024)
    );
    let queued = |id: &str, body: &str| DeadLetter {
        function: "crm-updater".into(),
        reason: "not a Reltio event".into(),
        attempts: Some(1),
        failed_at: Some("2026-12-07T20:00:00Z".into()),
        origin: Origin::Queue {
            message_id: format!("m-{id}"),
        },
        context: LetterContext {
            event_id: Some(format!("e-{id}")),
            ..LetterContext::default()
        },
        payload: Payload::of(body.as_bytes()),
    };
    let good = stored_letter(&store, queued("900", &malformed)).await;
    let altered_body = format!("{malformed} and more");
    let altered = stored_letter(&store, queued("altered", &altered_body)).await;
    let altered_key = DeadLetter::parse(&altered)
        .unwrap()
        .stored_payload()
        .unwrap()
        .1
        .to_owned();
    s3.put_object()
        .bucket("letters")
        .key(&altered_key)
        .body(ByteStream::from(
            altered_body.replace('n', "m").into_bytes(),
        ))
        .send()
        .await
        .unwrap();
    // An oversized CDC record (a DMS row with a large column), past the stream's retention: only the store has it.
    let record = format!(
        r#"{{"data":{{"id":46,"notes":"{}"}},"metadata":{{"operation":"update","table-name":"customer","schema-name":"public"}}}}"#,
        "z".repeat(900 * 1024)
    );
    let cdc = stored_letter(
        &store,
        DeadLetter {
            function: "cdc-ingest".into(),
            reason: "Reltio refused the change (400)".into(),
            attempts: None,
            failed_at: Some("2026-12-07T20:00:00Z".into()),
            origin: Origin::Kinesis {
                stream_arn: Some(stream_arn.clone()),
                shard_id: Some("shardId-000000000000".into()),
                sequence_number: "49590338271490256608559692538361571095921575989136588001".into(),
                partition_key: "public.customer.46".into(),
            },
            context: LetterContext {
                table: Some("public.customer".into()),
                key: Some("46".into()),
                ..LetterContext::default()
            },
            payload: Payload::of(record.as_bytes()),
        },
    )
    .await;
    for (url, body) in [(&crm_dlq, &good), (&crm_dlq, &altered), (&cdc_dlq, &cdc)] {
        sqs.send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let cli = Cli {
        moto: &moto,
        outputs: [
            format!("CrmDeadLetterQueueUrl={crm_dlq}"),
            format!("CdcDeadLetterQueueUrl={cdc_dlq}"),
            format!("EventQueueUrl={events}"),
            format!("CdcStreamArn={stream_arn}"),
        ]
        .into_iter()
        .flat_map(|o| ["--set".to_owned(), o])
        .collect(),
    };

    // Shown with the payload read back from the store.
    let shown = cli.json(
        &[
            "dlq",
            "show",
            "crm",
            "--message-id",
            &message_id(&sqs, &crm_dlq, "m-900").await,
        ],
        0,
    );
    assert!(
        shown["fetched"]["from"]
            .as_str()
            .unwrap()
            .starts_with("s3://letters/crm-updater/2026/12/07/"),
        "{}",
        shown["fetched"]["from"]
    );
    assert_eq!(shown["fetched"]["payload"], malformed.as_str());
    assert!(
        shown["body"]["event"].is_null(),
        "the letter itself holds no event"
    );
    let shown = cli.json(&["dlq", "show", "cdc"], 0);
    assert_eq!(shown["fetched"]["payload"]["data"]["id"], 46);

    // Redriven byte for byte; the altered one is refused, and stays.
    let crm = cli.json(&["dlq", "redrive", "crm"], 1);
    assert_eq!(
        (&crm["redriven"], &crm["recordsPut"]),
        (&1.into(), &1.into()),
        "{crm}"
    );
    let failed = crm["failed"].to_string();
    assert!(
        failed.contains("SHA-256") && failed.contains(&altered_key),
        "{failed}"
    );
    let sent = moto.drain_queue(&events).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body(), Some(malformed.as_str()));
    let event_id = sent[0]
        .message_attributes()
        .and_then(|a| a.get("eventId"))
        .and_then(|v| v.string_value());
    assert_eq!(event_id, Some("e-900"));

    let redriven = cli.json(&["dlq", "redrive", "cdc", "--range-only"], 0);
    assert_eq!(redriven["recordsPut"], 1, "{redriven}");
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name("cdc")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap()
        .records;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].partition_key(), Some("public.customer.46"));
    assert_eq!(records[0].data.as_ref(), record.as_bytes());

    let listing = cli.json(&["dlq", "list"], 1);
    assert_eq!(
        depths(&listing),
        [("cdc".into(), 0), ("crm".into(), 1)],
        "{listing}"
    );
}

/// The SQS message id of the letter for input `letter_message_id`.
async fn message_id(sqs: &aws_sdk_sqs::Client, url: &str, letter_message_id: &str) -> String {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .find(|m| {
            m.body()
                .is_some_and(|b| b.contains(&format!("\"messageId\":\"{letter_message_id}\"")))
        })
        .and_then(|m| m.message_id())
        .unwrap()
        .to_owned()
}

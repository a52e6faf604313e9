//! `mdm-sync dlq` against moto_server: dead letters listed, shown and redriven by the CLI binary, the redriven
//! record and event put back exactly as their letters hold them (numbers no f64 holds keep their digits).

use aws_sdk_kinesis::types::ShardIteratorType;
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

//! Test support shared by the workspace's tests: a `moto_server` on a free loopback port (AWS emulator),
//! SDK configuration pointed at it, builders for Lambda events, and in-memory fakes of the domain's ports.

pub mod fakes;
pub mod reltio_stream;
pub mod runtime;

use base64::Engine;
use serde_json::{json, Value};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `moto_server` process on 127.0.0.1, stopped when dropped.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts `moto_server` from `$MOTO_SERVER`, else `tools/moto-server` (the `.venv`'s moto with atomic DynamoDB
    /// requests; `make test` creates the `.venv`).
    pub fn start() -> MotoServer {
        let binary = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("tools/moto-server"));
        assert!(
            binary.exists(),
            "moto_server not found at {}: run `make test` (it installs it into .venv) or set MOTO_SERVER",
            binary.display()
        );
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let mut server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening: run `make tools` to install moto",
                    binary.display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// SDK configuration for the emulator: fixed test credentials, `us-east-1`.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    pub async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
    }

    /// Creates a queue (FIFO when the name ends in `.fifo`) and returns its URL.
    pub async fn create_queue(&self, name: &str) -> String {
        let mut req = self.sqs().await.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        req.send().await.expect("create queue").queue_url.unwrap()
    }

    /// Creates a secret holding `value` as its string and returns its ARN.
    pub async fn create_secret(&self, name: &str, value: &Value) -> String {
        self.secrets()
            .await
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .expect("create secret")
            .arn
            .unwrap()
    }

    /// Every message now on the queue (received, then deleted), in receive order.
    pub async fn drain_queue(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let sqs = self.sqs().await;
        let mut all = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return all;
            }
            for m in &batch {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .expect("delete");
            }
            all.extend(batch);
        }
    }
}

/// moto reads no signature, but serves S3 objects only to a request that carries one.
const MOTO_S3_AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

/// moto's S3 over plain HTTP (path style) and Firehose delivering to it: enough to land change records and read
/// them back without building the S3 SDK for the tests.
impl MotoServer {
    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Every object under `prefix`, concatenated in key order.
    pub async fn objects_text(&self, bucket: &str, prefix: &str) -> String {
        let http = reqwest::Client::new();
        let list = http
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await
            .expect("list objects")
            .text()
            .await
            .expect("list objects");
        let mut keys: Vec<&str> = list
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .collect();
        keys.sort();
        let mut text = String::new();
        for key in keys {
            let body = http
                .get(format!("{}/{bucket}/{key}", self.endpoint))
                .header("authorization", MOTO_S3_AUTH)
                .send()
                .await
                .expect("get object");
            text.push_str(&body.text().await.expect("object body"));
        }
        text
    }

    /// A Firehose delivery stream writing to `bucket` under `prefix` (moto: one object per `PutRecordBatch`).
    pub async fn create_delivery_stream(&self, name: &str, bucket: &str, prefix: &str) {
        let firehose = aws_sdk_firehose::Client::new(&self.sdk_config().await);
        firehose
            .create_delivery_stream()
            .delivery_stream_name(name)
            .extended_s3_destination_configuration(
                aws_sdk_firehose::types::ExtendedS3DestinationConfiguration::builder()
                    .role_arn("arn:aws:iam::123456789012:role/firehose")
                    .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                    .prefix(prefix)
                    .build()
                    .expect("destination"),
            )
            .send()
            .await
            .expect("create delivery stream");
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Kinesis event (as Lambda delivers it) holding `records` as `(partition key, data)` pairs, with
/// increasing sequence numbers `4959...0001`, `...0002`, ...
pub fn kinesis_event(records: &[(&str, &[u8])]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, (key, data))| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": sequence_number(i),
                    "data": b64.encode(data),
                    "approximateArrivalTimestamp": 1722214697.983
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{}", sequence_number(i)),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/cdc-ingest",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/dms-cdc"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// One record of [`kafka_event`].
#[derive(Debug, Clone, Default)]
pub struct KafkaTestRecord<'a> {
    pub topic: &'a str,
    pub partition: i64,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// `None`: a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

/// A self-managed Kafka event as Lambda delivers it: records grouped under `<topic>-<partition>`, key and value
/// base64, headers as one-entry maps of signed bytes, timestamps in milliseconds.
pub fn kafka_event(records: &[KafkaTestRecord]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut groups = serde_json::Map::new();
    for r in records {
        let headers: Vec<Value> = r
            .headers
            .iter()
            .map(|(name, bytes)| {
                let signed: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
                json!({ *name: signed })
            })
            .collect();
        let record = json!({
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": 1_722_214_697_983i64,
            "timestampType": "CREATE_TIME",
            "key": r.key.map(|k| b64.encode(k)),
            "value": r.value.map(|v| b64.encode(v)),
            "headers": headers,
        });
        groups
            .entry(format!("{}-{}", r.topic, r.partition))
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("an array")
            .push(record);
    }
    json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "b-1.kafka.example.com:9092",
        "records": groups,
    })
}

/// The sequence number `kinesis_event` gives to the record at `index`.
pub fn sequence_number(index: usize) -> String {
    format!(
        "49590338271490256608559692538361571095921575989136588{:03}",
        index + 1
    )
}

impl MotoServer {
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    /// Creates an on-demand table with a String partition key `pk` (the sync-state ledger's layout).
    pub async fn create_ledger_table(&self, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        self.dynamodb()
            .await
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create table");
    }
}

/// `(message id, body, string message attributes)` for [`sqs_event`].
pub type SqsTestMessage<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// An SQS Lambda event (as JSON) whose messages carry `(message id, body, message attributes)`; the queue
/// is FIFO when `queue_arn` ends in `.fifo`.
pub fn sqs_event(queue_arn: &str, messages: &[SqsTestMessage]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body, attrs)| {
            let attributes: serde_json::Map<String, Value> = attrs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        json!({"stringValue": v, "stringListValues": [], "binaryListValues": [], "dataType": "String"}),
                    )
                })
                .collect();
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": attributes,
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

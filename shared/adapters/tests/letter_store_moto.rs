//! The letter store (S3) against a local moto_server: a dead letter's 900 KB payload is stored byte for byte under
//! its key with its content type and SHA-256 checksum, storing it again is the same single object, and a bucket
//! that is not there is a refusal the runner retries.

use aws_sdk_s3::types::ChecksumMode;
use mdm_sync_adapters::s3::{client, S3LetterStore};
use mdm_sync_domain::letter::{DeadLetter, LetterContext, Origin, Payload};
use mdm_sync_domain::ports::{PayloadStore, PortError};
use mdm_sync_testkit::MotoServer;

fn letter(body: &str) -> DeadLetter {
    DeadLetter {
        function: "crm-updater".into(),
        reason: "not a Reltio event".into(),
        attempts: Some(1),
        failed_at: Some("2026-12-07T20:00:00Z".into()),
        origin: Origin::Queue {
            message_id: "m-1".into(),
        },
        context: LetterContext::default(),
        payload: Payload::of(body.as_bytes()),
    }
}

#[tokio::test]
async fn a_payload_is_stored_byte_for_byte_once_under_its_key() {
    let moto = MotoServer::start();
    moto.create_bucket("letters").await;
    let s3 = client(&moto.sdk_config().await);
    let store = S3LetterStore::new(s3.clone(), "letters");
    // A malformed message of 900 KB (cut off: no JSON), with bytes that are not ASCII.
    let body = format!(
        "{{\"type\":\"ENTITY_CHANGED\",\"notes\":\"é{}",
        "x".repeat(900 * 1024)
    );
    let object = letter(&body).payload_object().unwrap();

    let stored = store.put(&object).await.unwrap();
    assert_eq!(
        (stored.bucket.as_str(), stored.key.as_str()),
        ("letters", object.key.as_str())
    );
    assert!(
        stored.key.starts_with("crm-updater/2026/12/07/"),
        "{}",
        stored.key
    );
    let got = s3
        .get_object()
        .bucket("letters")
        .key(&object.key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain; charset=utf-8"));
    let sha256 = got
        .checksum_sha256()
        .map(str::to_owned)
        .expect("a SHA-256 checksum");
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(bytes.as_ref(), body.as_bytes(), "the message body exactly");
    use base64::Engine;
    let hex: String = base64::engine::general_purpose::STANDARD
        .decode(sha256)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex, object.sha256,
        "S3 keeps the letter's SHA-256 as its checksum"
    );

    // The same payload again (a redelivered record dead-lettered twice): the same single object.
    store.put(&object).await.unwrap();
    let listed = s3.list_objects_v2().bucket("letters").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(1));
}

#[tokio::test]
async fn a_bucket_that_is_not_there_is_refused_not_dropped() {
    let moto = MotoServer::start();
    let store = S3LetterStore::new(client(&moto.sdk_config().await), "no-such-letters");
    let object = letter("{\"big\":1}").payload_object().unwrap();
    match store.put(&object).await {
        Err(PortError::Rejected(why)) => {
            assert!(
                why.contains("NoSuchBucket") && why.contains("s3://no-such-letters/"),
                "{why}"
            );
            assert!(!why.contains("\"big\""), "no payload in the error: {why}");
        }
        other => panic!("{other:?}"),
    }
}

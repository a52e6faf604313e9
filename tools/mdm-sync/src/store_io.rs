//! The letter store for `dlq show` and `dlq redrive`: a dead letter whose payload was too large for its queue
//! points at an object in the stack's letter store (S3). The object is read with the operator's own credentials
//! and checked against the letter's size and SHA-256 before anything is shown or redriven: a payload that does not
//! match is an error, never redriven. Every other letter passes through as it is.

use crate::error::CliError;
use crate::letters::Letter;
use futures::future::BoxFuture;

/// Where stored payloads are read from (S3 in use; a fake in tests).
pub trait Objects: Sync {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str)
        -> BoxFuture<'a, Result<Vec<u8>, CliError>>;
}

/// The letter store on S3, read with `GetObject`.
pub struct S3Objects(aws_sdk_s3::Client);

impl S3Objects {
    pub fn new(sdk: &aws_config::SdkConfig) -> S3Objects {
        S3Objects(mdm_sync_adapters::s3::client(sdk))
    }
}

impl Objects for S3Objects {
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, CliError>> {
        Box::pin(async move {
            let what = format!("reading s3://{bucket}/{key}");
            let out = self
                .0
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| CliError::aws(&what, e))?;
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| CliError::aws(&what, e))?;
            Ok(body.into_bytes().to_vec())
        })
    }
}

/// The letter with its payload read back from the letter store, when it points there (the store's bucket and key,
/// so that the caller can say where it came from); any other letter as it is.
pub async fn resolve(
    letter: Letter,
    objects: &dyn Objects,
) -> Result<(Letter, Option<String>), CliError> {
    let Letter::Dead(d) = &letter else {
        return Ok((letter, None));
    };
    let Some((bucket, key)) = d.stored_payload() else {
        return Ok((letter, None));
    };
    let at = format!("s3://{bucket}/{key}");
    let bytes = objects.get(bucket, key).await?;
    let restored = d
        .restored(&bytes)
        .map_err(|e| CliError::Failed(format!("{at}: {e}: not shown, not redriven")))?;
    Ok((Letter::Dead(Box::new(restored)), Some(at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letters::{read, Role};
    use mdm_sync_domain::letter::{DeadLetter, LetterContext, Origin, Payload};
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Objects by `bucket/key`; records every read.
    #[derive(Default)]
    struct Fake {
        objects: HashMap<String, Vec<u8>>,
        reads: Mutex<Vec<String>>,
    }

    impl Objects for Fake {
        fn get<'a>(
            &'a self,
            bucket: &'a str,
            key: &'a str,
        ) -> BoxFuture<'a, Result<Vec<u8>, CliError>> {
            let path = format!("{bucket}/{key}");
            self.reads.lock().unwrap().push(path.clone());
            let found = self
                .objects
                .get(&path)
                .cloned()
                .ok_or_else(|| CliError::Failed(format!("reading s3://{path}: NoSuchKey")));
            Box::pin(async move { found })
        }
    }

    fn queued(body: &str) -> DeadLetter {
        DeadLetter {
            function: "crm-updater".into(),
            reason: "not a Reltio event".into(),
            attempts: Some(1),
            failed_at: Some("2026-12-07T20:00:00Z".into()),
            origin: Origin::Queue {
                message_id: "m-1".into(),
            },
            context: LetterContext {
                event_id: Some("e-1".into()),
                ..LetterContext::default()
            },
            payload: Payload::of(body.as_bytes()),
        }
    }

    /// The letter as its queue holds it, its payload in the store, and a fake store holding `stored` there.
    fn stored(body: &str, stored: &[u8]) -> (String, Fake) {
        let letter = queued(body);
        let object = letter.payload_object().unwrap();
        let mut fake = Fake::default();
        fake.objects
            .insert(format!("letters/{}", object.key), stored.to_vec());
        (
            letter.with_payload_stored("letters", &object).to_json(),
            fake,
        )
    }

    #[tokio::test]
    async fn a_letter_pointing_into_the_store_gets_its_payload_back_exactly() {
        let body = format!(
            "{{\"type\":\"ENTITY_CHANGED\",\"n\":\"{}",
            "x".repeat(900 * 1024)
        );
        let (text, fake) = stored(&body, body.as_bytes());
        // Read off its queue, the letter names no event of its own (`event: null`), yet it is no loss.
        let letter = read(Role::Crm, &text, |_| None);
        assert!(matches!(letter, Letter::Dead(_)), "{letter:?}");
        assert!(letter.queued_event().is_none());
        let (letter, from) = resolve(letter, &fake).await.unwrap();
        assert_eq!(
            from.as_deref()
                .map(|f| f.starts_with("s3://letters/crm-updater/2026/12/07/")),
            Some(true)
        );
        let event = letter.queued_event().unwrap();
        assert_eq!((event.id, event.text), ("e-1", body.as_str()));
    }

    #[tokio::test]
    async fn a_stored_payload_that_does_not_match_its_letter_is_an_error() {
        let body = format!(
            "{{\"type\":\"ENTITY_CHANGED\",\"n\":\"{}",
            "x".repeat(300_000)
        );
        let mut altered = body.clone().into_bytes();
        altered[20] = b'X';
        let (text, fake) = stored(&body, &altered);
        let err = resolve(read(Role::Crm, &text, |_| None), &fake)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SHA-256") && err.contains("not redriven"),
            "{err}"
        );
        let (text, fake) = stored(&body, &body.as_bytes()[..1000]);
        let err = resolve(read(Role::Crm, &text, |_| None), &fake)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("1000 bytes"), "{err}");
        // Gone from the store: the read's error, not a silent pass.
        let (text, _) = stored(&body, b"");
        assert!(resolve(read(Role::Crm, &text, |_| None), &Fake::default())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn other_letters_are_not_looked_up() {
        let fake = Fake::default();
        let holds = read(Role::Crm, &queued("{\"type\":\"X\"}").to_json(), |_| None);
        let stream = json!({"reason": "r", "partitionKey": "k", "shardId": "shardId-0", "sequenceNumber": "77",
                            "recordOmitted": {"bytes": 1_048_000, "sha256": "ab".repeat(32), "fetch": "the stream"}});
        let stream = read(Role::Cdc, &stream.to_string(), |_| None);
        for letter in [holds, stream, Letter::Unreadable("x".into())] {
            let (same, from) = resolve(letter.clone(), &fake).await.unwrap();
            assert_eq!((same, from), (letter, None));
        }
        assert!(fake.reads.lock().unwrap().is_empty());
    }
}

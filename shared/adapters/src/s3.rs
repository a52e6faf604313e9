//! S3 as the letter store ([`PayloadStore`]): a dead letter's payload too large for its queue, written with
//! `PutObject` under its key, with its content type and its SHA-256 as S3's own checksum (S3 refuses an upload
//! whose bytes do not match it, and keeps the checksum with the object). The bucket encrypts at rest by its
//! default encryption (the template sets it); the functions may only put, each under its own prefix.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use base64::Engine;
use futures::future::BoxFuture;
use mdm_sync_domain::letter::PayloadObject;
use mdm_sync_domain::ports::{PayloadStore, PortError, StoredObject};
use std::sync::Arc;

/// An S3 client for the environment's configuration. An endpoint override (`AWS_ENDPOINT_URL`: moto, the local
/// stack) is addressed by path, as emulators serve buckets; AWS itself by virtual host.
pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The letter store of a function whose `LETTER_STORE_BUCKET` is `bucket`; none without it (the degraded mode:
/// a letter too large for its queue points at its source).
pub fn letter_store(
    bucket: Option<&str>,
    sdk: &aws_config::SdkConfig,
) -> Option<Arc<dyn PayloadStore + Send + Sync>> {
    bucket.map(|b| {
        Arc::new(S3LetterStore::new(client(sdk), b)) as Arc<dyn PayloadStore + Send + Sync>
    })
}

/// The letter store's bucket (`LETTER_STORE_BUCKET`).
pub struct S3LetterStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3LetterStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3LetterStore {
        S3LetterStore {
            client,
            bucket: bucket.into(),
        }
    }
}

impl PayloadStore for S3LetterStore {
    fn put<'a>(
        &'a self,
        object: &'a PayloadObject,
    ) -> BoxFuture<'a, Result<StoredObject, PortError>> {
        Box::pin(async move {
            let mut call = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&object.key)
                .content_type(object.content_type)
                .body(ByteStream::from(object.bytes.clone()));
            // The hash the letter names, as S3's checksum: S3 checks the upload against it (no second pass over
            // the bytes here, and no CRC the SDK would add by default).
            if let Some(sha256) = checksum(&object.sha256) {
                call = call
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .checksum_sha256(sha256);
            }
            match call.send().await {
                Ok(_) => Ok(StoredObject {
                    bucket: self.bucket.clone(),
                    key: object.key.clone(),
                }),
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let why = format!(
                        "storing the payload in s3://{}/{}: {}",
                        self.bucket,
                        object.key,
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    );
                    // A refusal (no access, no such bucket) fails the same way until someone acts; anything else
                    // (throttling, 5xx, a timeout) may pass later. The runner retries the record either way.
                    Err(match status {
                        Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                            PortError::Rejected(why)
                        }
                        _ => PortError::Transient(why),
                    })
                }
            }
        })
    }
}

/// The base64 of a hex SHA-256 (S3's `x-amz-checksum-sha256`); `None` for anything that is not one.
fn checksum(hex: &str) -> Option<String> {
    if hex.len() != 64 {
        return None;
    }
    let digest: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    Some(base64::engine::general_purpose::STANDARD.encode(digest?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hex_sha256_becomes_s3s_base64_checksum() {
        // SHA-256 of "abc".
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            checksum(hex).as_deref(),
            Some("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
        );
        assert_eq!(checksum("abc"), None);
        assert_eq!(checksum(&"zz".repeat(32)), None);
    }
}

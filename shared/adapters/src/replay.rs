//! The webhook replay cache on DynamoDB: one item per delivered event id (`pk`), with a TTL (`expiresAt`).

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use futures::future::BoxFuture;
use mdm_sync_domain::ports::{DeliveredIds, PortError};
use std::time::Duration;

/// Calls in flight at once (a large array body must not open a connection per event).
const MAX_IN_FLIGHT: usize = 4;

pub struct DynamoReplayCache {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl: Duration,
}

impl DynamoReplayCache {
    /// `ttl`: how long an id is remembered (longer than the signed timestamps' tolerance).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, ttl: Duration) -> Self {
        DynamoReplayCache {
            client,
            table: table.into(),
            ttl,
        }
    }

    async fn seen_one(&self, id: &str) -> Result<bool, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let now = chrono::Utc::now().timestamp();
        // TTL deletion lags: an expired item no longer counts.
        Ok(out.item.is_some_and(|item| {
            item.get("expiresAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|at| at > now)
        }))
    }

    async fn remember_one(&self, id: &str) -> Result<(), PortError> {
        let at = chrono::Utc::now().timestamp() + self.ttl.as_secs() as i64;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(id.to_owned()))
            .item("expiresAt", AttributeValue::N(at.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// The table could not be read or written: transient (the caller counts nothing as seen).
fn unavailable<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> PortError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    PortError::Transient(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

impl DeliveredIds for DynamoReplayCache {
    fn seen<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<bool>, PortError>> {
        Box::pin(async move {
            let mut seen = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(MAX_IN_FLIGHT) {
                for r in join_all(chunk.iter().map(|id| self.seen_one(id))).await {
                    seen.push(r?);
                }
            }
            Ok(seen)
        })
    }

    fn remember<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async move {
            for chunk in ids.chunks(MAX_IN_FLIGHT) {
                for r in join_all(chunk.iter().map(|id| self.remember_one(id))).await {
                    r?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdm_sync_testkit::MotoServer;

    #[tokio::test]
    async fn remembered_ids_are_seen_until_they_expire() {
        let moto = MotoServer::start();
        moto.create_ledger_table("replay").await;
        let cache =
            DynamoReplayCache::new(moto.dynamodb().await, "replay", Duration::from_secs(60));
        assert_eq!(cache.seen(&["a", "b"]).await.unwrap(), vec![false, false]);
        cache.remember(&["a"]).await.unwrap();
        assert_eq!(cache.seen(&["a", "b"]).await.unwrap(), vec![true, false]);
        let expired = DynamoReplayCache::new(moto.dynamodb().await, "replay", Duration::ZERO);
        expired.remember(&["c"]).await.unwrap();
        assert_eq!(
            cache.seen(&["c"]).await.unwrap(),
            vec![false],
            "past its TTL"
        );
    }
}

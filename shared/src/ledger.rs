//! The crm-updater's ordering and idempotency ledger: per Reltio entity, the version last applied, the event
//! ids processed and a hash of what was last written. A short lease (conditional write) serialises concurrent
//! invocations working on the same entity; nothing is recorded as applied before the caller says so.

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// DynamoDB could not be reached or failed: always transient.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Go ahead; `last_hash` is the hash of what was last written for this entity.
    Granted { last_hash: Option<String> },
    /// This event id was already applied.
    Duplicate,
    /// A newer version was already applied.
    Stale { applied: i64 },
    /// Another invocation holds the entity's lease: try again later.
    Busy,
}

pub trait Ledger: Send + Sync {
    /// Takes the entity's lease for `owner` unless the event is a duplicate or stale. `version` `None`: the
    /// change carries no order (the current state fetched from Reltio) and is never stale.
    fn claim<'a>(
        &'a self,
        entity: &'a str,
        version: Option<i64>,
        event_id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>>;

    /// Records the event as applied (Salesforce confirmed) and releases the lease. The recorded version is the
    /// highest seen (`None` leaves it unchanged).
    fn commit<'a>(
        &'a self,
        entity: &'a str,
        version: Option<i64>,
        event_id: &'a str,
        hash: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// Releases the lease without recording anything.
    fn release<'a>(
        &'a self,
        entity: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
}

/// Event ids kept per entity (the newest); older duplicates are still caught by the version check.
pub const MAX_EVENT_IDS: usize = 50;

/// The DynamoDB ledger. Table: partition key `pk` (String) = entity URI. Attributes: `ver` (N), `hash` (S),
/// `event_ids` (L of S, newest last), `lease_owner` (S), `lease_until` (N, epoch ms).
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    lease: Duration,
}

impl DynamoLedger {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        lease: Duration,
    ) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
            lease,
        }
    }

    async fn read(
        &self,
        entity: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(entity.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                LedgerError::Unavailable(
                    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
                )
            })?;
        Ok(out.item)
    }

    async fn claim_inner(
        &self,
        entity: &str,
        version: Option<i64>,
        event_id: &str,
        owner: &str,
    ) -> Result<Claim, LedgerError> {
        let item = self.read(entity).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut expected_owner = None;
        let mut seen_version = None;
        if let Some(item) = &item {
            seen_version = num(item, "ver");
            if event_ids(item).iter().any(|e| e == event_id) {
                return Ok(Claim::Duplicate);
            }
            if let (Some(applied), Some(version)) = (num(item, "ver"), version) {
                if applied > version {
                    return Ok(Claim::Stale { applied });
                }
            }
            let lease_owner = item.get("lease_owner").and_then(|v| v.as_s().ok());
            let lease_until = num(item, "lease_until").unwrap_or(0);
            if lease_owner.is_some_and(|o| o != owner) && lease_until > now {
                return Ok(Claim::Busy);
            }
            expected_owner = lease_owner.cloned();
        }
        // Take the lease only if the item is as read (same lease holder, or none): a concurrent claim wins
        // at most once.
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(entity.to_owned()))
            .update_expression("SET lease_owner = :me, lease_until = :until")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(
                ":until",
                AttributeValue::N((now + self.lease.as_millis() as i64).to_string()),
            );
        let lease_condition = match expected_owner {
            Some(o) => {
                req = req.expression_attribute_values(":prev", AttributeValue::S(o));
                "lease_owner = :prev"
            }
            None => "attribute_not_exists(lease_owner)",
        };
        let version_condition = match seen_version {
            Some(v) => {
                req = req.expression_attribute_values(":seen", AttributeValue::N(v.to_string()));
                "ver = :seen"
            }
            None => "attribute_not_exists(ver)",
        };
        req = req.condition_expression(format!("{lease_condition} AND {version_condition}"));
        match req.send().await {
            Ok(_) => Ok(Claim::Granted {
                last_hash: item
                    .as_ref()
                    .and_then(|i| i.get("hash"))
                    .and_then(|v| v.as_s().ok())
                    .cloned(),
            }),
            Err(e) if is_condition_failure(&e) => Ok(Claim::Busy),
            Err(e) => Err(LedgerError::Unavailable(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            )),
        }
    }

    async fn commit_inner(
        &self,
        entity: &str,
        version: Option<i64>,
        event_id: &str,
        hash: &str,
        owner: &str,
    ) -> Result<(), LedgerError> {
        let item = self.read(entity).await?.unwrap_or_default();
        let mut ids = event_ids(&item);
        ids.push(event_id.to_owned());
        if ids.len() > MAX_EVENT_IDS {
            ids.drain(..ids.len() - MAX_EVENT_IDS);
        }
        let applied = match (num(&item, "ver"), version) {
            (Some(a), Some(v)) => Some(a.max(v)),
            (a, v) => a.or(v),
        };
        let mut req = self.client.update_item();
        req = match applied {
            Some(v) => req
                .update_expression(
                    "SET ver = :v, #h = :h, event_ids = :ids REMOVE lease_owner, lease_until",
                )
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
            None => req
                .update_expression("SET #h = :h, event_ids = :ids REMOVE lease_owner, lease_until"),
        };
        req.table_name(&self.table)
            .key("pk", AttributeValue::S(entity.to_owned()))
            .condition_expression("lease_owner = :me")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_values(":h", AttributeValue::S(hash.to_owned()))
            .expression_attribute_values(
                ":ids",
                AttributeValue::L(ids.into_iter().map(AttributeValue::S).collect()),
            )
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .send()
            .await
            .map_err(|e| {
                LedgerError::Unavailable(
                    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
                )
            })?;
        Ok(())
    }

    async fn release_inner(&self, entity: &str, owner: &str) -> Result<(), LedgerError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(entity.to_owned()))
            .update_expression("REMOVE lease_owner, lease_until")
            .condition_expression("lease_owner = :me")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(LedgerError::Unavailable(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            )),
        }
    }
}

fn is_condition_failure<R>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        R,
    >,
) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_conditional_check_failed_exception())
}

fn num(item: &HashMap<String, AttributeValue>, key: &str) -> Option<i64> {
    item.get(key)?.as_n().ok()?.parse().ok()
}

fn event_ids(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    item.get("event_ids")
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

impl Ledger for DynamoLedger {
    fn claim<'a>(
        &'a self,
        entity: &'a str,
        version: Option<i64>,
        event_id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>> {
        Box::pin(self.claim_inner(entity, version, event_id, owner))
    }

    fn commit<'a>(
        &'a self,
        entity: &'a str,
        version: Option<i64>,
        event_id: &'a str,
        hash: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.commit_inner(entity, version, event_id, hash, owner))
    }

    fn release<'a>(
        &'a self,
        entity: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.release_inner(entity, owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdm_sync_testkit::MotoServer;

    #[tokio::test]
    async fn lease_duplicates_and_order_on_dynamodb() {
        let moto = MotoServer::start();
        moto.create_ledger_table("ledger").await;
        let ledger = DynamoLedger::new(moto.dynamodb().await, "ledger", Duration::from_secs(60));
        let e = "entities/E1";

        // Two concurrent claims on a fresh entity: exactly one gets the lease.
        let (a, b) = tokio::join!(
            ledger.claim(e, Some(2), "ev2", "A"),
            ledger.claim(e, Some(2), "ev2b", "B")
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let granted = [&a, &b]
            .iter()
            .filter(|c| matches!(c, Claim::Granted { .. }))
            .count();
        assert_eq!(granted, 1, "{a:?} {b:?}");
        let (winner, loser) = if matches!(a, Claim::Granted { .. }) {
            ("A", "B")
        } else {
            ("B", "A")
        };
        assert_eq!(
            ledger.claim(e, Some(3), "ev3", loser).await.unwrap(),
            Claim::Busy
        );
        let id = if winner == "A" { "ev2" } else { "ev2b" };
        ledger.commit(e, Some(2), id, "h2", winner).await.unwrap();

        assert_eq!(
            ledger.claim(e, Some(5), id, "C").await.unwrap(),
            Claim::Duplicate
        );
        assert_eq!(
            ledger.claim(e, Some(1), "ev1", "C").await.unwrap(),
            Claim::Stale { applied: 2 }
        );
        assert_eq!(
            ledger.claim(e, None, "fetched", "C").await.unwrap(),
            Claim::Granted {
                last_hash: Some("h2".into())
            }
        );
        // Released without recording: the version is unchanged and the event is not a duplicate.
        ledger.release(e, "C").await.unwrap();
        assert!(matches!(
            ledger.claim(e, None, "fetched", "D").await.unwrap(),
            Claim::Granted { .. }
        ));
        ledger.commit(e, None, "fetched", "h3", "D").await.unwrap();
        assert_eq!(
            ledger.claim(e, Some(1), "ev1", "E").await.unwrap(),
            Claim::Stale { applied: 2 }
        );
    }
}

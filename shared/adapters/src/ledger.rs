//! The crm-updater's ordering and idempotency ledger on DynamoDB: the `Ledger` port over one table. Per Reltio
//! entity it keeps what `mdm_sync_domain::ordering::EntityRecord` describes; a short lease (conditional write)
//! serialises concurrent invocations working on the same entity; nothing is recorded as applied before the
//! caller says so. Every item carries a TTL (`expiresAt`).

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;
pub use mdm_sync_domain::ordering::{
    Applied, Claim, EntityRecord, Ledger, LedgerError, Order, Verdict, DEFAULT_RETENTION,
    MAX_EVENT_IDS,
};
use std::collections::HashMap;
use std::time::Duration;

/// The entity's record as read from its DynamoDB item.
fn record_from_item(item: &HashMap<String, AttributeValue>) -> EntityRecord {
    EntityRecord {
        versions: item
            .get("vers")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default(),
        snapshot_time: num(item, "snap"),
        event_ids: strings(item, "event_ids"),
        hash: item.get("hash").and_then(|v| v.as_s().ok()).cloned(),
        merged: strings(item, "merged").into_iter().collect(),
        merged_into: item.get("merged_into").and_then(|v| v.as_s().ok()).cloned(),
        merged_at: num(item, "merged_at"),
    }
}

/// The DynamoDB ledger. Table: partition key `pk` (String) = entity URI. Attributes: `vers` (M: source object
/// URI → N), `snap` (N, epoch ms), `hash` (S), `event_ids` (L of S, newest last), `merged` (L of S), `rev` (N,
/// bumped by every commit and recorded merge), `merged_into` (S) / `merged_at` (N, epoch ms) on a merged loser,
/// `lease_owner` (S), `lease_until` (N, epoch ms), `expiresAt` (N, epoch seconds: the table's TTL attribute).
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    lease: Duration,
    retention: Duration,
}

fn unavailable<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> LedgerError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    LedgerError::Unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

impl DynamoLedger {
    /// `lease`: how long a claim holds the entity; `retention`: how long after its last claim or commit an
    /// entity's record is kept (`expiresAt`).
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        lease: Duration,
        retention: Duration,
    ) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
            lease,
            retention,
        }
    }

    fn expires_at(&self) -> AttributeValue {
        let at = chrono::Utc::now().timestamp() + self.retention.as_secs() as i64;
        AttributeValue::N(at.to_string())
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
            .map_err(unavailable)?;
        Ok(out.item)
    }

    async fn claim_inner(
        &self,
        entity: &str,
        order: &Order,
        event_id: &str,
        owner: &str,
    ) -> Result<Claim, LedgerError> {
        let item = self.read(entity).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let record = item.as_ref().map(record_from_item).unwrap_or_default();
        match record.judge(order, event_id) {
            Verdict::Duplicate => return Ok(Claim::Duplicate),
            Verdict::Stale => return Ok(Claim::Stale),
            Verdict::Fresh => {}
        }
        let mut expected_owner = None;
        let mut seen_rev = None;
        if let Some(item) = &item {
            seen_rev = num(item, "rev");
            let lease_owner = item.get("lease_owner").and_then(|v| v.as_s().ok());
            let lease_until = num(item, "lease_until").unwrap_or(0);
            if lease_owner.is_some_and(|o| o != owner) && lease_until > now {
                return Ok(Claim::Busy);
            }
            expected_owner = lease_owner.cloned();
        }
        // Take the lease only if the item is as read (same lease holder, or none, and no commit since): a
        // concurrent claim wins at most once, and nobody proceeds on a judgement made on an outdated record.
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(entity.to_owned()))
            .update_expression("SET lease_owner = :me, lease_until = :until, #exp = :exp")
            .expression_attribute_names("#exp", "expiresAt")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(
                ":until",
                AttributeValue::N((now + self.lease.as_millis() as i64).to_string()),
            )
            .expression_attribute_values(":exp", self.expires_at());
        let lease_condition = match expected_owner {
            Some(o) => {
                req = req.expression_attribute_values(":prev", AttributeValue::S(o));
                "lease_owner = :prev"
            }
            None => "attribute_not_exists(lease_owner)",
        };
        let rev_condition = match seen_rev {
            Some(v) => {
                req = req.expression_attribute_values(":seen", AttributeValue::N(v.to_string()));
                "#rev = :seen"
            }
            None => "attribute_not_exists(#rev)",
        };
        req = req.condition_expression(format!("{lease_condition} AND {rev_condition}"));
        match req.send().await {
            Ok(_) => Ok(Claim::Granted {
                last_hash: record.hash,
                merged: record.merged,
            }),
            Err(e) if is_condition_failure(&e) => Ok(Claim::Busy),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn commit_inner(
        &self,
        entity: &str,
        applied: Applied<'_>,
        owner: &str,
    ) -> Result<(), LedgerError> {
        // Read under the lease: no other invocation commits meanwhile.
        let item = self.read(entity).await?.unwrap_or_default();
        let record = record_from_item(&item).with(&applied);
        let list =
            |v: Vec<String>| AttributeValue::L(v.into_iter().map(AttributeValue::S).collect());
        let versions = record
            .versions
            .iter()
            .map(|(k, v)| (k.clone(), AttributeValue::N(v.to_string())))
            .collect();
        let mut set = vec![
            "#vers = :vers",
            "#h = :h",
            "event_ids = :ids",
            "#merged = :merged",
            "#rev = if_not_exists(#rev, :zero) + :one",
            "#exp = :exp",
        ];
        let mut req = self.client.update_item();
        if let Some(t) = record.snapshot_time {
            set.push("#snap = :snap");
            req = req
                .expression_attribute_names("#snap", "snap")
                .expression_attribute_values(":snap", AttributeValue::N(t.to_string()));
        }
        req.table_name(&self.table)
            .key("pk", AttributeValue::S(entity.to_owned()))
            .update_expression(format!(
                "SET {} REMOVE lease_owner, lease_until",
                set.join(", ")
            ))
            .condition_expression("lease_owner = :me")
            .expression_attribute_names("#vers", "vers")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_names("#merged", "merged")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_names("#exp", "expiresAt")
            .expression_attribute_values(":vers", AttributeValue::M(versions))
            .expression_attribute_values(":h", AttributeValue::S(applied.hash.to_owned()))
            .expression_attribute_values(":ids", list(record.event_ids))
            .expression_attribute_values(":merged", list(record.merged.into_iter().collect()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":exp", self.expires_at())
            .expression_attribute_values(":me", AttributeValue::S(owner.to_owned()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn record_merge_inner(
        &self,
        loser: &str,
        winner: &str,
        merged_at: i64,
    ) -> Result<(), LedgerError> {
        // Only a later merge replaces a recorded one (a re-delivered or late older merge changes nothing).
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(loser.to_owned()))
            .update_expression(
                "SET merged_into = :w, merged_at = :t, #rev = if_not_exists(#rev, :zero) + :one, \
                 #exp = :exp",
            )
            .condition_expression("attribute_not_exists(merged_at) OR merged_at < :t")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_names("#exp", "expiresAt")
            .expression_attribute_values(":w", AttributeValue::S(winner.to_owned()))
            .expression_attribute_values(":t", AttributeValue::N(merged_at.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":exp", self.expires_at())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
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
            Err(e) => Err(unavailable(e)),
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

fn strings(item: &HashMap<String, AttributeValue>, key: &str) -> Vec<String> {
    item.get(key)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

impl Ledger for DynamoLedger {
    fn claim<'a>(
        &'a self,
        entity: &'a str,
        order: &'a Order,
        event_id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>> {
        Box::pin(self.claim_inner(entity, order, event_id, owner))
    }

    fn commit<'a>(
        &'a self,
        entity: &'a str,
        applied: Applied<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.commit_inner(entity, applied, owner))
    }

    fn record_merge<'a>(
        &'a self,
        loser: &'a str,
        winner: &'a str,
        merged_at: i64,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.record_merge_inner(loser, winner, merged_at))
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
    use mdm_sync_domain::ordering::{Applied, Claim, Order};
    use mdm_sync_testkit::MotoServer;
    use std::collections::BTreeSet;

    fn order(object: &str, version: i64, snapshot_time: Option<i64>) -> Order {
        Order {
            object: Some(object.into()),
            version: Some(version),
            snapshot_time,
        }
    }

    fn applied<'a>(order: &'a Order, event_id: &'a str) -> Applied<'a> {
        Applied {
            order,
            event_id,
            hash: "h",
            merged: &[],
        }
    }

    fn granted(c: &Claim) -> bool {
        matches!(c, Claim::Granted { .. })
    }

    #[tokio::test]
    async fn lease_duplicates_and_order_on_dynamodb() {
        let moto = MotoServer::start();
        moto.create_ledger_table("ledger").await;
        let ledger = DynamoLedger::new(
            moto.dynamodb().await,
            "ledger",
            Duration::from_secs(60),
            DEFAULT_RETENTION,
        );
        let e = "entities/E1";
        let v = |n| order(e, n, None);

        // Two concurrent claims on a fresh entity: exactly one gets the lease.
        let (o2, o2b) = (v(2), v(2));
        let (a, b) = tokio::join!(
            ledger.claim(e, &o2, "ev2", "A"),
            ledger.claim(e, &o2b, "ev2b", "B")
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            [&a, &b].iter().filter(|c| granted(c)).count(),
            1,
            "{a:?} {b:?}"
        );
        let (winner, loser, id) = if granted(&a) {
            ("A", "B", "ev2")
        } else {
            ("B", "A", "ev2b")
        };
        assert_eq!(
            ledger.claim(e, &v(3), "ev3", loser).await.unwrap(),
            Claim::Busy
        );
        let merged = vec!["003L".to_owned()];
        ledger
            .commit(
                e,
                Applied {
                    order: &o2,
                    event_id: id,
                    hash: "h2",
                    merged: &merged,
                },
                winner,
            )
            .await
            .unwrap();

        assert_eq!(
            ledger.claim(e, &v(5), id, "C").await.unwrap(),
            Claim::Duplicate
        );
        assert_eq!(
            ledger.claim(e, &v(1), "ev1", "C").await.unwrap(),
            Claim::Stale
        );
        // Another object's lower version is not compared with E1's.
        assert_eq!(
            ledger
                .claim(e, &order("entities/L", 1, None), "lost", "C")
                .await
                .unwrap(),
            Claim::Granted {
                last_hash: Some("h2".into()),
                merged: BTreeSet::from(["003L".to_owned()]),
            }
        );
        // Released without recording: nothing changed and the event is not a duplicate.
        ledger.release(e, "C").await.unwrap();
        let none = Order::default();
        assert!(granted(&ledger.claim(e, &none, "lost", "D").await.unwrap()));
        ledger.commit(e, applied(&none, "lost"), "D").await.unwrap();
        assert_eq!(
            ledger.claim(e, &v(1), "ev1", "E").await.unwrap(),
            Claim::Stale
        );
    }

    #[tokio::test]
    async fn a_recorded_merge_makes_the_losers_older_snapshots_stale_on_dynamodb() {
        let moto = MotoServer::start();
        moto.create_ledger_table("ledger").await;
        let ledger = DynamoLedger::new(
            moto.dynamodb().await,
            "ledger",
            Duration::from_secs(60),
            DEFAULT_RETENTION,
        );
        let l = "entities/L";
        let snap = |t| order(l, t, Some(t));

        assert!(granted(
            &ledger.claim(l, &snap(500), "e0", "A").await.unwrap()
        ));
        ledger
            .commit(l, applied(&snap(500), "e0"), "A")
            .await
            .unwrap();
        // A loser with no record of its own yet gets one.
        ledger
            .record_merge("entities/M", "entities/W", 2_000)
            .await
            .unwrap();
        let m = ledger.read("entities/M").await.unwrap().unwrap();
        assert_eq!(num(&m, "merged_at"), Some(2_000));
        assert!(m.contains_key("expiresAt"));

        ledger.record_merge(l, "entities/W", 2_000).await.unwrap();
        // An older merge delivered late does not replace the newer one.
        ledger.record_merge(l, "entities/X", 1_000).await.unwrap();
        let item = ledger.read(l).await.unwrap().unwrap();
        let record = record_from_item(&item);
        assert_eq!(record.merged_into.as_deref(), Some("entities/W"));
        assert_eq!(record.merged_at, Some(2_000));
        assert_eq!(num(&item, "rev"), Some(2));

        assert_eq!(
            ledger.claim(l, &snap(1_500), "e1", "B").await.unwrap(),
            Claim::Stale
        );
        assert_eq!(
            ledger.claim(l, &snap(2_000), "e2", "B").await.unwrap(),
            Claim::Stale
        );
        assert!(granted(
            &ledger.claim(l, &snap(2_500), "e3", "B").await.unwrap()
        ));
        // The commit keeps the merge record.
        ledger
            .commit(l, applied(&snap(2_500), "e3"), "B")
            .await
            .unwrap();
        let record = record_from_item(&ledger.read(l).await.unwrap().unwrap());
        assert_eq!(record.merged_at, Some(2_000));
        assert_eq!(record.snapshot_time, Some(2_500));
    }

    #[tokio::test]
    async fn every_claim_and_commit_sets_the_ttl_attribute() {
        let moto = MotoServer::start();
        moto.create_ledger_table("ledger").await;
        let retention = Duration::from_secs(35 * 24 * 3600);
        let ledger = DynamoLedger::new(
            moto.dynamodb().await,
            "ledger",
            Duration::from_secs(60),
            retention,
        );
        let e = "entities/E1";
        let expires = |item: &HashMap<String, AttributeValue>| num(item, "expiresAt").unwrap();
        let o = order(e, 1, Some(1_000));

        let before = chrono::Utc::now().timestamp();
        assert!(granted(&ledger.claim(e, &o, "a", "A").await.unwrap()));
        let claimed = ledger.read(e).await.unwrap().unwrap();
        let after = chrono::Utc::now().timestamp();
        let window = before + retention.as_secs() as i64..=after + retention.as_secs() as i64;
        assert!(window.contains(&expires(&claimed)), "{claimed:?}");

        ledger.commit(e, applied(&o, "a"), "A").await.unwrap();
        let committed = ledger.read(e).await.unwrap().unwrap();
        let after = chrono::Utc::now().timestamp();
        let window = before + retention.as_secs() as i64..=after + retention.as_secs() as i64;
        assert!(window.contains(&expires(&committed)), "{committed:?}");
        assert!(matches!(committed["expiresAt"], AttributeValue::N(_)));
        assert_eq!(num(&committed, "rev"), Some(1));
        assert_eq!(num(&committed, "snap"), Some(1_000));
        assert!(!committed.contains_key("lease_owner"));
    }
}

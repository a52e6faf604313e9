//! The crm-updater's ordering and idempotency ledger on DynamoDB: the `Ledger` port over one table. Per Reltio
//! entity it keeps what `mdm_sync_domain::ordering::EntityRecord` describes; a short lease (conditional write)
//! serialises concurrent invocations working on the same entity, and a merge's claim fences its losers in the
//! same transaction; nothing is recorded as applied before the caller says so. Every item carries a TTL
//! (`expiresAt`).

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use futures::future::BoxFuture;
use mdm_sync_domain::ordering::{Applied, Claim, EntityRecord, Fence, Order, Verdict};
use mdm_sync_domain::ports::{Ledger, PortError};
use std::collections::HashMap;
use std::time::Duration;

/// DynamoDB's limit of items per `TransactWriteItems`.
const MAX_TRANSACTION_ITEMS: usize = 100;

type Item = HashMap<String, AttributeValue>;

/// The entity's record as read from its DynamoDB item.
fn record_from_item(item: &Item) -> EntityRecord {
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
        written: item
            .get("written")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
                    .collect()
            })
            .unwrap_or_default(),
        merged: strings(item, "merged").into_iter().collect(),
        given_up: strings(item, "given_up")
            .into_iter()
            .filter_map(|g| {
                let (record, event) = g.split_once('|')?;
                Some((record.to_owned(), event.to_owned()))
            })
            .collect(),
        merged_into: item.get("merged_into").and_then(|v| v.as_s().ok()).cloned(),
        merged_at: num(item, "merged_at"),
        created: item.get("created").and_then(|v| v.as_s().ok()).cloned(),
    }
}

/// The DynamoDB ledger. Table: partition key `pk` (String) = entity URI. Attributes: `vers` (M: source object
/// URI → N), `snap` (N, epoch ms), `event_ids` (L of S, newest last), `written` (M: record id → S, the hash of
/// the fields last written), `merged` (L of S), `given_up` (L of S `record|event id`, oldest first), `rev` (N,
/// bumped by every commit and fence), `merged_into` (S) / `merged_at` (N, epoch ms) on a merged loser,
/// `created` (S: the Contact Id created for the entity, `create = true`),
/// `lease_owner` (S), `lease_until` (N, epoch ms), `expiresAt` (N, epoch seconds: the table's TTL attribute).
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    lease: Duration,
    retention: Duration,
}

fn unavailable<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> PortError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    PortError::Transient(format!(
        "ledger unavailable: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(e)
    ))
}

/// One conditional update, sent alone (`UpdateItem`) or in a transaction.
struct Write {
    key: String,
    update: String,
    condition: Option<String>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Write {
    fn new(key: &str, update: impl Into<String>) -> Write {
        Write {
            key: key.to_owned(),
            update: update.into(),
            condition: None,
            names: Vec::new(),
            values: Vec::new(),
        }
    }

    fn name(mut self, placeholder: &'static str, attribute: &'static str) -> Write {
        self.names.push((placeholder, attribute));
        self
    }

    fn value(mut self, placeholder: &'static str, value: AttributeValue) -> Write {
        self.values.push((placeholder, value));
        self
    }

    fn condition(mut self, condition: impl Into<String>) -> Write {
        self.condition = Some(condition.into());
        self
    }

    fn into_transaction_item(self, table: &str) -> Result<TransactWriteItem, PortError> {
        let mut b = Update::builder()
            .table_name(table)
            .key("pk", AttributeValue::S(self.key))
            .update_expression(self.update)
            .set_condition_expression(self.condition);
        for (k, v) in self.names {
            b = b.expression_attribute_names(k, v);
        }
        for (k, v) in self.values {
            b = b.expression_attribute_values(k, v);
        }
        let update = b
            .build()
            .map_err(|e| PortError::Transient(format!("ledger unavailable: {e}")))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// How a conditional write ended.
enum Written {
    Done,
    /// A condition did not hold: someone else changed the item (or holds the lease).
    ConditionFailed,
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn list(values: impl IntoIterator<Item = String>) -> AttributeValue {
    AttributeValue::L(values.into_iter().map(AttributeValue::S).collect())
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
        n(chrono::Utc::now().timestamp() + self.retention.as_secs() as i64)
    }

    async fn read(&self, entity: &str) -> Result<Option<Item>, PortError> {
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

    async fn update(&self, w: Write) -> Result<Written, PortError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(w.key))
            .update_expression(w.update)
            .set_condition_expression(w.condition);
        for (k, v) in w.names {
            req = req.expression_attribute_names(k, v);
        }
        for (k, v) in w.values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(Written::Done),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Written::ConditionFailed)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// All of `writes` or none of them.
    async fn transact(&self, writes: Vec<Write>) -> Result<Written, PortError> {
        let items = writes
            .into_iter()
            .map(|w| w.into_transaction_item(&self.table))
            .collect::<Result<Vec<_>, _>>()?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Written::Done),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                Ok(Written::ConditionFailed)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The item's `rev` condition: unchanged since it was read.
    fn unchanged_since_read(w: Write, seen_rev: Option<i64>) -> Write {
        let w = w.name("#rev", "rev");
        match seen_rev {
            Some(v) => w.value(":seen", n(v)),
            None => w,
        }
    }

    async fn claim_inner(
        &self,
        entity: &str,
        order: &Order,
        event_id: &str,
        owner: &str,
        fence: Option<Fence<'_>>,
    ) -> Result<Claim, PortError> {
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
        let mut lease = Write::new(
            entity,
            "SET lease_owner = :me, lease_until = :until, #exp = :exp",
        )
        .name("#exp", "expiresAt")
        .value(":me", AttributeValue::S(owner.to_owned()))
        .value(":until", n(now + self.lease.as_millis() as i64))
        .value(":exp", self.expires_at());
        let lease_condition = match expected_owner {
            Some(o) => {
                lease = lease.value(":prev", AttributeValue::S(o));
                "lease_owner = :prev"
            }
            None => "attribute_not_exists(lease_owner)",
        };
        let rev_condition = if seen_rev.is_some() {
            "#rev = :seen"
        } else {
            "attribute_not_exists(#rev)"
        };
        let lease = Self::unchanged_since_read(lease, seen_rev)
            .condition(format!("{lease_condition} AND {rev_condition}"));

        let mut fences = Vec::new();
        if let Some(fence) = fence {
            for loser in fence.losers.iter().filter(|l| l.as_str() != entity) {
                fences.push(
                    self.fence_write(loser, entity, fence.merged_at, owner, now)
                        .await?,
                );
            }
        }
        let fences: Vec<Write> = fences.into_iter().flatten().collect();
        let written = if fences.is_empty() {
            self.update(lease).await?
        } else {
            // Losers beyond one transaction's capacity are fenced first, each batch all or nothing; the last
            // batch goes with the winner's lease.
            let mut writes = fences;
            while writes.len() >= MAX_TRANSACTION_ITEMS {
                let rest = writes.split_off(MAX_TRANSACTION_ITEMS - 1);
                if let Written::ConditionFailed = self.transact(writes).await? {
                    return Ok(Claim::Busy);
                }
                writes = rest;
            }
            writes.push(lease);
            self.transact(writes).await?
        };
        Ok(match written {
            Written::Done => Claim::Granted(record),
            Written::ConditionFailed => Claim::Busy,
        })
    }

    /// The write that marks `loser` merged into `winner` at `merged_at`, conditioned on the loser's record being
    /// as read and its lease free (or ours); `None` when a merge at or after `merged_at` is already recorded.
    async fn fence_write(
        &self,
        loser: &str,
        winner: &str,
        merged_at: i64,
        owner: &str,
        now: i64,
    ) -> Result<Option<Write>, PortError> {
        let item = self.read(loser).await?;
        let record = item.as_ref().map(record_from_item).unwrap_or_default();
        if !record.needs_fence(merged_at) {
            return Ok(None);
        }
        let seen_rev = item.as_ref().and_then(|i| num(i, "rev"));
        let rev_condition = if seen_rev.is_some() {
            "#rev = :seen"
        } else {
            "attribute_not_exists(#rev)"
        };
        let w = Write::new(
            loser,
            "SET merged_into = :w, merged_at = :t, #rev = if_not_exists(#rev, :zero) + :one, \
             #exp = :exp",
        )
        .name("#exp", "expiresAt")
        .value(":w", AttributeValue::S(winner.to_owned()))
        .value(":t", n(merged_at))
        .value(":zero", n(0))
        .value(":one", n(1))
        .value(":exp", self.expires_at())
        .value(":me", AttributeValue::S(owner.to_owned()))
        .value(":now", n(now));
        Ok(Some(Self::unchanged_since_read(w, seen_rev).condition(
            format!(
                "{rev_condition} AND (attribute_not_exists(lease_owner) OR lease_until < :now OR \
             lease_owner = :me)"
            ),
        )))
    }

    async fn commit_inner(
        &self,
        entity: &str,
        applied: Applied<'_>,
        owner: &str,
    ) -> Result<(), PortError> {
        // Read under the lease: no other invocation commits meanwhile.
        let item = self.read(entity).await?.unwrap_or_default();
        let record = record_from_item(&item).with(&applied);
        let versions = record
            .versions
            .iter()
            .map(|(k, v)| (k.clone(), n(*v)))
            .collect();
        let written = record
            .written
            .iter()
            .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
            .collect();
        let given_up = record.given_up.iter().map(|(r, e)| format!("{r}|{e}"));
        let mut set = vec![
            "#vers = :vers",
            "written = :written",
            "event_ids = :ids",
            "#merged = :merged",
            "given_up = :given_up",
            "#rev = if_not_exists(#rev, :zero) + :one",
            "#exp = :exp",
        ];
        let mut w = Write::new(entity, "")
            .condition("lease_owner = :me")
            .name("#vers", "vers")
            .name("#merged", "merged")
            .name("#rev", "rev")
            .name("#exp", "expiresAt")
            .value(":vers", AttributeValue::M(versions))
            .value(":written", AttributeValue::M(written))
            .value(":ids", list(record.event_ids))
            .value(":merged", list(record.merged))
            .value(":given_up", list(given_up))
            .value(":zero", n(0))
            .value(":one", n(1))
            .value(":exp", self.expires_at())
            .value(":me", AttributeValue::S(owner.to_owned()));
        if let Some(id) = &record.created {
            set.push("created = :created");
            w = w.value(":created", AttributeValue::S(id.clone()));
        }
        if let Some(t) = record.snapshot_time {
            set.push("#snap = :snap");
            w = w.name("#snap", "snap").value(":snap", n(t));
        }
        w.update = format!("SET {} REMOVE lease_owner, lease_until", set.join(", "));
        match self.update(w).await? {
            Written::Done => Ok(()),
            Written::ConditionFailed => Err(PortError::Transient(
                "the entity's lease was lost before the commit".into(),
            )),
        }
    }

    async fn release_inner(&self, entity: &str, owner: &str) -> Result<(), PortError> {
        let w = Write::new(entity, "REMOVE lease_owner, lease_until")
            .condition("lease_owner = :me")
            .value(":me", AttributeValue::S(owner.to_owned()));
        self.update(w).await.map(|_| ())
    }
}

fn num(item: &Item, key: &str) -> Option<i64> {
    item.get(key)?.as_n().ok()?.parse().ok()
}

fn strings(item: &Item, key: &str) -> Vec<String> {
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
        fence: Option<Fence<'a>>,
    ) -> BoxFuture<'a, Result<Claim, PortError>> {
        Box::pin(self.claim_inner(entity, order, event_id, owner, fence))
    }

    fn commit<'a>(
        &'a self,
        entity: &'a str,
        applied: Applied<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(self.commit_inner(entity, applied, owner))
    }

    fn release<'a>(
        &'a self,
        entity: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(self.release_inner(entity, owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdm_sync_domain::ordering::DEFAULT_RETENTION;
    use mdm_sync_testkit::MotoServer;

    fn order(object: &str, version: i64, snapshot_time: Option<i64>) -> Order {
        Order {
            object: Some(object.into()),
            version: Some(version),
            snapshot_time,
        }
    }

    fn applied<'a>(order: &'a Order, event_id: &'a str) -> Applied<'a> {
        Applied {
            complete: true,
            order: Some(order),
            ..Applied::nothing(event_id)
        }
    }

    fn granted(c: &Claim) -> bool {
        matches!(c, Claim::Granted(_))
    }

    async fn ledger(moto: &MotoServer) -> DynamoLedger {
        moto.create_ledger_table("ledger").await;
        DynamoLedger::new(
            moto.dynamodb().await,
            "ledger",
            Duration::from_secs(60),
            DEFAULT_RETENTION,
        )
    }

    #[tokio::test]
    async fn lease_duplicates_and_order_on_dynamodb() {
        let moto = MotoServer::start();
        let ledger = ledger(&moto).await;
        let e = "entities/E1";
        let v = |n| order(e, n, None);

        // Two concurrent claims on a fresh entity: exactly one gets the lease.
        let (o2, o2b) = (v(2), v(2));
        let (a, b) = tokio::join!(
            ledger.claim(e, &o2, "ev2", "A", None),
            ledger.claim(e, &o2b, "ev2b", "B", None)
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
            ledger.claim(e, &v(3), "ev3", loser, None).await.unwrap(),
            Claim::Busy
        );
        let merged = vec!["003L".to_owned()];
        let written = vec![("003W".to_owned(), "h2".to_owned())];
        ledger
            .commit(
                e,
                Applied {
                    merged: &merged,
                    written: &written,
                    ..applied(&o2, id)
                },
                winner,
            )
            .await
            .unwrap();

        assert_eq!(
            ledger.claim(e, &v(5), id, "C", None).await.unwrap(),
            Claim::Duplicate
        );
        assert_eq!(
            ledger.claim(e, &v(1), "ev1", "C", None).await.unwrap(),
            Claim::Stale
        );
        // Another object's lower version is not compared with E1's; the claim carries what was applied.
        let Claim::Granted(record) = ledger
            .claim(e, &order("entities/L", 1, None), "lost", "C", None)
            .await
            .unwrap()
        else {
            panic!("granted")
        };
        assert!(record.unchanged("003W", "h2"));
        assert!(record.merged.contains("003L"));
        // Released without recording: nothing changed and the event is not a duplicate.
        ledger.release(e, "C").await.unwrap();
        let none = Order::default();
        assert!(granted(
            &ledger.claim(e, &none, "lost", "D", None).await.unwrap()
        ));
        ledger.commit(e, applied(&none, "lost"), "D").await.unwrap();
        assert_eq!(
            ledger.claim(e, &v(1), "ev1", "E", None).await.unwrap(),
            Claim::Stale
        );
    }

    #[tokio::test]
    async fn a_change_applied_in_part_keeps_its_steps_and_order_but_not_its_event_id() {
        let moto = MotoServer::start();
        let ledger = ledger(&moto).await;
        let e = "entities/W";
        let o = order(e, 3, Some(3_000));
        assert!(granted(
            &ledger.claim(e, &o, "merge", "A", None).await.unwrap()
        ));
        let written = vec![("003W".to_owned(), "h".to_owned())];
        let given_up = vec!["500X".to_owned()];
        ledger
            .commit(
                e,
                Applied {
                    complete: false,
                    order: Some(&o),
                    written: &written,
                    given_up: &given_up,
                    created: Some("003W"),
                    ..Applied::nothing("merge")
                },
                "A",
            )
            .await
            .unwrap();
        // The same event again (a redrive) is not a duplicate; it sees what was done and given up, and the
        // Contact it created.
        let Claim::Granted(record) = ledger.claim(e, &o, "merge", "B", None).await.unwrap() else {
            panic!("granted")
        };
        assert!(record.unchanged("003W", "h"));
        assert_eq!(record.created.as_deref(), Some("003W"));
        assert_eq!(
            record.given_up,
            vec![("500X".to_owned(), "merge".to_owned())]
        );
        assert!(record.given_up_by_other("500X", "later"));
        ledger.release(e, "B").await.unwrap();
        // An older change is stale.
        assert_eq!(
            ledger
                .claim(e, &order(e, 2, Some(2_000)), "old", "C", None)
                .await
                .unwrap(),
            Claim::Stale
        );
    }

    #[tokio::test]
    async fn a_merge_claim_fences_its_losers_unless_one_is_leased_elsewhere() {
        let moto = MotoServer::start();
        let ledger = ledger(&moto).await;
        let (w, l1, l2) = ("entities/W", "entities/L1", "entities/L2");
        let losers = vec![l1.to_owned(), l2.to_owned()];
        let fence = Fence {
            losers: &losers,
            merged_at: 5_000,
        };
        let merge = order(w, 9, Some(9_000));

        // L1's older change holds L1's lease: the merge must wait (nothing is fenced meanwhile).
        let l1_old = order(l1, 1, Some(4_000));
        assert!(granted(
            &ledger
                .claim(l1, &l1_old, "l1-old", "X", None)
                .await
                .unwrap()
        ));
        assert_eq!(
            ledger
                .claim(w, &merge, "merge", "M", Some(fence))
                .await
                .unwrap(),
            Claim::Busy
        );
        assert!(ledger.read(l2).await.unwrap().is_none(), "all or nothing");
        assert!(ledger
            .read(w)
            .await
            .unwrap()
            .is_none_or(|item| !item.contains_key("lease_owner")));

        // Once L1's change is committed, the merge claims W and fences both losers in one transaction.
        ledger
            .commit(l1, applied(&l1_old, "l1-old"), "X")
            .await
            .unwrap();
        assert!(granted(
            &ledger
                .claim(w, &merge, "merge", "M", Some(fence))
                .await
                .unwrap()
        ));
        for l in [l1, l2] {
            let record = record_from_item(&ledger.read(l).await.unwrap().unwrap());
            assert_eq!(record.merged_into.as_deref(), Some(w), "{l}");
            assert_eq!(record.merged_at, Some(5_000), "{l}");
        }
        // A loser's change from before the merge is now stale; one after it (an unmerge) is not.
        assert_eq!(
            ledger
                .claim(l2, &order(l2, 7, Some(4_500)), "l2-late", "Y", None)
                .await
                .unwrap(),
            Claim::Stale
        );
        assert!(granted(
            &ledger
                .claim(l2, &order(l2, 8, Some(5_001)), "l2-new", "Y", None)
                .await
                .unwrap()
        ));
        ledger.release(l2, "Y").await.unwrap();

        // An older merge delivered late does not replace the newer one.
        ledger.release(w, "M").await.unwrap();
        let older = Fence {
            losers: &losers,
            merged_at: 1_000,
        };
        let x = "entities/X";
        assert!(granted(
            &ledger
                .claim(x, &order(x, 1, None), "old-merge", "N", Some(older))
                .await
                .unwrap()
        ));
        let record = record_from_item(&ledger.read(l1).await.unwrap().unwrap());
        assert_eq!(record.merged_into.as_deref(), Some(w));
        assert_eq!(record.merged_at, Some(5_000));
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
        let expires = |item: &Item| num(item, "expiresAt").unwrap();
        let o = order(e, 1, Some(1_000));

        let before = chrono::Utc::now().timestamp();
        assert!(granted(&ledger.claim(e, &o, "a", "A", None).await.unwrap()));
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
        // A fenced loser without a record of its own gets one, with the TTL.
        let losers = vec!["entities/M".to_owned()];
        let fence = Fence {
            losers: &losers,
            merged_at: 2_000,
        };
        assert!(granted(
            &ledger
                .claim(e, &order(e, 2, Some(2_000)), "b", "A", Some(fence))
                .await
                .unwrap()
        ));
        let m = ledger.read("entities/M").await.unwrap().unwrap();
        assert_eq!(num(&m, "merged_at"), Some(2_000));
        assert!(m.contains_key("expiresAt"));
    }
}

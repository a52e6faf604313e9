//! The CDC key ledger on DynamoDB: per crosswalk key (`pk`: source, source table and value), the source
//! version last applied (`ts`: commit time in µs, `rec`: the record's offset in its transaction), whether it
//! retired the key (`retired`), and a TTL (`expiresAt`) past the stream's retention. Writes are conditional, so
//! a version never goes backwards.

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use futures::future::BoxFuture;
use mdm_sync_domain::cdc::versions::{Applied, SourceVersion};
use mdm_sync_domain::ports::{KeyLedger, PortError};
use mdm_sync_domain::reltio::model::CrosswalkKey;
use std::collections::HashMap;
use std::time::Duration;

/// Keys per `BatchGetItem` (DynamoDB's limit).
const MAX_BATCH_GET: usize = 100;

pub struct DynamoKeyLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

/// The item key of a crosswalk key: its parts joined by the unit separator (which no part holds).
fn item_key(key: &CrosswalkKey) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        key.source,
        key.source_table.as_deref().unwrap_or(""),
        key.value
    )
}

fn unavailable(e: impl std::fmt::Display) -> PortError {
    PortError::Transient(format!("the CDC key ledger is unavailable: {e}"))
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

impl DynamoKeyLedger {
    /// `retention`: how long a key's entry is kept after its last write (longer than the stream's retention, so
    /// that no record that can still be replayed outlives its key's entry).
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        retention: Duration,
    ) -> Self {
        DynamoKeyLedger {
            client,
            table: table.into(),
            retention,
        }
    }

    async fn applied_inner(
        &self,
        keys: &[&CrosswalkKey],
    ) -> Result<HashMap<CrosswalkKey, Applied>, PortError> {
        let by_item: HashMap<String, &CrosswalkKey> =
            keys.iter().map(|k| (item_key(k), *k)).collect();
        let mut names: Vec<&String> = by_item.keys().collect();
        names.sort();
        let mut out = HashMap::new();
        for chunk in names.chunks(MAX_BATCH_GET) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for name in chunk {
                request = request.keys(HashMap::from([(
                    "pk".to_owned(),
                    AttributeValue::S((*name).clone()),
                )]));
            }
            let mut pending = Some(HashMap::from([(
                self.table.clone(),
                request.build().map_err(unavailable)?,
            )]));
            // Unprocessed keys come back to be asked again (a few rounds, then it is an outage).
            for _ in 0..5 {
                let Some(items) = pending.take().filter(|p| !p.is_empty()) else {
                    break;
                };
                let result = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(items))
                    .send()
                    .await
                    .map_err(|e| unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
                for item in result
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let Some(key) = item
                        .get("pk")
                        .and_then(|v| v.as_s().ok())
                        .and_then(|pk| by_item.get(pk))
                    else {
                        continue;
                    };
                    if let Some(ts) = num(&item, "ts") {
                        let record = num(&item, "rec").unwrap_or(0).max(0) as u64;
                        let retired = item.get("retired").and_then(|v| v.as_bool().ok()).copied();
                        out.insert(
                            (*key).clone(),
                            Applied {
                                version: SourceVersion {
                                    commit_micros: ts,
                                    record,
                                },
                                retired: retired.unwrap_or(false),
                            },
                        );
                    }
                }
                pending = result.unprocessed_keys;
            }
            if pending.is_some_and(|p| !p.is_empty()) {
                return Err(unavailable("keys left unprocessed"));
            }
        }
        Ok(out)
    }

    async fn record_one(&self, key: &CrosswalkKey, applied: &Applied) -> Result<(), PortError> {
        let expires = chrono::Utc::now().timestamp() + self.retention.as_secs() as i64;
        let v = applied.version;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(item_key(key)))
            .update_expression("SET ts = :ts, rec = :rec, retired = :retired, expiresAt = :exp")
            .condition_expression(
                "attribute_not_exists(ts) OR ts < :ts OR (ts = :ts AND rec <= :rec)",
            )
            .expression_attribute_values(":ts", AttributeValue::N(v.commit_micros.to_string()))
            .expression_attribute_values(":rec", AttributeValue::N(v.record.to_string()))
            .expression_attribute_values(":retired", AttributeValue::Bool(applied.retired))
            .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer version is recorded: it stands.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(e))),
        }
    }
}

impl KeyLedger for DynamoKeyLedger {
    fn applied<'a>(
        &'a self,
        keys: &'a [&'a CrosswalkKey],
    ) -> BoxFuture<'a, Result<HashMap<CrosswalkKey, Applied>, PortError>> {
        Box::pin(self.applied_inner(keys))
    }

    fn record<'a>(
        &'a self,
        entries: &'a [(CrosswalkKey, Applied)],
    ) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async move {
            for chunk in entries.chunks(8) {
                let results =
                    futures::future::join_all(chunk.iter().map(|(k, a)| self.record_one(k, a)))
                        .await;
                for r in results {
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

    fn key(value: &str) -> CrosswalkKey {
        CrosswalkKey {
            source: "configuration/sources/S".into(),
            source_table: Some("T".into()),
            value: value.into(),
        }
    }

    fn applied(micros: i64, record: u64, retired: bool) -> Applied {
        Applied {
            version: SourceVersion {
                commit_micros: micros,
                record,
            },
            retired,
        }
    }

    #[tokio::test]
    async fn versions_are_recorded_and_never_go_backwards() {
        let moto = MotoServer::start();
        moto.create_ledger_table("cdc-keys").await;
        let ledger =
            DynamoKeyLedger::new(moto.dynamodb().await, "cdc-keys", Duration::from_secs(3600));
        let (a, b) = (key("a"), key("b|x"));
        assert!(ledger.applied(&[&a, &b]).await.unwrap().is_empty());
        ledger
            .record(&[
                (a.clone(), applied(200, 1, true)),
                (b.clone(), applied(100, 0, false)),
            ])
            .await
            .unwrap();
        // An older version arriving late does not replace the newer one.
        ledger
            .record(&[(a.clone(), applied(150, 9, false))])
            .await
            .unwrap();
        let known = ledger.applied(&[&a, &b]).await.unwrap();
        assert_eq!(known[&a], applied(200, 1, true));
        assert_eq!(known[&b], applied(100, 0, false));
        ledger
            .record(&[(a.clone(), applied(200, 2, false))])
            .await
            .unwrap();
        assert_eq!(
            ledger.applied(&[&a]).await.unwrap()[&a],
            applied(200, 2, false)
        );
        // Many keys at once: more than one BatchGetItem.
        let many: Vec<CrosswalkKey> = (0..150).map(|i| key(&format!("k{i}"))).collect();
        let entries: Vec<(CrosswalkKey, Applied)> = many
            .iter()
            .map(|k| (k.clone(), applied(1, 0, false)))
            .collect();
        ledger.record(&entries).await.unwrap();
        let refs: Vec<&CrosswalkKey> = many.iter().collect();
        assert_eq!(ledger.applied(&refs).await.unwrap().len(), 150);
    }
}

//! What every crm-updater test file builds batches from and reads results with, over moto and wiremock
//! (`common`) or over in-memory fakes (`steps.rs`, `create.rs`, `removal.rs`, ...): the event queues, the Contact
//! crosswalk type, a Reltio change event, the settings and batch runner of the fake-port tests, and the batch item
//! failures reported.

use crm_updater::{handle, Config, Deps, Handled};
use mdm_sync_adapters::sqs_event::SqsEvent;
use mdm_sync_testkit::{sqs_event, SqsTestMessage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The crosswalk type that names a Salesforce Contact.
#[allow(dead_code)] // letter_store.rs names none
pub const SFDC: &str = "configuration/sources/SFDC_CONTACT";
pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:events";
#[allow(dead_code)] // only ordering.rs and steps.rs use a FIFO queue
pub const FIFO_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:events.fifo";

/// An ENTITY_CHANGED event carrying `entity`.
#[allow(dead_code)] // archive_merge.rs sends merges only
pub fn changed(entity: &Value) -> String {
    json!({"type": "ENTITY_CHANGED", "object": entity, "updatedTime": entity["updatedTime"]})
        .to_string()
}

/// The message ids reported as batch item failures.
pub fn failures(h: &Handled) -> Vec<String> {
    h.response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// The settings of the tests over fake ports, plus `extra` (nothing is reached at start-up: the ports are fakes).
#[allow(dead_code)] // the tests over moto and wiremock build their own
pub fn fake_config(extra: &[(&'static str, &'static str)]) -> Config {
    let mut vars: HashMap<&str, &str> = HashMap::from([
        ("SALESFORCE_SECRET_ID", "sf"),
        ("RELTIO_API_URL", "https://reltio.example.com/reltio/api/T"),
        ("RELTIO_SECRET_ID", "reltio"),
        ("CRM_MAPPING_FILE", "unused"),
        ("SYNC_STATE_TABLE", "sync-state"),
        (
            "CRM_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/0/crm-dlq",
        ),
    ]);
    vars.extend(extra.iter().copied());
    Config::from_env(&move |name: &str| vars.get(name).map(|v| v.to_string())).unwrap()
}

/// One SQS batch through the handler, each message `(message id, body, event id, object version)` (an empty
/// version sends no `objectVersion` attribute).
#[allow(dead_code)]
pub async fn deliver<B: AsRef<str>>(deps: &Deps, messages: &[(&str, B, &str, &str)]) -> Handled {
    let attrs: Vec<Vec<(&str, &str)>> = messages
        .iter()
        .map(|(_, _, id, v)| {
            let mut a = vec![("eventId", *id)];
            if !v.is_empty() {
                a.push(("objectVersion", *v));
            }
            a
        })
        .collect();
    let records: Vec<SqsTestMessage> = messages
        .iter()
        .zip(&attrs)
        .map(|((m, body, _, _), a)| (*m, body.as_ref(), a.as_slice()))
        .collect();
    let event: SqsEvent = serde_json::from_value(sqs_event(QUEUE_ARN, &records)).unwrap();
    handle(deps, event, Instant::now() + Duration::from_secs(10)).await
}

//! What every crm-updater test file builds batches from and reads results with, over moto and wiremock
//! (`common`) or over in-memory fakes (`steps.rs`): the event queues, the Contact crosswalk type, a Reltio
//! change event, and the batch item failures reported.

use crm_updater::Handled;
use serde_json::{json, Value};

/// The crosswalk type that names a Salesforce Contact.
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

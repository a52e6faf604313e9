//! The analytics sink's refresh signal on EventBridge: one event per written batch (the entity types it touched,
//! how many records, the newest and oldest change times), for a rule that starts a Tableau or Power BI refresh or
//! a warehouse task. Best effort: the records are durable before it is sent, so a signal that cannot be sent is
//! logged and counted, never retried through the queue.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures::future::BoxFuture;
use mdm_sync_domain::analytics::record::iso_millis;
use mdm_sync_domain::analytics::Report;
use mdm_sync_domain::ports::{BatchSignal, PortError};
use serde_json::json;

/// The event's `source` and `detail-type`, what a rule matches on.
pub const SOURCE: &str = "mdm-sync.analytics";
pub const DETAIL_TYPE: &str = "Analytics batch written";

pub struct RefreshSignal {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    stream: String,
}

impl RefreshSignal {
    /// `bus`: the event bus name or ARN; `stream`: the delivery stream named in the signal.
    pub fn new(
        client: aws_sdk_eventbridge::Client,
        bus: impl Into<String>,
        stream: impl Into<String>,
    ) -> Self {
        RefreshSignal {
            client,
            bus: bus.into(),
            stream: stream.into(),
        }
    }

    /// Sends the signal for a batch that wrote records; nothing for one that wrote none.
    pub async fn batch_written(&self, report: &Report) -> Result<bool, String> {
        if report.written() == 0 {
            return Ok(false);
        }
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(detail(report, &self.stream).to_string())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())?;
        match out.failed_entry_count() {
            0 => Ok(true),
            _ => Err(out
                .entries()
                .iter()
                .find_map(|e| e.error_code().map(str::to_owned))
                .unwrap_or_else(|| "the event was not accepted".into())),
        }
    }
}

impl BatchSignal for RefreshSignal {
    fn batch_written<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<bool, PortError>> {
        Box::pin(async move {
            RefreshSignal::batch_written(self, report)
                .await
                .map_err(PortError::Transient)
        })
    }
}

/// The signal's `detail`.
pub fn detail(report: &Report, stream: &str) -> serde_json::Value {
    json!({
        "deliveryStream": stream,
        "records": report.written(),
        "entityTypes": report.entity_types,
        "newestChangeTime": report.newest_change.and_then(iso_millis),
        "oldestChangeTime": report.oldest_change.and_then(iso_millis),
    })
}

//! The analytics sink's domain: every entity change event becomes one append-only change record (flattened
//! operational values, crosswalks, merge and removal facts) for a warehouse, which derives the `current` golden
//! records and their SCD-2 `history` from them (infra/analytics/). Pure planning (`record`, `apply::decode`) and
//! an executor over small ports (`apply`): the record sink (Firehose), Reltio for oversized events, and an
//! optional store of the event ids already recorded.

pub mod apply;
pub mod mapping;
pub mod record;

pub use apply::{apply, decode, Item, Ports, Report};
pub use mapping::{AnalyticsMapping, AnalyticsMappingError};
pub use record::{ChangeRecord, ChangeType, RecordPlan};

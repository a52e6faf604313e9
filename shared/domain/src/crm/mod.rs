//! The crm-updater's domain: the mapping, what an entity calls for in Salesforce, the batch planner (events,
//! ledger state and snapshots → per-entity steps) and its executor over the ports. No I/O.

pub mod apply;
pub mod contacts;
pub mod create;
pub mod mapping;
pub mod plan;
pub mod removal;
pub mod salesforce;

pub use contacts::*;
pub use mapping::*;

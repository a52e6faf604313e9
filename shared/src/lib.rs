//! mdm-sync common crate: the pure domain (DMS records, mappings, Reltio bodies, planning) and the adapters
//! that do I/O (Reltio client, Secrets Manager, SQS dead-letter queue, metrics), shared by the functions.

pub mod cdc;
pub mod config;
pub mod crm;
pub mod dms;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod reltio;
pub mod retry;
pub mod salesforce;
pub mod secrets;
pub mod sqs;
pub mod webhook;

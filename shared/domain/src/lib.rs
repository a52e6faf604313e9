//! mdm-sync's pure domain: what the functions decide, as plain functions over typed values, and the ports
//! (small traits) through which the adapters crate does their I/O. Nothing here reaches a network.

pub mod analytics;
pub mod backoff;
pub mod cdc;
pub mod crm;
pub mod dms;
pub mod kafka_cdc;
pub mod letter;
pub mod ordering;
pub mod outcome;
pub mod ports;
#[cfg(any(test, feature = "properties"))]
pub mod properties;
pub mod queue;
pub mod reltio;
pub mod settle;
pub mod stream;
pub mod webhook;

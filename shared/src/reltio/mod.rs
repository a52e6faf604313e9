//! Reltio: the entity and crosswalk bodies the data API takes, and an HTTP client for it.

pub mod client;
pub mod event;
pub mod model;

pub use client::{ClientCredentials, CredentialSource, ItemOutcome, ReltioClient, ReltioError};
pub use model::{Crosswalk, CrosswalkKey, EntityBody};

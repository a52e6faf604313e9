//! Reltio's vocabulary: the entity and crosswalk bodies the data API takes, and the change events it streams.

pub mod event;
pub mod golden;
pub mod message;
pub mod model;

pub use model::{golden_value, Attributes, Crosswalk, CrosswalkKey, EntityBody, ItemOutcome};

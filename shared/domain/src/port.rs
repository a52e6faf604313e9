//! What the ports share: the deadline every call is bounded by, and how a call through a port failed.

use std::time::{Duration, Instant};

/// The instant by which an invocation's calls must be done (Lambda's deadline less a margin for answering).
pub type Deadline = Instant;

/// Time left before `deadline`, zero when past it.
pub fn remaining(deadline: Deadline) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A call through a port that failed as a whole, classified by the adapter: the domain only needs to know
/// whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// May succeed later (unavailable, throttled, timed out, out of time, credentials unreadable).
    #[error("{0}")]
    Transient(String),
    /// The request itself was refused as invalid: sending it again fails the same way. A request carrying
    /// several items is split to find the item at fault.
    #[error("{0}")]
    Rejected(String),
}

impl PortError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient(_))
    }
}

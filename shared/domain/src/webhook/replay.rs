//! The replay cache's port: which signed event ids were already delivered (answered 200), so that a replayed
//! delivery is answered again without enqueueing a second copy. Ids are remembered only once their events are
//! on the queue, and a cache that cannot answer counts nothing as seen: it can cost a duplicate (which the
//! consumers' ledgers absorb), never an event.

use futures::future::BoxFuture;

pub trait DeliveredIds: Send + Sync {
    /// For each id, whether it was delivered before (within the cache's time to live).
    fn seen<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<bool>, String>>;

    /// Remembers the ids as delivered.
    fn remember<'a>(&'a self, ids: &'a [&'a str]) -> BoxFuture<'a, Result<(), String>>;
}

//! A service's view of the changes its node applies to one of its tables.
//!
//! Owns: [`ChangeFeed`] and [`FeedEvent`]. Does not own: producing the
//! changes (the node's local store emits every applied change: its own
//! writes, replication, sync and repair) or what a service does with them.
//!
//! A feed is for state a service keeps *about* its table on one node, such
//! as the subscriptions of clients watching a query. It is bounded: a
//! reader that falls too far behind is told it [lagged](FeedEvent::Lagged)
//! and must rebuild from the table. Expiry is not a change (entries expire
//! by time; compare `expires_at_ms` with [`ChangeFeed::now_ms`]).

use std::sync::Arc;

use geoul_store::Change;
use tokio::sync::broadcast;

use crate::context::StoreAccess;

/// What [`ChangeFeed::recv`] got.
#[derive(Clone, Debug)]
pub enum FeedEvent {
    /// A change the node applied: a newer version of its key, or a later
    /// expiry of the same version (a touch).
    Change(Arc<Change>),
    /// This many changes were missed: rebuild from the table.
    Lagged(u64),
    /// The node is shutting the table down.
    Closed,
}

/// The changes applied to one table on this node, from the moment it was
/// opened.
pub struct ChangeFeed {
    rx: broadcast::Receiver<Arc<Change>>,
    store: Arc<dyn StoreAccess>,
}

impl ChangeFeed {
    pub(crate) fn new(rx: broadcast::Receiver<Arc<Change>>, store: Arc<dyn StoreAccess>) -> Self {
        Self { rx, store }
    }

    /// The next change.
    pub async fn recv(&mut self) -> FeedEvent {
        match self.rx.recv().await {
            Ok(c) => FeedEvent::Change(c),
            Err(broadcast::error::RecvError::Lagged(n)) => FeedEvent::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => FeedEvent::Closed,
        }
    }

    /// The store's wall clock, Unix ms (expiry is decided against it).
    pub fn now_ms(&self) -> u64 {
        self.store.now_ms()
    }

    /// The clock-skew allowance used for expiry, ms.
    pub fn skew_margin_ms(&self) -> u64 {
        self.store.skew_margin_ms()
    }
}

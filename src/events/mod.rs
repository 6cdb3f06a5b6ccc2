//! The transport of change events (DESIGN §7, §13 "Events cannot be forged"): how the
//! [`Notice`]s a change announces are stored, published and delivered to this process's
//! subscribers. What a notice says is the domain's ([`crate::domain::events`]); this module
//! only carries it.
//!
//! A writer collects its notices while its transaction is open and hands them to
//! [`Events::commit`], which writes them to the **events outbox** (`event_outbox`: one
//! multi-row `INSERT`, in the change's own transaction, so an event exists if and only if
//! its change committed) and publishes them once the transaction commits, in commit order:
//!
//! - **PostgreSQL**: `pg_notify` inside the transaction, carrying only the new rows' ids
//!   (`[123,124]`; the insert and the notification are one statement). PostgreSQL delivers notifications only when (and if) the transaction
//!   commits, in commit order, to every listening session, so every replica (this one
//!   included) hears every change; its listener ([`Events::listen`], `listener.rs`) reads
//!   the rows back by id, one `SELECT` per notification, and delivers them in id order.
//!   Anyone who can connect can `NOTIFY` the channel, so a notification is only ever a
//!   hint: a payload that is not a list of ids, ids of no committed row, and ids already
//!   delivered deliver nothing. When the listening connection fails, the listener
//!   reconnects and replays from the outbox what committed meanwhile.
//! - **SQLite**: one process, so an in-process broadcast after the commit. SQLite has one
//!   writer, whose group commit ([`crate::db::WriteTxn`]) publishes each member's notices
//!   once the group is durable, member after member, so the order in which changes land is
//!   the order in which their notices are published. The
//!   outbox rows are written all the same (for durable consumers such as webhooks).
//!
//! Subscribers read from a bounded broadcast channel. Publishing never waits for them: a
//! subscriber that falls behind by more than the channel holds is told it missed events
//! and is dropped, and writers and other subscribers carry on. [`prune`] deletes outbox
//! rows older than the retention, in batches, from the background sweep.
mod listener;
mod outbox;

use std::{sync::Arc, time::Duration};

use sea_orm::{DatabaseBackend, sqlx::postgres::PgPool};
use tokio::sync::broadcast;

pub use outbox::prune;

use crate::{Result, db::WriteTxn, domain::events::Notice};

/// The PostgreSQL channel the replicas share.
const CHANNEL: &str = "strongroom_events";
/// How many deliveries a subscriber may fall behind before it is dropped.
const SUBSCRIBER_BACKLOG: usize = 4_096;

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum Delivery {
    Notice(Arc<Notice>),
    /// The feed was interrupted and what was missed cannot be replayed: events may be
    /// missing.
    Gap,
}

/// The event hub of one server process.
#[derive(Clone, Debug)]
pub struct Events(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    backend: DatabaseBackend,
    local: broadcast::Sender<Delivery>,
}

impl Events {
    pub fn new(backend: DatabaseBackend) -> Self {
        let (local, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        Self(Arc::new(Inner { backend, local }))
    }

    /// A new subscriber's feed: every change published from now on, in commit order.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.0.local.subscribe()
    }

    /// Writes `notices` to the outbox inside `txn`, commits it, and publishes them only if
    /// the commit succeeded.
    pub async fn commit(&self, txn: WriteTxn, notices: Vec<Notice>) -> Result<()> {
        if notices.is_empty() {
            return Ok(txn.commit().await?);
        }
        outbox::write(&txn, &notices, CHANNEL).await?;
        match self.0.backend {
            DatabaseBackend::Postgres => Ok(txn.commit().await?),
            _ => {
                // Published once durable, by the group commit in commit order (a group's
                // members in turn, groups one after another).
                let hub = self.clone();
                let publish = move || {
                    for notice in notices {
                        hub.publish(Delivery::Notice(Arc::new(notice)));
                    }
                };
                Ok(txn.commit_then(Some(Box::new(publish))).await?)
            }
        }
    }

    /// PostgreSQL: listens for every replica's changes and hands them to this process's
    /// subscribers. Returns once listening, so no change committed after it returns is
    /// missed; keeps listening in a background task, reconnecting after a failure and
    /// replaying from the outbox what committed meanwhile. `retention` is the outbox's
    /// (`STRONGROOM_EVENTS_RETENTION_SECS`): a replay that would reach further back tells
    /// subscribers they missed events instead.
    pub async fn listen(&self, pool: PgPool, retention: Duration) -> Result<()> {
        listener::start(self.clone(), &pool, retention).await
    }

    fn publish(&self, delivery: Delivery) {
        // An error only means nobody is subscribed.
        let _ = self.0.local.send(delivery);
    }
}

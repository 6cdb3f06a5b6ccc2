//! The transport of change events for subscriptions (DESIGN §7): how the notices a change
//! announces ([`crate::domain::events`]) are published and delivered.
//!
//! A writer collects the [`Notice`]s of a change while its transaction is open and hands
//! them to [`Events::commit`], which publishes them only once the transaction commits, in
//! commit order:
//!
//! - **PostgreSQL**: `pg_notify` inside the transaction. PostgreSQL delivers notifications
//!   only when (and if) the transaction commits, in commit order, to every listening
//!   session, so every replica (this one included) hears every change through its
//!   [`Events::listen`] task. A payload is a JSON array of notices kept under
//!   `NOTIFY`'s 8,000-byte limit: ids, names and states, never a value; the replica loads the
//!   rest (the resource, the principal) when it delivers an event.
//! - **SQLite**: one process, so an in-process broadcast. SQLite has one writer connection,
//!   and a commit and its publication happen under one lock, so the order in which commits
//!   land is the order in which their notices are published.
//!
//! Subscribers read from a bounded broadcast channel. Publishing never waits for them: a
//! subscriber that falls behind by more than the channel holds is told it missed events
//! and is dropped, and writers and other subscribers carry on.
use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseTransaction, Statement,
    sqlx::postgres::{PgListener, PgPool},
};
use tokio::sync::{Mutex, broadcast};

use crate::{Result, domain::events::Notice};

/// The PostgreSQL channel the replicas share.
const CHANNEL: &str = "strongroom_events";
/// `NOTIFY` refuses payloads of 8,000 bytes or more; stay well under.
const MAX_PAYLOAD_BYTES: usize = 7_000;
/// How many deliveries a subscriber may fall behind before it is dropped.
const SUBSCRIBER_BACKLOG: usize = 4_096;
/// How long to wait before listening again after the listening connection failed.
const RELISTEN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum Delivery {
    Notice(Arc<Notice>),
    /// The feed was interrupted (the listening connection dropped): events may be missing.
    Gap,
}

/// The event hub of one server process.
#[derive(Clone, Debug)]
pub struct Events(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    backend: DatabaseBackend,
    local: broadcast::Sender<Delivery>,
    /// SQLite: held from a commit until its notices are published.
    publish_order: Mutex<()>,
}

impl Events {
    pub fn new(backend: DatabaseBackend) -> Self {
        let (local, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        Self(Arc::new(Inner {
            backend,
            local,
            publish_order: Mutex::new(()),
        }))
    }

    /// A new subscriber's feed: every change published from now on, in commit order.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.0.local.subscribe()
    }

    /// Commits `txn` and publishes `notices`, only if the commit succeeded.
    pub async fn commit(&self, txn: DatabaseTransaction, notices: Vec<Notice>) -> Result<()> {
        if notices.is_empty() {
            return Ok(txn.commit().await?);
        }
        match self.0.backend {
            DatabaseBackend::Postgres => {
                for payload in payloads(&notices)? {
                    let notify = Statement::from_sql_and_values(
                        DatabaseBackend::Postgres,
                        "SELECT pg_notify($1, $2)",
                        [CHANNEL.into(), payload.into()],
                    );
                    txn.execute_raw(notify).await?;
                }
                Ok(txn.commit().await?)
            }
            _ => {
                // The next writer may commit as soon as this commit returns; it publishes
                // only after this one has.
                let _order = self.0.publish_order.lock().await;
                txn.commit().await?;
                for notice in notices {
                    // An error only means nobody is subscribed.
                    let _ = self.0.local.send(Delivery::Notice(Arc::new(notice)));
                }
                Ok(())
            }
        }
    }

    /// PostgreSQL: listens for every replica's notices and hands them to this process's
    /// subscribers. Returns once listening, so no change committed after it returns is
    /// missed; keeps listening in a background task, reconnecting after a failure (and
    /// telling subscribers that events may have been missed meanwhile).
    pub async fn listen(&self, pool: PgPool) -> Result<()> {
        let mut listener = PgListener::connect_with(&pool).await.map_err(db_error)?;
        listener.listen(CHANNEL).await.map_err(db_error)?;
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                hub.relay(&mut listener).await;
                let _ = hub.0.local.send(Delivery::Gap);
                loop {
                    tokio::time::sleep(RELISTEN_DELAY).await;
                    match PgListener::connect_with(&pool).await {
                        Ok(mut fresh) => match fresh.listen(CHANNEL).await {
                            Ok(()) => {
                                listener = fresh;
                                break;
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot listen for events"),
                        },
                        Err(e) => tracing::warn!(error = %e, "cannot connect to listen for events"),
                    }
                }
                tracing::info!("listening for events again");
            }
        });
        Ok(())
    }

    /// Relays notifications until the listening connection fails.
    async fn relay(&self, listener: &mut PgListener) {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    match serde_json::from_str::<Vec<Notice>>(notification.payload()) {
                        Ok(notices) => {
                            for notice in notices {
                                let _ = self.0.local.send(Delivery::Notice(Arc::new(notice)));
                            }
                        }
                        // Another program on the channel, or a newer replica's format.
                        Err(e) => tracing::warn!(error = %e, "ignored an unreadable event"),
                    }
                }
                Ok(None) => {
                    tracing::warn!("the event listener lost its connection; events may be missed");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the event listener failed; events may be missed");
                    return;
                }
            }
        }
    }
}

fn db_error(e: sea_orm::sqlx::Error) -> crate::Error {
    crate::Error::Internal(format!("event listener: {e}"))
}

/// The notices as JSON arrays, each under [`MAX_PAYLOAD_BYTES`], in order.
fn payloads(notices: &[Notice]) -> Result<Vec<String>> {
    let mut payloads = Vec::new();
    let mut current = String::from("[");
    for notice in notices {
        let json = serde_json::to_string(notice)
            .map_err(|e| crate::Error::Internal(format!("event encoding: {e}")))?;
        // A notice is a few hundred bytes (names are at most 128 characters).
        if current.len() > 1 && current.len() + json.len() + 2 > MAX_PAYLOAD_BYTES {
            current.push(']');
            payloads.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&json);
    }
    current.push(']');
    payloads.push(current);
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{dependents::DependentState, events::Change};

    fn notice(i: u32) -> Notice {
        Notice {
            org_id: Uuid::from_u128(1),
            secret_name: format!("secret-{i}-{}", "x".repeat(100)),
            occurred_at: Utc::now(),
            change: Change::Dependent {
                resource_id: Uuid::from_u128(u128::from(i)),
                field: "DATABASE_URL".repeat(10),
                previous: Some(DependentState::UpToDate),
                state: DependentState::Stale,
                deployed_version: Some(3),
                deployed_at: Some(Utc::now()),
            },
        }
    }

    #[test]
    fn payloads_stay_under_the_notify_limit_and_keep_every_notice_in_order() {
        let notices: Vec<Notice> = (0..200).map(notice).collect();
        let payloads = payloads(&notices).expect("encodes");
        assert!(payloads.len() > 1, "200 notices need several payloads");
        let mut decoded = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < MAX_PAYLOAD_BYTES, "{} bytes", payload.len());
            decoded.extend(serde_json::from_str::<Vec<Notice>>(payload).expect("decodes"));
        }
        assert_eq!(decoded, notices);
    }
}

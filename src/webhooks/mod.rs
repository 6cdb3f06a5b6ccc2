//! Signed webhooks (DESIGN §11): the events of an organization posted to its endpoints,
//! at least once, signed per the Standard Webhooks specification.
//!
//! Three steps, each safe on every replica at once:
//!
//! 1. A change writes its events to the events outbox in its own transaction (as for
//!    subscriptions; `crate::events`), so an event exists if and only if its change
//!    committed.
//! 2. The **dispatcher** ([`dispatch`]) turns undispatched outbox rows into one message per
//!    endpoint that wants each, with the body fixed, and marks them dispatched — one
//!    transaction per batch. It wakes on this process's event feed (on PostgreSQL that is
//!    every replica's changes) and polls besides.
//! 3. The **deliverer** ([`deliver`]) claims due messages, posts each with
//!    `webhook-id`/`webhook-timestamp`/`webhook-signature`, and records one delivery row
//!    per attempt. A failed attempt is retried after the next wait of the schedule
//!    (`STRONGROOM_WEBHOOK_RETRY_SCHEDULE`, ±20 % jitter); after the last, the message is
//!    `FAILED`. An endpoint whose every attempt failed for
//!    `STRONGROOM_WEBHOOK_DISABLE_AFTER_SECS` is disabled with a reason.
//!
//! Where posts may go is [`target`]'s; how they are signed, [`signing`]'s.
mod deliver;
mod dispatch;
pub mod signing;
mod target;

use std::{sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use entity::webhook_message;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::{Notify, Semaphore, broadcast};

pub use deliver::webhook_id;
pub use target::{TargetPolicy, is_public};

use crate::{Error, Result, crypto::KeyProvider, db::Db, events::Delivery};

pub const PENDING: &str = "PENDING";
pub const SUCCEEDED: &str = "SUCCEEDED";
pub const FAILED: &str = "FAILED";

/// How often an idle dispatcher looks for events it was not woken for (every commit this
/// replica hears of wakes it; this is the safety net).
const DISPATCH_POLL: Duration = Duration::from_secs(5);
/// How often an idle deliverer looks for messages come due (a retry's time, another
/// replica's claim expired): one read each time.
const DELIVER_POLL: Duration = Duration::from_secs(1);
/// How long the dispatcher lets events gather after a wake-up, so that under a stream of
/// writes one transaction queues many.
const GATHER: Duration = Duration::from_millis(50);

/// How webhooks are delivered from this replica.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Attempts in flight at once; 0: this replica neither dispatches nor delivers.
    pub workers: usize,
    /// The waits before each retry; its length is how many retries follow a first attempt.
    pub retry_schedule: Vec<Duration>,
    pub policy: TargetPolicy,
    /// One attempt's limit, connecting included.
    pub timeout: Duration,
    /// How long every attempt to an endpoint may fail before it is disabled.
    pub disable_after: TimeDelta,
}

impl Settings {
    /// The wait before the attempt after attempt number `attempt` (1 for the first), with
    /// ±20 % jitter, so that endpoints that failed together do not retry together; `None`
    /// when no attempt is left.
    pub fn retry_after(&self, attempt: i32) -> Option<Duration> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        let wait = *self.retry_schedule.get(index)?;
        let unit = crate::crypto::random_bytes::<4>()
            .map(|b| f64::from(u32::from_le_bytes(*b)) / f64::from(u32::MAX))
            .unwrap_or(0.5);
        Some(wait.mul_f64(0.8 + 0.4 * unit))
    }

    /// How long a claimed attempt is this replica's before another may make it.
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// Starts this replica's dispatcher and deliverer (unless `workers` is 0).
pub fn start(db: Db, keys: Arc<dyn KeyProvider>, settings: Arc<Settings>) -> Result<()> {
    if settings.workers == 0 {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .no_proxy()
        .dns_resolver(Arc::new(settings.policy.resolver()))
        .user_agent(concat!("strongroom-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Internal(format!("webhook client: {e}")))?;
    let wake = Arc::new(Notify::new());
    tokio::spawn(dispatcher(
        db.clone(),
        db.events().subscribe(),
        wake.clone(),
    ));
    tokio::spawn(deliverer(db, keys, settings, client, wake));
    Ok(())
}

async fn dispatcher(db: Db, mut feed: broadcast::Receiver<Delivery>, wake: Arc<Notify>) {
    loop {
        tokio::select! {
            received = feed.recv() => {
                if matches!(received, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            () = tokio::time::sleep(DISPATCH_POLL) => {}
        }
        // Whatever else arrives meanwhile is in the same batch.
        tokio::time::sleep(GATHER).await;
        while !matches!(
            feed.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
        loop {
            match dispatch::dispatch_batch(&db).await {
                Ok(taken) => {
                    if taken > 0 {
                        wake.notify_one();
                    }
                    if taken < dispatch::BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "webhook dispatch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

async fn deliverer(
    db: Db,
    keys: Arc<dyn KeyProvider>,
    settings: Arc<Settings>,
    client: reqwest::Client,
    wake: Arc<Notify>,
) {
    let permits = Arc::new(Semaphore::new(settings.workers));
    loop {
        let free = permits.available_permits();
        if free == 0 {
            // Every worker is busy: wait for one to finish.
            if let Ok(permit) = permits.clone().acquire_owned().await {
                drop(permit);
            }
            continue;
        }
        let claimed = match due(&db).await {
            Ok(true) => deliver::claim(&db, free, settings.lease()).await,
            Ok(false) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::error!(error = %e, "claiming webhook messages failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(DELIVER_POLL) => {}
            }
            continue;
        }
        for message in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (db, keys, settings, client) =
                (db.clone(), keys.clone(), settings.clone(), client.clone());
            tokio::spawn(async move {
                let id = message.id;
                if let Err(e) =
                    deliver::attempt(&db, keys.as_ref(), &settings, &client, message).await
                {
                    tracing::error!(message = %id, error = %e, "recording a webhook attempt failed");
                }
                drop(permit);
            });
        }
    }
}

/// Whether any message may be due (a read, so an idle replica does not take SQLite's
/// writer every poll).
async fn due(db: &Db) -> Result<bool> {
    use webhook_message::Column;
    Ok(webhook_message::Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Status.eq(PENDING))
        .filter(Column::NextAttemptAt.lte(crate::domain::now()))
        .into_tuple::<uuid::Uuid>()
        .one(db.read())
        .await?
        .is_some())
}

/// Deletes messages that are done (succeeded or failed) and were queued more than
/// `retention` ago, with their delivery records (by cascade); returns how many messages.
pub async fn prune(db: &Db, retention: Duration) -> Result<u64> {
    use webhook_message::Column;
    let cutoff = Utc::now()
        - TimeDelta::from_std(retention)
            .map_err(|e| Error::Internal(format!("webhook retention: {e}")))?;
    let deleted = webhook_message::Entity::delete_many()
        .filter(Column::Status.ne(PENDING))
        .filter(Column::CreatedAt.lt(cutoff))
        .exec(db.write())
        .await?;
    Ok(deleted.rows_affected)
}

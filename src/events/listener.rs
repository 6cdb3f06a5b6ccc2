//! PostgreSQL: hearing every replica's changes, and catching up after a lost connection.
//!
//! The listener holds one connection of its own (`application_name` `strongroom-events`),
//! `LISTEN`s on the channel and, for each notification, reads the outbox rows it names and
//! hands them to the local subscribers. A notification is only a hint — any role that can
//! connect may `NOTIFY` — so what is delivered is always a committed outbox row, once:
//!
//! - a payload that is not a JSON list of ids (another program, the old format that carried
//!   notices) is ignored; ids of no committed row find nothing;
//! - ids already delivered are skipped: every id delivered is remembered (a recent window,
//!   see [`Recent`]), and a row written before that window is never delivered again.
//!
//! So a forged notification can at most make a real, committed event arrive a moment before
//! its own notification would have brought it (which then delivers nothing).
//!
//! **Replay.** When the connection fails (the backend was terminated, the database went
//! away), the listener reconnects, `LISTEN`s again — from then on nothing is missed — and
//! reads from the outbox what was written since a low-water mark, delivering what it had not
//! delivered yet, in id order. The low-water mark is a time, not an id: ids are drawn from
//! the sequence at insert, not at commit, so a transaction holding a lower id than the last
//! one delivered may commit later, and "id > last seen" would skip it. A transaction's outbox
//! rows are its last statement before `NOTIFY` and `COMMIT`, and `created_at` is the
//! database's clock *at that insert* (`clock_timestamp()`), so the time from a row's
//! `created_at` to its commit is a commit's duration. The replay therefore reads every row
//! written since [`REPLAY_MARGIN`] before the newest point known to be heard in full — the
//! last row delivered, or a heartbeat — and the recent window (longer than the margin)
//! removes what was already delivered. A transaction whose insert-to-commit took longer than
//! the margin would be missed; that is a commit stalled for half a minute.
//!
//! Subscribers are told [`Delivery::Gap`] (`EVENTS_MISSED`) only when the replay cannot be
//! trusted: the low-water mark is older than the outbox's retention (what was missed may be
//! pruned), the recent window no longer reaches back to it (more than [`RECENT_CAP`] events
//! within the margin), more than [`MAX_REPLAY`] rows would be replayed, or a replay read
//! failed.
use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{
    self,
    postgres::{PgListener, PgPool, PgPoolOptions},
};
use tokio::time::{Instant, timeout};

use super::{CHANNEL, Delivery, Events};
use crate::{Error, Result, domain::events::Notice};

/// The listening connection's `application_name`, as `pg_stat_activity` shows it.
const LISTENER_NAME: &str = "strongroom-events";
/// How long to wait between attempts to listen again after a failure.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);
/// The longest a row's insert-to-commit may take for the replay to find it (see above).
const REPLAY_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
/// How long a delivered id is remembered (at least [`REPLAY_MARGIN`]).
const RECENT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(2);
/// Most ids remembered (a few MB); past it the window shrinks.
const RECENT_CAP: usize = 100_000;
/// How often an idle listener checks its connection (and learns the database's time).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The longest one listener statement may take before the connection counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most ids one notification may name (a real one names at most some 700, its size limit).
const MAX_IDS: usize = 1_000;
/// Most rows one replay delivers; a subscriber holds 4,096, so more would lag them anyway.
const MAX_REPLAY: usize = 50_000;

/// Connects and listens; then relays in a background task, for good.
pub(super) async fn start(hub: Events, pool: &PgPool, retention: Duration) -> Result<()> {
    let pool = own_pool(pool);
    let (mut listener, now) = connect(&pool).await?;
    let retention = chrono::TimeDelta::from_std(retention)
        .map_err(|e| Error::Internal(format!("event retention: {e}")))?;
    let mut feed = Feed::new(now, retention);
    tokio::spawn(async move {
        loop {
            feed.relay(&hub, &mut listener).await;
            drop(listener);
            let mut attempt = 0_u32;
            let now;
            (listener, now) = loop {
                if attempt > 0 {
                    tokio::time::sleep(RELISTEN_DELAY).await;
                }
                attempt += 1;
                match connect(&pool).await {
                    Ok(connected) => break connected,
                    Err(e) => tracing::warn!(error = %e, "cannot listen for events yet"),
                }
            };
            feed.replay(&hub, &mut listener, now).await;
        }
    });
    Ok(())
}

/// A pool of one connection for the listener, named so operators can tell it apart.
fn own_pool(pool: &PgPool) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .application_name(LISTENER_NAME);
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(QUERY_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options)
}

/// A listening connection, and the database's time once it listens: every commit after
/// that time is notified on it.
async fn connect(pool: &PgPool) -> Result<(PgListener, DateTime<Utc>)> {
    let mut listener = PgListener::connect_with(pool).await.map_err(db_error)?;
    // On a lost connection, return at once: the caller reconnects and replays.
    listener.eager_reconnect(false);
    bounded(listener.listen(CHANNEL)).await?;
    let now = database_now(&mut listener).await?;
    Ok((listener, now))
}

async fn database_now(listener: &mut PgListener) -> Result<DateTime<Utc>> {
    bounded(sqlx::query_scalar::<_, DateTime<Utc>>("SELECT now()").fetch_one(listener)).await
}

/// `query` within [`QUERY_TIMEOUT`].
async fn bounded<T>(query: impl Future<Output = std::result::Result<T, sqlx::Error>>) -> Result<T> {
    match timeout(QUERY_TIMEOUT, query).await {
        Ok(result) => result.map_err(db_error),
        Err(_) => Err(Error::Internal(format!(
            "event listener: no answer within {QUERY_TIMEOUT:?}"
        ))),
    }
}

fn db_error(e: sqlx::Error) -> Error {
    Error::Internal(format!("event listener: {e}"))
}

/// An outbox row as read back.
struct Row {
    id: i64,
    payload: String,
    created_at: DateTime<Utc>,
}

/// What the listener knows across connections.
struct Feed {
    recent: Recent,
    /// Every row written from here on was delivered or is still to come by notification on
    /// the current connection; a replay starts here.
    resume_from: DateTime<Utc>,
    retention: chrono::TimeDelta,
}

impl Feed {
    fn new(listening_since: DateTime<Utc>, retention: chrono::TimeDelta) -> Self {
        Self {
            // Nothing written before this process listened is delivered: it has no
            // subscriber older than that.
            recent: Recent::new(listening_since),
            resume_from: listening_since,
            retention,
        }
    }

    /// Delivers what the notifications name until the connection fails.
    async fn relay(&mut self, hub: &Events, listener: &mut PgListener) {
        let mut heartbeat = Instant::now() + HEARTBEAT;
        loop {
            // Waiting for a notification may be cut short: sqlx reads a message whole or
            // leaves it buffered.
            match tokio::time::timeout_at(heartbeat, listener.try_recv()).await {
                Ok(Ok(Some(notification))) => {
                    if let Err(e) = self.notified(hub, listener, notification.payload()).await {
                        tracing::warn!(error = %e, "the event listener failed; replaying after reconnecting");
                        return;
                    }
                }
                Ok(Ok(None)) => {
                    tracing::warn!(
                        "the event listener lost its connection; replaying after reconnecting"
                    );
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the event listener failed; replaying after reconnecting");
                    return;
                }
                Err(_) => {}
            }
            if Instant::now() >= heartbeat {
                match database_now(listener).await {
                    Ok(now) => self.heard_until(now),
                    Err(e) => {
                        tracing::warn!(error = %e, "the event listener's connection does not answer; replaying after reconnecting");
                        return;
                    }
                }
                heartbeat = Instant::now() + HEARTBEAT;
            }
        }
    }

    /// One notification: the rows it names that were not delivered yet, in id order.
    async fn notified(
        &mut self,
        hub: &Events,
        listener: &mut PgListener,
        payload: &str,
    ) -> Result<()> {
        let Some(mut ids) = event_ids(payload) else {
            // Not ours: another program on the channel, or a forgery.
            tracing::warn!(
                bytes = payload.len(),
                "ignored a notification that is not a list of event ids"
            );
            return Ok(());
        };
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|id| !self.recent.contains(*id));
        if ids.is_empty() {
            return Ok(());
        }
        let rows = read(listener, &ids).await?;
        for row in rows {
            self.deliver(hub, row);
        }
        Ok(())
    }

    /// Hands `row` to the subscribers unless it was delivered (or written before the
    /// recent window began).
    fn deliver(&mut self, hub: &Events, row: Row) {
        if !self.recent.is_new(row.id, row.created_at) {
            return;
        }
        self.recent.remember(row.id, row.created_at);
        self.heard_until(row.created_at);
        match serde_json::from_str::<Notice>(&row.payload) {
            Ok(notice) => hub.publish(Delivery::Notice(Arc::new(notice))),
            // A newer replica's format: skipped, not retried.
            Err(e) => tracing::warn!(id = row.id, error = %e, "ignored an unreadable event"),
        }
    }

    /// Everything written before `at`, less the margin, has been heard.
    fn heard_until(&mut self, at: DateTime<Utc>) {
        self.resume_from = self.resume_from.max(at - REPLAY_MARGIN);
    }

    /// After reconnecting (listening since `now`): delivers what was written since
    /// [`Self::resume_from`] and not delivered, or tells subscribers they missed events.
    async fn replay(&mut self, hub: &Events, listener: &mut PgListener, now: DateTime<Utc>) {
        let from = self.resume_from.max(self.recent.horizon);
        let why = if self.resume_from < now - self.retention {
            Some("the outbox may have pruned what was missed (STRONGROOM_EVENTS_RETENTION_SECS)")
        } else if self.recent.horizon > self.resume_from {
            Some("too many events to tell which were delivered")
        } else {
            match self.replay_since(hub, listener, from).await {
                Ok(Some(replayed)) => {
                    tracing::info!(
                        replayed,
                        "listening for events again; replayed what committed meanwhile"
                    );
                    None
                }
                Ok(None) => Some("too many events to replay"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot replay missed events");
                    Some("the replay failed")
                }
            }
        };
        if let Some(why) = why {
            tracing::warn!(
                reason = why,
                "listening for events again; subscribers are told they missed events"
            );
            hub.publish(Delivery::Gap);
        }
        self.heard_until(now);
    }

    /// Delivers the undelivered rows written since `from`, in id order; `None` if there are
    /// more than [`MAX_REPLAY`].
    async fn replay_since(
        &mut self,
        hub: &Events,
        listener: &mut PgListener,
        from: DateTime<Utc>,
    ) -> Result<Option<usize>> {
        let ids: Vec<i64> = bounded(
            sqlx::query_scalar(
                "SELECT id FROM event_outbox WHERE created_at >= $1 ORDER BY id LIMIT $2",
            )
            .bind(from)
            .bind(MAX_REPLAY as i64 + 1)
            .fetch_all(&mut *listener),
        )
        .await?;
        if ids.len() > MAX_REPLAY {
            return Ok(None);
        }
        let missed: Vec<i64> = ids
            .into_iter()
            .filter(|id| !self.recent.contains(*id))
            .collect();
        let mut replayed = 0;
        for chunk in missed.chunks(MAX_IDS) {
            for row in read(listener, chunk).await? {
                replayed += 1;
                self.deliver(hub, row);
            }
        }
        Ok(Some(replayed))
    }
}

/// A notification's ids: a JSON array of at most [`MAX_IDS`] positive integers.
fn event_ids(payload: &str) -> Option<Vec<i64>> {
    let ids: Vec<i64> = serde_json::from_str(payload).ok()?;
    (ids.len() <= MAX_IDS && ids.iter().all(|id| *id > 0)).then_some(ids)
}

/// The committed rows of `ids`, in id order (one statement).
async fn read(listener: &mut PgListener, ids: &[i64]) -> Result<Vec<Row>> {
    let rows: Vec<(i64, String, DateTime<Utc>)> = bounded(
        sqlx::query_as(
            "SELECT id, payload, created_at FROM event_outbox WHERE id = ANY($1) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&mut *listener),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, payload, created_at)| Row {
            id,
            payload,
            created_at,
        })
        .collect())
}

/// The ids delivered recently, so none is delivered twice.
///
/// Every row written after [`Self::horizon`] that was delivered is in `ids`; rows written at
/// or before it count as delivered. Ids are forgotten once written [`RECENT_WINDOW`] before
/// the newest delivered, or when more than [`RECENT_CAP`] are held; the horizon moves past
/// each one forgotten.
struct Recent {
    ids: HashSet<i64>,
    /// In delivery order, with when each row was written.
    order: VecDeque<(i64, DateTime<Utc>)>,
    newest: DateTime<Utc>,
    horizon: DateTime<Utc>,
}

impl Recent {
    fn new(horizon: DateTime<Utc>) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            newest: horizon,
            horizon,
        }
    }

    fn contains(&self, id: i64) -> bool {
        self.ids.contains(&id)
    }

    fn is_new(&self, id: i64, created_at: DateTime<Utc>) -> bool {
        created_at > self.horizon && !self.contains(id)
    }

    fn remember(&mut self, id: i64, created_at: DateTime<Utc>) {
        self.ids.insert(id);
        self.order.push_back((id, created_at));
        self.newest = self.newest.max(created_at);
        while let Some(&(oldest, written)) = self.order.front() {
            if self.order.len() <= RECENT_CAP && written >= self.newest - RECENT_WINDOW {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&oldest);
            self.horizon = self.horizon.max(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    #[test]
    fn only_lists_of_positive_ids_are_event_ids() {
        assert_eq!(event_ids("[3,1,2]"), Some(vec![3, 1, 2]));
        assert_eq!(event_ids("[]"), Some(vec![]));
        for forged in [
            "",
            "hello",
            "[1,\"2\"]",
            "[0]",
            "[-5]",
            "{\"ids\":[1]}",
            "[{\"orgId\":\"00000000-0000-0000-0000-000000000001\",\"secretName\":\"X\"}]",
        ] {
            assert_eq!(event_ids(forged), None, "{forged}");
        }
        let too_many = format!("[{}]", vec!["1"; MAX_IDS + 1].join(","));
        assert_eq!(event_ids(&too_many), None);
    }

    #[test]
    fn a_delivered_id_is_never_new_again_nor_is_one_older_than_the_window() {
        let mut recent = Recent::new(at(0));
        assert!(!recent.is_new(1, at(0)), "written before listening");
        assert!(recent.is_new(2, at(1)));
        recent.remember(2, at(1));
        assert!(!recent.is_new(2, at(1)), "delivered");
        // A late committer: a lower id, written earlier, delivered later.
        assert!(recent.is_new(1, at(1)));
        recent.remember(1, at(1));
        // Far later rows push the first ones out of the window; the horizon follows.
        recent.remember(3, at(1 + RECENT_WINDOW.num_seconds() + 5));
        assert!(!recent.contains(2));
        assert!(recent.horizon >= at(1));
        assert!(
            !recent.is_new(2, at(1)),
            "forgotten, but behind the horizon"
        );
        assert!(recent.is_new(4, at(200)));
    }

    #[test]
    fn the_cap_bounds_memory_and_moves_the_horizon() {
        let mut recent = Recent::new(at(0));
        for id in 1..=(RECENT_CAP as i64 + 10) {
            recent.remember(id, at(1));
        }
        assert_eq!(recent.ids.len(), RECENT_CAP);
        assert_eq!(recent.horizon, at(1));
        assert!(!recent.is_new(1, at(1)));
    }
}

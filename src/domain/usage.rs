//! Who really fetched what (DESIGN §8): per resource and referenced secret, the last
//! `resourceSecrets` call's time, served version and outcome; per secret, the last time a
//! value was revealed or served (`secrets.last_accessed_at`).
//!
//! Recording sits on the hottest read path, so it never writes there. A fetch or a reveal
//! only updates an in-memory map (the latest record per key wins); a background task
//! writes what is pending every flush interval, in a few batched statements: at most one
//! write per resource and secret per interval, however many fetches there were. What is
//! pending is flushed on graceful shutdown too; a crash loses at most one interval.
//!
//! Several replicas each flush their own records into one database. Neither statement
//! moves a time backwards, so whichever replica flushes last, the newest fetch wins.
use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{resource, secret, secret_usage};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, SqlErr,
    sea_query::{Alias, CaseStatement, Expr, ExprTrait, OnConflict, Query},
};
use tokio::{
    sync::{Notify, oneshot},
    task::JoinHandle,
};
use uuid::Uuid;

use crate::{Result, db::Db};

/// Pending keys (fetch keys and accessed secrets together) at which the flusher is woken
/// before its interval is up. Reaching it takes that many *distinct* resource–secret pairs
/// within one interval, so flushing early costs a write per pair, never per fetch, and
/// loses nothing.
const FLUSH_EARLY_AT: usize = 10_000;

/// Pending keys beyond which new keys are dropped (with a warning at the next flush). Only
/// reached when flushes keep failing (the database is down): the map must not grow without
/// bound meanwhile. Keys already pending are still updated in place.
const MAX_PENDING: usize = 100_000;

/// Rows per statement: well under both stores' limits on bound parameters.
const ROWS_PER_STATEMENT: usize = 1_000;

/// How a resource's fetch of one referenced secret ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The pinned version was served.
    Served,
    /// Refused: the secret is disabled.
    Disabled,
    /// Refused: the secret is missing or deleted, or the deployment failed.
    Broken,
}

impl FetchOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Served => "SERVED",
            Self::Disabled => "DISABLED",
            Self::Broken => "BROKEN",
        }
    }

    pub fn parse(stored: &str) -> Result<Self> {
        match stored {
            "SERVED" => Ok(Self::Served),
            "DISABLED" => Ok(Self::Disabled),
            "BROKEN" => Ok(Self::Broken),
            other => Err(crate::Error::Internal(format!(
                "unknown fetch outcome {other:?}"
            ))),
        }
    }
}

/// One resource's fetch of one referenced secret (by case-folded name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    pub org_id: Uuid,
    pub resource_id: Uuid,
    pub secret_name_key: String,
    pub at: DateTime<Utc>,
    pub outcome: FetchOutcome,
    /// The version served; `None` when the fetch was refused.
    pub version: Option<i32>,
}

/// The in-memory side of usage recording: cheap to clone, shared by every request.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the flusher when [`FLUSH_EARLY_AT`] keys are pending.
    full: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    fetches: HashMap<(Uuid, String), Fetch>,
    /// Secret id → latest access.
    accesses: HashMap<Uuid, DateTime<Utc>>,
    /// New keys refused at [`MAX_PENDING`] since the last flush.
    dropped: u64,
}

impl Pending {
    fn len(&self) -> usize {
        self.fetches.len() + self.accesses.len()
    }

    fn is_empty(&self) -> bool {
        self.fetches.is_empty() && self.accesses.is_empty()
    }

    /// Keeps `fetch` unless a later one of the same key is pending.
    fn add_fetch(&mut self, fetch: Fetch) {
        let full = self.len() >= MAX_PENDING;
        match self
            .fetches
            .entry((fetch.resource_id, fetch.secret_name_key.clone()))
        {
            Entry::Occupied(mut pending) => {
                if pending.get().at <= fetch.at {
                    pending.insert(fetch);
                }
            }
            Entry::Vacant(_) if full => self.dropped += 1,
            Entry::Vacant(slot) => {
                slot.insert(fetch);
            }
        }
    }

    fn add_access(&mut self, secret_id: Uuid, at: DateTime<Utc>) {
        let full = self.len() >= MAX_PENDING;
        match self.accesses.entry(secret_id) {
            Entry::Occupied(mut pending) => {
                if *pending.get() < at {
                    pending.insert(at);
                }
            }
            Entry::Vacant(_) if full => self.dropped += 1,
            Entry::Vacant(slot) => {
                slot.insert(at);
            }
        }
    }
}

impl Usage {
    /// Records a fetch; the latest one per resource and secret is kept until the flush.
    pub fn fetched(&self, fetch: Fetch) {
        let mut pending = self.lock();
        pending.add_fetch(fetch);
        self.wake_if_full(&pending);
    }

    /// Records that a value of `secret_id` was revealed or served at `at`.
    pub fn accessed(&self, secret_id: Uuid, at: DateTime<Utc>) {
        let mut pending = self.lock();
        pending.add_access(secret_id, at);
        self.wake_if_full(&pending);
    }

    fn wake_if_full(&self, pending: &Pending) {
        if pending.len() >= FLUSH_EARLY_AT {
            self.shared.full.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding it; were it poisoned, the map is still sound.
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the task that writes what is pending to `db` every `every`.
    pub fn start_flusher(&self, db: Db, every: Duration) -> UsageFlusher {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(self.clone(), db, every, stopped));
        UsageFlusher { stop, task }
    }

    /// Writes everything pending now; whether all of it was written. A part that cannot be
    /// is kept for the next flush (newer records of the same keys, arrived meanwhile, win).
    pub async fn flush(&self, db: &Db) -> bool {
        let taken = std::mem::take(&mut *self.lock());
        if taken.dropped > 0 {
            tracing::warn!(
                dropped = taken.dropped,
                "usage records were dropped: too many pending while flushes failed"
            );
        }
        if taken.is_empty() {
            return true;
        }
        let mut written = true;
        // Accesses first: once a fetch's row shows, its access is written too.
        let accesses: Vec<(Uuid, DateTime<Utc>)> = taken.accesses.into_iter().collect();
        if let Err(e) = write_accesses(db.write(), &accesses).await {
            tracing::warn!(error = %e, rows = accesses.len(), "could not record secret accesses; retrying at the next flush");
            written = false;
            let mut pending = self.lock();
            for (secret_id, at) in accesses {
                pending.add_access(secret_id, at);
            }
        }
        let fetches: Vec<Fetch> = taken.fetches.into_values().collect();
        if let Err(e) = write_fetches(db.write(), &fetches).await {
            tracing::warn!(error = %e, rows = fetches.len(), "could not record fetches; retrying at the next flush");
            written = false;
            let mut pending = self.lock();
            for fetch in fetches {
                pending.add_fetch(fetch);
            }
        }
        written
    }
}

/// The background flusher; [`UsageFlusher::shutdown`] writes what is left and stops it.
#[derive(Debug)]
pub struct UsageFlusher {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl UsageFlusher {
    /// Flushes what is pending and stops; gives up after `patience` (the database may be
    /// gone) rather than hold up the shutdown.
    pub async fn shutdown(self, patience: Duration) {
        let _ = self.stop.send(());
        match tokio::time::timeout(patience, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the usage flusher failed"),
            Err(_) => tracing::warn!("usage still pending at shutdown was not written in time"),
        }
    }
}

async fn run(usage: Usage, db: Db, every: Duration, mut stop: oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: nothing is pending yet.
    ticks.tick().await;
    // After a failed flush, wait for the next tick even if full: no retry storm while the
    // database is down.
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = usage.shared.full.notified(), if healthy => {}
            _ = &mut stop => {
                usage.flush(&db).await;
                return;
            }
        }
        healthy = usage.flush(&db).await;
    }
}

/// Upserts `fetches`, never replacing a later fetch of the same key (another replica's).
/// A resource deleted since its fetch has nothing left to record: its rows are skipped.
async fn write_fetches<C: ConnectionTrait>(conn: &C, fetches: &[Fetch]) -> Result<()> {
    let mut sorted: Vec<&Fetch> = fetches.iter().collect();
    // One order for every writer: replicas upserting the same keys lock them alike.
    sorted.sort_by(|a, b| {
        (a.resource_id, &a.secret_name_key).cmp(&(b.resource_id, &b.secret_name_key))
    });
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        match upsert(conn, chunk).await {
            Err(e) if is_foreign_key_violation(&e) => {
                let ids: Vec<Uuid> = super::unique(chunk.iter().map(|f| f.resource_id));
                let live: Vec<Uuid> = resource::Entity::find()
                    .select_only()
                    .column(resource::Column::Id)
                    .filter(resource::Column::Id.is_in(ids))
                    .into_tuple()
                    .all(conn)
                    .await?;
                let kept: Vec<&Fetch> = chunk
                    .iter()
                    .copied()
                    .filter(|f| live.contains(&f.resource_id))
                    .collect();
                if !kept.is_empty() {
                    upsert(conn, &kept).await?;
                }
            }
            other => other?,
        }
    }
    Ok(())
}

async fn upsert<C: ConnectionTrait>(conn: &C, fetches: &[&Fetch]) -> Result<(), DbErr> {
    use secret_usage::Column as U;
    let mut insert = Query::insert();
    insert.into_table(secret_usage::Entity).columns([
        U::Id,
        U::OrgId,
        U::ResourceId,
        U::SecretNameKey,
        U::LastFetchedAt,
        U::LastFetchedVersion,
        U::LastFetchOutcome,
    ]);
    for fetch in fetches {
        insert.values_panic([
            Uuid::now_v7().into(),
            fetch.org_id.into(),
            fetch.resource_id.into(),
            fetch.secret_name_key.clone().into(),
            fetch.at.into(),
            fetch.version.into(),
            fetch.outcome.as_str().into(),
        ]);
    }
    insert.on_conflict(
        OnConflict::columns([U::ResourceId, U::SecretNameKey])
            .update_columns([U::LastFetchedAt, U::LastFetchedVersion, U::LastFetchOutcome])
            .action_and_where(
                Expr::col((secret_usage::Entity, U::LastFetchedAt))
                    .lt(Expr::col((Alias::new("excluded"), U::LastFetchedAt))),
            )
            .to_owned(),
    );
    conn.execute(&insert).await?;
    Ok(())
}

fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// Moves `secrets.last_accessed_at` forward (never back) to each given time, in one
/// statement per chunk.
async fn write_accesses<C: ConnectionTrait>(
    conn: &C,
    accesses: &[(Uuid, DateTime<Utc>)],
) -> Result<()> {
    let mut sorted = accesses.to_vec();
    sorted.sort_unstable();
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        let latest = chunk.iter().fold(CaseStatement::new(), |case, (id, at)| {
            case.case(Expr::col(secret::Column::Id).eq(*id), Expr::val(*at))
        });
        let update = Query::update()
            .table(secret::Entity)
            .value(secret::Column::LastAccessedAt, latest.clone())
            .and_where(secret::Column::Id.is_in(chunk.iter().map(|(id, _)| *id)))
            .and_where(
                secret::Column::LastAccessedAt
                    .is_null()
                    .or(Expr::col(secret::Column::LastAccessedAt).lt(latest)),
            )
            .to_owned();
        conn.execute(&update).await?;
    }
    Ok(())
}

/// The recorded usage of each `(resource, case-folded secret name)` asked for, in one
/// statement.
pub async fn usage_of<C: ConnectionTrait>(
    conn: &C,
    keys: &[(Uuid, String)],
) -> Result<HashMap<(Uuid, String), secret_usage::Model>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let resource_ids = super::unique(keys.iter().map(|(id, _)| *id));
    let name_keys = super::unique(keys.iter().map(|(_, key)| key.clone()));
    // The rows of every resource and name asked for: a superset of the pairs, trimmed here.
    let rows = secret_usage::Entity::find()
        .filter(secret_usage::Column::ResourceId.is_in(resource_ids))
        .filter(secret_usage::Column::SecretNameKey.is_in(name_keys))
        .all(conn)
        .await?;
    let wanted: HashSet<&(Uuid, String)> = keys.iter().collect();
    Ok(rows
        .into_iter()
        .map(|row| ((row.resource_id, row.secret_name_key.clone()), row))
        .filter(|(key, _)| wanted.contains(key))
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::{
        ReferenceField, ResourceName, SecretName, SecretValue,
        resources::{self, NewReference, ResourceKind, ResourceSpec},
        secrets::{self, NewSecret},
        testing,
    };

    fn fetch(resource_id: Uuid, at: DateTime<Utc>, version: i32) -> Fetch {
        Fetch {
            org_id: Uuid::nil(),
            resource_id,
            secret_name_key: "db_password".to_owned(),
            at,
            outcome: FetchOutcome::Served,
            version: Some(version),
        }
    }

    #[test]
    fn the_latest_fetch_per_key_is_kept_whatever_the_order_of_arrival() {
        let (one, two) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t0 = Utc::now();
        let mut pending = Pending::default();
        for (resource, seconds, version) in [(one, 1, 1), (one, 3, 3), (one, 2, 2), (two, 0, 7)] {
            pending.add_fetch(fetch(resource, t0 + TimeDelta::seconds(seconds), version));
        }
        pending.add_access(one, t0 + TimeDelta::seconds(5));
        pending.add_access(one, t0);
        assert_eq!(pending.fetches.len(), 2);
        let key = (one, "db_password".to_owned());
        assert_eq!(pending.fetches[&key].version, Some(3));
        assert_eq!(pending.accesses[&one], t0 + TimeDelta::seconds(5));
    }

    #[test]
    fn beyond_the_cap_new_keys_are_dropped_and_pending_ones_still_move() {
        let t0 = Utc::now();
        let mut pending = Pending::default();
        for i in 0..MAX_PENDING {
            pending.add_access(Uuid::from_u128(i as u128), t0);
        }
        pending.add_fetch(fetch(Uuid::max(), t0, 1));
        pending.add_access(Uuid::max(), t0);
        assert_eq!(pending.len(), MAX_PENDING);
        assert_eq!(pending.dropped, 2);
        let later = t0 + TimeDelta::seconds(1);
        pending.add_access(Uuid::from_u128(0), later);
        assert_eq!(pending.accesses[&Uuid::from_u128(0)], later);
    }

    /// Two replicas flushing out of order on one database: the newest fetch and access
    /// win. A resource deleted before the flush is skipped without failing the others.
    #[tokio::test]
    async fn flushes_keep_the_newest_and_skip_deleted_resources() {
        let (db, actor) = testing::admin_on_fresh_db().await;
        let keys = testing::keyring(&[testing::KEY]);
        let new = NewSecret {
            name: SecretName::parse("DB_PASSWORD").expect("name"),
            value: SecretValue::parse("hunter2".into()).expect("value"),
            description: None,
            rotation_period_days: None,
            access: crate::domain::access::SecretAccess::AllResources,
        };
        let secret = secrets::create(&db, &keys, &actor, new)
            .await
            .expect("create");
        let mut resource_ids = Vec::new();
        for name in ["etl", "backup"] {
            let spec = ResourceSpec {
                kind: ResourceKind::Pipeline,
                name: ResourceName::parse(name).expect("name"),
                description: None,
                references: vec![NewReference {
                    secret_name: SecretName::parse("DB_PASSWORD").expect("name"),
                    field: ReferenceField::parse("db.password").expect("field"),
                }],
            };
            let row = resources::upsert(&db, &actor, spec).await.expect("upsert");
            resource_ids.push(row.id);
        }
        let (etl, backup) = (resource_ids[0], resource_ids[1]);
        let org_id = actor.org_id();
        let at = |seconds| crate::domain::now() + TimeDelta::seconds(seconds);
        let (t1, t2, t3) = (at(1), at(2), at(3));
        let with_org = |f: Fetch| Fetch { org_id, ..f };

        let newer = Usage::default();
        newer.fetched(with_org(fetch(etl, t2, 2)));
        newer.accessed(secret.id, t2);
        newer.flush(&db).await;
        let older = Usage::default();
        older.fetched(with_org(fetch(etl, t1, 1)));
        older.fetched(with_org(fetch(backup, t1, 1)));
        older.accessed(secret.id, t1);
        older.flush(&db).await;

        let keys = [
            (etl, "db_password".to_owned()),
            (backup, "db_password".to_owned()),
        ];
        let found = usage_of(db.read(), &keys).await.expect("usage");
        assert_eq!(found[&keys[0]].last_fetched_at, t2);
        assert_eq!(found[&keys[0]].last_fetched_version, Some(2));
        assert_eq!(found[&keys[1]].last_fetched_at, t1);
        let accessed = |db: Db| async move {
            secrets::find_by_id(db.read(), org_id, secret.id)
                .await
                .expect("find")
                .expect("the secret")
                .last_accessed_at
        };
        assert_eq!(accessed(db.clone()).await, Some(t2));

        resources::delete(&db, &actor, backup)
            .await
            .expect("delete");
        let last = Usage::default();
        last.fetched(with_org(fetch(backup, t3, 3)));
        last.fetched(Fetch {
            outcome: FetchOutcome::Disabled,
            version: None,
            ..with_org(fetch(etl, t3, 3))
        });
        last.accessed(secret.id, t3);
        last.flush(&db).await;
        assert!(last.lock().is_empty(), "a flush left records behind");
        let found = usage_of(db.read(), &keys).await.expect("usage");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[&keys[0]].last_fetched_at, t3);
        assert_eq!(found[&keys[0]].last_fetch_outcome, "DISABLED");
        assert_eq!(found[&keys[0]].last_fetched_version, None);
        assert_eq!(accessed(db.clone()).await, Some(t3));
    }
}

//! A secret's life after creation (DESIGN §8): disable and enable (a scream test before a
//! delete), restore and purge (the recovery window), rollback, and the two sweeps that run
//! in the background: purging secrets whose window has ended, and announcing rotations
//! that came due.
//!
//! Every change here is a conditional write on the secret's row (or a locked read of it),
//! so two callers — or two replicas' sweeps — never both apply one: the second finds the
//! row no longer in the state it needs and does nothing (the sweeps) or answers as if it
//! had been done (enable on an enabled secret) or `NOT_FOUND` (restore of a secret that is
//! not deleted).
use chrono::{DateTime, Utc};
use entity::{secret, secret_version};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};
use uuid::Uuid;

use super::{
    Actor, SecretName, SecretValue,
    audit::{self, Event, Target},
    dependents::{self, DependentState},
    events::{Notice, SecretEventKind},
    now, plaintext,
    secrets::{self, SecretState, SecretUpdate, find_existing},
};
use crate::{
    Error, Result,
    crypto::KeyProvider,
    db::{self, Db},
};

/// Most secrets one sweep pass handles; the next pass takes the rest.
const SWEEP_BATCH: u64 = 100;

/// Disables a secret: its values are refused (`SECRET_DISABLED`) until it is enabled;
/// updates still work. Disabling a disabled secret changes nothing (the first reason
/// stands).
pub async fn disable(
    db: &Db,
    actor: &Actor,
    name: &SecretName,
    reason: &str,
) -> Result<secret::Model> {
    switch(db, actor, name, Some(reason)).await
}

/// Enables a disabled secret. Enabling an active one changes nothing.
pub async fn enable(db: &Db, actor: &Actor, name: &SecretName) -> Result<secret::Model> {
    switch(db, actor, name, None).await
}

/// Disables (with a reason) or enables (without) by one conditional write from the other
/// state, so of racing calls exactly one changes the row and is audited and announced; the
/// others, and a call that finds the secret already switched, answer it as it stands.
async fn switch(
    db: &Db,
    actor: &Actor,
    name: &SecretName,
    disable_for: Option<&str>,
) -> Result<secret::Model> {
    let (from, to, action, kind) = match disable_for {
        Some(_) => (
            SecretState::Active,
            SecretState::Disabled,
            "secret.disable",
            SecretEventKind::Disabled,
        ),
        None => (
            SecretState::Disabled,
            SecretState::Active,
            "secret.enable",
            SecretEventKind::Enabled,
        ),
    };
    let org_id = actor.org_id();
    let at = now();
    let txn = db::begin_write(db).await?;
    let changed = secret::Entity::update_many()
        .col_expr(secret::Column::State, Expr::value(to.as_str()))
        .col_expr(
            secret::Column::DisabledAt,
            Expr::value(disable_for.map(|_| at)),
        )
        .col_expr(
            secret::Column::DisabledReason,
            Expr::value(disable_for.map(str::to_owned)),
        )
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::NameKey.eq(name.key()))
        .filter(secret::Column::State.eq(from.as_str()))
        .exec_with_returning(&txn)
        .await?;
    let Some(row) = changed.into_iter().next() else {
        txn.rollback().await?;
        return find_existing(db.read(), org_id, name).await;
    };
    let mut event = Event::allowed(action, Target::secret(Some(row.id), &row.name));
    if let Some(reason) = disable_for {
        event = event.with_detail(serde_json::json!({ "reason": reason }));
    }
    audit::record(&txn, actor, event).await?;
    let notice = secret_notice(&row, kind, actor, at);
    db.events().commit(txn, vec![notice]).await?;
    Ok(row)
}

/// Brings a deleted secret back with every version, in the state it was deleted from
/// (disabled if it was disabled). Deployments its forced delete failed stay failed until
/// they are redeployed.
pub async fn restore(db: &Db, actor: &Actor, name: &SecretName) -> Result<secret::Model> {
    let org_id = actor.org_id();
    let at = now();
    let txn = db::begin_write(db).await?;
    let deleted = locked_deleted(&txn, org_id, name).await?;
    let state = if deleted.disabled_at.is_some() {
        SecretState::Disabled
    } else {
        SecretState::Active
    };
    secret::Entity::update_many()
        .col_expr(secret::Column::State, Expr::value(state.as_str()))
        .col_expr(
            secret::Column::DeletedAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(secret::Column::PurgeAt, Expr::value(None::<DateTime<Utc>>))
        .filter(secret::Column::Id.eq(deleted.id))
        .exec(&txn)
        .await?;
    let row = secret::Model {
        state: state.as_str().to_owned(),
        deleted_at: None,
        purge_at: None,
        ..deleted
    };
    let event = Event::allowed("secret.restore", Target::secret(Some(row.id), &row.name))
        .with_detail(serde_json::json!({ "state": state.as_str() }));
    audit::record(&txn, actor, event).await?;
    let mut notices = vec![secret_notice(&row, SecretEventKind::Restored, actor, at)];
    // While deleted, every reference to it was broken; those whose deployment still pins it
    // (or that are not deployed) are whole again.
    for dependent in dependents::dependents(&txn, org_id, name).await? {
        if dependent.state != DependentState::Broken {
            let broken = Some(DependentState::Broken);
            notices.push(Notice::dependent(org_id, &row.name, &dependent, broken, at));
        }
    }
    db.events().commit(txn, notices).await?;
    Ok(row)
}

/// Shreds a deleted secret now, without waiting for its window: every version and data
/// key. Only a deleted secret can be purged, so the dependents rules of `deleteSecret` are
/// always passed first.
pub async fn purge(db: &Db, actor: &Actor, name: &SecretName) -> Result<secret::Model> {
    let org_id = actor.org_id();
    let txn = db::begin_write(db).await?;
    let deleted = match locked_deleted(&txn, org_id, name).await {
        Ok(row) => row,
        Err(Error::NotFound(_)) if find_existing(&txn, org_id, name).await.is_ok() => {
            return Err(Error::bad_input(format!(
                "secret {name} is not deleted: delete it first (deleteSecret, with its \
                 dependents rules), then purge it"
            )));
        }
        Err(e) => return Err(e),
    };
    let destroyed = secrets::shred(&txn, deleted.id).await?;
    let event = Event::allowed(
        "secret.purge",
        Target::secret(Some(deleted.id), &deleted.name),
    )
    .with_detail(serde_json::json!({ "versionsDestroyed": destroyed, "by": "call" }));
    audit::record(&txn, actor, event).await?;
    let notice = secret_notice(&deleted, SecretEventKind::Purged, actor, now());
    db.events().commit(txn, vec![notice]).await?;
    scrub(db).await;
    Ok(deleted)
}

/// One pass of the background purge: shreds deleted secrets whose window ended. Safe with
/// several replicas: on PostgreSQL each locks the rows it takes and skips those another
/// holds (`FOR UPDATE SKIP LOCKED`); SQLite has one writer. A row already purged is simply
/// not found again. Returns how many were purged.
pub async fn purge_due(db: &Db) -> Result<usize> {
    let at = now();
    let due = || {
        secret::Entity::find()
            .filter(secret::Column::State.eq(SecretState::Deleted.as_str()))
            .filter(secret::Column::PurgeAt.lte(at))
    };
    // Most passes find nothing: ask a reader first, and take the writer (SQLite's one
    // writer connection) only when there is something to purge.
    if due().one(db.read()).await?.is_none() {
        return Ok(0);
    }
    let txn = db::begin_write(db).await?;
    let mut due = due()
        .order_by_asc(secret::Column::PurgeAt)
        .limit(SWEEP_BATCH);
    if db.backend() == sea_orm::DatabaseBackend::Postgres {
        due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let due = due.all(&txn).await?;
    let mut notices = Vec::with_capacity(due.len());
    for row in &due {
        let destroyed = secrets::shred(&txn, row.id).await?;
        let event = Event::allowed("secret.purge", Target::secret(Some(row.id), &row.name))
            .with_detail(serde_json::json!({
                "versionsDestroyed": destroyed,
                "by": "recovery window",
                "purgeAt": row.purge_at,
            }));
        audit::record_for(&txn, row.org_id, None, None, event).await?;
        let secret = (row.id, row.name.as_str());
        let notice = Notice::secret(row.org_id, secret, SecretEventKind::Purged, None, None, at);
        notices.push(notice);
    }
    db.events().commit(txn, notices).await?;
    if !due.is_empty() {
        scrub(db).await;
    }
    Ok(due.len())
}

/// Removes the store's leftover copies of what a committed purge deleted. The purge stands
/// if this fails (its rows are gone); the copies then go with the store's own housekeeping,
/// and the log says so.
async fn scrub(db: &Db) {
    if let Err(e) = db::scrub_deleted(db).await {
        tracing::error!(error = %e, "could not scrub the store after a purge");
    }
}

/// One pass of the rotation sweep: announces `ROTATION_DUE` once for each due date that
/// passed. The announcement is a conditional write (`rotation_notified_at` moves to the due
/// date only if it is behind it), so of several replicas sweeping at once exactly one
/// announces each. Returns how many were announced.
pub async fn announce_due_rotations(db: &Db) -> Result<usize> {
    let at = now();
    let due = secret::Entity::find()
        .filter(secret::Column::State.ne(SecretState::Deleted.as_str()))
        .filter(secret::Column::RotationDueAt.lte(at))
        .filter(
            Condition::any()
                .add(secret::Column::RotationNotifiedAt.is_null())
                .add(
                    Expr::col(secret::Column::RotationNotifiedAt)
                        .lt(Expr::col(secret::Column::RotationDueAt)),
                ),
        )
        .order_by_asc(secret::Column::RotationDueAt)
        .limit(SWEEP_BATCH)
        .all(db.read())
        .await?;
    let mut announced = 0;
    for row in due {
        let Some(due_at) = row.rotation_due_at else {
            continue;
        };
        let txn = db::begin_write(db).await?;
        let claimed = secret::Entity::update_many()
            .col_expr(
                secret::Column::RotationNotifiedAt,
                Expr::value(Some(due_at)),
            )
            .filter(secret::Column::Id.eq(row.id))
            .filter(secret::Column::RotationDueAt.eq(due_at))
            .filter(
                Condition::any()
                    .add(secret::Column::RotationNotifiedAt.is_null())
                    .add(secret::Column::RotationNotifiedAt.lt(due_at)),
            )
            .exec(&txn)
            .await?
            .rows_affected;
        if claimed == 0 {
            txn.rollback().await?;
            continue;
        }
        let event = Event::allowed(
            "secret.rotation_due",
            Target::secret(Some(row.id), &row.name),
        )
        .with_detail(serde_json::json!({
            "rotationDueAt": due_at,
            "rotationPeriodDays": row.rotation_period_days,
        }));
        audit::record_for(&txn, row.org_id, None, None, event).await?;
        let version = Some(row.current_version);
        let secret = (row.id, row.name.as_str());
        let notice = Notice::secret(
            row.org_id,
            secret,
            SecretEventKind::RotationDue,
            version,
            None,
            at,
        );
        db.events().commit(txn, vec![notice]).await?;
        announced += 1;
    }
    Ok(announced)
}

/// Makes a new version holding the value of `to_version` (which must still be retained),
/// sealed under a fresh data key; otherwise an update like any other (check-and-set with
/// `expected_version`, retention, stale dependents, events), audited as a rollback.
pub async fn rollback(
    db: &Db,
    keys: &dyn KeyProvider,
    actor: &Actor,
    name: &SecretName,
    to_version: i32,
    expected_version: Option<i32>,
    retention: u32,
) -> Result<secret::Model> {
    let org_id = actor.org_id();
    let current = find_existing(db.read(), org_id, name).await?;
    if to_version >= current.current_version || to_version < 1 {
        return Err(Error::bad_input(format!(
            "`toVersion` must be an earlier version than the current one ({})",
            current.current_version
        )));
    }
    let row = secret_version::Entity::find()
        .filter(secret_version::Column::SecretId.eq(current.id))
        .filter(secret_version::Column::Version.eq(to_version))
        .one(db.read())
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "version {to_version} of secret {name} (only retained versions can be rolled back to)"
            ))
        })?;
    let value: SecretValue = plaintext::decrypt_version(keys, &current, &row).await?;
    let change = SecretUpdate {
        name: name.clone(),
        value: Some(value),
        description: None,
        expected_version,
        rotation_period_days: None,
        rolled_back_from: Some(to_version),
    };
    secrets::update(db, keys, actor, change, retention).await
}

/// The deleted secret `name`, locked for this transaction; `NOT_FOUND` if it is not deleted.
async fn locked_deleted<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name: &SecretName,
) -> Result<secret::Model> {
    secret::Entity::find()
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::NameKey.eq(name.key()))
        .filter(secret::Column::State.eq(SecretState::Deleted.as_str()))
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found(format!("deleted secret {name}")))
}

fn secret_notice(
    row: &secret::Model,
    kind: SecretEventKind,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Notice {
    Notice::secret(
        row.org_id,
        (row.id, &row.name),
        kind,
        Some(row.current_version),
        Some(actor.principal.id),
        at,
    )
}

//! Secrets and their encrypted versions.
//!
//! Writes follow one pattern: validate, call the key provider *before* opening a
//! transaction (never hold a transaction, or SQLite's single writer, across a network
//! call), then in one write transaction write first — a conditional UPDATE or an INSERT —
//! then the version row, then the audit event. A change and its audit event commit
//! together or not at all. Reading a value is [`super::plaintext`]'s job alone.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{secret, secret_version};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, LikeExpr},
};
use uuid::Uuid;

use super::{
    Actor, Description, Natural, Page, PageRequest, SecretName, SecretValue,
    audit::{self, Event, Target},
    dependents::{self, Dependent, DependentState},
    events::{Notice, SecretEventKind},
    now,
};
use crate::{
    Error, Result,
    crypto::{self, EncryptionContext, KeyProvider, Sealed, WrappedKey},
    db::{self, Db},
    error::Blocker,
};

pub struct NewSecret {
    pub name: SecretName,
    pub value: SecretValue,
    pub description: Option<Description>,
    /// Rotation is due this many days after each value change.
    pub rotation_period_days: Option<i32>,
    /// Which resources may use it (`STRONGROOM_DEFAULT_SECRET_ACCESS`).
    pub access: super::access::SecretAccess,
}

/// Where a secret is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretState {
    Active,
    /// Values are refused (`SECRET_DISABLED`); updates still work.
    Disabled,
    /// Scheduled for purge at `purge_at`; values unreadable, the name reserved.
    Deleted,
}

impl SecretState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Disabled => "DISABLED",
            Self::Deleted => "DELETED",
        }
    }

    pub fn of(row: &secret::Model) -> Self {
        match row.state.as_str() {
            "DISABLED" => Self::Disabled,
            "DELETED" => Self::Deleted,
            _ => Self::Active,
        }
    }
}

pub struct SecretUpdate {
    pub name: SecretName,
    pub value: Option<SecretValue>,
    /// `None`: leave as is; `Some(None)`: clear; `Some(Some(d))`: set.
    pub description: Option<Option<Description>>,
    /// Check-and-set: fail with `VERSION_CONFLICT` unless this is the current version.
    pub expected_version: Option<i32>,
    /// `None`: leave as is; `Some(None)`: no rotation; `Some(Some(days))`: set.
    pub rotation_period_days: Option<Option<i32>>,
    /// A rollback: the new value is that of this earlier version (audited and announced
    /// as a rollback).
    pub rolled_back_from: Option<i32>,
}

impl SecretUpdate {
    /// Whether anything would change.
    fn is_empty(&self) -> bool {
        self.value.is_none() && self.description.is_none() && self.rotation_period_days.is_none()
    }
}

/// Days between value changes before rotation is due: 1 to 3650.
pub fn check_rotation_period(days: Option<i32>) -> Result<Option<i32>> {
    days.map(|days| super::RotationPeriod::days(days).map(super::RotationPeriod::as_days))
        .transpose()
}

/// When rotation is due after a value change at `changed`.
pub fn rotation_due(changed: DateTime<Utc>, period_days: Option<i32>) -> Option<DateTime<Utc>> {
    period_days.map(|days| changed + chrono::TimeDelta::days(i64::from(days)))
}

pub async fn find<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name: &SecretName,
) -> Result<Option<secret::Model>> {
    Ok(secret::Entity::find()
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::NameKey.eq(name.key()))
        .one(conn)
        .await?)
}

pub async fn find_by_id<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<secret::Model>> {
    Ok(secret::Entity::find_by_id(id)
        .filter(secret::Column::OrgId.eq(org_id))
        .one(conn)
        .await?)
}

/// A secret that is not deleted (a deleted one is `NOT_FOUND` to every change but
/// restore and purge).
pub(crate) async fn find_existing<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name: &SecretName,
) -> Result<secret::Model> {
    find(conn, org_id, name)
        .await?
        .filter(|s| SecretState::of(s) != SecretState::Deleted)
        .ok_or_else(|| Error::not_found(format!("secret {name}")))
}

/// `ALREADY_EXISTS` for a name taken, saying what to do when a deleted secret holds it.
fn name_taken(existing: Option<&secret::Model>, name: &SecretName) -> Error {
    match existing {
        Some(s) if SecretState::of(s) == SecretState::Deleted => {
            let when = s
                .purge_at
                .map_or_else(|| "soon".to_owned(), |t| format!("at {}", t.to_rfc3339()));
            Error::NameReserved(format!(
                "secret {name} already exists, deleted and to be purged {when}: restore it \
                 with restoreSecret, or purge it now with purgeSecret to reuse the name"
            ))
        }
        _ => Error::AlreadyExists(format!("secret {name}")),
    }
}

fn version_row(
    actor: &Actor,
    context: &EncryptionContext,
    sealed: Sealed,
) -> secret_version::ActiveModel {
    secret_version::ActiveModel {
        id: Set(context.row_id.unwrap_or_else(Uuid::now_v7)),
        secret_id: Set(context.secret_id),
        org_id: Set(context.org_id),
        version: Set(context.version),
        ciphertext: Set(sealed.ciphertext),
        nonce: Set(sealed.nonce),
        wrapped_key: Set(sealed.wrapped_key.blob),
        key_id: Set(sealed.wrapped_key.key_id),
        scheme: Set(sealed.scheme.to_owned()),
        created_at: Set(now()),
        created_by: Set(Some(actor.principal.id)),
    }
}

/// Creates a secret with its first version.
pub async fn create(
    db: &Db,
    keys: &dyn KeyProvider,
    actor: &Actor,
    new: NewSecret,
) -> Result<secret::Model> {
    let org_id = actor.org_id();
    // Fail fast, before spending a KMS call; the unique index settles races.
    if let Some(existing) = find(db.read(), org_id, &new.name).await? {
        return Err(name_taken(Some(&existing), &new.name));
    }
    let context = EncryptionContext::new(org_id, Uuid::now_v7(), 1, Uuid::now_v7());
    let sealed = crypto::seal(keys, &context, new.value.expose().as_bytes()).await?;

    let at = now();
    let txn = db::begin_write(db).await?;
    let inserted = secret::ActiveModel {
        id: Set(context.secret_id),
        org_id: Set(org_id),
        name: Set(new.name.as_str().to_owned()),
        name_key: Set(new.name.key()),
        description: Set(new.description.map(Description::into_inner)),
        current_version: Set(1),
        created_at: Set(at),
        updated_at: Set(at),
        created_by: Set(Some(actor.principal.id)),
        updated_by: Set(Some(actor.principal.id)),
        state: Set(SecretState::Active.as_str().to_owned()),
        disabled_at: Set(None),
        disabled_reason: Set(None),
        deleted_at: Set(None),
        purge_at: Set(None),
        rotation_period_days: Set(new.rotation_period_days),
        value_changed_at: Set(Some(at)),
        rotation_due_at: Set(rotation_due(at, new.rotation_period_days)),
        rotation_notified_at: Set(None),
        last_accessed_at: Set(None),
        access: Set(new.access.as_str().to_owned()),
    }
    .insert(&txn)
    .await;
    let secret = match inserted {
        Ok(secret) => secret,
        Err(e) if db::is_unique_violation(&e) => {
            // Give the connection back first: waiting for a second one while holding it
            // would, with every pooled connection held by such a writer, wait forever.
            txn.rollback().await?;
            let existing = find(db.read(), org_id, &new.name).await?;
            return Err(name_taken(existing.as_ref(), &new.name));
        }
        Err(e) => return Err(e.into()),
    };
    version_row(actor, &context, sealed).insert(&txn).await?;
    let event = Event::allowed(
        "secret.create",
        Target::secret(Some(secret.id), &secret.name),
    )
    .with_detail(serde_json::json!({ "version": 1 }));
    audit::record(&txn, actor, event).await?;
    let mut notices = vec![Notice::secret(
        org_id,
        (secret.id, &secret.name),
        SecretEventKind::Created,
        Some(1),
        Some(actor.principal.id),
        at,
    )];
    // While no secret had the name, every reference to it was broken.
    for dependent in dependents::dependents(&txn, org_id, &new.name).await? {
        if dependent.state != DependentState::Broken {
            let broken = Some(DependentState::Broken);
            notices.push(Notice::dependent(
                org_id,
                &secret.name,
                &dependent,
                broken,
                at,
            ));
        }
    }
    db.events().commit(txn, notices).await?;
    Ok(secret)
}

/// Updates a secret's value (making a new version) and/or its description.
///
/// `expected_version` is a precondition on the value's version: the update applies only
/// while the secret is still at that version. A description-only update makes no new
/// version, so with `expected_version` it is refused once the value has moved on (a
/// description written against version 3 never lands on version 4), and description-only
/// updates of the same version apply in commit order, the last one standing.
pub async fn update(
    db: &Db,
    keys: &dyn KeyProvider,
    actor: &Actor,
    change: SecretUpdate,
    retention: u32,
) -> Result<secret::Model> {
    if change.is_empty() {
        return Err(Error::bad_input(
            "nothing to update: give a new `value`, a `description` or a `rotationPeriodDays`",
        ));
    }
    let org_id = actor.org_id();
    // Fail fast, before spending a KMS call; what counts is re-read under the lock below.
    let seen = find_existing(db.read(), org_id, &change.name).await?;
    check_expected(change.expected_version, seen.current_version)?;
    // The data key is bound to the new version's row, not to its number: the number is
    // decided under the lock, so no writer has to give up because another got there
    // first.
    let row_id = Uuid::now_v7();
    let prepared = match &change.value {
        Some(_) => Some(crypto::prepare(keys, org_id, seen.id, row_id).await?),
        None => None,
    };

    let at = now();
    let txn = db::begin_write(db).await?;
    // Writers of one secret take turns here: PostgreSQL locks the row until commit
    // (`FOR UPDATE`); on SQLite the transaction already holds the single writer lock.
    let current = secret::Entity::find_by_id(seen.id)
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::State.ne(SecretState::Deleted.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found(format!("secret {}", change.name)))?;
    check_expected(change.expected_version, current.current_version)?;
    let next = current.current_version + i32::from(change.value.is_some());
    let context = EncryptionContext::new(org_id, current.id, next, row_id);
    let sealed = match (prepared, &change.value) {
        (Some(prepared), Some(value)) => Some(prepared.seal(next, value.expose().as_bytes())?),
        _ => None,
    };

    // The conditional write is a second guard: it changes nothing unless the version is
    // still the one read under the lock.
    let mut write = secret::Entity::update_many()
        .col_expr(secret::Column::CurrentVersion, Expr::value(next))
        .col_expr(secret::Column::UpdatedAt, Expr::value(at))
        .col_expr(
            secret::Column::UpdatedBy,
            Expr::value(Some(actor.principal.id)),
        )
        .filter(secret::Column::Id.eq(current.id))
        .filter(secret::Column::CurrentVersion.eq(current.current_version));
    if let Some(description) = &change.description {
        let text = description.clone().map(Description::into_inner);
        write = write.col_expr(secret::Column::Description, Expr::value(text));
    }
    // Rotation is due a period after the value's last change.
    let period = change
        .rotation_period_days
        .unwrap_or(current.rotation_period_days);
    let changed = if change.value.is_some() {
        Some(at)
    } else {
        current.value_changed_at
    };
    if change.value.is_some() {
        write = write.col_expr(secret::Column::ValueChangedAt, Expr::value(Some(at)));
    }
    if change.value.is_some() || change.rotation_period_days.is_some() {
        let due = changed.and_then(|changed| rotation_due(changed, period));
        write = write
            .col_expr(secret::Column::RotationPeriodDays, Expr::value(period))
            .col_expr(secret::Column::RotationDueAt, Expr::value(due));
    }
    if write.exec(&txn).await?.rows_affected != 1 {
        return Err(Error::Internal(
            "a locked secret changed under its update".to_owned(),
        ));
    }
    let kind = match change.rolled_back_from {
        Some(_) => SecretEventKind::RolledBack,
        None => SecretEventKind::Updated,
    };
    let mut notices = vec![Notice::secret(
        org_id,
        (current.id, &current.name),
        kind,
        Some(next),
        Some(actor.principal.id),
        at,
    )];
    if let Some(sealed) = sealed {
        version_row(actor, &context, sealed).insert(&txn).await?;
        prune_versions(&txn, current.id, next, retention).await?;
        // Up to date until now: pinned to the version this update replaced.
        for dependent in dependents::dependents(&txn, org_id, &change.name).await? {
            if dependent.state == DependentState::Stale
                && dependent.deployed_version == Some(current.current_version)
            {
                let previous = Some(DependentState::UpToDate);
                notices.push(Notice::dependent(
                    org_id,
                    &current.name,
                    &dependent,
                    previous,
                    at,
                ));
            }
        }
    }
    let action = match change.rolled_back_from {
        Some(_) => "secret.rollback",
        None => "secret.update",
    };
    let event = Event::allowed(action, Target::secret(Some(current.id), &current.name))
        .with_detail(serde_json::json!({
            "version": next,
            "valueChanged": change.value.is_some(),
            "descriptionChanged": change.description.is_some(),
            "rotationPeriodDays": period,
            "rolledBackFrom": change.rolled_back_from,
        }));
    audit::record(&txn, actor, event).await?;
    db.events().commit(txn, notices).await?;

    let description = match change.description {
        Some(d) => d.map(Description::into_inner),
        None => current.description,
    };
    let rotation_due_at = if change.value.is_some() || change.rotation_period_days.is_some() {
        changed.and_then(|changed| rotation_due(changed, period))
    } else {
        current.rotation_due_at
    };
    Ok(secret::Model {
        current_version: next,
        updated_at: at,
        updated_by: Some(actor.principal.id),
        description,
        rotation_period_days: period,
        value_changed_at: changed,
        rotation_due_at,
        ..current
    })
}

/// Check-and-set: `VERSION_CONFLICT` unless the secret is at the expected version.
fn check_expected(expected: Option<i32>, current: i32) -> Result<()> {
    match expected {
        Some(expected) if expected != current => Err(Error::VersionConflict { expected, current }),
        _ => Ok(()),
    }
}

/// Destroys versions older than the newest `retention`, except those an active
/// deployment is pinned to (crypto-shredding: their wrapped data keys go with them).
async fn prune_versions<C: ConnectionTrait>(
    conn: &C,
    secret_id: Uuid,
    newest: i32,
    retention: u32,
) -> Result<u64> {
    let keep_from = newest.saturating_sub(i32::try_from(retention).unwrap_or(i32::MAX)) + 1;
    if keep_from <= 1 {
        // No version is old enough yet.
        return Ok(0);
    }
    // One statement: the pins are read by the delete itself.
    let result = secret_version::Entity::delete_many()
        .filter(secret_version::Column::SecretId.eq(secret_id))
        .filter(secret_version::Column::Version.lt(keep_from))
        .filter(
            secret_version::Column::Version
                .not_in_subquery(dependents::active_pinned_versions(secret_id)),
        )
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// What a delete did, or would do.
#[derive(Debug)]
pub struct DeleteOutcome {
    /// The deleted secret; `None` on a dry run.
    pub deleted: Option<secret::Model>,
    /// Every resource that references the secret, as it stands afterwards.
    pub affected: Vec<Dependent>,
}

/// Deletes a secret: schedules its purge `window` from now (it becomes `DELETED`: its
/// values unreadable, its name reserved, restorable until then), or, with a zero window,
/// destroys every version and wrapped data key at once.
///
/// A secret that deployed resources use is only deleted with `force`; then every current
/// deployment pinned to it is marked failed (its dependents report `BROKEN`), all in one
/// transaction with the audit event. `dry_run` changes nothing and lists the impact.
///
/// The dependents are read inside the writing transaction, after the secret's row is
/// locked: a deploy that pins it either committed first (and is seen here, so a delete
/// without `force` refuses) or waits on the lock and then finds the secret gone.
pub async fn delete(
    db: &Db,
    actor: &Actor,
    name: &SecretName,
    force: bool,
    dry_run: bool,
    window: chrono::TimeDelta,
) -> Result<DeleteOutcome> {
    let org_id = actor.org_id();
    if dry_run {
        find_existing(db.read(), org_id, name).await?;
        return Ok(DeleteOutcome {
            deleted: None,
            affected: dependents::dependents(db.read(), org_id, name).await?,
        });
    }
    let at = now();
    let txn = db::begin_write(db).await?;
    let secret = secret::Entity::find()
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::NameKey.eq(name.key()))
        .filter(secret::Column::State.ne(SecretState::Deleted.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found(format!("secret {name}")))?;
    let affected = dependents::dependents(&txn, org_id, name).await?;
    let blockers: Vec<Blocker> = affected
        .iter()
        .filter(|d| d.state.is_deployed())
        .map(Dependent::blocker)
        .collect();
    if !blockers.is_empty() && !force {
        txn.rollback().await?;
        return Err(Error::HasDependents(blockers));
    }
    let purge_at = at + window;
    let (secret, destroyed) = if window <= chrono::TimeDelta::zero() {
        let destroyed = shred(&txn, secret.id).await?;
        (secret, Some(destroyed))
    } else {
        secret::Entity::update_many()
            .col_expr(
                secret::Column::State,
                Expr::value(SecretState::Deleted.as_str()),
            )
            .col_expr(secret::Column::DeletedAt, Expr::value(Some(at)))
            .col_expr(secret::Column::PurgeAt, Expr::value(Some(purge_at)))
            .filter(secret::Column::Id.eq(secret.id))
            .exec(&txn)
            .await?;
        let deleted = secret::Model {
            state: SecretState::Deleted.as_str().to_owned(),
            deleted_at: Some(at),
            purge_at: Some(purge_at),
            ..secret
        };
        (deleted, None)
    };
    let broken = dependents::fail_deployments_pinned_to(
        &txn,
        secret.id,
        at,
        &format!("secret {} was deleted", secret.name),
    )
    .await?;
    let event = Event::allowed(
        "secret.delete",
        Target::secret(Some(secret.id), &secret.name),
    )
    .with_detail(serde_json::json!({
        "purgeAt": destroyed.is_none().then_some(purge_at),
        "versionsDestroyed": destroyed,
        "force": force,
        "brokenDeployments": broken,
    }));
    audit::record(&txn, actor, event).await?;
    // With the secret gone, every reference to it is broken.
    let announce = |kind| {
        Notice::secret(
            org_id,
            (secret.id, &secret.name),
            kind,
            Some(secret.current_version),
            Some(actor.principal.id),
            at,
        )
    };
    let mut notices = vec![announce(SecretEventKind::Deleted)];
    if destroyed.is_some() {
        notices.push(announce(SecretEventKind::Purged));
    }
    let affected: Vec<Dependent> = affected
        .into_iter()
        .map(|d| {
            if d.state != DependentState::Broken {
                let broken = Dependent {
                    state: DependentState::Broken,
                    ..d.clone()
                };
                notices.push(Notice::dependent(
                    org_id,
                    &secret.name,
                    &broken,
                    Some(d.state),
                    at,
                ));
            }
            Dependent {
                state: DependentState::Broken,
                ..d
            }
        })
        .collect();
    db.events().commit(txn, notices).await?;
    Ok(DeleteOutcome {
        deleted: Some(secret),
        affected,
    })
}

/// Destroys a secret's versions (their wrapped data keys with them) and its row.
pub(crate) async fn shred<C: ConnectionTrait>(conn: &C, secret_id: Uuid) -> Result<u64> {
    let destroyed = secret_version::Entity::delete_many()
        .filter(secret_version::Column::SecretId.eq(secret_id))
        .exec(conn)
        .await?
        .rows_affected;
    secret::Entity::delete_many()
        .filter(secret::Column::Id.eq(secret_id))
        .exec(conn)
        .await?;
    Ok(destroyed)
}

/// A version's data key as stored.
pub(crate) fn wrapped_key_of(row: &secret_version::Model) -> WrappedKey {
    WrappedKey {
        key_id: row.key_id.clone(),
        blob: row.wrapped_key.clone(),
    }
}

/// The rows of `name_keys` that exist, share-locked until the transaction ends: a deploy
/// pins their current versions, and no update or delete of them commits in between.
pub async fn lock_for_pinning<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name_keys: &[String],
) -> Result<Vec<secret::Model>> {
    Ok(by_name_keys(org_id, name_keys)
        // One order for every locker, so two of them cannot wait on each other.
        .order_by_asc(secret::Column::Id)
        .lock_shared()
        .all(conn)
        .await?)
}

/// Stored versions by `(secret id, version number)`, in one statement.
pub async fn versions_by_number<C: ConnectionTrait>(
    conn: &C,
    wanted: &[(Uuid, i32)],
) -> Result<HashMap<(Uuid, i32), secret_version::Model>> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let any = wanted
        .iter()
        .fold(Condition::any(), |any, (secret_id, version)| {
            any.add(
                Condition::all()
                    .add(secret_version::Column::SecretId.eq(*secret_id))
                    .add(secret_version::Column::Version.eq(*version)),
            )
        });
    Ok(secret_version::Entity::find()
        .filter(any)
        .all(conn)
        .await?
        .into_iter()
        .map(|v| ((v.secret_id, v.version), v))
        .collect())
}

/// The secrets of `name_keys` that are not deleted (a deleted one is missing to a deploy,
/// a fetch or a reference).
fn by_name_keys(org_id: Uuid, name_keys: &[String]) -> sea_orm::Select<secret::Entity> {
    secret::Entity::find()
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::NameKey.is_in(name_keys.iter().cloned()))
        .filter(secret::Column::State.ne(SecretState::Deleted.as_str()))
}

/// Secrets of an organization by case-folded name (batched loading).
pub async fn find_many<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name_keys: &[String],
) -> Result<Vec<secret::Model>> {
    Ok(by_name_keys(org_id, name_keys).all(conn).await?)
}

/// Listing filter.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    /// Only this state; without it, every secret but the deleted ones.
    pub state: Option<SecretState>,
    /// Only secrets whose value no one revealed or fetched since then (or ever).
    pub not_accessed_since: Option<DateTime<Utc>>,
    /// Only secrets whose rotation is due (`true`) or not due (`false`) at `now`.
    pub rotation_due: Option<(bool, DateTime<Utc>)>,
}

fn filtered(org_id: Uuid, filter: &ListFilter) -> Result<sea_orm::Select<secret::Entity>> {
    let mut query = secret::Entity::find().filter(secret::Column::OrgId.eq(org_id));
    query = match filter.state {
        Some(state) => query.filter(secret::Column::State.eq(state.as_str())),
        None => query.filter(secret::Column::State.ne(SecretState::Deleted.as_str())),
    };
    if let Some(since) = filter.not_accessed_since {
        query = query.filter(
            Condition::any()
                .add(secret::Column::LastAccessedAt.is_null())
                .add(secret::Column::LastAccessedAt.lt(since)),
        );
    }
    match filter.rotation_due {
        Some((true, at)) => query = query.filter(secret::Column::RotationDueAt.lte(at)),
        Some((false, at)) => {
            query = query.filter(
                Condition::any()
                    .add(secret::Column::RotationDueAt.is_null())
                    .add(secret::Column::RotationDueAt.gt(at)),
            );
        }
        None => {}
    }
    if let Some(part) = &filter.name_contains {
        if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || part.len() > 128 {
            return Err(Error::bad_input(
                "`nameContains` may only hold characters a secret name can hold",
            ));
        }
        // `_` is a LIKE wildcard and a name character: match it literally.
        let pattern = format!("%{}%", part.to_ascii_lowercase().replace('_', "\\_"));
        query = query.filter(secret::Column::NameKey.like(LikeExpr::new(pattern).escape('\\')));
    }
    Ok(query)
}

/// A page of the organization's secrets ordered by name (case-insensitively); the cursor
/// is the case-folded name.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    filter: &ListFilter,
    page: &PageRequest<String>,
) -> Result<Page<secret::Model>> {
    // A cursor is a case-folded name this list gave out; anything else (it is the
    // client's to send) never reaches the database.
    for cursor in page.after.iter().chain(&page.before) {
        if SecretName::parse(cursor).is_err() {
            return Err(Error::bad_input(
                "a cursor (`after` or `before`) that this list did not give out",
            ));
        }
    }
    let query = filtered(org_id, filter)?;
    page.fetch(conn, query, secret::Column::NameKey, Natural::Ascending)
        .await
}

pub async fn count<C: ConnectionTrait>(conn: &C, org_id: Uuid, filter: &ListFilter) -> Result<u64> {
    Ok(filtered(org_id, filter)?.count(conn).await?)
}

/// Pages of several secrets' retained versions, newest first, in one statement: each
/// secret's versions are numbered within it (a window function) and the first `limit + 1`
/// of each are kept, so a page of secrets with their versions is one query, not one per
/// secret. The cursor is the version number.
pub async fn versions_of_many<C: ConnectionTrait>(
    conn: &C,
    secret_ids: &[Uuid],
    page: &PageRequest<i32>,
) -> Result<HashMap<Uuid, Page<secret_version::Model>>> {
    use sea_orm::{
        FromQueryResult, Iterable,
        sea_query::{Alias, Asterisk, ExprTrait, Order, Query},
    };
    let (backward, limit) = page.direction()?;
    if backward || page.before.is_some() {
        return Err(Error::bad_input(
            "versions page forward only: use `first` and `after`",
        ));
    }
    let mut numbered = Query::select();
    for column in secret_version::Column::iter() {
        numbered.column(column);
    }
    numbered
        .expr_as(
            Expr::cust("ROW_NUMBER() OVER (PARTITION BY secret_id ORDER BY version DESC)"),
            "n",
        )
        .from(secret_version::Entity)
        .and_where(Expr::col(secret_version::Column::SecretId).is_in(secret_ids.iter().copied()));
    if let Some(after) = page.after {
        numbered.and_where(Expr::col(secret_version::Column::Version).lt(after));
    }
    let mut query = Query::select();
    query
        .column(Asterisk)
        .from_subquery(numbered, "numbered")
        .and_where(Expr::col(Alias::new("n")).lte(i64::try_from(limit).unwrap_or(i64::MAX) + 1))
        .order_by(secret_version::Column::SecretId, Order::Asc)
        .order_by(secret_version::Column::Version, Order::Desc);
    let mut rows: HashMap<Uuid, Vec<secret_version::Model>> = HashMap::new();
    for row in conn.query_all(&query).await? {
        let version = secret_version::Model::from_query_result(&row, "")?;
        rows.entry(version.secret_id).or_default().push(version);
    }
    Ok(secret_ids
        .iter()
        .map(|id| {
            let found = rows.remove(id).unwrap_or_default();
            (*id, page.finish(found, false, limit))
        })
        .collect())
}

/// How many versions each of several secrets retains, in one statement.
pub async fn count_versions_of_many<C: ConnectionTrait>(
    conn: &C,
    secret_ids: &[Uuid],
) -> Result<HashMap<Uuid, u64>> {
    let counted: HashMap<Uuid, i64> = secret_version::Entity::find()
        .select_only()
        .column(secret_version::Column::SecretId)
        .column_as(secret_version::Column::Id.count(), "n")
        .filter(secret_version::Column::SecretId.is_in(secret_ids.iter().copied()))
        .group_by(secret_version::Column::SecretId)
        .into_tuple::<(Uuid, i64)>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    Ok(secret_ids
        .iter()
        .map(|id| {
            let n = counted.get(id).copied().unwrap_or(0);
            (*id, u64::try_from(n).unwrap_or(0))
        })
        .collect())
}

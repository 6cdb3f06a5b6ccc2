//! Which resources may use a secret (DESIGN §9 "Secret access"): all of the organization's
//! (`ALL_RESOURCES`, the default) or a selected list. A deploy pins only the secrets its
//! resource may use ([`allowed_for`], inside the deploy's transaction); narrowing access
//! follows the delete rules ([`set_access`]).
use std::collections::{HashMap, HashSet};

use chrono::Utc;
use entity::{resource, secret, secret_allowed_resource};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Actor, SecretName,
    audit::{self, Event, Target},
    dependents::{self, Dependent, DependentState},
    events::Notice,
    now,
    secrets::SecretState,
};
use crate::{
    Error, Result,
    db::{self, Db},
    error::Blocker,
};

/// At most this many resources in one secret's selected list.
pub const MAX_ALLOWED_RESOURCES: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretAccess {
    AllResources,
    SelectedResources,
}

impl SecretAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllResources => "ALL_RESOURCES",
            Self::SelectedResources => "SELECTED_RESOURCES",
        }
    }

    pub fn of(row: &secret::Model) -> Self {
        match row.access.as_str() {
            "SELECTED_RESOURCES" => Self::SelectedResources,
            _ => Self::AllResources,
        }
    }
}

impl std::str::FromStr for SecretAccess {
    type Err = String;

    /// `ALL_RESOURCES` or `SELECTED_RESOURCES` (`STRONGROOM_DEFAULT_SECRET_ACCESS`).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "ALL_RESOURCES" => Ok(Self::AllResources),
            "SELECTED_RESOURCES" => Ok(Self::SelectedResources),
            other => Err(format!(
                "{other:?} is not a secret access: use ALL_RESOURCES or SELECTED_RESOURCES"
            )),
        }
    }
}

/// Of `secrets` (rows the caller has locked), those `resource_id` may use.
pub async fn allowed_for<C: ConnectionTrait>(
    conn: &C,
    resource_id: Uuid,
    secrets: &[&secret::Model],
) -> Result<HashSet<Uuid>> {
    let selected: Vec<Uuid> = secrets
        .iter()
        .filter(|s| SecretAccess::of(s) == SecretAccess::SelectedResources)
        .map(|s| s.id)
        .collect();
    let listed: HashSet<Uuid> = if selected.is_empty() {
        HashSet::new()
    } else {
        secret_allowed_resource::Entity::find()
            .filter(secret_allowed_resource::Column::ResourceId.eq(resource_id))
            .filter(secret_allowed_resource::Column::SecretId.is_in(selected))
            .all(conn)
            .await?
            .into_iter()
            .map(|row| row.secret_id)
            .collect()
    };
    Ok(secrets
        .iter()
        .filter(|s| SecretAccess::of(s) == SecretAccess::AllResources || listed.contains(&s.id))
        .map(|s| s.id)
        .collect())
}

/// The resources each of several secrets lists (batched loading), by name.
pub async fn allowed_resources_of<C: ConnectionTrait>(
    conn: &C,
    secret_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<resource::Model>>> {
    let rows = secret_allowed_resource::Entity::find()
        .filter(secret_allowed_resource::Column::SecretId.is_in(secret_ids.iter().copied()))
        .find_also_related(resource::Entity)
        .order_by_asc(resource::Column::Name)
        .all(conn)
        .await?;
    let mut allowed: HashMap<Uuid, Vec<resource::Model>> = HashMap::new();
    for (row, resource) in rows {
        if let Some(resource) = resource {
            allowed.entry(row.secret_id).or_default().push(resource);
        }
    }
    Ok(allowed)
}

/// What `setSecretAccess` asks for.
pub struct AccessChange {
    pub name: SecretName,
    pub access: SecretAccess,
    /// The resources allowed with `SELECTED_RESOURCES`; none with `ALL_RESOURCES`.
    pub resource_ids: Vec<Uuid>,
    pub force: bool,
    pub dry_run: bool,
}

pub struct AccessOutcome {
    /// The secret as it stands afterwards (as it is, on a dry run).
    pub secret: secret::Model,
    /// The deployed dependents that lose the secret: as they stand on a dry run, `BROKEN`
    /// once forced.
    pub affected: Vec<Dependent>,
}

/// Sets which resources may use a secret. Narrowing follows the delete rules: a deployed
/// dependent that would lose the secret blocks it (`HAS_DEPENDENTS`) unless `force`, which
/// fails those deployments (their dependents `BROKEN`); `dry_run` shows them and changes
/// nothing. Everything is decided inside the writing transaction on the secret's locked
/// row, which a deploy share-locks before pinning it: a deploy and a narrowing that race
/// never both win. Audited (`secret.set_access`); every dependent whose state changes is
/// announced.
pub async fn set_access(db: &Db, actor: &Actor, change: AccessChange) -> Result<AccessOutcome> {
    let org_id = actor.org_id();
    let mut listed: Vec<Uuid> = Vec::new();
    for id in &change.resource_ids {
        if !listed.contains(id) {
            listed.push(*id);
        }
    }
    match change.access {
        SecretAccess::AllResources if !listed.is_empty() => {
            return Err(Error::bad_input(
                "resourceIds are for SELECTED_RESOURCES access; ALL_RESOURCES lets every \
                 resource use the secret",
            ));
        }
        _ if listed.len() > MAX_ALLOWED_RESOURCES => {
            return Err(Error::bad_input(format!(
                "a secret lists at most {MAX_ALLOWED_RESOURCES} resources"
            )));
        }
        _ => {}
    }
    let txn = db::begin_write(db).await?;
    let secret = secret::Entity::find()
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::NameKey.eq(change.name.key()))
        .filter(secret::Column::State.ne(SecretState::Deleted.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found(format!("secret {}", change.name)))?;
    let found = resource::Entity::find()
        .filter(resource::Column::OrgId.eq(org_id))
        .filter(resource::Column::Id.is_in(listed.iter().copied()))
        .all(&txn)
        .await?;
    if found.len() != listed.len() {
        txn.rollback().await?;
        return Err(Error::not_found("resource"));
    }
    let allowed: HashSet<Uuid> = listed.iter().copied().collect();
    let loses = |d: &Dependent| {
        d.state.is_deployed()
            && change.access == SecretAccess::SelectedResources
            && !allowed.contains(&d.resource.id)
    };
    let before = dependents::dependents(&txn, org_id, &change.name).await?;
    let losing: Vec<&Dependent> = before.iter().filter(|d| loses(d)).collect();
    if change.dry_run {
        let affected = losing.into_iter().cloned().collect();
        txn.rollback().await?;
        return Ok(AccessOutcome { secret, affected });
    }
    if !losing.is_empty() && !change.force {
        let blockers: Vec<Blocker> = losing.iter().map(|d| d.blocker()).collect();
        txn.rollback().await?;
        return Err(Error::HasDependents(blockers));
    }

    let at = now();
    secret::Entity::update_many()
        .col_expr(secret::Column::Access, Expr::value(change.access.as_str()))
        .filter(secret::Column::Id.eq(secret.id))
        .exec(&txn)
        .await?;
    secret_allowed_resource::Entity::delete_many()
        .filter(secret_allowed_resource::Column::SecretId.eq(secret.id))
        .exec(&txn)
        .await?;
    if !listed.is_empty() {
        let rows = listed
            .iter()
            .map(|resource_id| secret_allowed_resource::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(org_id),
                secret_id: Set(secret.id),
                resource_id: Set(*resource_id),
                created_at: Set(at),
            });
        secret_allowed_resource::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
    }
    let losing_resources: Vec<Uuid> = losing.iter().map(|d| d.resource.id).collect();
    let broken = dependents::fail_deployments_pinning(
        &txn,
        secret.id,
        &losing_resources,
        at,
        &format!("resources no longer allowed to use secret {}", secret.name),
    )
    .await?;
    let after = dependents::dependents(&txn, org_id, &change.name).await?;
    let event = Event::allowed(
        "secret.set_access",
        Target::secret(Some(secret.id), &secret.name),
    )
    .with_detail(serde_json::json!({
        "access": change.access.as_str(),
        "resourceIds": listed,
        "force": change.force,
        "brokenDeployments": broken,
    }));
    audit::record(&txn, actor, event).await?;
    let notices = changed_states(org_id, &secret.name, &before, &after, at);
    db.events().commit(txn, notices).await?;
    let affected = after
        .into_iter()
        .filter(|d| losing_resources.contains(&d.resource.id))
        .collect();
    Ok(AccessOutcome {
        secret: secret::Model {
            access: change.access.as_str().to_owned(),
            ..secret
        },
        affected,
    })
}

/// A notice for every dependent whose state differs between `before` and `after`.
fn changed_states(
    org_id: Uuid,
    secret_name: &str,
    before: &[Dependent],
    after: &[Dependent],
    at: chrono::DateTime<Utc>,
) -> Vec<Notice> {
    let was: HashMap<(Uuid, &str), DependentState> = before
        .iter()
        .map(|d| ((d.resource.id, d.field.as_str()), d.state))
        .collect();
    after
        .iter()
        .filter_map(|d| {
            let previous = was.get(&(d.resource.id, d.field.as_str())).copied();
            (previous != Some(d.state))
                .then(|| Notice::dependent(org_id, secret_name, d, previous, at))
        })
        .collect()
}

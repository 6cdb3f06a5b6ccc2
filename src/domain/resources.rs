//! Resources (pipelines and integrations), the secrets they reference, their deployments
//! pinned to secret versions, and the dependents of a secret: strongroom's edge.
//!
//! A deployment is an immutable snapshot: for every reference it pins the secret version
//! that was current when it was deployed. A resource's *current* deployment is its one
//! deployment that is not `SUPERSEDED`: `ACTIVE`, or `FAILED` once a pinned secret was
//! force-deleted.
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{deployment, deployment_pin, resource, resource_reference, secret};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

use super::{
    Actor, Description, Natural, Page, PageRequest, ReferenceField, ResourceName, SecretName,
    SecretValue,
    audit::{self, Event, Target},
    now, secrets,
};
use crate::{Error, Result, crypto::KeyProvider, db};

/// At most this many references per resource.
pub const MAX_REFERENCES: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    Pipeline,
    Integration,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pipeline => "PIPELINE",
            Self::Integration => "INTEGRATION",
        }
    }

    pub fn parse(stored: &str) -> Result<Self> {
        match stored {
            "PIPELINE" => Ok(Self::Pipeline),
            "INTEGRATION" => Ok(Self::Integration),
            other => Err(Error::Internal(format!("unknown resource kind {other:?}"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentState {
    Active,
    Failed,
    Superseded,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Failed => "FAILED",
            Self::Superseded => "SUPERSEDED",
        }
    }

    pub fn parse(stored: &str) -> Result<Self> {
        match stored {
            "ACTIVE" => Ok(Self::Active),
            "FAILED" => Ok(Self::Failed),
            "SUPERSEDED" => Ok(Self::Superseded),
            other => Err(Error::Internal(format!(
                "unknown deployment state {other:?}"
            ))),
        }
    }
}

/// How a dependent stands with respect to a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DependentState {
    /// The current deployment is pinned to the secret's current version.
    UpToDate,
    /// The current deployment is pinned to an older version: redeploy to pick it up.
    Stale,
    /// No current deployment uses this reference.
    NotDeployed,
    /// The current deployment failed because the secret was deleted, or the secret does
    /// not exist.
    Broken,
}

impl DependentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UP_TO_DATE",
            Self::Stale => "STALE",
            Self::NotDeployed => "NOT_DEPLOYED",
            Self::Broken => "BROKEN",
        }
    }

    /// Whether a running deployment uses the secret (deleting it would break something).
    pub fn is_deployed(self) -> bool {
        matches!(self, Self::UpToDate | Self::Stale)
    }
}

/// A resource that references a secret, and how it stands.
#[derive(Clone, Debug)]
pub struct Dependent {
    pub resource: resource::Model,
    pub field: String,
    pub state: DependentState,
    pub deployed_version: Option<i32>,
    pub deployed_at: Option<DateTime<Utc>>,
}

/// One reference as given by a client.
pub struct NewReference {
    pub secret_name: SecretName,
    pub field: ReferenceField,
}

pub struct ResourceSpec {
    pub kind: ResourceKind,
    pub name: ResourceName,
    pub description: Option<Description>,
    pub references: Vec<NewReference>,
}

pub async fn find<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<resource::Model>> {
    Ok(resource::Entity::find_by_id(id)
        .filter(resource::Column::OrgId.eq(org_id))
        .one(conn)
        .await?)
}

async fn find_existing<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    id: Uuid,
) -> Result<resource::Model> {
    find(conn, org_id, id)
        .await?
        .ok_or_else(|| Error::not_found("resource"))
}

fn filtered(org_id: Uuid, kind: Option<ResourceKind>) -> sea_orm::Select<resource::Entity> {
    let query = resource::Entity::find().filter(resource::Column::OrgId.eq(org_id));
    match kind {
        Some(kind) => query.filter(resource::Column::Kind.eq(kind.as_str())),
        None => query,
    }
}

/// A page of the organization's resources, oldest first; the cursor is the id.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    kind: Option<ResourceKind>,
    page: &PageRequest<Uuid>,
) -> Result<Page<resource::Model>> {
    page.fetch(
        conn,
        filtered(org_id, kind),
        resource::Column::Id,
        Natural::Ascending,
    )
    .await
}

pub async fn count<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    kind: Option<ResourceKind>,
) -> Result<u64> {
    Ok(filtered(org_id, kind).count(conn).await?)
}

/// The references of several resources (batched loading).
pub async fn references_of<C: ConnectionTrait>(
    conn: &C,
    resource_ids: &[Uuid],
) -> Result<Vec<resource_reference::Model>> {
    Ok(resource_reference::Entity::find()
        .filter(resource_reference::Column::ResourceId.is_in(resource_ids.iter().copied()))
        .all(conn)
        .await?)
}

/// The current (not superseded) deployments of several resources (batched loading).
pub async fn current_deployments<C: ConnectionTrait>(
    conn: &C,
    resource_ids: &[Uuid],
) -> Result<Vec<deployment::Model>> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::ResourceId.is_in(resource_ids.iter().copied()))
        .filter(deployment::Column::State.ne(DeploymentState::Superseded.as_str()))
        .all(conn)
        .await?)
}

pub async fn pins_of<C: ConnectionTrait>(
    conn: &C,
    deployment_ids: &[Uuid],
) -> Result<Vec<deployment_pin::Model>> {
    Ok(deployment_pin::Entity::find()
        .filter(deployment_pin::Column::DeploymentId.is_in(deployment_ids.iter().copied()))
        .all(conn)
        .await?)
}

/// Creates the resource `kind`+`name`, or replaces its description and references.
/// Its deployments are untouched: they keep what they were deployed with.
pub async fn upsert(
    db: &DatabaseConnection,
    actor: &Actor,
    mut spec: ResourceSpec,
) -> Result<resource::Model> {
    if spec.references.len() > MAX_REFERENCES {
        return Err(Error::bad_input(format!(
            "a resource has at most {MAX_REFERENCES} references"
        )));
    }
    // The same secret at the same field twice is one reference.
    let mut seen = HashSet::new();
    spec.references
        .retain(|r| seen.insert((r.secret_name.key(), r.field.as_str().to_owned())));
    // Two clients creating the same resource at once: the second INSERT meets the unique
    // index after the first commits; the retry finds the row and replaces it.
    match upsert_once(db, actor, &spec).await? {
        Some(row) => Ok(row),
        None => upsert_once(db, actor, &spec).await?.ok_or_else(|| {
            Error::AlreadyExists(format!(
                "{} {} (created and deleted concurrently; retry to replace it)",
                spec.kind.as_str(),
                spec.name.as_str()
            ))
        }),
    }
}

/// One attempt at an upsert; `None` when a concurrent create of the same resource won.
async fn upsert_once(
    db: &DatabaseConnection,
    actor: &Actor,
    spec: &ResourceSpec,
) -> Result<Option<resource::Model>> {
    let org_id = actor.org_id();
    let at = now();
    let description = spec.description.clone().map(Description::into_inner);
    let txn = db::begin_write(db).await?;
    // Locked: a deploy of this resource reads its references under the same lock.
    let existing = resource::Entity::find()
        .filter(resource::Column::OrgId.eq(org_id))
        .filter(resource::Column::Kind.eq(spec.kind.as_str()))
        .filter(resource::Column::Name.eq(spec.name.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?;
    let row = match existing {
        Some(row) => {
            resource::Entity::update_many()
                .col_expr(
                    resource::Column::Description,
                    Expr::value(description.clone()),
                )
                .col_expr(resource::Column::UpdatedAt, Expr::value(at))
                .col_expr(
                    resource::Column::UpdatedBy,
                    Expr::value(Some(actor.principal.id)),
                )
                .filter(resource::Column::Id.eq(row.id))
                .exec(&txn)
                .await?;
            resource_reference::Entity::delete_many()
                .filter(resource_reference::Column::ResourceId.eq(row.id))
                .exec(&txn)
                .await?;
            resource::Model {
                description,
                updated_at: at,
                updated_by: Some(actor.principal.id),
                ..row
            }
        }
        None => {
            let inserted = resource::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(org_id),
                kind: Set(spec.kind.as_str().to_owned()),
                name: Set(spec.name.as_str().to_owned()),
                description: Set(description),
                created_at: Set(at),
                updated_at: Set(at),
                created_by: Set(Some(actor.principal.id)),
                updated_by: Set(Some(actor.principal.id)),
            }
            .insert(&txn)
            .await;
            match inserted {
                Ok(row) => row,
                Err(e) if db::is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let references = spec
        .references
        .iter()
        .map(|r| resource_reference::ActiveModel {
            id: Set(Uuid::now_v7()),
            resource_id: Set(row.id),
            org_id: Set(org_id),
            secret_name: Set(r.secret_name.as_str().to_owned()),
            secret_name_key: Set(r.secret_name.key()),
            field: Set(r.field.as_str().to_owned()),
        });
    if !spec.references.is_empty() {
        resource_reference::Entity::insert_many(references)
            .exec_without_returning(&txn)
            .await?;
    }
    let event = Event::allowed("resource.upsert", Target::resource(row.id, &row.name))
        .with_detail(serde_json::json!({
            "kind": row.kind,
            "references": spec.references.iter()
                .map(|r| serde_json::json!({ "secretName": r.secret_name.as_str(), "field": r.field.as_str() }))
                .collect::<Vec<_>>(),
        }));
    audit::record(&txn, actor, event).await?;
    txn.commit().await?;
    Ok(Some(row))
}

/// Deletes a resource with its references and deployments.
pub async fn delete(db: &DatabaseConnection, actor: &Actor, id: Uuid) -> Result<resource::Model> {
    let row = find_existing(db, actor.org_id(), id).await?;
    let txn = db::begin_write(db).await?;
    let deleted = resource::Entity::delete_many()
        .filter(resource::Column::Id.eq(row.id))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(Error::not_found("resource"));
    }
    audit::record(
        &txn,
        actor,
        Event::allowed("resource.delete", Target::resource(row.id, &row.name)),
    )
    .await?;
    txn.commit().await?;
    Ok(row)
}

/// Deploys a resource: pins the current version of every referenced secret in a new
/// deployment that replaces the previous one. Fails with `MISSING_SECRETS`, changing
/// nothing, if a referenced secret does not exist. Reveals no value.
///
/// Everything is read and checked inside the writing transaction, on locked rows: the
/// resource (deploys of one resource take turns; its references cannot change meanwhile)
/// and the referenced secrets (share-locked: a delete or update of one of them waits for
/// this deployment to commit, then sees it; one that committed first is seen here). The
/// unique index on current deployments backs this up.
pub async fn deploy(
    db: &DatabaseConnection,
    actor: &Actor,
    id: Uuid,
) -> Result<(
    resource::Model,
    deployment::Model,
    Vec<deployment_pin::Model>,
)> {
    let org_id = actor.org_id();
    let txn = db::begin_write(db).await?;
    let row = resource::Entity::find_by_id(id)
        .filter(resource::Column::OrgId.eq(org_id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found("resource"))?;
    let references = references_of(&txn, &[row.id]).await?;
    let keys: Vec<String> = unique(references.iter().map(|r| r.secret_name_key.clone()));
    let current: HashMap<String, secret::Model> = secrets::lock_for_pinning(&txn, org_id, &keys)
        .await?
        .into_iter()
        .map(|s| (s.name_key.clone(), s))
        .collect();
    let missing = unique(
        references
            .iter()
            .filter(|r| !current.contains_key(&r.secret_name_key))
            .map(|r| r.secret_name.clone()),
    );
    if !missing.is_empty() {
        txn.rollback().await?;
        return Err(Error::MissingSecrets(missing));
    }

    let at = now();
    let deployment = deployment::Model {
        id: Uuid::now_v7(),
        resource_id: row.id,
        org_id,
        state: DeploymentState::Active.as_str().to_owned(),
        deployed_at: at,
        deployed_by: Some(actor.principal.id),
        failed_at: None,
        failure_reason: None,
    };
    let pins: Vec<deployment_pin::Model> = references
        .iter()
        .filter_map(|r| current.get(&r.secret_name_key).map(|s| (r, s)))
        .map(|(r, s)| deployment_pin::Model {
            id: Uuid::now_v7(),
            deployment_id: deployment.id,
            org_id,
            secret_id: s.id,
            secret_name: s.name.clone(),
            secret_name_key: s.name_key.clone(),
            version: s.current_version,
            field: r.field.clone(),
        })
        .collect();

    deployment::Entity::update_many()
        .col_expr(
            deployment::Column::State,
            Expr::value(DeploymentState::Superseded.as_str()),
        )
        .filter(deployment::Column::ResourceId.eq(row.id))
        .filter(deployment::Column::State.ne(DeploymentState::Superseded.as_str()))
        .exec(&txn)
        .await?;
    deployment::Entity::insert(deployment::ActiveModel::from(deployment.clone()))
        .exec_without_returning(&txn)
        .await?;
    if !pins.is_empty() {
        deployment_pin::Entity::insert_many(
            pins.iter().cloned().map(deployment_pin::ActiveModel::from),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    let event = Event::allowed("resource.deploy", Target::resource(row.id, &row.name)).with_detail(
        serde_json::json!({
            "deployment": deployment.id,
            "pins": pins.iter()
                .map(|p| serde_json::json!({ "secretName": p.secret_name, "version": p.version }))
                .collect::<Vec<_>>(),
        }),
    );
    audit::record(&txn, actor, event).await?;
    txn.commit().await?;
    Ok((row, deployment, pins))
}

/// `items` without repeats, in first-seen order.
fn unique<T: Clone + Eq + std::hash::Hash>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// The dependents of each of `name_keys` (case-folded secret names) in one organization,
/// in a constant number of queries however many names are asked for.
pub async fn dependents_of<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name_keys: &[String],
) -> Result<HashMap<String, Vec<Dependent>>> {
    let references = resource_reference::Entity::find()
        .filter(resource_reference::Column::OrgId.eq(org_id))
        .filter(resource_reference::Column::SecretNameKey.is_in(name_keys.iter().cloned()))
        .all(conn)
        .await?;
    let resource_ids: Vec<Uuid> = references.iter().map(|r| r.resource_id).collect();
    let resources: HashMap<Uuid, resource::Model> = resource::Entity::find()
        .filter(resource::Column::Id.is_in(resource_ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let deployments: HashMap<Uuid, deployment::Model> = current_deployments(conn, &resource_ids)
        .await?
        .into_iter()
        .map(|d| (d.resource_id, d))
        .collect();
    let deployment_ids: Vec<Uuid> = deployments.values().map(|d| d.id).collect();
    let pins: HashMap<(Uuid, String), deployment_pin::Model> = pins_of(conn, &deployment_ids)
        .await?
        .into_iter()
        .map(|p| ((p.deployment_id, p.secret_name_key.clone()), p))
        .collect();
    let secrets: HashMap<String, secret::Model> = secrets::find_many(conn, org_id, name_keys)
        .await?
        .into_iter()
        .map(|s| (s.name_key.clone(), s))
        .collect();

    let mut by_name: HashMap<String, Vec<Dependent>> = HashMap::new();
    for reference in references {
        let Some(resource) = resources.get(&reference.resource_id) else {
            continue;
        };
        let deployment = deployments.get(&reference.resource_id);
        let pin = deployment.and_then(|d| pins.get(&(d.id, reference.secret_name_key.clone())));
        let secret = secrets.get(&reference.secret_name_key);
        let state = dependent_state(secret, deployment, pin);
        let (deployed_version, deployed_at) = match (deployment, pin) {
            (Some(d), Some(p)) => (Some(p.version), Some(d.deployed_at)),
            _ => (None, None),
        };
        by_name
            .entry(reference.secret_name_key.clone())
            .or_default()
            .push(Dependent {
                resource: resource.clone(),
                field: reference.field,
                state,
                deployed_version,
                deployed_at,
            });
    }
    for dependents in by_name.values_mut() {
        dependents.sort_by(|a, b| {
            (&a.resource.kind, &a.resource.name, &a.field).cmp(&(
                &b.resource.kind,
                &b.resource.name,
                &b.field,
            ))
        });
    }
    Ok(by_name)
}

fn dependent_state(
    secret: Option<&secret::Model>,
    deployment: Option<&deployment::Model>,
    pin: Option<&deployment_pin::Model>,
) -> DependentState {
    let failed = deployment.is_some_and(|d| d.state == DeploymentState::Failed.as_str());
    match (secret, deployment, pin) {
        _ if failed => DependentState::Broken,
        (None, _, _) => DependentState::Broken,
        // The pinned secret was deleted and another one made under its name.
        (Some(s), Some(_), Some(p)) if p.secret_id != s.id => DependentState::Broken,
        (Some(s), Some(_), Some(p)) if p.version == s.current_version => DependentState::UpToDate,
        (Some(_), Some(_), Some(_)) => DependentState::Stale,
        (Some(_), _, None) | (Some(_), None, _) => DependentState::NotDeployed,
    }
}

/// Versions of a secret that active deployments are pinned to (kept by retention).
pub async fn active_pinned_versions<C: ConnectionTrait>(
    conn: &C,
    secret_id: Uuid,
) -> Result<Vec<i32>> {
    let pins = deployment_pin::Entity::find()
        .inner_join(deployment::Entity)
        .filter(deployment_pin::Column::SecretId.eq(secret_id))
        .filter(deployment::Column::State.eq(DeploymentState::Active.as_str()))
        .all(conn)
        .await?;
    Ok(pins.into_iter().map(|p| p.version).collect())
}

/// Marks every active deployment pinned to `secret_id` as failed; returns their ids.
pub async fn fail_deployments_pinned_to<C: ConnectionTrait>(
    conn: &C,
    secret_id: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<Uuid>> {
    let pinned = Query::select()
        .column(deployment_pin::Column::DeploymentId)
        .from(deployment_pin::Entity)
        .and_where(deployment_pin::Column::SecretId.eq(secret_id))
        .to_owned();
    let failed = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::State,
            Expr::value(DeploymentState::Failed.as_str()),
        )
        .col_expr(deployment::Column::FailedAt, Expr::value(Some(at)))
        .col_expr(
            deployment::Column::FailureReason,
            Expr::value(Some(reason.to_owned())),
        )
        .filter(deployment::Column::State.eq(DeploymentState::Active.as_str()))
        .filter(deployment::Column::Id.in_subquery(pinned))
        .exec_with_returning(conn)
        .await?;
    Ok(failed.into_iter().map(|d| d.id).collect())
}

/// The dependents of one secret name.
pub async fn dependents<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name: &SecretName,
) -> Result<Vec<Dependent>> {
    let key = name.key();
    let mut all = dependents_of(conn, org_id, std::slice::from_ref(&key)).await?;
    Ok(all.remove(&key).unwrap_or_default())
}

/// The deployed dependents of `secret` pinned to an older version than its current one:
/// they need a redeploy to pick up the new value.
pub async fn stale_dependents<C: ConnectionTrait>(
    conn: &C,
    secret: &secret::Model,
) -> Result<Vec<Dependent>> {
    let key = secret.name_key.clone();
    let mut all = dependents_of(conn, secret.org_id, std::slice::from_ref(&key)).await?;
    Ok(all
        .remove(&key)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.state == DependentState::Stale)
        .collect())
}

/// A value served to a resource's runtime.
#[derive(Debug)]
pub struct ResolvedSecret {
    pub name: String,
    pub field: String,
    pub version: i32,
    pub value: SecretValue,
}

/// The values of the versions the resource's current deployment is pinned to (not the
/// current versions). Audited per call with the deployment served.
pub async fn resolve_secrets(
    db: &DatabaseConnection,
    keys: &dyn KeyProvider,
    actor: &Actor,
    id: Uuid,
) -> Result<Vec<ResolvedSecret>> {
    let org_id = actor.org_id();
    // One snapshot: a redeploy and a prune committing meanwhile cannot take a pinned
    // version away between reading the pins and reading the versions.
    let snapshot = db::begin_snapshot(db).await?;
    let row = find_existing(&snapshot, org_id, id).await?;
    let deployment = current_deployments(&snapshot, &[row.id])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("an active deployment of {}", row.name)))?;
    let pins = pins_of(&snapshot, &[deployment.id]).await?;
    let secret_ids: Vec<Uuid> = unique(pins.iter().map(|p| p.secret_id));
    let live: HashMap<Uuid, secret::Model> = secret::Entity::find()
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::Id.is_in(secret_ids))
        .all(&snapshot)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let missing = unique(
        pins.iter()
            .filter(|p| !live.contains_key(&p.secret_id))
            .map(|p| p.secret_name.clone()),
    );
    if deployment.state != DeploymentState::Active.as_str() || !missing.is_empty() {
        return Err(Error::MissingSecrets(missing));
    }
    let pinned = unique(pins.iter().map(|p| (p.secret_id, p.version)));
    let versions = secrets::versions_by_number(&snapshot, &pinned).await?;
    snapshot.commit().await?;

    // Each pinned version is decrypted once, however many fields use it.
    let mut values: BTreeMap<(Uuid, i32), SecretValue> = BTreeMap::new();
    for key in pinned {
        let (Some(secret), Some(version)) = (live.get(&key.0), versions.get(&key)) else {
            return Err(Error::Internal(format!(
                "version {} of secret {} is pinned but not retained",
                key.1, key.0
            )));
        };
        values.insert(key, secrets::decrypt_version(keys, secret, version).await?);
    }
    let event = Event::allowed(
        "resource.fetch_secrets",
        Target::resource(row.id, &row.name),
    )
    .with_detail(serde_json::json!({
        "deployment": deployment.id,
        "secrets": pins.iter()
            .map(|p| serde_json::json!({ "secretName": p.secret_name, "version": p.version }))
            .collect::<Vec<_>>(),
    }));
    audit::record(db, actor, event).await?;
    Ok(pins
        .into_iter()
        .filter_map(|pin| {
            let value = values.get(&(pin.secret_id, pin.version))?;
            Some(ResolvedSecret {
                name: pin.secret_name,
                field: pin.field,
                version: pin.version,
                value: value.duplicate(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: u128, current_version: i32) -> secret::Model {
        let at = now();
        secret::Model {
            id: Uuid::from_u128(id),
            org_id: Uuid::from_u128(100),
            name: "HOOK_KEY".into(),
            name_key: "hook_key".into(),
            description: None,
            current_version,
            created_at: at,
            updated_at: at,
            created_by: None,
            updated_by: None,
        }
    }

    fn deployment(state: DeploymentState) -> deployment::Model {
        deployment::Model {
            id: Uuid::from_u128(7),
            resource_id: Uuid::from_u128(8),
            org_id: Uuid::from_u128(100),
            state: state.as_str().into(),
            deployed_at: now(),
            deployed_by: None,
            failed_at: None,
            failure_reason: None,
        }
    }

    fn pin(secret_id: u128, version: i32) -> deployment_pin::Model {
        deployment_pin::Model {
            id: Uuid::from_u128(9),
            deployment_id: Uuid::from_u128(7),
            org_id: Uuid::from_u128(100),
            secret_id: Uuid::from_u128(secret_id),
            secret_name: "HOOK_KEY".into(),
            secret_name_key: "hook_key".into(),
            version,
            field: "sinks.alerts.hash_key".into(),
        }
    }

    #[test]
    fn dependent_states() {
        use DependentState::*;
        let active = deployment(DeploymentState::Active);
        let failed = deployment(DeploymentState::Failed);
        let current = secret(1, 3);
        let cases = [
            (Some(&current), Some(&active), Some(pin(1, 3)), UpToDate),
            (Some(&current), Some(&active), Some(pin(1, 2)), Stale),
            (Some(&current), None, None, NotDeployed),
            // Deployed before this reference was added.
            (Some(&current), Some(&active), None, NotDeployed),
            (Some(&current), Some(&failed), Some(pin(1, 3)), Broken),
            (None, None, None, Broken),
            (None, Some(&failed), Some(pin(1, 3)), Broken),
            // Deleted and re-created under the same name since the deployment.
            (Some(&current), Some(&active), Some(pin(2, 3)), Broken),
        ];
        for (secret, deployment, pin, expected) in cases {
            assert_eq!(dependent_state(secret, deployment, pin.as_ref()), expected);
        }
    }
}

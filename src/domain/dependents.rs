//! Who depends on a secret, strongroom's edge: deployments and the versions they pin, the
//! state of every reference to a secret (up to date, stale, not deployed, broken), and
//! the lists built from them (a secret's dependents, the stale ones after an update).
//!
//! A deployment is an immutable snapshot: for every reference it pins the secret version
//! that was current when it was deployed. A resource's *current* deployment is its one
//! deployment that is not `SUPERSEDED`: `ACTIVE`, or `FAILED` once a pinned secret was
//! force-deleted.
//!
//! This module reads and marks rows; it calls no other domain module, so secrets and
//! resources can both use it.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{
    deployment, deployment_pin, resource, resource_reference, secret, secret_allowed_resource,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryFilter,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use super::SecretName;
use crate::{Error, Result, error::Blocker};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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
    /// The secret's access does not include this resource: a deploy would not pin it
    /// (shown to those who may inspect; to anyone else it reads like a missing secret).
    NotAllowed,
}

impl DependentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UP_TO_DATE",
            Self::Stale => "STALE",
            Self::NotDeployed => "NOT_DEPLOYED",
            Self::Broken => "BROKEN",
            Self::NotAllowed => "NOT_ALLOWED",
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
    /// The secret referenced, by case-folded name (what its usage is recorded under).
    pub secret_name_key: String,
    pub field: String,
    pub state: DependentState,
    pub deployed_version: Option<i32>,
    pub deployed_at: Option<DateTime<Utc>>,
}

impl Dependent {
    /// This dependent as a `HAS_DEPENDENTS` error names it.
    pub fn blocker(&self) -> Blocker {
        Blocker {
            resource_id: self.resource.id,
            kind: self.resource.kind.clone(),
            name: self.resource.name.clone(),
            field: self.field.clone(),
            state: self.state.as_str(),
            deployed_version: self.deployed_version,
        }
    }
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

/// The dependents of each of `name_keys` (case-folded secret names) in one organization,
/// in one statement however many names are asked for: each reference with its resource,
/// the resource's current deployment, that deployment's pin of the secret and the secret
/// itself, joined.
pub async fn dependents_of<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name_keys: &[String],
) -> Result<HashMap<String, Vec<Dependent>>> {
    dependents_among(conn, org_id, name_keys, None).await
}

/// [`dependents_of`], of one resource only: what a deploy of it changes, without reading
/// every other dependent of its secrets (a redeploy of a thousand stale resources would
/// otherwise read a thousand dependents for each).
pub async fn dependents_of_resource<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name_keys: &[String],
    resource_id: Uuid,
) -> Result<HashMap<String, Vec<Dependent>>> {
    dependents_among(conn, org_id, name_keys, Some(resource_id)).await
}

async fn dependents_among<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name_keys: &[String],
    resource_id: Option<Uuid>,
) -> Result<HashMap<String, Vec<Dependent>>> {
    if name_keys.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query = dependents_query(org_id, name_keys);
    if let Some(resource_id) = resource_id {
        query.and_where(
            Expr::col((
                resource_reference::Entity,
                resource_reference::Column::ResourceId,
            ))
            .eq(resource_id),
        );
    }
    let rows = conn.query_all(&query).await?;

    let mut by_name: HashMap<String, Vec<Dependent>> = HashMap::new();
    // A deployment pins a secret once per field that references it, all at one version:
    // one row per reference is enough.
    let mut seen = HashSet::new();
    for row in rows {
        let reference: Uuid = row.try_get("", "ref_id")?;
        if !seen.insert(reference) {
            continue;
        }
        let key: String = row.try_get("", "ref_key")?;
        let deployment: Option<(String, DateTime<Utc>)> =
            match row.try_get::<Option<Uuid>>("", "d_id")? {
                Some(_) => Some((
                    row.try_get("", "d_state")?,
                    row.try_get("", "d_deployed_at")?,
                )),
                None => None,
            };
        let pin = Pinned {
            secret_id: row.try_get("", "p_secret_id")?,
            version: row.try_get("", "p_version")?,
        };
        let secret = Current {
            id: row.try_get("", "s_id")?,
            version: row.try_get("", "s_current_version")?,
        };
        let access: Option<String> = row.try_get("", "s_access")?;
        let listed: Option<Uuid> = row.try_get("", "a_id")?;
        let allowed = access.as_deref() != Some("SELECTED_RESOURCES") || listed.is_some();
        let deployment_state = deployment
            .as_ref()
            .map(|(state, _)| DeploymentState::parse(state))
            .transpose()?;
        let state = dependent_state(secret.known(), allowed, deployment_state, pin.known());
        let (deployed_version, deployed_at) = match (&deployment, pin.version) {
            (Some((_, at)), Some(version)) => (Some(version), Some(*at)),
            _ => (None, None),
        };
        by_name.entry(key.clone()).or_default().push(Dependent {
            resource: resource::Model::from_query_result(&row, RESOURCE_PREFIX)?,
            secret_name_key: key,
            field: row.try_get("", "ref_field")?,
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

/// The one statement behind [`dependents_of`]: each reference to one of `name_keys`, with
/// its resource, the resource's current deployment, that deployment's pin of the secret,
/// and the secret as it stands.
fn dependents_query(org_id: Uuid, name_keys: &[String]) -> sea_orm::sea_query::SelectStatement {
    use resource_reference::Column as Ref;
    let mut query = Query::select();
    query
        .expr_as(Expr::col((resource_reference::Entity, Ref::Id)), "ref_id")
        .expr_as(
            Expr::col((resource_reference::Entity, Ref::SecretNameKey)),
            "ref_key",
        )
        .expr_as(
            Expr::col((resource_reference::Entity, Ref::Field)),
            "ref_field",
        )
        .expr_as(
            Expr::col((deployment::Entity, deployment::Column::Id)),
            "d_id",
        )
        .expr_as(
            Expr::col((deployment::Entity, deployment::Column::State)),
            "d_state",
        )
        .expr_as(
            Expr::col((deployment::Entity, deployment::Column::DeployedAt)),
            "d_deployed_at",
        )
        .expr_as(
            Expr::col((deployment_pin::Entity, deployment_pin::Column::SecretId)),
            "p_secret_id",
        )
        .expr_as(
            Expr::col((deployment_pin::Entity, deployment_pin::Column::Version)),
            "p_version",
        )
        .expr_as(Expr::col((secret::Entity, secret::Column::Id)), "s_id")
        .expr_as(
            Expr::col((secret::Entity, secret::Column::CurrentVersion)),
            "s_current_version",
        )
        .expr_as(
            Expr::col((secret::Entity, secret::Column::Access)),
            "s_access",
        )
        .expr_as(
            Expr::col((
                secret_allowed_resource::Entity,
                secret_allowed_resource::Column::Id,
            )),
            "a_id",
        );
    for column in resource::Column::iter() {
        let alias = format!("{RESOURCE_PREFIX}{}", column.as_str());
        query.expr_as(Expr::col((resource::Entity, column)), alias);
    }
    query
        .from(resource_reference::Entity)
        .inner_join(
            resource::Entity,
            Expr::col((resource::Entity, resource::Column::Id))
                .equals((resource_reference::Entity, Ref::ResourceId)),
        )
        .left_join(
            deployment::Entity,
            Condition::all()
                .add(
                    Expr::col((deployment::Entity, deployment::Column::ResourceId))
                        .equals((resource_reference::Entity, Ref::ResourceId)),
                )
                .add(
                    Expr::col((deployment::Entity, deployment::Column::State))
                        .ne(DeploymentState::Superseded.as_str()),
                ),
        )
        .left_join(
            deployment_pin::Entity,
            Condition::all()
                .add(
                    Expr::col((deployment_pin::Entity, deployment_pin::Column::DeploymentId))
                        .equals((deployment::Entity, deployment::Column::Id)),
                )
                .add(
                    Expr::col((
                        deployment_pin::Entity,
                        deployment_pin::Column::SecretNameKey,
                    ))
                    .equals((resource_reference::Entity, Ref::SecretNameKey)),
                ),
        )
        .left_join(
            secret::Entity,
            Condition::all()
                .add(
                    Expr::col((secret::Entity, secret::Column::OrgId))
                        .equals((resource_reference::Entity, Ref::OrgId)),
                )
                .add(
                    Expr::col((secret::Entity, secret::Column::NameKey))
                        .equals((resource_reference::Entity, Ref::SecretNameKey)),
                )
                // A deleted secret (awaiting purge) is missing to its dependents: broken.
                .add(Expr::col((secret::Entity, secret::Column::State)).ne("DELETED")),
        )
        // Whether the secret lists this resource (what matters with selected access).
        .left_join(
            secret_allowed_resource::Entity,
            Condition::all()
                .add(
                    Expr::col((
                        secret_allowed_resource::Entity,
                        secret_allowed_resource::Column::SecretId,
                    ))
                    .equals((secret::Entity, secret::Column::Id)),
                )
                .add(
                    Expr::col((
                        secret_allowed_resource::Entity,
                        secret_allowed_resource::Column::ResourceId,
                    ))
                    .equals((resource_reference::Entity, Ref::ResourceId)),
                ),
        )
        .and_where(Expr::col((resource_reference::Entity, Ref::OrgId)).eq(org_id))
        .and_where(
            Expr::col((resource_reference::Entity, Ref::SecretNameKey))
                .is_in(name_keys.iter().cloned()),
        );
    query
}

/// Column aliases of the resource's columns in [`dependents_of`].
const RESOURCE_PREFIX: &str = "r_";

/// A secret as it stands now: its id and current version (both absent: no such secret).
struct Current {
    id: Option<Uuid>,
    version: Option<i32>,
}

impl Current {
    fn known(&self) -> Option<(Uuid, i32)> {
        self.id.zip(self.version)
    }
}

/// What a deployment pinned: the secret's id and version (both absent: no pin).
struct Pinned {
    secret_id: Option<Uuid>,
    version: Option<i32>,
}

impl Pinned {
    fn known(&self) -> Option<(Uuid, i32)> {
        self.secret_id.zip(self.version)
    }
}

/// How a reference stands, from the secret `(id, current version)`, whether its access
/// allows the resource, the state of the resource's current deployment and that
/// deployment's pin `(secret id, version)`.
fn dependent_state(
    secret: Option<(Uuid, i32)>,
    allowed: bool,
    deployment: Option<DeploymentState>,
    pin: Option<(Uuid, i32)>,
) -> DependentState {
    match (secret, deployment, pin) {
        (_, Some(DeploymentState::Failed), _) | (None, _, _) => DependentState::Broken,
        // Narrowing access never leaves an active pin behind (it is refused, or the
        // deployment fails): not allowed means not deployable.
        (Some(_), _, _) if !allowed => DependentState::NotAllowed,
        // The pinned secret was deleted and another one made under its name.
        (Some((id, _)), Some(_), Some((pinned_id, _))) if pinned_id != id => DependentState::Broken,
        (Some((_, current)), Some(_), Some((_, pinned))) if pinned == current => {
            DependentState::UpToDate
        }
        (Some(_), Some(_), Some(_)) => DependentState::Stale,
        (Some(_), _, None) | (Some(_), None, _) => DependentState::NotDeployed,
    }
}

/// The versions of a secret that active deployments are pinned to (kept by retention), as
/// a subquery.
pub fn active_pinned_versions(secret_id: Uuid) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column((deployment_pin::Entity, deployment_pin::Column::Version))
        .from(deployment_pin::Entity)
        .inner_join(
            deployment::Entity,
            Expr::col((deployment::Entity, deployment::Column::Id))
                .equals((deployment_pin::Entity, deployment_pin::Column::DeploymentId)),
        )
        .and_where(
            Expr::col((deployment_pin::Entity, deployment_pin::Column::SecretId)).eq(secret_id),
        )
        .and_where(
            Expr::col((deployment::Entity, deployment::Column::State))
                .eq(DeploymentState::Active.as_str()),
        )
        .to_owned()
}

/// Marks every active deployment pinned to `secret_id` as failed; returns their ids.
pub async fn fail_deployments_pinned_to<C: ConnectionTrait>(
    conn: &C,
    secret_id: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<Uuid>> {
    fail_pinned(conn, secret_id, None, at, reason).await
}

async fn fail_pinned<C: ConnectionTrait>(
    conn: &C,
    secret_id: Uuid,
    resource_ids: Option<&[Uuid]>,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<Uuid>> {
    let pinned = Query::select()
        .column(deployment_pin::Column::DeploymentId)
        .from(deployment_pin::Entity)
        .and_where(deployment_pin::Column::SecretId.eq(secret_id))
        .to_owned();
    let mut failing = deployment::Entity::update_many()
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
        .filter(deployment::Column::Id.in_subquery(pinned));
    if let Some(resource_ids) = resource_ids {
        failing =
            failing.filter(deployment::Column::ResourceId.is_in(resource_ids.iter().copied()));
    }
    let failed = failing.exec_with_returning(conn).await?;
    Ok(failed.into_iter().map(|d| d.id).collect())
}

/// Marks the active deployments of `resource_ids` pinned to `secret_id` as failed;
/// returns their ids.
pub async fn fail_deployments_pinning<C: ConnectionTrait>(
    conn: &C,
    secret_id: Uuid,
    resource_ids: &[Uuid],
    at: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<Uuid>> {
    if resource_ids.is_empty() {
        return Ok(Vec::new());
    }
    fail_pinned(conn, secret_id, Some(resource_ids), at, reason).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependent_states() {
        use DependentState::*;
        let active = Some(DeploymentState::Active);
        let failed = Some(DeploymentState::Failed);
        let (one, two) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let current = Some((one, 3));
        let cases = [
            (current, active, Some((one, 3)), UpToDate),
            (current, active, Some((one, 2)), Stale),
            (current, None, None, NotDeployed),
            // Deployed before this reference was added.
            (current, active, None, NotDeployed),
            (current, failed, Some((one, 3)), Broken),
            (None, None, None, Broken),
            (None, failed, Some((one, 3)), Broken),
            // Deleted and re-created under the same name since the deployment.
            (current, active, Some((two, 3)), Broken),
        ];
        for (secret, deployment, pin, expected) in cases {
            assert_eq!(dependent_state(secret, true, deployment, pin), expected);
        }
        // Not allowed: never deployable, and broken still wins.
        let not_allowed = [
            (current, None, None, NotAllowed),
            (current, active, None, NotAllowed),
            (current, failed, Some((one, 3)), Broken),
            (None, None, None, Broken),
        ];
        for (secret, deployment, pin, expected) in not_allowed {
            assert_eq!(dependent_state(secret, false, deployment, pin), expected);
        }
    }
}

//! Resources (pipelines and integrations), the secrets they reference, and deploying them:
//! a new deployment pins the current version of every referenced secret (see
//! [`super::dependents`] for what that tells about each secret).
use std::collections::{HashMap, HashSet};

use entity::{
    deployment, deployment_pin, principal, resource, resource_reference, runtime_binding, secret,
};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
    sea_query::{Expr, OnConflict, Query},
};
use uuid::Uuid;

use super::{
    Actor, Description, Natural, Page, PageRequest, Permission, Principal, PrincipalKind,
    ReferenceField, ResourceName, Role, SecretName, access,
    audit::{self, Event, Target},
    dependents::{self, Dependent, DependentState, DeploymentState},
    events::Notice,
    now, secrets, unique,
};
use crate::{
    Error, Result,
    db::{self, Db},
};

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

/// The resources a principal may see (DESIGN §9): its organization's, and for a RUNTIME
/// principal only those bound to it. Every read of resources on behalf of a caller goes
/// through this, so an unbound resource reads exactly like one that does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visible {
    org_id: Uuid,
    bound_to: Option<Uuid>,
}

impl Visible {
    pub fn to(principal: &Principal) -> Self {
        Self {
            org_id: principal.org_id,
            bound_to: (principal.role == Role::Runtime).then_some(principal.id),
        }
    }

    fn select(self) -> sea_orm::Select<resource::Entity> {
        let query = resource::Entity::find().filter(resource::Column::OrgId.eq(self.org_id));
        match self.bound_to {
            None => query,
            Some(principal_id) => query.filter(
                resource::Column::Id.in_subquery(
                    Query::select()
                        .column(runtime_binding::Column::ResourceId)
                        .from(runtime_binding::Entity)
                        .and_where(runtime_binding::Column::PrincipalId.eq(principal_id))
                        .to_owned(),
                ),
            ),
        }
    }
}

/// A resource by id, if `visible` includes it.
pub async fn find_visible<C: ConnectionTrait>(
    conn: &C,
    visible: Visible,
    id: Uuid,
) -> Result<Option<resource::Model>> {
    Ok(visible
        .select()
        .filter(resource::Column::Id.eq(id))
        .one(conn)
        .await?)
}

/// Which of the case-folded secret names `keys` a resource seen through `visible`
/// references (for a RUNTIME principal: a resource bound to it).
pub async fn referenced_names<C: ConnectionTrait>(
    conn: &C,
    visible: Visible,
    keys: &HashSet<String>,
) -> Result<HashSet<String>> {
    let resources = visible
        .select()
        .select_only()
        .column(resource::Column::Id)
        .into_query();
    let found: Vec<String> = resource_reference::Entity::find()
        .filter(resource_reference::Column::ResourceId.in_subquery(resources))
        .filter(resource_reference::Column::SecretNameKey.is_in(keys.iter().cloned()))
        .select_only()
        .column(resource_reference::Column::SecretNameKey)
        .distinct()
        .into_tuple()
        .all(conn)
        .await?;
    Ok(found.into_iter().collect())
}

fn filtered(visible: Visible, kind: Option<ResourceKind>) -> sea_orm::Select<resource::Entity> {
    let query = visible.select();
    match kind {
        Some(kind) => query.filter(resource::Column::Kind.eq(kind.as_str())),
        None => query,
    }
}

/// The resource `id` of the organization, locked until the transaction ends (PostgreSQL;
/// SQLite's writer holds the whole database).
async fn locked<C: ConnectionTrait>(conn: &C, org_id: Uuid, id: Uuid) -> Result<resource::Model> {
    resource::Entity::find_by_id(id)
        .filter(resource::Column::OrgId.eq(org_id))
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("resource"))
}

/// Refuses a change of a protected resource (its references or description, a deploy, a
/// delete) by anyone but an admin. Checked on the row the writing transaction has locked,
/// so a change cannot slip in between `setResourceProtected` and its commit.
fn may_change(actor: &Actor, row: &resource::Model) -> Result<()> {
    if row.protected && !actor.principal.role.allows(Permission::Administer) {
        return Err(Error::Protected(row.name.clone()));
    }
    Ok(())
}

/// Audits a refused change of `row` (outcome `DENIED`) after its transaction rolled back;
/// returns the refusal. A failure to audit is logged: the refusal stands either way.
async fn refuse(
    db: &Db,
    actor: &Actor,
    action: &'static str,
    row: &resource::Model,
    refused: Error,
) -> Error {
    let event = Event::denied(action, Target::resource(row.id, &row.name))
        .with_detail(serde_json::json!({ "reason": "protected" }));
    if let Err(e) = audit::record(db.write(), actor, event).await {
        tracing::error!(error = %e, "could not audit a refused change of a protected resource");
    }
    refused
}

/// Protects a resource (only admins change, deploy or delete it) or lifts that. Setting
/// what is already set changes nothing. Audited.
pub async fn set_protected(
    db: &Db,
    actor: &Actor,
    id: Uuid,
    protected: bool,
) -> Result<resource::Model> {
    let txn = db::begin_write(db).await?;
    let row = locked(&txn, actor.org_id(), id).await?;
    if row.protected == protected {
        txn.rollback().await?;
        return Ok(row);
    }
    resource::Entity::update_many()
        .col_expr(resource::Column::Protected, Expr::value(protected))
        .filter(resource::Column::Id.eq(row.id))
        .exec(&txn)
        .await?;
    let action = if protected {
        "resource.protect"
    } else {
        "resource.unprotect"
    };
    audit::record(
        &txn,
        actor,
        Event::allowed(action, Target::resource(row.id, &row.name)),
    )
    .await?;
    txn.commit().await?;
    Ok(resource::Model { protected, ..row })
}

/// Binds a RUNTIME service account to a resource: it may see the resource and fetch the
/// values its active deployment pins. Binding twice changes nothing. Audited.
pub async fn bind_runtime(
    db: &Db,
    actor: &Actor,
    resource_id: Uuid,
    principal_id: Uuid,
) -> Result<resource::Model> {
    let org_id = actor.org_id();
    let txn = db::begin_write(db).await?;
    let row = find_existing(&txn, org_id, resource_id).await?;
    let account = runtime_account(&txn, org_id, principal_id).await?;
    let binding = runtime_binding::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(org_id),
        resource_id: Set(row.id),
        principal_id: Set(account.id),
        created_at: Set(now()),
        created_by: Set(Some(actor.principal.id)),
    };
    // The unique index decides between racing binds: the second is a no-op.
    let inserted = runtime_binding::Entity::insert(binding)
        .on_conflict(
            OnConflict::columns([
                runtime_binding::Column::ResourceId,
                runtime_binding::Column::PrincipalId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    if inserted > 0 {
        let event = Event::allowed("resource.bind_runtime", Target::resource(row.id, &row.name))
            .with_detail(serde_json::json!({
                "principalId": account.id,
                "principalName": account.name,
            }));
        audit::record(&txn, actor, event).await?;
    }
    txn.commit().await?;
    Ok(row)
}

/// Removes a RUNTIME service account's binding to a resource: from the next request on it
/// neither sees the resource nor fetches its values. Unbinding what is not bound changes
/// nothing. Audited.
pub async fn unbind_runtime(
    db: &Db,
    actor: &Actor,
    resource_id: Uuid,
    principal_id: Uuid,
) -> Result<resource::Model> {
    let org_id = actor.org_id();
    let txn = db::begin_write(db).await?;
    let row = find_existing(&txn, org_id, resource_id).await?;
    let removed = runtime_binding::Entity::delete_many()
        .filter(runtime_binding::Column::OrgId.eq(org_id))
        .filter(runtime_binding::Column::ResourceId.eq(row.id))
        .filter(runtime_binding::Column::PrincipalId.eq(principal_id))
        .exec(&txn)
        .await?;
    if removed.rows_affected > 0 {
        let event = Event::allowed(
            "resource.unbind_runtime",
            Target::resource(row.id, &row.name),
        )
        .with_detail(serde_json::json!({ "principalId": principal_id }));
        audit::record(&txn, actor, event).await?;
    }
    txn.commit().await?;
    Ok(row)
}

/// The principal `principal_id` of the organization, which must be a RUNTIME service
/// account.
async fn runtime_account<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    principal_id: Uuid,
) -> Result<principal::Model> {
    let account = principal::Entity::find_by_id(principal_id)
        .filter(principal::Column::OrgId.eq(org_id))
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("principal"))?;
    let runtime = account.kind == PrincipalKind::ServiceAccount.as_str()
        && account.role == Role::Runtime.as_str();
    if !runtime {
        return Err(Error::bad_input(format!(
            "principal {} is not a RUNTIME service account: only those can be bound to a \
             resource (create one with createServiceAccount, role RUNTIME)",
            account.name
        )));
    }
    Ok(account)
}

/// The RUNTIME principals bound to each of several resources (batched loading), oldest
/// binding first.
pub async fn runtime_principals_of<C: ConnectionTrait>(
    conn: &C,
    resource_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<principal::Model>>> {
    let rows = runtime_binding::Entity::find()
        .filter(runtime_binding::Column::ResourceId.is_in(resource_ids.iter().copied()))
        .find_also_related(principal::Entity)
        .order_by_asc(runtime_binding::Column::CreatedAt)
        .all(conn)
        .await?;
    let mut bound: HashMap<Uuid, Vec<principal::Model>> = HashMap::new();
    for (binding, principal) in rows {
        if let Some(principal) = principal {
            bound
                .entry(binding.resource_id)
                .or_default()
                .push(principal);
        }
    }
    Ok(bound)
}

/// A page of the organization's resources, oldest first; the cursor is the id.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    visible: Visible,
    kind: Option<ResourceKind>,
    page: &PageRequest<Uuid>,
) -> Result<Page<resource::Model>> {
    page.fetch(
        conn,
        filtered(visible, kind),
        resource::Column::Id,
        Natural::Ascending,
    )
    .await
}

pub async fn count<C: ConnectionTrait>(
    conn: &C,
    visible: Visible,
    kind: Option<ResourceKind>,
) -> Result<u64> {
    Ok(filtered(visible, kind).count(conn).await?)
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

/// Creates the resource `kind`+`name`, or replaces its description and references.
/// Its deployments are untouched: they keep what they were deployed with.
pub async fn upsert(db: &Db, actor: &Actor, mut spec: ResourceSpec) -> Result<resource::Model> {
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
    db: &Db,
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
            if let Err(refused) = may_change(actor, &row) {
                txn.rollback().await?;
                return Err(refuse(db, actor, "resource.upsert", &row, refused).await);
            }
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
                protected: Set(false),
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
pub async fn delete(db: &Db, actor: &Actor, id: Uuid) -> Result<resource::Model> {
    let txn = db::begin_write(db).await?;
    let row = locked(&txn, actor.org_id(), id).await?;
    if let Err(refused) = may_change(actor, &row) {
        txn.rollback().await?;
        return Err(refuse(db, actor, "resource.delete", &row, refused).await);
    }
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
pub async fn deploy(db: &Db, actor: &Actor, id: Uuid) -> Result<Deployed> {
    deploy_if_stale_on(db, actor, id, None)
        .await?
        .ok_or_else(|| Error::Internal("an unconditional deploy was skipped".into()))
}

/// A deploy's result: the resource, its new deployment and that deployment's pins.
pub type Deployed = (
    resource::Model,
    deployment::Model,
    Vec<deployment_pin::Model>,
);

/// [`deploy`]; with `stale_on` (a secret's name key), only if the resource is still
/// `STALE` on that secret once its row is locked, and `None`, changing nothing, if it no
/// longer is (redeployed, its reference removed, the secret changed meanwhile): a redeploy
/// of the stale must not redeploy what someone else already brought up to date.
pub async fn deploy_if_stale_on(
    db: &Db,
    actor: &Actor,
    id: Uuid,
    stale_on: Option<&str>,
) -> Result<Option<Deployed>> {
    let org_id = actor.org_id();
    let txn = db::begin_write(db).await?;
    let row = locked(&txn, org_id, id).await?;
    if let Err(refused) = may_change(actor, &row) {
        txn.rollback().await?;
        return Err(refuse(db, actor, "resource.deploy", &row, refused).await);
    }
    let references = references_of(&txn, &[row.id]).await?;
    let keys: Vec<String> = unique(references.iter().map(|r| r.secret_name_key.clone()));
    let locked = secrets::lock_for_pinning(&txn, org_id, &keys).await?;
    // A secret this resource may not use is not pinned, and is refused exactly like a
    // missing one (MISSING_SECRETS): a member cannot tell the two apart.
    let allowed = access::allowed_for(&txn, row.id, &locked.iter().collect::<Vec<_>>()).await?;
    let current: HashMap<String, secret::Model> = locked
        .into_iter()
        .filter(|s| allowed.contains(&s.id))
        .map(|s| (s.name_key.clone(), s))
        .collect();
    // How each of this resource's references stands before the deploy: to announce the
    // ones it changes, and to tell whether it is still stale on `stale_on`.
    let before: HashMap<(String, String), DependentState> =
        dependents::dependents_of_resource(&txn, org_id, &keys, row.id)
            .await?
            .into_iter()
            .flat_map(|(key, list)| {
                list.into_iter()
                    .filter(|d| d.resource.id == row.id)
                    .map(move |d| ((key.clone(), d.field), d.state))
            })
            .collect();
    if let Some(key) = stale_on {
        let still_stale = before
            .iter()
            .any(|((k, _), state)| k == key && *state == DependentState::Stale);
        if !still_stale {
            txn.rollback().await?;
            return Ok(None);
        }
    }
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
    // A disabled secret is a scream test: nothing new may be deployed with it.
    let mut disabled: Vec<String> = current
        .values()
        .filter(|s| secrets::SecretState::of(s) == secrets::SecretState::Disabled)
        .map(|s| s.name.clone())
        .collect();
    disabled.sort();
    if !disabled.is_empty() {
        txn.rollback().await?;
        return Err(Error::SecretDisabled(disabled));
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
    let mut notices = Vec::new();
    for pin in &pins {
        let previous = before
            .get(&(pin.secret_name_key.clone(), pin.field.clone()))
            .copied();
        if previous == Some(DependentState::UpToDate) {
            continue;
        }
        let now_up_to_date = Dependent {
            resource: row.clone(),
            secret_name_key: pin.secret_name_key.clone(),
            field: pin.field.clone(),
            state: DependentState::UpToDate,
            deployed_version: Some(pin.version),
            deployed_at: Some(at),
        };
        notices.push(Notice::dependent(
            org_id,
            &pin.secret_name,
            &now_up_to_date,
            previous,
            at,
        ));
    }
    db.events().commit(txn, notices).await?;
    Ok(Some((row, deployment, pins)))
}

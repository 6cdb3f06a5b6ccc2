//! Resources (pipelines and integrations) and deployments (dependents are in
//! `dependents.rs`). Every role may
//! read resources (a RUNTIME principal: those bound to it) and members may change them;
//! anything that reaches a secret — a reference's `secret`, `dependents` — needs
//! `Permission::Inspect` (admins and inspectors), and `resourceSecrets`, which serves
//! values, admins and the RUNTIME principals bound to the resource.
use async_graphql::{
    Context, Enum, ID, InputObject, Object, ResultExt, SimpleObject,
    connection::{Connection, OpaqueCursor},
};
use chrono::{DateTime, Utc};
use entity::{deployment, deployment_pin, resource, resource_reference};
use uuid::Uuid;

use super::{
    dependents::{Dependent, dependents},
    guard::{RoleGuard, actor, app},
    identity::{Principal, load_principal},
    ids,
    loaders::{CurrentDeployment, PinsOf, ReferencesOf, RuntimePrincipalsOf, SecretNamed, load},
    paging::{TotalCount, page_complexity, paged, to_connection},
    secrets::Secret,
};
use crate::domain::{
    Description, Permission, ReferenceField, ResourceName, SecretName,
    dependents::{self as dependent_service, DeploymentState as Deployed},
    redeploy,
    resources::{self as service, NewReference, ResourceSpec},
};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "service::ResourceKind")]
pub enum ResourceKind {
    Pipeline,
    Integration,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "Deployed")]
pub enum DeploymentState {
    Active,
    /// A pinned secret was force-deleted.
    Failed,
    /// Replaced by a newer deployment.
    Superseded,
}

/// A pipeline or integration that uses secrets.
pub struct Resource(pub resource::Model);

#[Object]
impl Resource {
    pub async fn id(&self) -> ID {
        ids::encode(ids::RESOURCE, self.0.id)
    }

    async fn kind(&self) -> async_graphql::Result<ResourceKind> {
        Ok(service::ResourceKind::parse(&self.0.kind).extend()?.into())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// Only admins change, deploy or delete a protected resource (`setResourceProtected`).
    async fn protected(&self) -> bool {
        self.0.protected
    }

    /// The secrets it references, by name. A name may not exist (yet).
    async fn references(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SecretReference>> {
        let references = load(ctx, ReferencesOf(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(references.into_iter().map(SecretReference).collect())
    }

    /// The current deployment: active, or failed; null if never deployed.
    async fn active_deployment(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Deployment>> {
        Ok(load(ctx, CurrentDeployment(self.0.id))
            .await?
            .map(|d| Deployment(d, self.0.clone())))
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The RUNTIME service accounts bound to it (`bindRuntime`): they may see it and fetch
    /// the values its active deployment pins. Oldest binding first.
    #[graphql(guard = "RoleGuard::new(Permission::Inspect)")]
    async fn runtime_principals(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Principal>> {
        let bound = load(ctx, RuntimePrincipalsOf(self.0.id)).await?;
        Ok(bound
            .unwrap_or_default()
            .into_iter()
            .map(Principal)
            .collect())
    }
}

/// A reference from a resource to a secret, at a field of its configuration.
pub struct SecretReference(resource_reference::Model);

#[Object]
impl SecretReference {
    async fn secret_name(&self) -> &str {
        &self.0.secret_name
    }

    async fn field(&self) -> &str {
        &self.0.field
    }

    /// The secret itself, if it exists. ADMIN only: for other roles this field alone
    /// errors with FORBIDDEN.
    #[graphql(guard = "RoleGuard::new(Permission::Inspect)")]
    async fn secret(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Secret>> {
        let key = SecretNamed {
            org_id: actor(ctx)?.org_id(),
            name_key: self.0.secret_name_key.clone(),
        };
        Ok(load(ctx, key).await?.map(Secret::from))
    }
}

/// A deployment: the secret versions a resource was deployed with.
// With its resource, known wherever a deployment is answered.
pub struct Deployment(deployment::Model, resource::Model);

#[Object]
impl Deployment {
    async fn id(&self) -> ID {
        ids::encode(ids::DEPLOYMENT, self.0.id)
    }

    /// The resource deployed.
    async fn resource(&self) -> Resource {
        Resource(self.1.clone())
    }

    async fn state(&self) -> async_graphql::Result<DeploymentState> {
        Ok(Deployed::parse(&self.0.state).extend()?.into())
    }

    async fn deployed_at(&self) -> DateTime<Utc> {
        self.0.deployed_at
    }

    async fn deployed_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Principal>> {
        load_principal(ctx, self.0.deployed_by).await
    }

    async fn failed_at(&self) -> Option<DateTime<Utc>> {
        self.0.failed_at
    }

    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }

    /// The secret versions it is pinned to (names and numbers, never values).
    async fn pins(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PinnedSecret>> {
        let pins = load(ctx, PinsOf(self.0.id)).await?.unwrap_or_default();
        Ok(pins.into_iter().map(PinnedSecret).collect())
    }
}

pub struct PinnedSecret(deployment_pin::Model);

#[Object]
impl PinnedSecret {
    async fn secret_name(&self) -> &str {
        &self.0.secret_name
    }

    async fn field(&self) -> &str {
        &self.0.field
    }

    async fn version(&self) -> i32 {
        self.0.version
    }
}

/// A value served to a resource's runtime, from the version its deployment pins.
#[derive(SimpleObject)]
#[graphql(guard = "RoleGuard::new(Permission::FetchPinned)")]
pub struct ResolvedSecret {
    name: String,
    field: String,
    version: i32,
    value: String,
}

fn resource_id(id: &ID) -> async_graphql::Result<Uuid> {
    ids::decode_as(id, ids::RESOURCE).extend()
}

fn binding_ids(input: &RuntimeBindingInput) -> async_graphql::Result<(Uuid, Uuid)> {
    let principal_id = ids::decode_as(&input.principal_id, ids::PRINCIPAL).extend()?;
    Ok((resource_id(&input.resource_id)?, principal_id))
}

#[derive(Default)]
pub struct ResourceQuery;

#[Object]
impl ResourceQuery {
    /// A resource by id; null if it does not exist in your organization.
    #[graphql(guard = "RoleGuard::new(Permission::ReadResources)")]
    async fn resource(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Resource>> {
        let visible = service::Visible::to(&actor(ctx)?.principal);
        let Ok(uuid) = resource_id(&id) else {
            return Ok(None);
        };
        let found = service::find_visible(app(ctx)?.db.read(), visible, uuid)
            .await
            .extend()?;
        Ok(found.map(Resource))
    }

    /// The organization's resources, oldest first, optionally of one kind.
    #[graphql(
        guard = "RoleGuard::new(Permission::ReadResources)",
        complexity = "page_complexity(first, None, child_complexity)"
    )]
    async fn resources(
        &self,
        ctx: &Context<'_>,
        kind: Option<ResourceKind>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<Uuid>, Resource, TotalCount>> {
        let visible = service::Visible::to(&actor(ctx)?.principal);
        let db = app(ctx)?.db.read();
        let kind = kind.map(Into::into);
        paged(after, None, first, None, |page| async move {
            let resources = service::list(db, visible, kind, &page).await?;
            let count =
                TotalCount::new(move |db| async move { service::count(&db, visible, kind).await });
            Ok(to_connection(resources, |r| r.id, Resource, count))
        })
        .await
    }

    /// Who references `secretName`, and whether each runs its current version.
    #[graphql(guard = "RoleGuard::new(Permission::Inspect)")]
    async fn dependents(
        &self,
        ctx: &Context<'_>,
        secret_name: String,
    ) -> async_graphql::Result<Vec<Dependent>> {
        let org_id = actor(ctx)?.org_id();
        let name = SecretName::parse(&secret_name).extend()?;
        let list = dependent_service::dependents(app(ctx)?.db.read(), org_id, &name)
            .await
            .extend()?;
        Ok(dependents(list))
    }

    /// The values pinned by the resource's active deployment (not the current versions),
    /// for its runtime. Every call is audited with the deployment it served.
    #[graphql(guard = "RoleGuard::new(Permission::FetchPinned)")]
    async fn resource_secrets(
        &self,
        ctx: &Context<'_>,
        resource_id: ID,
    ) -> async_graphql::Result<Vec<ResolvedSecret>> {
        let actor = actor(ctx)?;
        let id = self::resource_id(&resource_id)?;
        let data = app(ctx)?;
        let resolved = data
            .plaintext()
            .resolve_secrets(&actor, id)
            .await
            .extend()?;
        Ok(resolved
            .into_iter()
            .map(|r| ResolvedSecret {
                value: r.value.expose().to_owned(),
                name: r.name,
                field: r.field,
                version: r.version,
            })
            .collect())
    }
}

#[derive(InputObject)]
pub struct SecretReferenceInput {
    secret_name: String,
    /// Where the resource uses it, e.g. `sinks.alerts.hash_key`.
    field: String,
}

#[derive(InputObject)]
pub struct UpsertResourceInput {
    kind: ResourceKind,
    /// 1–128 characters of A–Z, a–z, 0–9, `_`, `.` and `-`; unique per kind.
    name: String,
    description: Option<String>,
    /// Replaces the resource's references (at most 100).
    references: Vec<SecretReferenceInput>,
}

#[derive(SimpleObject)]
pub struct UpsertResourcePayload {
    resource: Resource,
}

#[derive(InputObject)]
pub struct DeployResourceInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct DeployResourcePayload {
    resource: Resource,
    deployment: Deployment,
}

#[derive(InputObject)]
pub struct DeleteResourceInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteResourcePayload {
    deleted_resource_id: ID,
}

#[derive(Default)]
pub struct ResourceMutation;

#[Object]
impl ResourceMutation {
    /// Creates the resource `kind`+`name`, or replaces its description and references.
    /// Its deployments keep what they were deployed with.
    #[graphql(guard = "RoleGuard::new(Permission::EditResources)")]
    async fn upsert_resource(
        &self,
        ctx: &Context<'_>,
        input: UpsertResourceInput,
    ) -> async_graphql::Result<UpsertResourcePayload> {
        let actor = actor(ctx)?;
        let references = input
            .references
            .iter()
            .map(|r| {
                Ok(NewReference {
                    secret_name: SecretName::parse(&r.secret_name)?,
                    field: ReferenceField::parse(&r.field)?,
                })
            })
            .collect::<crate::Result<Vec<_>>>()
            .extend()?;
        let spec = ResourceSpec {
            kind: input.kind.into(),
            name: ResourceName::parse(&input.name).extend()?,
            description: input
                .description
                .map(Description::parse)
                .transpose()
                .extend()?,
            references,
        };
        let row = service::upsert(&app(ctx)?.db, &actor, spec)
            .await
            .extend()?;
        Ok(UpsertResourcePayload {
            resource: Resource(row),
        })
    }

    /// Pins the current version of every referenced secret in a new deployment that
    /// replaces the previous one. Fails with MISSING_SECRETS, changing nothing, if a
    /// referenced secret does not exist. Reveals no value.
    #[graphql(guard = "RoleGuard::new(Permission::EditResources)")]
    async fn deploy_resource(
        &self,
        ctx: &Context<'_>,
        input: DeployResourceInput,
    ) -> async_graphql::Result<DeployResourcePayload> {
        let actor = actor(ctx)?;
        let id = resource_id(&input.id)?;
        let (row, deployment, _) = service::deploy(&app(ctx)?.db, &actor, id).await.extend()?;
        Ok(DeployResourcePayload {
            deployment: Deployment(deployment, row.clone()),
            resource: Resource(row),
        })
    }

    /// Deletes a resource with its references and deployments.
    #[graphql(guard = "RoleGuard::new(Permission::EditResources)")]
    async fn delete_resource(
        &self,
        ctx: &Context<'_>,
        input: DeleteResourceInput,
    ) -> async_graphql::Result<DeleteResourcePayload> {
        let actor = actor(ctx)?;
        let id = resource_id(&input.id)?;
        let row = service::delete(&app(ctx)?.db, &actor, id).await.extend()?;
        Ok(DeleteResourcePayload {
            deleted_resource_id: ids::encode(ids::RESOURCE, row.id),
        })
    }

    /// Protects a resource: from then on only admins change its references or description,
    /// deploy it or delete it; members get FORBIDDEN and nothing changes. Or lifts that.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn set_resource_protected(
        &self,
        ctx: &Context<'_>,
        input: SetResourceProtectedInput,
    ) -> async_graphql::Result<SetResourceProtectedPayload> {
        let id = resource_id(&input.resource_id)?;
        let row = service::set_protected(&app(ctx)?.db, &actor(ctx)?, id, input.protected)
            .await
            .extend()?;
        Ok(SetResourceProtectedPayload {
            resource: Resource(row),
        })
    }

    /// Binds a RUNTIME service account to a resource: it may then see the resource and
    /// fetch the values its active deployment pins (`resourceSecrets`), and nothing else.
    /// Binding twice changes nothing. BAD_USER_INPUT for a principal that is not a RUNTIME
    /// service account.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn bind_runtime(
        &self,
        ctx: &Context<'_>,
        input: RuntimeBindingInput,
    ) -> async_graphql::Result<RuntimeBindingPayload> {
        let (resource_id, principal_id) = binding_ids(&input)?;
        let row = service::bind_runtime(&app(ctx)?.db, &actor(ctx)?, resource_id, principal_id)
            .await
            .extend()?;
        Ok(RuntimeBindingPayload {
            resource: Resource(row),
        })
    }

    /// Removes a binding made by `bindRuntime`: from the next request on, the account
    /// neither sees the resource nor fetches its values. Unbinding what is not bound
    /// changes nothing.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn unbind_runtime(
        &self,
        ctx: &Context<'_>,
        input: RuntimeBindingInput,
    ) -> async_graphql::Result<RuntimeBindingPayload> {
        let (resource_id, principal_id) = binding_ids(&input)?;
        let row = service::unbind_runtime(&app(ctx)?.db, &actor(ctx)?, resource_id, principal_id)
            .await
            .extend()?;
        Ok(RuntimeBindingPayload {
            resource: Resource(row),
        })
    }

    /// Deploys every resource whose dependent state for `secretName` is STALE, each in its
    /// own transaction, one after the other: one that cannot deploy is listed in `failed`
    /// and changes nothing; one that stopped being stale meanwhile is skipped. NOT_FOUND if
    /// the secret does not exist; SECRET_DISABLED, trying nothing, if it is disabled.
    /// Audited as one `secret.redeploy_stale` event, besides each deploy's own.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn redeploy_stale(
        &self,
        ctx: &Context<'_>,
        input: RedeployStaleInput,
    ) -> async_graphql::Result<RedeployStalePayload> {
        let actor = actor(ctx)?;
        let name = SecretName::parse(&input.secret_name).extend()?;
        let done = redeploy::redeploy_stale(&app(ctx)?.db, &actor, &name)
            .await
            .extend()?;
        Ok(RedeployStalePayload {
            deployments: done
                .deployed
                .into_iter()
                .map(|(resource, deployment)| Deployment(deployment, resource))
                .collect(),
            failed: done
                .failed
                .into_iter()
                .map(|failure| RedeployFailure {
                    code: failure.error.code().as_str().to_owned(),
                    message: failure.error.public_message(),
                    resource: Resource(failure.resource),
                })
                .collect(),
        })
    }
}

#[derive(InputObject)]
pub struct SetResourceProtectedInput {
    resource_id: ID,
    protected: bool,
}

#[derive(SimpleObject)]
pub struct SetResourceProtectedPayload {
    resource: Resource,
}

#[derive(InputObject)]
pub struct RuntimeBindingInput {
    resource_id: ID,
    /// A service account of role RUNTIME.
    principal_id: ID,
}

#[derive(SimpleObject)]
pub struct RuntimeBindingPayload {
    resource: Resource,
}

#[derive(InputObject)]
pub struct RedeployStaleInput {
    secret_name: String,
}

#[derive(SimpleObject)]
pub struct RedeployStalePayload {
    /// The deployments made, one per resource that was stale.
    deployments: Vec<Deployment>,
    /// The stale resources that could not be deployed; each is unchanged.
    failed: Vec<RedeployFailure>,
}

/// A stale resource whose deploy was refused, and why.
#[derive(SimpleObject)]
pub struct RedeployFailure {
    resource: Resource,
    /// The error code its `deployResource` would have answered (`MISSING_SECRETS`,
    /// `SECRET_DISABLED`...).
    code: String,
    message: String,
}

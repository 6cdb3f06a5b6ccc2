//! Which resources may use a secret (`setSecretAccess`, DESIGN §9). The secret's own
//! fields (`access`, `allowedResources`) are on `Secret`.
use async_graphql::{Context, Enum, ID, InputObject, Object, ResultExt, SimpleObject};

use super::{
    dependents::{Dependent, dependents},
    guard::{RoleGuard, actor, app},
    ids,
    secrets::Secret,
};
use crate::domain::{
    Permission, SecretName,
    access::{self as service, AccessChange},
};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "service::SecretAccess")]
pub enum SecretAccess {
    /// Every resource of the organization may be deployed with it.
    AllResources,
    /// Only the resources listed (`allowedResources`).
    SelectedResources,
}

#[derive(InputObject)]
pub struct SetSecretAccessInput {
    name: String,
    access: SecretAccess,
    /// With SELECTED_RESOURCES: the resources that may use it (at most 1,000). None with
    /// ALL_RESOURCES.
    #[graphql(default)]
    resource_ids: Vec<ID>,
    /// Narrow even if deployed resources lose the secret: their deployments are marked
    /// failed (their dependents BROKEN).
    #[graphql(default = false)]
    force: bool,
    /// Change nothing; list the deployed resources that would lose the secret.
    #[graphql(default = false)]
    dry_run: bool,
}

#[derive(SimpleObject)]
pub struct SetSecretAccessPayload {
    /// The secret as it stands afterwards (as it is, on a dry run).
    secret: Secret,
    /// The deployed dependents that lose the secret: as they stand on a dry run, BROKEN
    /// once forced.
    affected_dependents: Vec<Dependent>,
}

#[derive(Default)]
pub struct AccessMutation;

#[Object]
impl AccessMutation {
    /// Sets which resources may use a secret. A deploy pins only secrets its resource may
    /// use; a reference to one it may not use is refused like a missing secret
    /// (MISSING_SECRETS). Narrowing follows the delete rules: deployed dependents that
    /// would lose the secret block it (HAS_DEPENDENTS) unless `force`; `dryRun` lists them.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn set_secret_access(
        &self,
        ctx: &Context<'_>,
        input: SetSecretAccessInput,
    ) -> async_graphql::Result<SetSecretAccessPayload> {
        let actor = actor(ctx)?;
        let resource_ids = input
            .resource_ids
            .iter()
            .map(|id| ids::decode_as(id, ids::RESOURCE))
            .collect::<crate::Result<Vec<_>>>()
            .extend()?;
        let change = AccessChange {
            name: SecretName::parse(&input.name).extend()?,
            access: input.access.into(),
            resource_ids,
            force: input.force,
            dry_run: input.dry_run,
        };
        let outcome = service::set_access(&app(ctx)?.db, &actor, change)
            .await
            .extend()?;
        Ok(SetSecretAccessPayload {
            secret: outcome.secret.into(),
            affected_dependents: dependents(outcome.affected),
        })
    }
}

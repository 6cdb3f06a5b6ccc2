//! The lifecycle mutations (DESIGN §8): disable and enable, restore and purge, rollback.
//! ADMIN-only, like every path to a secret.
use async_graphql::{Context, ID, InputObject, Object, ResultExt, SimpleObject};

use super::{
    guard::{RoleGuard, actor, app},
    ids,
    secrets::{Secret, UpdateSecretPayload, parse_name},
};
use crate::domain::{Description, Permission, lifecycle};

#[derive(InputObject)]
pub struct DisableSecretInput {
    name: String,
    /// Why, for whoever finds it disabled (at most 1,024 characters).
    reason: String,
}

#[derive(InputObject)]
pub struct SecretNameInput {
    name: String,
}

#[derive(SimpleObject)]
pub struct SecretPayload {
    secret: Secret,
}

#[derive(SimpleObject)]
pub struct PurgeSecretPayload {
    purged_secret_id: ID,
}

#[derive(InputObject)]
pub struct RollbackSecretInput {
    name: String,
    /// The earlier, still retained, version whose value becomes the new version's.
    to_version: i32,
    /// Check-and-set: fail with `VERSION_CONFLICT` unless this is the current version.
    expected_version: Option<i32>,
}

#[derive(Default)]
pub struct LifecycleMutation;

#[Object]
impl LifecycleMutation {
    /// Disables a secret, as a scream test before deleting it: `secretValue`,
    /// `resourceSecrets` and deploys that need it are refused with `SECRET_DISABLED`
    /// (audited) until it is enabled; updates still work.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn disable_secret(
        &self,
        ctx: &Context<'_>,
        input: DisableSecretInput,
    ) -> async_graphql::Result<SecretPayload> {
        let actor = actor(ctx)?;
        let name = parse_name(&input.name)?;
        let reason = Description::parse(input.reason).extend()?.into_inner();
        let row = lifecycle::disable(&app(ctx)?.db, &actor, &name, &reason)
            .await
            .extend()?;
        Ok(SecretPayload { secret: row.into() })
    }

    /// Enables a disabled secret.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn enable_secret(
        &self,
        ctx: &Context<'_>,
        input: SecretNameInput,
    ) -> async_graphql::Result<SecretPayload> {
        let actor = actor(ctx)?;
        let name = parse_name(&input.name)?;
        let row = lifecycle::enable(&app(ctx)?.db, &actor, &name)
            .await
            .extend()?;
        Ok(SecretPayload { secret: row.into() })
    }

    /// Brings a deleted secret back, with every version, before its purge. Deployments its
    /// forced delete failed stay `FAILED` until redeployed.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn restore_secret(
        &self,
        ctx: &Context<'_>,
        input: SecretNameInput,
    ) -> async_graphql::Result<SecretPayload> {
        let actor = actor(ctx)?;
        let name = parse_name(&input.name)?;
        let row = lifecycle::restore(&app(ctx)?.db, &actor, &name)
            .await
            .extend()?;
        Ok(SecretPayload { secret: row.into() })
    }

    /// Purges a deleted secret now: every version and wrapped data key is destroyed, and
    /// the name is free again.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn purge_secret(
        &self,
        ctx: &Context<'_>,
        input: SecretNameInput,
    ) -> async_graphql::Result<PurgeSecretPayload> {
        let actor = actor(ctx)?;
        let name = parse_name(&input.name)?;
        let row = lifecycle::purge(&app(ctx)?.db, &actor, &name)
            .await
            .extend()?;
        Ok(PurgeSecretPayload {
            purged_secret_id: ids::encode(ids::SECRET, row.id),
        })
    }

    /// Makes a new version with the value of an earlier, retained one (under a fresh data
    /// key). Answers like `updateSecret`.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn rollback_secret(
        &self,
        ctx: &Context<'_>,
        input: RollbackSecretInput,
    ) -> async_graphql::Result<UpdateSecretPayload> {
        let actor = actor(ctx)?;
        let name = parse_name(&input.name)?;
        let data = app(ctx)?;
        let row = lifecycle::rollback(
            &data.db,
            data.keys.as_ref(),
            &actor,
            &name,
            input.to_version,
            input.expected_version,
            data.version_retention,
        )
        .await
        .extend()?;
        Ok(UpdateSecretPayload::new(row))
    }
}

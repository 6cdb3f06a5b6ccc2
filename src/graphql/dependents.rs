//! Dependents: how each reference to a secret stands (DESIGN §3 "Dependents"), with the
//! last fetch recorded for it. The type is guarded itself, as `Secret` is, so no field
//! that returns one can leak it: inspecting (admins, inspectors) or watching a resource
//! (`dependentEvents`, where a RUNTIME account watches only what is bound to it).
use async_graphql::{ComplexObject, Context, Enum, ResultExt, SimpleObject};
use chrono::{DateTime, Utc};
use entity::secret_usage;

use super::{
    guard::RoleGuard,
    loaders::{UsageOf, load},
    resources::Resource,
};
use crate::domain::{
    Permission,
    dependents::{self, DependentState as State},
    usage,
};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "State")]
pub enum DependentState {
    /// The active deployment is pinned to the secret's current version.
    UpToDate,
    /// The active deployment is pinned to an older version: redeploy to pick it up.
    Stale,
    /// The resource references the secret but no active deployment uses it.
    NotDeployed,
    /// The active deployment failed because the secret was deleted, or the secret does
    /// not exist.
    Broken,
    /// The secret's access does not include this resource (`setSecretAccess`): a deploy
    /// does not pin it.
    NotAllowed,
}

/// A resource that references a secret, and whether it runs the current version.
#[derive(SimpleObject)]
#[graphql(complex, guard = "RoleGuard::new(Permission::WatchResources)")]
pub struct Dependent {
    #[graphql(skip)]
    inner: dependents::Dependent,
    field: String,
    state: DependentState,
    /// The version its current deployment is pinned to.
    deployed_version: Option<i32>,
    deployed_at: Option<DateTime<Utc>>,
}

#[ComplexObject(guard = "RoleGuard::new(Permission::WatchResources)")]
impl Dependent {
    async fn resource(&self) -> Resource {
        Resource(self.inner.resource.clone())
    }

    /// When the resource last fetched this secret through `resourceSecrets`, served or
    /// refused. Recorded within `STRONGROOM_USAGE_FLUSH_SECONDS`; null if never.
    async fn last_fetched_at(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<DateTime<Utc>>> {
        Ok(self.usage(ctx).await?.map(|u| u.last_fetched_at))
    }

    /// The version that last fetch served; null if it was refused. With `state: STALE`
    /// and a recent `lastFetchedAt`, an old version here means the resource still runs it.
    async fn last_fetched_version(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i32>> {
        Ok(self.usage(ctx).await?.and_then(|u| u.last_fetched_version))
    }

    /// How that last fetch ended.
    async fn last_fetch_outcome(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<FetchOutcome>> {
        let Some(usage) = self.usage(ctx).await? else {
            return Ok(None);
        };
        Ok(Some(
            usage::FetchOutcome::parse(&usage.last_fetch_outcome)
                .extend()?
                .into(),
        ))
    }
}

impl Dependent {
    /// The recorded usage, batched across the dependents of a request (and cached, so
    /// the three fields above cost one key).
    async fn usage(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<secret_usage::Model>> {
        let key = UsageOf {
            resource_id: self.inner.resource.id,
            secret_name_key: self.inner.secret_name_key.clone(),
        };
        load(ctx, key).await
    }
}

/// How a resource's last fetch of a secret (`resourceSecrets`) ended.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "usage::FetchOutcome")]
pub enum FetchOutcome {
    /// The pinned version was served.
    Served,
    /// Refused: the secret is disabled.
    Disabled,
    /// Refused: the secret is missing or deleted, or the deployment failed.
    Broken,
}

impl From<dependents::Dependent> for Dependent {
    fn from(inner: dependents::Dependent) -> Self {
        Self {
            field: inner.field.clone(),
            state: inner.state.into(),
            deployed_version: inner.deployed_version,
            deployed_at: inner.deployed_at,
            inner,
        }
    }
}

pub fn dependents(list: Vec<dependents::Dependent>) -> Vec<Dependent> {
    list.into_iter().map(Dependent::from).collect()
}

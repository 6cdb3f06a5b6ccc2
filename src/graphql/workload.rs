//! Workload identities (DESIGN §10): which JWTs `POST /oauth/token` exchanges for
//! short-lived tokens of which service account.
use async_graphql::{
    Context, ID, InputObject, Object, ResultExt, SimpleObject,
    connection::{Connection, OpaqueCursor},
};
use chrono::{DateTime, Utc};
use entity::workload_identity;
use uuid::Uuid;

use super::{
    guard::{RoleGuard, actor, app},
    identity::{Principal, load_principal},
    ids,
    paging::{TotalCount, page_complexity, paged, to_connection},
};
use crate::domain::{
    Permission,
    workload::{self as service, NewIdentity},
};

/// A claim the JWT must carry, with a value matching `pattern` (exact, or with `*` as a
/// wildcard for any run of characters).
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "ClaimMatchInput")]
pub struct ClaimMatch {
    claim: String,
    pattern: String,
}

/// JWTs of `issuer` for `audience` whose claims match every bound claim may be exchanged
/// at `POST /oauth/token` for a token of `principal`, valid `tokenLifetimeSeconds` (or
/// until the JWT expires, if sooner).
pub struct WorkloadIdentity(workload_identity::Model);

#[Object(guard = "RoleGuard::new(Permission::Inspect)")]
impl WorkloadIdentity {
    async fn id(&self) -> ID {
        ids::encode(ids::WORKLOAD_IDENTITY, self.0.id)
    }

    async fn issuer(&self) -> &str {
        &self.0.issuer
    }

    async fn audience(&self) -> &str {
        &self.0.audience
    }

    async fn bound_claims(&self) -> Vec<ClaimMatch> {
        service::bound_claims(&self.0)
            .into_iter()
            .map(|c| ClaimMatch {
                claim: c.claim,
                pattern: c.pattern,
            })
            .collect()
    }

    async fn principal(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Principal>> {
        load_principal(ctx, Some(self.0.principal_id)).await
    }

    async fn token_lifetime_seconds(&self) -> i32 {
        self.0.token_lifetime_seconds
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Default)]
pub struct WorkloadQuery;

#[Object]
impl WorkloadQuery {
    /// The organization's workload identities, oldest first.
    #[graphql(
        guard = "RoleGuard::new(Permission::Inspect)",
        complexity = "page_complexity(first, None, child_complexity)"
    )]
    async fn workload_identities(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<Uuid>, WorkloadIdentity, TotalCount>> {
        let org_id = actor(ctx)?.org_id();
        let db = app(ctx)?.db.read();
        paged(after, None, first, None, |page| async move {
            let identities = service::list(db, org_id, &page).await?;
            let count = TotalCount::new(move |db| async move { service::count(&db, org_id).await });
            Ok(to_connection(identities, |w| w.id, WorkloadIdentity, count))
        })
        .await
    }
}

#[derive(InputObject)]
pub struct CreateWorkloadIdentityInput {
    /// The JWT's `iss`, exactly: `https://…` (`http://` only on a loopback host).
    issuer: String,
    /// A value the JWT's `aud` must contain.
    audience: String,
    /// Claims the JWT must carry (at most 32); none binds nothing beyond issuer and
    /// audience.
    #[graphql(default)]
    bound_claims: Vec<ClaimMatch>,
    /// The service account the exchanged tokens act as.
    principal_id: ID,
    /// 60 to 3600.
    #[graphql(default = 900)]
    token_lifetime_seconds: i32,
}

#[derive(SimpleObject)]
pub struct CreateWorkloadIdentityPayload {
    workload_identity: WorkloadIdentity,
}

#[derive(InputObject)]
pub struct DeleteWorkloadIdentityInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteWorkloadIdentityPayload {
    deleted_id: ID,
}

#[derive(Default)]
pub struct WorkloadMutation;

#[Object]
impl WorkloadMutation {
    /// Trusts JWTs of an issuer, for an audience and bound claims, to act as a service
    /// account through `POST /oauth/token`.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn create_workload_identity(
        &self,
        ctx: &Context<'_>,
        input: CreateWorkloadIdentityInput,
    ) -> async_graphql::Result<CreateWorkloadIdentityPayload> {
        let new = NewIdentity {
            issuer: input.issuer,
            audience: input.audience,
            bound_claims: input
                .bound_claims
                .into_iter()
                .map(|c| service::ClaimMatch {
                    claim: c.claim,
                    pattern: c.pattern,
                })
                .collect(),
            principal_id: ids::decode_as(&input.principal_id, ids::PRINCIPAL).extend()?,
            token_lifetime_seconds: input.token_lifetime_seconds,
        };
        let row = service::create(&app(ctx)?.db, &actor(ctx)?, new)
            .await
            .extend()?;
        Ok(CreateWorkloadIdentityPayload {
            workload_identity: WorkloadIdentity(row),
        })
    }

    /// Stops exchanging the identity's JWTs; tokens already issued run out on their own.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn delete_workload_identity(
        &self,
        ctx: &Context<'_>,
        input: DeleteWorkloadIdentityInput,
    ) -> async_graphql::Result<DeleteWorkloadIdentityPayload> {
        let id = ids::decode_as(&input.id, ids::WORKLOAD_IDENTITY).extend()?;
        let row = service::delete(&app(ctx)?.db, &actor(ctx)?, id)
            .await
            .extend()?;
        Ok(DeleteWorkloadIdentityPayload {
            deleted_id: ids::encode(ids::WORKLOAD_IDENTITY, row.id),
        })
    }
}

//! Field guards. Authorization is declared on fields and types (`guard = ...`), never
//! buried in a resolver.
use async_graphql::{Context, ErrorExtensions, Guard, ID};

use super::{AppData, Auth, RequestCtx, ids};
use crate::{
    Error,
    domain::{Actor, Role, audit},
};

/// Passes principals whose role is at least `min`. A refusal of an authenticated
/// principal is written to the audit log (outcome `DENIED`, action = the field name).
pub struct RoleGuard {
    min: Role,
}

impl RoleGuard {
    pub fn new(min: Role) -> Self {
        Self { min }
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let request = ctx.data::<RequestCtx>()?;
        let principal = match &request.auth {
            Auth::Principal(p) => p,
            Auth::Anonymous | Auth::Invalid => return Err(Error::Unauthenticated.extend()),
        };
        if principal.role >= self.min {
            return Ok(());
        }
        let field = ctx.item.node.name.node.as_str();
        let app = ctx.data::<AppData>()?;
        if let Err(e) =
            audit::record_denied(&app.db, principal, request.request_id.as_deref(), field).await
        {
            // The refusal stands either way; a lost audit row must be visible to operators.
            tracing::error!(error = %e, field, "could not record a denied attempt");
        }
        Err(Error::Forbidden.extend())
    }
}

/// `node(id:)`: a secret's id needs an admin, like every path to a secret; any other id
/// needs an authenticated principal. Decided from the id alone, before any lookup.
pub struct NodeGuard {
    inner: RoleGuard,
}

impl NodeGuard {
    pub fn for_id(id: &ID) -> Self {
        let min = match ids::decode(id) {
            Some((kind, _)) if kind == ids::SECRET => Role::Admin,
            _ => Role::Viewer,
        };
        Self {
            inner: RoleGuard::new(min),
        }
    }
}

impl Guard for NodeGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        self.inner.check(ctx).await
    }
}

/// The authenticated caller as a domain [`Actor`]. Resolvers call this after their
/// guard has passed.
pub fn actor(ctx: &Context<'_>) -> async_graphql::Result<Actor> {
    let request = ctx.data::<RequestCtx>()?;
    match &request.auth {
        Auth::Principal(principal) => Ok(Actor {
            principal: principal.clone(),
            request_id: request.request_id.clone(),
        }),
        Auth::Anonymous | Auth::Invalid => Err(Error::Unauthenticated.extend()),
    }
}

pub fn app<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a AppData> {
    ctx.data::<AppData>()
}

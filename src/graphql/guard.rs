//! Field guards. Authorization is declared on fields and types (`guard = ...`), never
//! buried in a resolver.
use std::sync::{Mutex, PoisonError};

use async_graphql::{Context, ErrorExtensions, Guard, ID};

use super::{AppData, Auth, RequestCtx, ids};
use crate::{
    Error,
    domain::{Actor, Permission},
};

/// The fields a guard refused during one HTTP request (a batch shares one), with how many
/// times each: the audit log gets a row per field and a count, not a row per refusal, so
/// 400 aliases of a refused field cost one row.
#[derive(Debug, Default)]
pub struct Denials(Mutex<Vec<(String, u64)>>);

impl Denials {
    fn record(&self, field: &str) {
        let mut fields = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match fields.iter_mut().find(|(name, _)| name == field) {
            Some((_, count)) => *count += 1,
            None => fields.push((field.to_owned(), 1)),
        }
    }

    /// The refused fields in first-refused order, with their counts; empties the record.
    pub fn take(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Passes principals whose role grants `needs` ([`crate::domain::Role::allows`]). A refusal of an
/// authenticated principal is recorded in the request's [`Denials`], which the HTTP layer
/// writes to the audit log (outcome `DENIED`, action = the field name) once the request
/// is done.
pub struct RoleGuard {
    needs: Permission,
}

impl RoleGuard {
    pub fn new(needs: Permission) -> Self {
        Self { needs }
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let request = ctx.data::<RequestCtx>()?;
        let principal = match &request.auth {
            Auth::Principal(p) => p,
            Auth::Anonymous | Auth::Invalid => return Err(Error::Unauthenticated.extend()),
        };
        if principal.role.allows(self.needs) {
            return Ok(());
        }
        request.denials.record(ctx.item.node.name.node.as_str());
        Err(Error::Forbidden.extend())
    }
}

/// `node(id:)`: a secret's id needs what every path to a secret needs ([`Permission::Inspect`]);
/// any other id what reading resources needs. Decided from the id alone, before any
/// lookup.
pub struct NodeGuard {
    inner: RoleGuard,
}

impl NodeGuard {
    pub fn for_id(id: &ID) -> Self {
        let needs = match ids::decode(id) {
            Some((kind, _)) if kind == ids::SECRET => Permission::Inspect,
            Some((kind, _)) if kind == ids::WEBHOOK_ENDPOINT => Permission::Inspect,
            _ => Permission::ReadResources,
        };
        Self {
            inner: RoleGuard::new(needs),
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
    ctx.data::<RequestCtx>()?
        .actor()
        .ok_or_else(|| Error::Unauthenticated.extend())
}

pub fn app<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a AppData> {
    ctx.data::<AppData>()
}

//! Who is asking (`viewer`), principals, service accounts and API tokens.
use async_graphql::{
    Context, Enum, ErrorExtensions, ID, InputObject, Object, ResultExt, SimpleObject,
    connection::{Connection, OpaqueCursor},
};
use chrono::{DateTime, Utc};
use entity::{api_token, organization, principal};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{
    guard::{RoleGuard, actor, app},
    ids,
    loaders::{PrincipalId, load},
    paging::{TotalCount, page_complexity, paged, to_connection},
};
use crate::domain::{self, identity as service};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::Role")]
pub enum Role {
    Admin,
    Member,
    Viewer,
    /// A pipeline's runtime (service accounts only): the resources bound to it and their
    /// pinned values, nothing else.
    Runtime,
    /// An integration service (service accounts only): every read an admin may make
    /// except values; no change.
    Inspector,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::PrincipalKind")]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

/// A user or service account of an organization.
pub struct Principal(pub principal::Model);

#[Object]
impl Principal {
    async fn id(&self) -> ID {
        ids::encode(ids::PRINCIPAL, self.0.id)
    }

    async fn kind(&self) -> async_graphql::Result<PrincipalKind> {
        Ok(domain::PrincipalKind::parse(&self.0.kind).extend()?.into())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn role(&self) -> async_graphql::Result<Role> {
        Ok(domain::Role::parse(&self.0.role).extend()?.into())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Loads a principal of the caller's organization by id, batched per request.
pub async fn load_principal(
    ctx: &Context<'_>,
    id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<Principal>> {
    let Some(id) = id else { return Ok(None) };
    let org_id = actor(ctx)?.org_id();
    let found = load(ctx, PrincipalId(id)).await?;
    Ok(found.filter(|p| p.org_id == org_id).map(Principal))
}

pub struct Organization(organization::Model);

#[Object]
impl Organization {
    async fn id(&self) -> ID {
        ids::encode(ids::ORGANIZATION, self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }
}

/// The authenticated caller.
pub struct Viewer(domain::Principal);

#[Object]
impl Viewer {
    async fn principal(&self, ctx: &Context<'_>) -> async_graphql::Result<Principal> {
        let db = app(ctx)?.db.read();
        service::find_principal(db, self.0.org_id, self.0.id)
            .await
            .extend()?
            .map(Principal)
            .ok_or_else(|| crate::Error::not_found("principal").extend())
    }

    async fn organization(&self, ctx: &Context<'_>) -> async_graphql::Result<Organization> {
        let db = app(ctx)?.db.read();
        Ok(Organization(
            service::find_organization(db, self.0.org_id)
                .await
                .extend()?,
        ))
    }

    async fn role(&self) -> Role {
        self.0.role.into()
    }
}

/// An API token's metadata. The token itself is only ever in the payload that created it.
pub struct ApiToken(api_token::Model);

#[Object]
impl ApiToken {
    async fn id(&self) -> ID {
        ids::encode(ids::API_TOKEN, self.0.id)
    }

    /// The token's first characters, to recognise it; not enough to use it.
    async fn prefix(&self) -> &str {
        &self.0.display_prefix
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn principal(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Principal>> {
        load_principal(ctx, Some(self.0.principal_id)).await
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The caller: any authenticated principal.
    #[graphql(guard = "RoleGuard::new(domain::Permission::Identify)")]
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        Ok(Viewer(actor(ctx)?.principal))
    }

    /// The organization's users and service accounts, oldest first. ADMIN only.
    #[graphql(
        guard = "RoleGuard::new(domain::Permission::Inspect)",
        complexity = "page_complexity(first, None, child_complexity)"
    )]
    async fn principals(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<Uuid>, Principal, TotalCount>> {
        let org_id = actor(ctx)?.org_id();
        let db = app(ctx)?.db.read();
        paged(after, None, first, None, |page| async move {
            let principals = service::list_principals(db, org_id, &page).await?;
            let count =
                TotalCount::new(
                    move |db| async move { service::count_principals(&db, org_id).await },
                );
            Ok(to_connection(principals, |p| p.id, Principal, count))
        })
        .await
    }

    /// The organization's API tokens (metadata only; revoked and expired ones included),
    /// newest first, optionally of one principal. ADMIN only.
    #[graphql(
        guard = "RoleGuard::new(domain::Permission::Inspect)",
        complexity = "page_complexity(first, None, child_complexity)"
    )]
    async fn api_tokens(
        &self,
        ctx: &Context<'_>,
        principal_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<Uuid>, ApiToken, TotalCount>> {
        let org_id = actor(ctx)?.org_id();
        let db = app(ctx)?.db.read();
        let principal_id = principal_id
            .map(|id| ids::decode_as(&id, ids::PRINCIPAL))
            .transpose()
            .extend()?;
        paged(after, None, first, None, |page| async move {
            let tokens = service::list_tokens(db, org_id, principal_id, &page).await?;
            let count = TotalCount::new(move |db| async move {
                service::count_tokens(&db, org_id, principal_id).await
            });
            Ok(to_connection(tokens, |t| t.id, ApiToken, count))
        })
        .await
    }
}

#[derive(InputObject)]
pub struct CreateServiceAccountInput {
    /// 1–64 characters of A–Z, a–z, 0–9, `_`, `.` and `-`; unique in the organization.
    name: String,
    role: Role,
}

#[derive(SimpleObject)]
pub struct CreateServiceAccountPayload {
    service_account: Principal,
    /// The account's first API token. Shown once: store it now.
    token: String,
}

#[derive(InputObject)]
pub struct CreateApiTokenInput {
    principal_id: ID,
    description: Option<String>,
    /// When the token stops working; never, when omitted.
    expires_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct CreateApiTokenPayload {
    api_token: ApiToken,
    /// The token. Shown once: store it now.
    token: String,
}

#[derive(InputObject)]
pub struct RevokeApiTokenInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct RevokeApiTokenPayload {
    api_token: ApiToken,
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Creates a service account and its first token. ADMIN only.
    #[graphql(guard = "RoleGuard::new(domain::Permission::Administer)")]
    async fn create_service_account(
        &self,
        ctx: &Context<'_>,
        input: CreateServiceAccountInput,
    ) -> async_graphql::Result<CreateServiceAccountPayload> {
        let actor = actor(ctx)?;
        let (account, issued) =
            service::create_service_account(&app(ctx)?.db, &actor, &input.name, input.role.into())
                .await
                .extend()?;
        Ok(CreateServiceAccountPayload {
            service_account: Principal(account),
            token: issued.token.expose_secret().to_owned(),
        })
    }

    /// Issues another token for a principal. ADMIN only.
    #[graphql(guard = "RoleGuard::new(domain::Permission::Administer)")]
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        input: CreateApiTokenInput,
    ) -> async_graphql::Result<CreateApiTokenPayload> {
        let actor = actor(ctx)?;
        let principal_id = ids::decode_as(&input.principal_id, ids::PRINCIPAL).extend()?;
        let issued = service::create_token(
            &app(ctx)?.db,
            &actor,
            principal_id,
            input.description,
            input.expires_at,
        )
        .await
        .extend()?;
        Ok(CreateApiTokenPayload {
            token: issued.token.expose_secret().to_owned(),
            api_token: ApiToken(issued.record),
        })
    }

    /// Revokes a token at once. ADMIN only; revoking twice is harmless.
    #[graphql(guard = "RoleGuard::new(domain::Permission::Administer)")]
    async fn revoke_api_token(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiTokenInput,
    ) -> async_graphql::Result<RevokeApiTokenPayload> {
        let actor = actor(ctx)?;
        let id = ids::decode_as(&input.id, ids::API_TOKEN).extend()?;
        let data = app(ctx)?;
        let record = service::revoke_token(&data.db, &actor, id).await.extend()?;
        // This replica refuses the token from now on; the others within the cache's TTL.
        data.tokens.forget_all();
        Ok(RevokeApiTokenPayload {
            api_token: ApiToken(record),
        })
    }
}

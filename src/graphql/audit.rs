//! The audit log, for admins.
use async_graphql::{
    Context, Enum, ID, InputObject, Object, SimpleObject,
    connection::{Connection, OpaqueCursor},
};
use chrono::{DateTime, Utc};
use entity::audit_event;
use uuid::Uuid;

use super::{
    guard::{RoleGuard, actor, app},
    identity::{Principal, load_principal},
    ids,
    paging::{TotalCount, page_complexity, paged, to_connection},
};
use crate::domain::{
    self, Permission,
    audit::{self as service, Filter},
};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "service::Outcome")]
pub enum AuditOutcome {
    Allowed,
    Denied,
    Failed,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::CredentialKind")]
pub enum CredentialKind {
    /// An API token (`srt_…`), by id and prefix.
    ApiToken,
    /// A short-lived token exchanged for an OpenID Connect JWT, by issuer and subject.
    Oidc,
    /// A console session.
    Session,
}

/// What a principal acted with: which token (never the token itself), or which JWT.
#[derive(SimpleObject)]
pub struct Credential {
    kind: CredentialKind,
    /// The API token's id (see `apiTokens`); null for a console session.
    id: Option<ID>,
    /// The API token's display prefix.
    prefix: Option<String>,
    /// An exchanged JWT's `iss`, or the ID token's of a console session's sign-in.
    issuer: Option<String>,
    /// An exchanged JWT's `sub`, or the ID token's of a console session's sign-in.
    subject: Option<String>,
}

impl From<domain::Credential> for Credential {
    fn from(credential: domain::Credential) -> Self {
        Self {
            kind: credential.kind.into(),
            // A session's row id is no object of the API (and its secret never leaves it).
            id: credential
                .id
                .filter(|_| credential.kind != domain::CredentialKind::Session)
                .map(|id| ids::encode(ids::API_TOKEN, id)),
            prefix: credential.prefix,
            issuer: credential.issuer,
            subject: credential.subject,
        }
    }
}

/// Who did what to which object, and whether it was allowed. Never holds a value.
pub struct AuditEvent(audit_event::Model);

#[Object(guard = "RoleGuard::new(Permission::Inspect)")]
impl AuditEvent {
    async fn id(&self) -> ID {
        ids::encode(ids::AUDIT_EVENT, self.0.id)
    }

    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    /// Who acted; null for the command line (`strongroom bootstrap`) and the background
    /// sweeps (a purge at the end of a recovery window, a rotation coming due).
    async fn principal(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Principal>> {
        load_principal(ctx, self.0.principal_id).await
    }

    /// The credential the principal acted with; null where no request was involved (the
    /// command line, the background sweeps).
    async fn credential(&self) -> Option<Credential> {
        let stored = self.0.credential.clone()?;
        serde_json::from_value::<domain::Credential>(stored)
            .ok()
            .map(Credential::from)
    }

    /// The request it came from (`x-request-id`).
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// e.g. `secret.create`, `secret.reveal`, `token.revoke`; for a refusal, the field.
    async fn action(&self) -> &str {
        &self.0.action
    }

    async fn outcome(&self) -> async_graphql::Result<AuditOutcome> {
        use async_graphql::ResultExt;
        Ok(service::Outcome::parse(&self.0.outcome).extend()?.into())
    }

    /// `SECRET`, `PRINCIPAL` or `API_TOKEN`.
    async fn target_kind(&self) -> Option<&str> {
        self.0.target_kind.as_deref()
    }

    async fn target_id(&self) -> Option<ID> {
        let kind = match self.0.target_kind.as_deref()? {
            "SECRET" => ids::SECRET,
            "PRINCIPAL" => ids::PRINCIPAL,
            "API_TOKEN" => ids::API_TOKEN,
            _ => return None,
        };
        let uuid = Uuid::parse_str(self.0.target_id.as_deref()?).ok()?;
        Some(ids::encode(kind, uuid))
    }

    async fn target_name(&self) -> Option<&str> {
        self.0.target_name.as_deref()
    }

    /// Extra facts, e.g. `{"version": 3}`.
    async fn detail(&self) -> Option<async_graphql::Json<serde_json::Value>> {
        self.0.detail.clone().map(async_graphql::Json)
    }
}

#[derive(InputObject, Default)]
pub struct AuditFilter {
    action: Option<String>,
    outcome: Option<AuditOutcome>,
    target_name: Option<String>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The organization's audit events, newest first.
    #[graphql(
        guard = "RoleGuard::new(Permission::Inspect)",
        complexity = "page_complexity(first, None, child_complexity)"
    )]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditFilter>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<Uuid>, AuditEvent, TotalCount>> {
        let org_id = actor(ctx)?.org_id();
        let db = app(ctx)?.db.read();
        let filter = filter.unwrap_or_default();
        let filter = Filter {
            action: filter.action,
            outcome: filter.outcome.map(Into::into),
            target_name: filter.target_name,
        };
        paged(after, None, first, None, |page| async move {
            let events = service::list(db, org_id, &filter, &page).await?;
            let count = TotalCount::new(move |db| {
                let filter = filter.clone();
                async move { service::count(&db, org_id, &filter).await }
            });
            Ok(to_connection(events, |e| e.id, AuditEvent, count))
        })
        .await
    }
}

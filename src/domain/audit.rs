//! The audit log: who did what to which object, from which request, and whether it was
//! allowed. Events are written on the caller's connection, so an event recording a change
//! commits in the same transaction as the change. Never holds a value or a token.

use std::borrow::Cow;

use entity::audit_event;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{Actor, Natural, Page, PageRequest, Principal};
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "ALLOWED",
            Self::Denied => "DENIED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(stored: &str) -> Result<Self> {
        match stored {
            "ALLOWED" => Ok(Self::Allowed),
            "DENIED" => Ok(Self::Denied),
            "FAILED" => Ok(Self::Failed),
            other => Err(crate::Error::Internal(format!(
                "unknown audit outcome {other:?}"
            ))),
        }
    }
}

/// The object an event is about.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: &'static str,
    pub id: Option<Uuid>,
    pub name: Option<String>,
}

impl Target {
    pub fn secret(id: Option<Uuid>, name: &str) -> Self {
        Self {
            kind: "SECRET",
            id,
            name: Some(name.to_owned()),
        }
    }

    pub fn principal(id: Uuid, name: &str) -> Self {
        Self {
            kind: "PRINCIPAL",
            id: Some(id),
            name: Some(name.to_owned()),
        }
    }

    pub fn resource(id: Uuid, name: &str) -> Self {
        Self {
            kind: "RESOURCE",
            id: Some(id),
            name: Some(name.to_owned()),
        }
    }

    pub fn token(id: Uuid) -> Self {
        Self {
            kind: "API_TOKEN",
            id: Some(id),
            name: None,
        }
    }
}

/// One event to record.
#[derive(Clone, Debug)]
pub struct Event {
    pub action: Cow<'static, str>,
    pub outcome: Outcome,
    pub target: Option<Target>,
    pub detail: Option<serde_json::Value>,
}

impl Event {
    pub fn allowed(action: &'static str, target: Target) -> Self {
        Self {
            action: Cow::Borrowed(action),
            outcome: Outcome::Allowed,
            target: Some(target),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Records `event` for `org_id` on `conn` (a transaction, when the event records a change).
pub async fn record_for<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    principal_id: Option<Uuid>,
    request_id: Option<&str>,
    event: Event,
) -> Result<()> {
    let (target_kind, target_id, target_name) = match event.target {
        Some(t) => (
            Some(t.kind.to_owned()),
            t.id.map(|id| id.to_string()),
            t.name,
        ),
        None => (None, None, None),
    };
    let row = audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(org_id),
        occurred_at: Set(super::now()),
        principal_id: Set(principal_id),
        request_id: Set(request_id.map(str::to_owned)),
        action: Set(event.action.into_owned()),
        outcome: Set(event.outcome.as_str().to_owned()),
        target_kind: Set(target_kind),
        target_id: Set(target_id),
        target_name: Set(target_name),
        detail: Set(event.detail),
    };
    audit_event::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Records `event` as performed by `actor`.
pub async fn record<C: ConnectionTrait>(conn: &C, actor: &Actor, event: Event) -> Result<()> {
    record_for(
        conn,
        actor.org_id(),
        Some(actor.principal.id),
        actor.request_id.as_deref(),
        event,
    )
    .await
}

/// Records that `principal` was refused `action` (a GraphQL field) by a guard.
pub async fn record_denied<C: ConnectionTrait>(
    conn: &C,
    principal: &Principal,
    request_id: Option<&str>,
    action: &str,
) -> Result<()> {
    let event = Event {
        action: Cow::Owned(action.to_owned()),
        outcome: Outcome::Denied,
        target: None,
        detail: Some(serde_json::json!({ "role": principal.role.as_str() })),
    };
    record_for(
        conn,
        principal.org_id,
        Some(principal.id),
        request_id,
        event,
    )
    .await
}

/// Filters for listing events; all optional, combined with AND.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    pub target_name: Option<String>,
}

/// Events of `org_id`, newest first; the cursor is the event id (UUIDv7, time-ordered).
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    filter: &Filter,
    page: &PageRequest<Uuid>,
) -> Result<Page<audit_event::Model>> {
    let mut query = audit_event::Entity::find().filter(audit_event::Column::OrgId.eq(org_id));
    if let Some(action) = &filter.action {
        query = query.filter(audit_event::Column::Action.eq(action.as_str()));
    }
    if let Some(outcome) = filter.outcome {
        query = query.filter(audit_event::Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(name) = &filter.target_name {
        query = query.filter(audit_event::Column::TargetName.eq(name.as_str()));
    }
    page.fetch(conn, query, audit_event::Column::Id, Natural::Descending)
        .await
}

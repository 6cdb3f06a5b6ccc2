//! The audit log: who did what to which object, from which request, and whether it was
//! allowed. Events are written on the caller's connection, so an event recording a change
//! commits in the same transaction as the change. Never holds a value or a token.

use std::borrow::Cow;

use entity::audit_event;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
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
    audit_event::Entity::insert(row(org_id, principal_id, request_id, event))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

fn row(
    org_id: Uuid,
    principal_id: Option<Uuid>,
    request_id: Option<&str>,
    event: Event,
) -> audit_event::ActiveModel {
    let (target_kind, target_id, target_name) = match event.target {
        Some(t) => (
            Some(t.kind.to_owned()),
            t.id.map(|id| id.to_string()),
            t.name,
        ),
        None => (None, None, None),
    };
    audit_event::ActiveModel {
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
    }
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

/// Audit rows written for the refusals of one request, at most: one per refused field,
/// the last one folding in every field beyond.
pub const MAX_DENIAL_ROWS: usize = 5;

/// Records that `principal` was refused `fields` (GraphQL fields, with how many times each)
/// by guards during one request: a row per field with its count, at most
/// [`MAX_DENIAL_ROWS`] rows, in one statement.
pub async fn record_denials<C: ConnectionTrait>(
    conn: &C,
    principal: &Principal,
    request_id: Option<&str>,
    fields: &[(String, u64)],
) -> Result<()> {
    let role = principal.role.as_str();
    let denial = |action: String, detail: serde_json::Value| Event {
        action: Cow::Owned(action),
        outcome: Outcome::Denied,
        target: None,
        detail: Some(detail),
    };
    let (own_rows, folded) = if fields.len() > MAX_DENIAL_ROWS {
        fields.split_at(MAX_DENIAL_ROWS - 1)
    } else {
        (fields, &[][..])
    };
    let mut events: Vec<Event> = own_rows
        .iter()
        .map(|(field, count)| {
            denial(
                field.clone(),
                serde_json::json!({ "role": role, "count": count }),
            )
        })
        .collect();
    if !folded.is_empty() {
        let counts: serde_json::Map<String, serde_json::Value> = folded
            .iter()
            .map(|(field, count)| (field.clone(), (*count).into()))
            .collect();
        let total: u64 = folded.iter().map(|(_, count)| count).sum();
        events.push(denial(
            "other_fields".to_owned(),
            serde_json::json!({ "role": role, "count": total, "fields": counts }),
        ));
    }
    let rows: Vec<audit_event::ActiveModel> = events
        .into_iter()
        .map(|event| row(principal.org_id, Some(principal.id), request_id, event))
        .collect();
    if !rows.is_empty() {
        audit_event::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Filters for listing events; all optional, combined with AND.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    pub target_name: Option<String>,
}

fn filtered(org_id: Uuid, filter: &Filter) -> sea_orm::Select<audit_event::Entity> {
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
    query
}

/// Events of `org_id`, newest first; the cursor is the event id (UUIDv7, time-ordered).
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    filter: &Filter,
    page: &PageRequest<Uuid>,
) -> Result<Page<audit_event::Model>> {
    let query = filtered(org_id, filter);
    page.fetch(conn, query, audit_event::Column::Id, Natural::Descending)
        .await
}

pub async fn count<C: ConnectionTrait>(conn: &C, org_id: Uuid, filter: &Filter) -> Result<u64> {
    Ok(filtered(org_id, filter).count(conn).await?)
}

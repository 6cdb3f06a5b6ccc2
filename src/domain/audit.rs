//! The audit log: who did what to which object, from which request, and whether it was
//! allowed. Events that record a change are written on the caller's transaction, so they
//! commit together with the change; events that record a read of plaintext go through the
//! group-committing [`AuditLog`]. Never holds a value or a token.

use std::borrow::Cow;

use entity::audit_event;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    Actor, Credential, Natural, Page, PageRequest,
    denials::{DenialBudget, Folded},
};
use crate::{Error, Result};

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

    /// An event about no one object (the detail says what it concerns).
    pub fn untargeted(action: &'static str, outcome: Outcome) -> Self {
        Self {
            action: Cow::Borrowed(action),
            outcome,
            target: None,
            detail: None,
        }
    }

    pub fn denied(action: &'static str, target: Target) -> Self {
        Self {
            outcome: Outcome::Denied,
            ..Self::allowed(action, target)
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
    audit_event::Entity::insert(row(org_id, principal_id, request_id, None, event))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

fn row(
    org_id: Uuid,
    principal_id: Option<Uuid>,
    request_id: Option<&str>,
    credential: Option<&Credential>,
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
        credential: Set(credential.and_then(|c| serde_json::to_value(c).ok())),
    }
}

/// Records `event` as performed by `actor`, with the credential it acted with.
pub async fn record<C: ConnectionTrait>(conn: &C, actor: &Actor, event: Event) -> Result<()> {
    audit_event::Entity::insert(actor_row(actor, event))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

fn actor_row(actor: &Actor, event: Event) -> audit_event::ActiveModel {
    row(
        actor.org_id(),
        Some(actor.principal.id),
        actor.request_id.as_deref(),
        actor.credential.as_ref(),
        event,
    )
}

/// Most rows one group commit writes.
const MAX_GROUP: usize = 256;

/// Requests to record that may wait for the writer before callers are held back.
const QUEUE: usize = 4096;

/// An event waiting for its group commit, and who to tell once it is durable.
struct Pending {
    row: audit_event::ActiveModel,
    done: oneshot::Sender<Result<(), DbErr>>,
}

/// The audit log of reads that reveal plaintext, written by group commit.
///
/// A reveal must not return its value before its audit row is durable, and committing one
/// row per reveal costs one commit (one `fsync` on SQLite) each. Instead one task writes
/// every row that arrived while the previous commit was under way in one multi-row
/// `INSERT`, and tells each caller once that commit returned. Nothing waits to fill a
/// group: a lone reveal is written at once; under load, groups grow to meet it.
#[derive(Clone, Debug)]
pub struct AuditLog {
    queue: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer task on `db` (the connection that writes).
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(db, pending));
        Self { queue }
    }

    /// Records `event` as performed by `actor`; returns once the row is committed.
    pub async fn record(&self, actor: &Actor, event: Event) -> Result<()> {
        let row = actor_row(actor, event);
        let (done, committed) = oneshot::channel();
        let unavailable = || Error::Internal("the audit log writer has stopped".into());
        self.queue
            .send(Pending { row, done })
            .await
            .map_err(|_| unavailable())?;
        committed
            .await
            .map_err(|_| unavailable())?
            // The database's own error, so that a full disk or an outage keeps its code.
            .map_err(Error::Db)
    }
}

/// The writer task: one group commit at a time, until every [`AuditLog`] is dropped.
async fn write_groups(db: DatabaseConnection, mut pending: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        let rows = group.iter().map(|p| p.row.clone());
        match audit_event::Entity::insert_many(rows)
            .exec_without_returning(&db)
            .await
        {
            Ok(_) => {
                for p in group.drain(..) {
                    // A caller that gave up (its request was cancelled) needs no answer.
                    let _ = p.done.send(Ok(()));
                }
            }
            // One bad row must not fail the others: write them one by one.
            Err(e) if group.len() > 1 => {
                tracing::warn!(error = %e, rows = group.len(), "an audit group commit failed; writing its rows one by one");
                for p in group.drain(..) {
                    let outcome = audit_event::Entity::insert(p.row)
                        .exec_without_returning(&db)
                        .await
                        .map(|_| ());
                    let _ = p.done.send(outcome);
                }
            }
            Err(e) => {
                for p in group.drain(..) {
                    let _ = p.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Audit rows written for the refusals of one request, at most: one per refused field,
/// the last one folding in every field beyond.
pub const MAX_DENIAL_ROWS: usize = 5;

/// Records that `principal` was refused `fields` (GraphQL fields, with how many times each)
/// by guards during one request: a row per field with its count, at most
/// [`MAX_DENIAL_ROWS`] rows, in one statement.
pub async fn record_denials<C: ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    fields: &[(String, u64)],
) -> Result<()> {
    let role = actor.principal.role.as_str();
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
        .map(|event| actor_row(actor, event))
        .collect();
    insert_rows(conn, rows).await
}

/// Records refusals as [`record_denials`] does, within `budget`: once `principal` has
/// written its rows for the minute, the rest are folded into counts for
/// [`record_folded_denials`] (see [`super::denials`]).
pub async fn record_denials_within<C: ConnectionTrait>(
    conn: &C,
    budget: &DenialBudget,
    actor: &Actor,
    fields: Vec<(String, u64)>,
) -> Result<()> {
    let rows = fields.len().min(MAX_DENIAL_ROWS);
    let admitted = budget.admit(&actor.principal, fields, rows, chrono::Utc::now());
    if admitted.is_empty() {
        return Ok(());
    }
    record_denials(conn, actor, &admitted).await
}

/// Writes the refusals folded over a minute: one row, `denials_folded`, with the count
/// of each field.
pub async fn record_folded_denials<C: ConnectionTrait>(conn: &C, folded: &[Folded]) -> Result<()> {
    let rows: Vec<audit_event::ActiveModel> = folded
        .iter()
        .map(|folded| {
            let counts: serde_json::Map<String, serde_json::Value> = folded
                .fields
                .iter()
                .map(|(field, count)| (field.clone(), (*count).into()))
                .collect();
            let total: u64 = folded.fields.iter().map(|(_, count)| count).sum();
            let event = Event {
                action: Cow::Borrowed("denials_folded"),
                outcome: Outcome::Denied,
                target: None,
                detail: Some(serde_json::json!({
                    "role": folded.principal.role.as_str(),
                    "count": total,
                    "fields": counts,
                    "minute": folded.minute,
                })),
            };
            row(
                folded.principal.org_id,
                Some(folded.principal.id),
                None,
                None,
                event,
            )
        })
        .collect();
    insert_rows(conn, rows).await
}

/// Inserts `rows` in one statement (none for none).
async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<audit_event::ActiveModel>,
) -> Result<()> {
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

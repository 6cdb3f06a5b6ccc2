//! From the events outbox to webhook messages: each undispatched outbox row becomes one
//! message per enabled endpoint of its organization that wants it (its type, its secret,
//! and created before the event), and is marked dispatched — in one transaction, so an
//! event is queued for its endpoints exactly once whichever replica takes it. On
//! PostgreSQL replicas take disjoint rows (`FOR UPDATE SKIP LOCKED`); the unique
//! (endpoint, event) index makes a second queueing impossible all the same. SQLite has one
//! writer, which the transaction holds.
//!
//! A message's body is fixed here, so every attempt sends the same bytes; it carries what
//! the subscription events carry (ids, names, states, versions) and never a value.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{resource, webhook_endpoint, webhook_message};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, Statement,
    sea_query::OnConflict,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    Error, Result,
    db::{self, Db},
    domain::{
        events::{Change, Notice},
        webhooks::{EventType, Filter},
    },
    graphql::ids,
};

/// Outbox rows one transaction dispatches.
pub const BATCH: usize = 256;

/// Dispatches up to [`BATCH`] undispatched outbox rows; returns how many it took.
pub async fn dispatch_batch(db: &Db) -> Result<usize> {
    // A read first, so that an idle poll does not take SQLite's one writer.
    let reader = db.read();
    let pending = reader
        .query_one_raw(Statement::from_string(
            reader.get_database_backend(),
            "SELECT 1 FROM event_outbox WHERE dispatched = FALSE LIMIT 1",
        ))
        .await?;
    if pending.is_none() {
        return Ok(0);
    }
    let txn = db::begin_write(db).await?;
    let backend = txn.get_database_backend();
    let lock = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT id, payload, created_at FROM event_outbox WHERE dispatched = FALSE \
                 ORDER BY id LIMIT {BATCH}{lock}"
            ),
            [],
        ))
        .await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let mut events = Vec::with_capacity(rows.len());
    let mut ids_taken = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get_by_index(0)?;
        ids_taken.push(id);
        let payload: String = row.try_get_by_index(1)?;
        let created_at: DateTime<Utc> = row.try_get_by_index(2)?;
        // A row this version cannot read is skipped, not retried forever.
        match serde_json::from_str::<Notice>(&payload) {
            Ok(notice) => events.push((id, notice, created_at)),
            Err(e) => {
                tracing::warn!(event_id = id, error = %e, "an outbox row that does not decode")
            }
        }
    }
    let orgs: HashSet<Uuid> = events.iter().map(|(_, n, _)| n.org_id).collect();
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::OrgId.is_in(orgs))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(&txn)
        .await?;
    let mut messages = Vec::new();
    if !endpoints.is_empty() {
        let filters: Vec<(webhook_endpoint::Model, Filter)> = endpoints
            .into_iter()
            .map(|e| {
                let filter = Filter::of(&e);
                (e, filter)
            })
            .collect();
        let wanted: Vec<(i64, &Notice, EventType, Vec<Uuid>)> = events
            .iter()
            .filter_map(|(id, notice, created_at)| {
                let event = EventType::of(notice)?;
                let endpoints: Vec<Uuid> = filters
                    .iter()
                    .filter(|(e, f)| {
                        e.org_id == notice.org_id
                            && e.created_at <= *created_at
                            && f.wants(event, &notice.secret_name)
                    })
                    .map(|(e, _)| e.id)
                    .collect();
                (!endpoints.is_empty()).then_some((*id, notice, event, endpoints))
            })
            .collect();
        let resources = resources_named(&txn, &wanted).await?;
        let now = crate::domain::now();
        for (event_id, notice, event, endpoints) in wanted {
            let body = body(event, notice, &resources).to_string();
            for endpoint_id in endpoints {
                messages.push(webhook_message::ActiveModel {
                    id: sea_orm::ActiveValue::Set(Uuid::now_v7()),
                    org_id: sea_orm::ActiveValue::Set(notice.org_id),
                    endpoint_id: sea_orm::ActiveValue::Set(endpoint_id),
                    event_id: sea_orm::ActiveValue::Set(event_id),
                    event_type: sea_orm::ActiveValue::Set(event.as_str().to_owned()),
                    body: sea_orm::ActiveValue::Set(body.clone()),
                    status: sea_orm::ActiveValue::Set(super::PENDING.to_owned()),
                    attempts: sea_orm::ActiveValue::Set(0),
                    next_attempt_at: sea_orm::ActiveValue::Set(now),
                    created_at: sea_orm::ActiveValue::Set(now),
                });
            }
        }
    }
    for chunk in messages.chunks(500) {
        webhook_message::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    webhook_message::Column::EndpointId,
                    webhook_message::Column::EventId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    let list = ids_taken
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    txn.execute_raw(Statement::from_string(
        backend,
        format!("UPDATE event_outbox SET dispatched = TRUE WHERE id IN ({list})"),
    ))
    .await?;
    txn.commit().await?;
    Ok(rows.len())
}

/// The kind and name of each resource the dependent events name.
async fn resources_named<C: ConnectionTrait>(
    conn: &C,
    wanted: &[(i64, &Notice, EventType, Vec<Uuid>)],
) -> Result<HashMap<Uuid, resource::Model>> {
    let ids: HashSet<Uuid> = wanted
        .iter()
        .filter_map(|(_, notice, _, _)| match &notice.change {
            Change::Dependent { resource_id, .. } => Some(*resource_id),
            Change::Secret { .. } => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(resource::Entity::find()
        .filter(resource::Column::Id.is_in(ids))
        .all(conn)
        .await
        .map_err(Error::from)?
        .into_iter()
        .map(|r| (r.id, r))
        .collect())
}

/// The JSON body of a message: `{"type", "timestamp", "data"}` (Standard Webhooks).
fn body(event: EventType, notice: &Notice, resources: &HashMap<Uuid, resource::Model>) -> Value {
    let data = match &notice.change {
        Change::Secret {
            secret_id,
            version,
            principal_id,
            ..
        } => json!({
            "secret": { "id": ids::encode(ids::SECRET, *secret_id), "name": notice.secret_name },
            "version": version,
            "principalId": principal_id.map(|p| ids::encode(ids::PRINCIPAL, p)),
        }),
        Change::Dependent {
            resource_id,
            field,
            previous,
            state,
            deployed_version,
            deployed_at,
        } => {
            let resource = resources.get(resource_id);
            json!({
                "secret": { "name": notice.secret_name },
                "resource": {
                    "id": ids::encode(ids::RESOURCE, *resource_id),
                    "kind": resource.map(|r| r.kind.as_str()),
                    "name": resource.map(|r| r.name.as_str()),
                },
                "field": field,
                "previousState": previous.map(|s| s.as_str()),
                "state": state.as_str(),
                "deployedVersion": deployed_version,
                "deployedAt": deployed_at,
            })
        }
    };
    json!({
        "type": event.as_str(),
        "timestamp": notice.occurred_at,
        "data": data,
    })
}

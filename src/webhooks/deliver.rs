//! Posting messages: claim the due ones, post each signed, record the attempt, schedule
//! the next or give up.
//!
//! A claim is one statement that selects due messages of enabled endpoints and moves their
//! `next_attempt_at` past the attempt's timeout (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
//! replicas claim disjoint rows; SQLite: its one writer). The attempt is then made outside
//! any transaction and recorded in one: a delivery row, the message's new state, the
//! endpoint's failure streak. A replica that dies mid-attempt leaves its claim to expire,
//! and another replica makes the attempt again (at least once, same `webhook-id`).
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use entity::{webhook_delivery, webhook_endpoint, webhook_message};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    Statement, sea_query::Expr,
};
use uuid::Uuid;

use super::{FAILED, PENDING, SUCCEEDED, Settings, signing};
use crate::{
    Result,
    crypto::KeyProvider,
    db::{self, Db},
    domain::now,
};

/// A claimed message.
#[derive(Debug)]
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: i64,
    pub event_type: String,
    pub body: String,
    pub attempts: i32,
}

/// Claims up to `limit` due messages for `lease` (the attempt's timeout, and a margin).
pub async fn claim(db: &Db, limit: usize, lease: Duration) -> Result<Vec<Claimed>> {
    let conn = db.write();
    let backend = conn.get_database_backend();
    let at = now();
    let until = at + TimeDelta::from_std(lease).unwrap_or(TimeDelta::seconds(60));
    let lock = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE OF m SKIP LOCKED"
    } else {
        ""
    };
    let (p1, p2, p3) = match backend {
        DatabaseBackend::Postgres => ("$1", "$2", "$3"),
        _ => ("?", "?", "?"),
    };
    let sql = format!(
        "UPDATE webhook_messages SET next_attempt_at = {p1} WHERE id IN (
            SELECT m.id FROM webhook_messages m
            JOIN webhook_endpoints e ON e.id = m.endpoint_id
            WHERE m.status = '{PENDING}' AND m.next_attempt_at <= {p2} AND e.enabled = TRUE
            ORDER BY m.next_attempt_at LIMIT {p3}{lock})
         RETURNING id, endpoint_id, event_id, event_type, body, attempts"
    );
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [until.into(), at.into(), (limit as i64).into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Claimed {
                id: row.try_get_by_index(0)?,
                endpoint_id: row.try_get_by_index(1)?,
                event_id: row.try_get_by_index(2)?,
                event_type: row.try_get_by_index(3)?,
                body: row.try_get_by_index(4)?,
                attempts: row.try_get_by_index(5)?,
            })
        })
        .collect()
}

/// How one attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Any 2xx.
    Delivered(u16),
    /// Another status (a redirect included: they are not followed).
    Status(u16),
    /// No answer: refused target, connection, TLS, timeout.
    Failed(String),
}

/// Makes one attempt of `message` and records it.
pub async fn attempt(
    db: &Db,
    keys: &dyn KeyProvider,
    settings: &Settings,
    client: &reqwest::Client,
    message: Claimed,
) -> Result<()> {
    let Some(endpoint) = webhook_endpoint::Entity::find_by_id(message.endpoint_id)
        .one(db.read())
        .await?
    else {
        return Ok(()); // deleted: its messages went with it
    };
    let outcome = post(keys, settings, client, &endpoint, &message).await;
    record(db, settings, &endpoint, &message, outcome).await
}

/// The webhook id of an event: the same for every attempt (and every endpoint).
pub fn webhook_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

async fn post(
    keys: &dyn KeyProvider,
    settings: &Settings,
    client: &reqwest::Client,
    endpoint: &webhook_endpoint::Model,
    message: &Claimed,
) -> Outcome {
    // Checked again at every attempt: the allowed hosts may have changed since.
    let url = match settings.policy.check_url(&endpoint.url) {
        Ok(url) => url,
        Err(refused) => return Outcome::Failed(refused),
    };
    let key = match signing::open(keys, endpoint).await {
        Ok(key) => key,
        Err(e) => {
            tracing::error!(endpoint = %endpoint.id, error = %e, "cannot open a webhook signing key");
            return Outcome::Failed("the signing key could not be opened".into());
        }
    };
    let id = webhook_id(message.event_id);
    let timestamp = Utc::now().timestamp();
    let signature = match key.sign(&id, timestamp, &message.body) {
        Ok(signature) => signature,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(message.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered(response.status().as_u16())
        }
        Ok(response) => Outcome::Status(response.status().as_u16()),
        Err(e) => Outcome::Failed(describe(&e, settings.timeout)),
    }
}

/// Why a request got no answer, in words, without the URL (which may carry a token in
/// its query).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    if error.is_connect() {
        format!("could not connect: {text}")
    } else {
        format!("request failed: {text}")
    }
}

/// Records an attempt: a delivery row, the message's new state and the endpoint's
/// failure streak (disabling the endpoint once it has failed for long enough).
async fn record(
    db: &Db,
    settings: &Settings,
    endpoint: &webhook_endpoint::Model,
    message: &Claimed,
    outcome: Outcome,
) -> Result<()> {
    let at = now();
    let attempt = message.attempts + 1;
    let (succeeded, response_status, error) = match outcome {
        Outcome::Delivered(status) => (true, Some(i32::from(status)), None),
        Outcome::Status(status) => (
            false,
            Some(i32::from(status)),
            Some(format!("answered {status}")),
        ),
        Outcome::Failed(why) => (false, None, Some(why)),
    };
    let next_attempt_at = if succeeded {
        None
    } else {
        settings
            .retry_after(attempt)
            .map(|wait| at + TimeDelta::from_std(wait).unwrap_or(TimeDelta::hours(10)))
    };
    let status = match (succeeded, next_attempt_at) {
        (true, _) => SUCCEEDED,
        (false, Some(_)) => PENDING,
        (false, None) => FAILED,
    };
    let txn = db::begin_write(db).await?;
    webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        message_id: Set(message.id),
        endpoint_id: Set(endpoint.id),
        event_id: Set(message.event_id),
        event_type: Set(message.event_type.clone()),
        attempt: Set(attempt),
        status: Set(status.to_owned()),
        response_status: Set(response_status),
        error: Set(error.clone()),
        attempted_at: Set(at),
        next_attempt_at: Set(next_attempt_at),
    })
    .exec_without_returning(&txn)
    .await?;
    webhook_message::Entity::update_many()
        .col_expr(webhook_message::Column::Status, Expr::value(status))
        .col_expr(webhook_message::Column::Attempts, Expr::value(attempt))
        .col_expr(
            webhook_message::Column::NextAttemptAt,
            Expr::value(next_attempt_at.unwrap_or(at)),
        )
        .filter(webhook_message::Column::Id.eq(message.id))
        .exec(&txn)
        .await?;
    if succeeded {
        webhook_endpoint::Entity::update_many()
            .col_expr(
                webhook_endpoint::Column::FailingSince,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_endpoint::Column::Id.eq(endpoint.id))
            .filter(webhook_endpoint::Column::FailingSince.is_not_null())
            .exec(&txn)
            .await?;
    } else {
        // Read under the write lock: the streak another attempt may have just started.
        let failing_since = webhook_endpoint::Entity::find_by_id(endpoint.id)
            .one(&txn)
            .await?
            .and_then(|e| e.failing_since)
            .unwrap_or(at);
        let disable = at - failing_since >= settings.disable_after;
        let mut update = webhook_endpoint::Entity::update_many()
            .col_expr(
                webhook_endpoint::Column::FailingSince,
                Expr::value(failing_since),
            )
            .filter(webhook_endpoint::Column::Id.eq(endpoint.id));
        if disable {
            let reason = format!(
                "disabled automatically: every delivery failed since {} (last: {})",
                failing_since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                error.as_deref().unwrap_or("failed"),
            );
            update = update
                .col_expr(webhook_endpoint::Column::Enabled, Expr::value(false))
                .col_expr(
                    webhook_endpoint::Column::DisabledReason,
                    Expr::value(reason),
                )
                .filter(webhook_endpoint::Column::Enabled.eq(true));
            tracing::warn!(endpoint = %endpoint.id, "webhook endpoint disabled after failing for too long");
        }
        update.exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(())
}

//! The events outbox table: the rows a change writes, the ids its notification carries,
//! and the pruning of old rows.
use std::time::Duration;

use chrono::Utc;
use entity::event_outbox::{self, Column};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, Statement,
    sea_query::{Expr, InsertStatement, Query},
};

use crate::{
    Error, Result,
    db::{Db, WriteTxn},
    domain::events::Notice,
};

/// Most rows one `INSERT` writes (five parameters each: far below either store's limit on
/// parameters). A change announcing more — a forced delete breaking thousands of
/// dependents — takes one statement per thousand.
const INSERT_CHUNK: usize = 1_000;
/// `NOTIFY` refuses payloads of 8,000 bytes or more; stay well under.
const MAX_NOTIFY_BYTES: usize = 7_000;
/// Most events written and notified in one statement: their ids (at most 20 characters
/// each, with the comma) fit one notification whatever their size.
const ONE_STATEMENT_MAX: usize = MAX_NOTIFY_BYTES / 20 - 1;
/// Rows one prune statement deletes: short enough that a writer waiting for SQLite's one
/// writer connection, or for a row lock, waits little.
const PRUNE_BATCH: u64 = 1_000;
/// Most batches one prune pass runs; the next pass takes the rest.
const PRUNE_MAX_BATCHES: usize = 1_000;

/// Writes one outbox row per notice, in order, inside `txn` (the change's own
/// transaction), and on PostgreSQL notifies `channel` of the new rows' ids, which
/// PostgreSQL delivers only if and when `txn` commits.
///
/// On PostgreSQL that is one statement for the usual change (a data-modifying `WITH`: the
/// `INSERT … RETURNING id` and the `pg_notify` of its ids), so a write costs the database
/// no more round trips than the notification alone did. Past [`ONE_STATEMENT_MAX`] events
/// their ids might not fit one notification: the rows are inserted first (a thousand per
/// statement), then notified in as many notifications as their ids need, in id order.
pub(super) async fn write(txn: &WriteTxn, notices: &[Notice], channel: &str) -> Result<()> {
    let postgres = txn.get_database_backend() == DatabaseBackend::Postgres;
    if postgres && notices.len() <= ONE_STATEMENT_MAX {
        let mut insert = insert(notices, postgres)?;
        insert.returning_col(Column::Id);
        let insert = DatabaseBackend::Postgres.build(&insert);
        // The channel is a constant of ours, inlined as a literal.
        let sql = format!(
            "WITH written AS ({}) SELECT pg_notify('{channel}', \
             '[' || string_agg(CAST(id AS TEXT), ',' ORDER BY id) || ']') FROM written",
            insert.sql
        );
        txn.execute_raw(Statement { sql, ..insert }).await?;
        return Ok(());
    }
    let mut ids = Vec::with_capacity(if postgres { notices.len() } else { 0 });
    for chunk in notices.chunks(INSERT_CHUNK) {
        let mut insert = insert(chunk, postgres)?;
        if postgres {
            insert.returning_col(Column::Id);
            for row in txn.query_all(&insert).await? {
                ids.push(row.try_get_by_index::<i64>(0)?);
            }
        } else {
            txn.execute(&insert).await?;
        }
    }
    if !postgres {
        return Ok(());
    }
    ids.sort_unstable();
    for payload in notify_payloads(&ids) {
        let notify = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.into(), payload.into()],
        );
        txn.execute_raw(notify).await?;
    }
    Ok(())
}

/// One multi-row `INSERT` of `notices`. The sequence is drawn row by row as the `VALUES`
/// list is inserted, so id order is notice order.
fn insert(notices: &[Notice], postgres: bool) -> Result<InsertStatement> {
    let written_at = Utc::now();
    let mut insert = Query::insert();
    insert.into_table(event_outbox::Entity).columns([
        Column::OrgId,
        Column::Kind,
        Column::Payload,
        Column::OccurredAt,
        Column::CreatedAt,
    ]);
    for notice in notices {
        let payload = serde_json::to_string(notice)
            .map_err(|e| Error::Internal(format!("event encoding: {e}")))?;
        // PostgreSQL: the database's clock at this statement, which every replica's
        // replay compares with the same clock (see `listener.rs`); the transaction's
        // start (`now()`) could be long before, after a wait for a row lock.
        let created_at = if postgres {
            Expr::cust("clock_timestamp()")
        } else {
            Expr::value(written_at)
        };
        insert
            .values([
                notice.org_id.into(),
                notice.kind().into(),
                payload.into(),
                notice.occurred_at.into(),
                created_at,
            ])
            .map_err(|e| Error::Internal(format!("event outbox insert: {e}")))?;
    }
    Ok(insert)
}

/// The ids as JSON arrays (`[123,124]`), each under [`MAX_NOTIFY_BYTES`], in order.
pub(super) fn notify_payloads(ids: &[i64]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::from("[");
    for id in ids {
        let id = id.to_string();
        if current.len() > 1 && current.len() + id.len() + 2 > MAX_NOTIFY_BYTES {
            current.push(']');
            payloads.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&id);
    }
    current.push(']');
    payloads.push(current);
    payloads
}

/// Deletes the outbox rows written more than `retention` ago, oldest first, in batches of
/// [`PRUNE_BATCH`]; returns how many. Safe on every replica at once: on PostgreSQL each
/// batch skips the rows another replica's batch has locked (`FOR UPDATE SKIP LOCKED`), so
/// replicas share the work instead of queueing behind each other, and a row is deleted
/// once. On PostgreSQL the cut-off is the database's clock, as `created_at` is.
pub async fn prune(db: &Db, retention: Duration) -> Result<u64> {
    let conn = db.write();
    let statement = match conn.get_database_backend() {
        DatabaseBackend::Postgres => Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "DELETE FROM event_outbox WHERE id IN (
                SELECT id FROM event_outbox
                WHERE created_at < now() - make_interval(secs => $1)
                ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            [retention.as_secs_f64().into(), (PRUNE_BATCH as i64).into()],
        ),
        backend => {
            let retention = chrono::Duration::from_std(retention)
                .map_err(|e| Error::Internal(format!("event retention: {e}")))?;
            Statement::from_sql_and_values(
                backend,
                "DELETE FROM event_outbox WHERE id IN (
                    SELECT id FROM event_outbox WHERE created_at < ?
                    ORDER BY created_at LIMIT ?)",
                [(Utc::now() - retention).into(), (PRUNE_BATCH as i64).into()],
            )
        }
    };
    let mut pruned = 0;
    for _ in 0..PRUNE_MAX_BATCHES {
        let deleted = conn.execute_raw(statement.clone()).await?.rows_affected();
        pruned += deleted;
        if deleted < PRUNE_BATCH {
            break;
        }
        // Let the writers queued for the database in between batches.
        tokio::task::yield_now().await;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_stay_under_the_notify_limit_and_keep_every_id_in_order() {
        let ids: Vec<i64> = (1_000_000_000_000..1_000_000_002_000).collect();
        let payloads = notify_payloads(&ids);
        assert!(payloads.len() > 1, "2,000 ids need several notifications");
        let mut decoded = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < MAX_NOTIFY_BYTES, "{} bytes", payload.len());
            decoded.extend(serde_json::from_str::<Vec<i64>>(payload).expect("decodes"));
        }
        assert_eq!(decoded, ids);
        assert_eq!(notify_payloads(&[7, 8]), ["[7,8]"]);
    }
}

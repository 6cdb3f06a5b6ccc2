//! Database connection: SQLite (embedded default) or PostgreSQL, from one URL, and the two
//! kinds of transaction the domain uses.
//!
//! Every guarantee that spans several statements is re-checked inside the transaction that
//! writes, on rows it has locked: `SELECT … FOR UPDATE` / `FOR SHARE` on PostgreSQL (READ
//! COMMITTED: each statement after the lock sees what committed before it), and a write
//! transaction that holds SQLite's single writer lock from `BEGIN IMMEDIATE` (SQLite ignores
//! the row-lock clauses; its writers are serialized whole). Unique indexes back up what locks
//! cannot express.
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    AccessMode, ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    DbErr, IsolationLevel, SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sqlx::sqlite::SqliteJournalMode,
};

use crate::Result;

/// Connects and applies pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging_level(log::LevelFilter::Debug);
    // WAL lets readers proceed while the single writer commits; writers queue on the busy
    // timeout instead of failing.
    options.map_sqlx_sqlite_opts(|o| {
        o.journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
    });
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// A transaction that will write. On SQLite it takes the writer lock at `BEGIN` (waiting on
/// the busy timeout), so what it reads is what it writes against: a deferred transaction
/// that reads first could not be upgraded once another writer committed.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    Ok(db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?)
}

/// A read-only transaction over one consistent snapshot: several reads that must agree with
/// each other (a deployment, its pins and their versions) see no commit made in between.
pub async fn begin_snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    Ok(match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
        // A deferred SQLite transaction reads one WAL snapshot from its first read on.
        _ => db.begin().await?,
    })
}

/// Whether `err` is a unique index refusing a row.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

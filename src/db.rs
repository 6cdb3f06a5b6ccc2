//! Database connection: SQLite (embedded default) or PostgreSQL, from one URL.
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, sqlx::sqlite::SqliteJournalMode};

use crate::Result;

/// Connects and applies pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging_level(log::LevelFilter::Debug);
    // WAL lets readers proceed while the single writer commits; writers queue on the busy
    // timeout instead of failing. Transactions write first, so the wait applies.
    options.map_sqlx_sqlite_opts(|o| {
        o.journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
    });
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

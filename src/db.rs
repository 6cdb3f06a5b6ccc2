//! Database connection: SQLite (embedded default) or PostgreSQL, from one URL, and the two
//! kinds of transaction the domain uses.
//!
//! Every guarantee that spans several statements is re-checked inside the transaction that
//! writes, on rows it has locked: `SELECT … FOR UPDATE` / `FOR SHARE` on PostgreSQL (READ
//! COMMITTED: each statement after the lock sees what committed before it), and a write
//! transaction that holds SQLite's single writer lock from `BEGIN IMMEDIATE` (SQLite ignores
//! the row-lock clauses; its writers are serialized whole). Unique indexes back up what locks
//! cannot express.
mod group;

use std::{sync::Arc, time::Duration};

pub use group::{AfterCommit, WriteTxn};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, IsolationLevel, SqlErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
    sqlx::{
        self,
        sqlite::{SqliteJournalMode, SqliteSynchronous},
    },
};

use crate::{Error, Result, events::Events};

/// The server's database: where reads go and where writes go.
///
/// On SQLite these are two pools over one file: a pool of read-only connections, which WAL
/// lets read while a write commits, and a single writer connection. Writers queue for that
/// one connection in the pool's FIFO instead of sleeping in SQLite's busy handler, which
/// backs off in steps of up to 100 ms and made the slowest writes wait that long. The
/// writer commits with `synchronous=FULL`: a commit is on disk when it returns, so nothing
/// acknowledged (an audit row above all) is lost by a power cut. On PostgreSQL both are the
/// same pool.
#[derive(Clone, Debug)]
pub struct Db {
    reader: DatabaseConnection,
    writer: DatabaseConnection,
    /// Where committed changes are published (see [`Events::commit`]).
    events: Events,
    /// SQLite (on a file): the writer's group commit (see [`group`]).
    group: Option<Arc<group::Group>>,
}

impl Db {
    /// For statements that only read.
    pub fn read(&self) -> &DatabaseConnection {
        &self.reader
    }

    /// For statements that write (inside [`begin_write`], or single statements).
    pub fn write(&self) -> &DatabaseConnection {
        &self.writer
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.writer.get_database_backend()
    }

    /// Counts the writer's group commits (SQLite) in `counter`.
    pub fn count_group_commits(&self, counter: prometheus_client::metrics::counter::Counter) {
        if let Some(group) = &self.group {
            group.count_commits(counter);
        }
    }

    /// Runs `install` on every pool (metric callbacks).
    pub fn for_each_pool(&mut self, mut install: impl FnMut(&mut DatabaseConnection)) {
        install(&mut self.writer);
        if self.backend() == DatabaseBackend::Sqlite {
            install(&mut self.reader);
        } else {
            self.reader = self.writer.clone();
        }
    }
}

/// Connects and applies pending migrations. `max_connections` sizes the pool (on SQLite,
/// the readers' pool; it has one writer besides).
pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
    let sqlite = url.starts_with("sqlite:");
    // An in-memory SQLite database lives in one connection: no split.
    let in_memory = sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
    let writer_connections = if sqlite { 1 } else { max_connections };
    let writer = Database::connect(options(url, writer_connections, Role::Writer)).await?;
    Migrator::up(&writer, None).await?;
    let reader = if sqlite && !in_memory {
        Database::connect(options(url, max_connections, Role::Reader)).await?
    } else {
        writer.clone()
    };
    let events = Events::new(writer.get_database_backend());
    let group = (sqlite && !in_memory).then(group::Group::start);
    Ok(Db {
        reader,
        writer,
        events,
        group,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Reader,
    Writer,
}

fn options(url: &str, max_connections: u32, role: Role) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging_level(log::LevelFilter::Debug);
    // A SQLite connection still inside a transaction is closed, never handed out again:
    // after a failed `COMMIT` (a full disk, an I/O error) SQLite may already have rolled
    // back, the driver's queued `ROLLBACK` then fails, and it would go on counting one open
    // transaction, so that every later `BEGIN` became a `SAVEPOINT` inside a transaction
    // that never commits: writes acknowledged and lost. The pool's own check on release
    // (a ping) has run that queued rollback by the time the connection is acquired again,
    // so a transaction dropped the ordinary way is not counted. (PostgreSQL needs no such
    // check: a `ROLLBACK` outside a transaction succeeds there, and the count follows.)
    options.map_sqlx_sqlite_pool_opts(|pool| {
        pool.before_acquire(|conn, _| Box::pin(std::future::ready(Ok(reusable(conn)))))
    });
    options.map_sqlx_sqlite_opts(move |o| {
        let o = o
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        match role {
            // `secure_delete`: a deleted row's bytes (a purged ciphertext and wrapped key)
            // are overwritten with zeros in the pages that held them, instead of lingering
            // in free space until reused. See [`scrub_deleted`] for the WAL's copies.
            Role::Writer => o
                .synchronous(SqliteSynchronous::Full)
                .pragma("secure_delete", "ON"),
            Role::Reader => o.read_only(true),
        }
    });
    options
}

/// Whether a pooled connection may be handed out: no transaction is left open on it.
fn reusable(conn: &sqlx::SqliteConnection) -> bool {
    use sqlx::Connection;
    if conn.is_in_transaction() {
        tracing::error!(
            "a database connection was left inside a transaction (a failed commit); replaced, \
             its uncommitted work rolled back"
        );
        return false;
    }
    true
}

/// A transaction that will write. On SQLite it is a savepoint in the writer's group commit,
/// whose transaction took the writer lock at `BEGIN IMMEDIATE`, so what it reads is what it
/// writes against (a deferred transaction that reads first could not be upgraded once
/// another writer committed); its commit returns once the group's commit is durable.
pub async fn begin_write(db: &Db) -> Result<WriteTxn> {
    if let Some(group) = &db.group {
        return Ok(group.begin(db.write()).await?);
    }
    let txn = db.write().begin_with_options(immediate()).await?;
    Ok(WriteTxn::alone(txn))
}

/// A transaction that takes SQLite's writer lock at `BEGIN` (PostgreSQL ignores the mode).
fn immediate() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    }
}

/// A read-only transaction over one consistent snapshot: several reads that must agree with
/// each other (a deployment, its pins and their versions) see no commit made in between.
pub async fn begin_snapshot(db: &Db) -> Result<DatabaseTransaction> {
    let db = db.read();
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

/// After a purge has committed: removes the copies of the purged rows the store still
/// keeps (DESIGN §13 "Shredding destroys bytes").
///
/// - **SQLite**: the writer deletes with `secure_delete`, so the pages it wrote to the WAL
///   hold zeros where the rows were, but the WAL's older frames and the database file
///   still hold them. A `TRUNCATE` checkpoint copies the zeroed pages into the database
///   file and empties the WAL. It waits (the busy timeout) for readers still on an older
///   snapshot; if one outlasts that, the copies go at a later checkpoint and this says so.
/// - **PostgreSQL**: a deleted row stays in its page as a dead tuple until vacuumed;
///   `VACUUM` of the versions table (and its TOAST table) removes them now rather than at
///   autovacuum's leisure. What PostgreSQL wrote to its WAL and to backups stays there
///   (the README says what remains the operator's).
pub async fn scrub_deleted(db: &Db) -> Result<()> {
    let conn = db.write();
    match db.backend() {
        DatabaseBackend::Sqlite => {
            let checkpoint =
                Statement::from_string(DatabaseBackend::Sqlite, "PRAGMA wal_checkpoint(TRUNCATE)");
            // One row: busy (1 if a reader kept the checkpoint from finishing), frames in
            // the WAL, frames checkpointed.
            let busy = match conn.query_one_raw(checkpoint).await? {
                Some(row) => row.try_get_by_index::<i64>(0)? != 0,
                None => false,
            };
            if busy {
                return Err(Error::Internal(
                    "a reader kept the WAL checkpoint after a purge from finishing; the purged \
                     rows' zeroed pages reach the database file at a later checkpoint"
                        .into(),
                ));
            }
        }
        _ => {
            conn.execute_unprepared("VACUUM secret_versions").await?;
        }
    }
    Ok(())
}

/// Whether `err` is a unique index refusing a row.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

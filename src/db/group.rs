//! Group commit for SQLite's one writer (DESIGN §6 "Speed", §13 "Nothing acknowledged is
//! lost").
//!
//! SQLite commits one write transaction at a time, and with `synchronous=FULL` every commit
//! waits for an `fsync`: one per write, which is what bounded writes. Here the writers that
//! queue for the writer connection share one transaction instead, each in a `SAVEPOINT` of
//! its own, and are acknowledged together once that transaction's one `COMMIT` (and
//! `fsync`) has returned:
//!
//! - A writer takes its **turn** (a FIFO lock: writers run one after another, as they did
//!   on the single connection), opens the group's transaction if none is open
//!   (`BEGIN IMMEDIATE`), and works in a savepoint of it, seeing every earlier member's
//!   writes, exactly as if they had committed before it.
//! - Its [`WriteTxn::commit`] releases the savepoint, gives the turn to the next writer and
//!   waits. A writer that gives up (an error, a refusal, a dropped request) rolls back to its
//!   savepoint: only its own statements are undone.
//! - The **flusher** task queues for the turn behind the writers already waiting; when it
//!   gets it, it commits the group and tells every member the outcome (and runs what each
//!   asked to run after its commit — publishing its events — in commit order). Nothing
//!   waits to fill a group: a lone writer is committed at once; under load, a group is
//!   every writer that queued while the previous one committed.
//! - **Nothing acknowledged is lost**: a member is answered `Ok` only after the `COMMIT`
//!   returned. If the commit fails, every member gets the error. A statement that fails in
//!   a way that may have ended the whole transaction (a full disk, an I/O error: SQLite
//!   rolls back on those) **poisons** the group: it is rolled back and every member that
//!   had released its savepoint is told it failed; only constraint violations (a name
//!   taken), which undo one statement, leave the group as it was.
//!
//! PostgreSQL commits concurrent transactions in parallel and groups their WAL flushes
//! itself, so it gets plain transactions.
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, SqlErr, Statement, TransactionTrait,
};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, oneshot};

/// Most writers one group holds: past it the next writer waits for the commit, so that no
/// member waits behind an unbounded queue.
const MAX_MEMBERS: usize = 256;

/// What a member runs once its group has committed (publishing its events).
pub type AfterCommit = Box<dyn FnOnce() + Send + Sync>;

/// The writer's group commit (SQLite only).
#[derive(Debug)]
pub(crate) struct Group {
    turn: Arc<Mutex<Open>>,
    flush: Notify,
    /// Counts the group commits (`strongroom_db_group_commits_total`), once installed.
    commits: OnceLock<Counter>,
}

/// The open group, if any: its transaction and its members waiting for the commit.
#[derive(Default)]
struct Open {
    txn: Option<DatabaseTransaction>,
    members: Vec<Member>,
    /// Set when a statement failed in a way that may have ended the transaction.
    poisoned: Option<DbErr>,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open")
            .field("open", &self.txn.is_some())
            .field("members", &self.members.len())
            .field("poisoned", &self.poisoned.is_some())
            .finish()
    }
}

struct Member {
    done: oneshot::Sender<Result<(), DbErr>>,
    after: Option<AfterCommit>,
}

impl Group {
    /// A group commit, and its flusher. The writer connection is handed over at every turn,
    /// so that the metric callbacks installed on it later count the group's statements.
    pub(crate) fn start() -> Arc<Self> {
        let group = Arc::new(Self {
            turn: Arc::new(Mutex::new(Open::default())),
            flush: Notify::new(),
            commits: OnceLock::new(),
        });
        tokio::spawn(flusher(group.clone()));
        group
    }

    /// Counts every group commit from now on in `counter`.
    pub(crate) fn count_commits(&self, counter: Counter) {
        let _ = self.commits.set(counter);
    }

    /// Waits for the turn, then a savepoint in the group's transaction.
    pub(crate) async fn begin(
        self: &Arc<Self>,
        writer: &DatabaseConnection,
    ) -> Result<WriteTxn, DbErr> {
        let mut turn = self.turn.clone().lock_owned().await;
        if turn.poisoned.is_some() || turn.members.len() >= MAX_MEMBERS {
            end(&mut turn, &self.commits).await;
        }
        let txn = match &mut turn.txn {
            Some(txn) => txn,
            open @ None => open.insert(writer.begin_with_options(super::immediate()).await?),
        };
        let savepoint = txn.begin().await;
        let member = Turn {
            turn,
            group: self.clone(),
        };
        match savepoint {
            Ok(savepoint) => Ok(WriteTxn {
                inner: Some(savepoint),
                member: Some(member),
                failed: OnceLock::new(),
            }),
            Err(e) => {
                member.release(Some(e.clone()));
                Err(e)
            }
        }
    }
}

/// The flusher: whenever a member is waiting, takes the turn behind the writers already
/// queued and commits their group.
async fn flusher(group: Arc<Group>) {
    loop {
        group.flush.notified().await;
        let mut turn = group.turn.clone().lock_owned().await;
        end(&mut turn, &group.commits).await;
    }
}

/// Ends the open group, if any: commits it and answers its members, or, poisoned, rolls it
/// back and tells them it failed.
async fn end(open: &mut Open, commits: &OnceLock<Counter>) {
    let Some(txn) = open.txn.take() else {
        return;
    };
    let members = std::mem::take(&mut open.members);
    let outcome = match open.poisoned.take() {
        Some(e) => {
            // The transaction may be gone already (SQLite rolled it back); either way
            // nothing of it stands.
            let _ = txn.rollback().await;
            Err(e)
        }
        None if members.is_empty() => {
            // Every writer gave up: nothing to keep, but the write lock is released.
            let _ = txn.rollback().await;
            return;
        }
        None => {
            let committed = txn.commit().await;
            if let Some(counter) = commits.get() {
                counter.inc();
            }
            committed
        }
    };
    if outcome.is_err() {
        tracing::error!(
            members = members.len(),
            "a group commit failed; every write in it was refused"
        );
    }
    for member in members {
        if outcome.is_ok()
            && let Some(after) = member.after
        {
            after();
        }
        // A writer that stopped waiting (its request was cancelled) needs no answer.
        let _ = member.done.send(outcome.clone());
    }
}

/// A writer's place in the group: the turn, held until it commits or gives up.
struct Turn {
    turn: OwnedMutexGuard<Open>,
    group: Arc<Group>,
}

/// A transaction that writes: on SQLite a savepoint in the writer's group commit, on
/// PostgreSQL (and an in-memory SQLite) a transaction of its own. Dropped without
/// [`commit`](Self::commit), it rolls back.
pub struct WriteTxn {
    inner: Option<DatabaseTransaction>,
    member: Option<Turn>,
    /// A statement's failure that may have ended the group's transaction.
    failed: OnceLock<DbErr>,
}

impl std::fmt::Debug for WriteTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn")
            .field("grouped", &self.member.is_some())
            .finish()
    }
}

impl WriteTxn {
    /// A transaction of its own.
    pub(crate) fn alone(txn: DatabaseTransaction) -> Self {
        Self {
            inner: Some(txn),
            member: None,
            failed: OnceLock::new(),
        }
    }

    fn txn(&self) -> &DatabaseTransaction {
        match &self.inner {
            Some(txn) => txn,
            None => unreachable!("a WriteTxn holds its transaction until it is consumed"),
        }
    }

    /// Commits; returns once the change is durable.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.commit_then(None).await
    }

    /// Commits, and runs `after` once the change is durable, before returning; on SQLite
    /// the members of a group run theirs in commit order.
    pub async fn commit_then(mut self, after: Option<AfterCommit>) -> Result<(), DbErr> {
        let Some(txn) = self.inner.take() else {
            return Err(DbErr::Custom("a transaction committed twice".into()));
        };
        let Some(mut member) = self.member.take() else {
            txn.commit().await?;
            if let Some(after) = after {
                after();
            }
            return Ok(());
        };
        if let Some(e) = self.failed.take() {
            // A statement of this writer may have ended the group's transaction.
            drop(txn);
            member.release(Some(e.clone()));
            return Err(e);
        }
        // `RELEASE SAVEPOINT`: this writer's statements join the group's transaction.
        if let Err(e) = txn.commit().await {
            member.release(Some(e.clone()));
            return Err(e);
        }
        let (done, committed) = oneshot::channel();
        member.turn.members.push(Member { done, after });
        member.release(None);
        committed
            .await
            .map_err(|_| DbErr::Custom("the writer's group commit stopped".into()))?
    }

    /// Rolls back (what dropping it does, but waiting for the rollback to run).
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        match self.inner.take() {
            Some(txn) => txn.rollback().await,
            None => Ok(()),
        }
    }

    /// Notes that `result` failed in a way that may have ended the whole transaction
    /// (anything but a constraint refusing one statement): the group is poisoned when this
    /// writer hands back its turn.
    fn watch<T>(&self, result: Result<T, DbErr>) -> Result<T, DbErr> {
        if let (Err(e), Some(_)) = (&result, &self.member) {
            let one_statement = matches!(
                e.sql_err(),
                Some(
                    SqlErr::UniqueConstraintViolation(_) | SqlErr::ForeignKeyConstraintViolation(_)
                )
            );
            if !one_statement {
                let _ = self.failed.set(e.clone());
            }
        }
        result
    }
}

impl Turn {
    /// Hands the turn to the next writer (poisoning the group if `failed`) and wakes the
    /// flusher.
    fn release(mut self, failed: Option<DbErr>) {
        if let Some(e) = failed {
            self.turn.poisoned.get_or_insert(e);
        }
        let Turn { turn, group } = self;
        drop(turn);
        group.flush.notify_one();
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        // The savepoint's own drop queues its `ROLLBACK TO`; the turn goes to the next
        // writer, and the flusher ends a group that may now have no one left to end it.
        self.inner.take();
        if let Some(member) = self.member.take() {
            member.release(self.failed.take());
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn().get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.watch(self.txn().execute_raw(stmt).await)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.watch(self.txn().execute_unprepared(sql).await)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.watch(self.txn().query_one_raw(stmt).await)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.watch(self.txn().query_all_raw(stmt).await)
    }

    fn support_returning(&self) -> bool {
        self.txn().support_returning()
    }
}

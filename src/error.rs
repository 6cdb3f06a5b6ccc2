//! The one domain error type. Each variant maps to a stable `extensions.code`; the
//! client sees [`Error::public_message`], never an internal cause.
use sea_orm::DbErr;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A deployed resource in the way of a delete, as a `HAS_DEPENDENTS` error lists it:
/// names and states, never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    pub resource_id: uuid::Uuid,
    pub kind: String,
    pub name: String,
    pub field: String,
    pub state: &'static str,
    pub deployed_version: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication required: send `Authorization: Bearer <token>` with a valid token")]
    Unauthenticated,
    #[error("your role does not allow this")]
    Forbidden,
    /// Refused for a reason the message gives (not the role alone).
    #[error("{0}")]
    Denied(String),
    /// A change of a protected resource by someone who is not an admin; names it.
    #[error("resource {0} is protected: only admins may change, deploy or delete it")]
    Protected(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A name held by a deleted secret awaiting its purge; the message says what to do.
    #[error("{0}")]
    NameReserved(String),
    /// Deploying (or serving) a resource whose referenced secrets do not exist, or whose
    /// access does not include the resource: the two read alike, so that someone who may
    /// not see secrets cannot tell which names exist.
    #[error("these referenced secrets do not exist or may not be used by this resource: {}", .0.join(", "))]
    MissingSecrets(Vec<String>),
    /// Reading (or deploying with) a disabled secret; names the secrets.
    #[error("disabled secrets cannot be read or deployed until enabled again: {}", .0.join(", "))]
    SecretDisabled(Vec<String>),
    /// Deleting a secret that deployed resources depend on, without `force`.
    #[error("deployed resources depend on this secret ({} listed in `dependents`); delete with `force: true` to break them, or `dryRun: true` to see the impact", .0.len())]
    HasDependents(Vec<Blocker>),
    #[error("version conflict: expected version {expected}, but the current version is {current}")]
    VersionConflict { expected: i32, current: i32 },
    /// The key provider could not be reached or did not answer in time.
    #[error("key provider unavailable: {0}")]
    KmsUnavailable(String),
    /// A stored ciphertext or wrapped key failed authentication: tampering, a row copied
    /// from elsewhere, or the wrong key.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A database failure already classified, where the error itself is shared (one
    /// token lookup answering several waiting requests).
    #[error("database {0:?}")]
    Storage(Storage),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadInput(message.into())
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    /// The stable `extensions.code` clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden | Self::Denied(_) | Self::Protected(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadInput(_) => "BAD_USER_INPUT",
            Self::AlreadyExists(_) | Self::NameReserved(_) => "ALREADY_EXISTS",
            Self::MissingSecrets(_) => "MISSING_SECRETS",
            Self::SecretDisabled(_) => "SECRET_DISABLED",
            Self::HasDependents(_) => "HAS_DEPENDENTS",
            Self::VersionConflict { .. } => "VERSION_CONFLICT",
            Self::KmsUnavailable(_) => "KMS_UNAVAILABLE",
            Self::Integrity(_) => "INTEGRITY_ERROR",
            Self::Db(_) | Self::Storage(_) => match self.storage() {
                Some(Storage::Full) => "STORAGE_FULL",
                Some(Storage::Unavailable) => "DATABASE_UNAVAILABLE",
                None => "INTERNAL_SERVER_ERROR",
            },
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// Whether trying again later may succeed (an outage, a full disk being cleared).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::KmsUnavailable(_)) || self.storage().is_some()
    }

    /// The machine's state behind a database failure, when it is one we name.
    pub fn storage(&self) -> Option<Storage> {
        match self {
            Self::Db(e) => Storage::of(e),
            Self::Storage(storage) => Some(*storage),
            _ => None,
        }
    }

    /// Whether the cause is ours (logged, hidden from the client) rather than the caller's.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Self::Db(_)
                | Self::Storage(_)
                | Self::Internal(_)
                | Self::KmsUnavailable(_)
                | Self::Integrity(_)
        )
    }

    /// What the client is told. Internal causes stay in the server log.
    pub fn public_message(&self) -> String {
        match self {
            Self::KmsUnavailable(_) => {
                "the key management service is unavailable; nothing was changed, try again later"
                    .to_owned()
            }
            Self::Integrity(_) => {
                "the stored value failed its integrity check and cannot be decrypted".to_owned()
            }
            Self::Db(_) | Self::Storage(_) => match self.storage() {
                Some(Storage::Full) => "the server's storage is full; nothing was changed: \
                                        retry once an operator has freed space"
                    .to_owned(),
                Some(Storage::Unavailable) => "the database is unavailable; nothing was \
                                               changed by this request: retry shortly"
                    .to_owned(),
                None => "internal server error".to_owned(),
            },
            Self::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

/// A database failure that is the machine's, not the request's: the client is told which,
/// with a code, rather than `INTERNAL_SERVER_ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// No space left: SQLite's `SQLITE_FULL`, PostgreSQL's `53100 disk_full`.
    Full,
    /// Unreachable or going away: no connection in time, a refused or broken connection,
    /// a server shutting down or not yet accepting connections.
    Unavailable,
}

impl Storage {
    pub fn of(err: &DbErr) -> Option<Self> {
        use sea_orm::{ConnAcquireErr, RuntimeErr, sqlx};
        let sqlx_err = match err {
            DbErr::ConnectionAcquire(
                ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed,
            ) => {
                return Some(Self::Unavailable);
            }
            DbErr::Conn(RuntimeErr::SqlxError(e))
            | DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
            DbErr::Conn(_) => return Some(Self::Unavailable),
            _ => return None,
        };
        match &**sqlx_err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Some(Self::Unavailable),
            sqlx::Error::Database(db) => {
                let code = db.code()?;
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // Primary result codes: SQLITE_IOERR 10, SQLITE_FULL 13.
                    match code.parse::<i32>().ok()? & 0xff {
                        13 => Some(Self::Full),
                        10 => Some(Self::Unavailable),
                        _ => None,
                    }
                } else {
                    // SQLSTATE classes: 53 insufficient resources, 57P0x shutdown and
                    // crash recovery, 08 connection exceptions.
                    match &*code {
                        "53100" => Some(Self::Full),
                        c if c.starts_with("08") || c.starts_with("57P0") => {
                            Some(Self::Unavailable)
                        }
                        _ => None,
                    }
                }
            }
            _ => None,
        }
    }
}

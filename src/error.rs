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

/// Every `extensions.code` the API answers with: clients match on these, and the README's
/// table of codes lists exactly these (a unit test holds the two together).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    AlreadyExists,
    VersionConflict,
    HasDependents,
    MissingSecrets,
    SecretDisabled,
    KmsUnavailable,
    StorageFull,
    DatabaseUnavailable,
    IntegrityError,
    GraphqlParseFailed,
    GraphqlValidationFailed,
    BadRequest,
    PersistedQueryNotFound,
    RateLimited,
    Overloaded,
    Timeout,
    EventsMissed,
    InternalServerError,
}

impl Code {
    pub const ALL: [Code; 22] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::BadUserInput,
        Self::AlreadyExists,
        Self::VersionConflict,
        Self::HasDependents,
        Self::MissingSecrets,
        Self::SecretDisabled,
        Self::KmsUnavailable,
        Self::StorageFull,
        Self::DatabaseUnavailable,
        Self::IntegrityError,
        Self::GraphqlParseFailed,
        Self::GraphqlValidationFailed,
        Self::BadRequest,
        Self::PersistedQueryNotFound,
        Self::RateLimited,
        Self::Overloaded,
        Self::Timeout,
        Self::EventsMissed,
        Self::InternalServerError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::VersionConflict => "VERSION_CONFLICT",
            Self::HasDependents => "HAS_DEPENDENTS",
            Self::MissingSecrets => "MISSING_SECRETS",
            Self::SecretDisabled => "SECRET_DISABLED",
            Self::KmsUnavailable => "KMS_UNAVAILABLE",
            Self::StorageFull => "STORAGE_FULL",
            Self::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Self::IntegrityError => "INTEGRITY_ERROR",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::BadRequest => "BAD_REQUEST",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::RateLimited => "RATE_LIMITED",
            Self::Overloaded => "OVERLOADED",
            Self::Timeout => "TIMEOUT",
            Self::EventsMissed => "EVENTS_MISSED",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub fn code(&self) -> Code {
        match self {
            Self::Unauthenticated => Code::Unauthenticated,
            Self::Forbidden | Self::Denied(_) | Self::Protected(_) => Code::Forbidden,
            Self::NotFound(_) => Code::NotFound,
            Self::BadInput(_) => Code::BadUserInput,
            Self::AlreadyExists(_) | Self::NameReserved(_) => Code::AlreadyExists,
            Self::MissingSecrets(_) => Code::MissingSecrets,
            Self::SecretDisabled(_) => Code::SecretDisabled,
            Self::HasDependents(_) => Code::HasDependents,
            Self::VersionConflict { .. } => Code::VersionConflict,
            Self::KmsUnavailable(_) => Code::KmsUnavailable,
            Self::Integrity(_) => Code::IntegrityError,
            Self::Db(_) | Self::Storage(_) => match self.storage() {
                Some(Storage::Full) => Code::StorageFull,
                Some(Storage::Unavailable) => Code::DatabaseUnavailable,
                None => Code::InternalServerError,
            },
            Self::Internal(_) => Code::InternalServerError,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Code;

    /// The README's table of codes (under "### Errors") lists exactly [`Code::ALL`].
    #[test]
    fn the_readme_lists_every_code_and_no_other() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n### Errors\n")
            .nth(1)
            .and_then(|rest| rest.split("\n#").next())
            .expect("an Errors section in the README");
        let documented: BTreeSet<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
            .collect();
        let defined: BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, defined);
    }
}

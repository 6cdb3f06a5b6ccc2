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
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A name held by a deleted secret awaiting its purge; the message says what to do.
    #[error("{0}")]
    NameReserved(String),
    /// Deploying (or serving) a resource whose referenced secrets do not exist.
    #[error("these referenced secrets do not exist: {}", .0.join(", "))]
    MissingSecrets(Vec<String>),
    /// Reading (or deploying with) a disabled secret; names the secrets.
    #[error("disabled secrets cannot be read or deployed until enabled again: {}", .0.join(", "))]
    SecretDisabled(Vec<String>),
    /// Deleting a secret that deployed resources depend on, without `force`.
    #[error("deployed resources depend on this secret ({} listed in `dependents`); delete with `force: true` to break them, or `dryRun: true` to see the impact", .0.len())]
    HasDependents(Vec<Blocker>),
    #[error("version conflict: expected version {expected}, but the current version is {current}")]
    VersionConflict { expected: i32, current: i32 },
    /// An update without `expectedVersion` lost every race for the secret to other writers.
    #[error(
        "the secret kept changing while this update was prepared (it is now at version {current}); nothing was changed: retry"
    )]
    UpdateContended { current: i32 },
    /// The key provider could not be reached or did not answer in time.
    #[error("key provider unavailable: {0}")]
    KmsUnavailable(String),
    /// A stored ciphertext or wrapped key failed authentication: tampering, a row copied
    /// from elsewhere, or the wrong key.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
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
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadInput(_) => "BAD_USER_INPUT",
            Self::AlreadyExists(_) | Self::NameReserved(_) => "ALREADY_EXISTS",
            Self::MissingSecrets(_) => "MISSING_SECRETS",
            Self::SecretDisabled(_) => "SECRET_DISABLED",
            Self::HasDependents(_) => "HAS_DEPENDENTS",
            Self::VersionConflict { .. } | Self::UpdateContended { .. } => "VERSION_CONFLICT",
            Self::KmsUnavailable(_) => "KMS_UNAVAILABLE",
            Self::Integrity(_) => "INTEGRITY_ERROR",
            Self::Db(_) | Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// Whether the cause is ours (logged, hidden from the client) rather than the caller's.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Self::Db(_) | Self::Internal(_) | Self::KmsUnavailable(_) | Self::Integrity(_)
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
            Self::Db(_) | Self::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

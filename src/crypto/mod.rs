//! Envelope encryption.
//!
//! Every secret version gets a fresh 256-bit data key from a [`KeyProvider`]; the value is
//! sealed with AES-256-GCM under that key and a random 96-bit nonce. Both the AEAD's
//! associated data and the provider's encryption context name the organization, the
//! secret and the version ([`EncryptionContext`]), so a ciphertext or wrapped key copied
//! onto another row fails to open. Only the *wrapped* data key is stored.
mod aws;
mod cache;
mod envelope;
mod local;
mod router;

use async_trait::async_trait;
use std::{fmt, sync::Arc};
use uuid::Uuid;
use zeroize::Zeroizing;

pub use aws::{AwsKmsProvider, AwsSettings};
pub use cache::{CacheLimits, CachingKeyProvider};
pub use envelope::{PreparedKey, SCHEME, SCHEME_V1, Sealed, StoredEnvelope, open, prepare, seal};
pub use local::{KEY_ID_PREFIX as LOCAL_KEY_ID_PREFIX, LocalKeyProvider, MasterKey};
pub use router::KeyRouter;

/// What a value, and the data key it is sealed under, are bound to.
///
/// Two schemes are stored ([`SCHEME`] and [`SCHEME_V1`]). In both the value's AEAD
/// associated data names the organization, the secret and the version number. The data
/// key is bound by the provider (a KMS encryption context, or the local wrapping's
/// associated data) to the organization, the secret and:
/// - the version's own row id (`row_id`, the current scheme): one key for exactly one
///   version row, generated before the writing transaction, while the version number is
///   decided inside it, under the secret's lock — so writers of one secret serialize
///   instead of racing for a number bound into a KMS call;
/// - the version number (scheme v1, `row_id` `None`: versions written before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptionContext {
    pub org_id: Uuid,
    pub secret_id: Uuid,
    pub version: i32,
    /// The version row the data key is bound to; `None` for scheme v1 rows.
    pub row_id: Option<Uuid>,
}

impl EncryptionContext {
    /// The context of a version being written (the current scheme).
    pub fn new(org_id: Uuid, secret_id: Uuid, version: i32, row_id: Uuid) -> Self {
        Self {
            org_id,
            secret_id,
            version,
            row_id: Some(row_id),
        }
    }

    /// The context a stored row was sealed under, by its scheme.
    pub fn stored(org_id: Uuid, secret_id: Uuid, version: i32, row_id: Uuid, scheme: &str) -> Self {
        Self {
            org_id,
            secret_id,
            version,
            row_id: (scheme != SCHEME_V1).then_some(row_id),
        }
    }

    /// Canonical bytes for the value's AEAD associated data.
    pub fn to_aad(&self) -> Vec<u8> {
        match self.row_id {
            None => format!(
                "strongroom/v1;org={};secret={};version={}",
                self.org_id, self.secret_id, self.version
            ),
            Some(row) => format!(
                "strongroom/v2;org={};secret={};version={};row={row}",
                self.org_id, self.secret_id, self.version
            ),
        }
        .into_bytes()
    }

    /// Canonical bytes naming what the data key is bound to (the local provider's
    /// wrapping associated data).
    pub fn key_aad(&self) -> Vec<u8> {
        match self.row_id {
            None => self.to_aad(),
            Some(row) => format!(
                "strongroom/v2-key;org={};secret={};row={row}",
                self.org_id, self.secret_id
            )
            .into_bytes(),
        }
    }

    /// Key/value pairs for a KMS encryption context: what the data key is bound to.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        let bound = match self.row_id {
            None => ("strongroom:version", self.version.to_string()),
            Some(row) => ("strongroom:version-id", row.to_string()),
        };
        [
            ("strongroom:org", self.org_id.to_string()),
            ("strongroom:secret", self.secret_id.to_string()),
            bound,
        ]
    }

    /// What identifies the data key's binding (for caches).
    pub fn key_binding(&self) -> (Uuid, Uuid, KeyBinding) {
        let bound = match self.row_id {
            None => KeyBinding::Version(self.version),
            Some(row) => KeyBinding::Row(row),
        };
        (self.org_id, self.secret_id, bound)
    }
}

/// What, besides organization and secret, a data key is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyBinding {
    Version(i32),
    Row(Uuid),
}

/// A plaintext 256-bit data key. The bytes live in one heap allocation, written in place
/// and zeroized when the last holder drops it: clones (the data key cache's, a reader's)
/// share it, and a map that grows moves only the pointer, never a copy of the key.
/// `Debug` is redacted.
#[derive(Clone)]
pub struct DataKey(Arc<Zeroizing<[u8; 32]>>);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Self::filled(|bytes| getrandom::fill(bytes))
    }

    /// A key from exactly 32 bytes, or `None`.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        Self::filled(|key| {
            key.copy_from_slice(bytes);
            Ok::<(), std::convert::Infallible>(())
        })
        .ok()
    }

    fn filled<E>(fill: impl FnOnce(&mut [u8; 32]) -> Result<(), E>) -> Result<Self, E> {
        let mut key = Arc::new(Zeroizing::new([0u8; 32]));
        // A fresh `Arc` has one owner, so this always writes in place.
        if let Some(bytes) = Arc::get_mut(&mut key) {
            fill(bytes)?;
        }
        Ok(Self(key))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// A data key as stored: wrapped by the provider key `key_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub blob: Vec<u8>,
}

/// A freshly generated data key, in both forms.
#[derive(Debug)]
pub struct GeneratedKey {
    pub plaintext: DataKey,
    pub wrapped: WrappedKey,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum KeyError {
    /// The provider could not be reached or did not answer in time; retrying may work.
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// The wrapped key did not authenticate under the given context or key.
    #[error("wrapped data key failed to authenticate: {0}")]
    Integrity(String),
    /// The provider refused or failed for another reason (configuration, permissions).
    #[error("key provider error: {0}")]
    Provider(String),
}

impl From<KeyError> for crate::Error {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unavailable(m) => crate::Error::KmsUnavailable(m),
            KeyError::Integrity(m) => crate::Error::Integrity(m),
            KeyError::Provider(m) => crate::Error::Internal(format!("key provider: {m}")),
        }
    }
}

/// Generates and unwraps data keys. Implementations: [`LocalKeyProvider`]; the AWS KMS
/// provider plugs in here without touching callers.
#[async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// Short name for logs and `/readyz` (`local`, `aws`).
    fn kind(&self) -> &'static str;

    /// The key id new data keys are wrapped under.
    fn active_key_id(&self) -> &str;

    /// Whether data keys wrapped by `key_id` are this provider's to unwrap.
    fn owns_key(&self, key_id: &str) -> bool;

    /// A fresh data key, wrapped under the active key and bound to `context`.
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KeyError>;

    /// Wraps an existing data key under the active key (key rotation), bound to `context`.
    async fn wrap_data_key(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KeyError>;

    /// Unwraps a stored data key; fails with [`KeyError::Integrity`] if it was not wrapped
    /// for `context` by `wrapped.key_id`.
    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError>;

    /// Whether the provider can currently serve requests.
    async fn health(&self) -> Result<(), KeyError>;

    /// Drops every cached data key of `secret_id`'s versions (it was purged); returns how
    /// many were dropped. Providers that cache nothing have nothing to drop.
    async fn forget_secret(&self, _secret_id: Uuid) -> u64 {
        0
    }

    /// Drops every cached data key (this process may have missed a purge); returns how
    /// many were dropped.
    async fn forget_all(&self) -> u64 {
        0
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, getrandom::Error> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::fill(bytes.as_mut())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;
    use crate::config::MasterKeyText;

    /// No key material in `Debug` output, whatever the type.
    #[test]
    fn debug_output_is_redacted() {
        let hex_fragment = "171, 171";
        let data_key = DataKey::from_slice(&[0xAB; 32]).expect("32 bytes");
        let text = STANDARD.encode([0xAB; 32]);
        let master = MasterKey::from_base64(&text).expect("key");
        let configured = MasterKeyText::from(text.clone());
        for printed in [
            format!("{data_key:?}"),
            format!("{master:?}"),
            format!("{configured:?}"),
        ] {
            assert!(printed.contains("REDACTED"), "{printed}");
            assert!(
                !printed.contains(&text) && !printed.contains(hex_fragment),
                "{printed}"
            );
        }
    }
}

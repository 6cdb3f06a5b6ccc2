//! The embedded key provider: a local 256-bit master key wraps data keys with
//! AES-256-GCM, the encryption context as associated data. Good for one machine and dev.
use std::{collections::HashMap, fmt, io::Write, path::Path, sync::Arc};

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    DataKey, EncryptionContext, GeneratedKey, KeyError, KeyProvider, WrappedKey,
    envelope::{aead_open, aead_seal},
    random_bytes,
};
use crate::{Error, Result, metrics::ProviderCalls};

/// Local key ids look like `local:` + 16 hex digits.
pub const KEY_ID_PREFIX: &str = "local:";

/// A local master key and its id (`local:` + a fingerprint of the key).
pub struct MasterKey {
    id: String,
    key: DataKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl MasterKey {
    pub fn generate() -> Result<Self> {
        let key = DataKey::generate().map_err(|e| Error::Internal(format!("rng: {e}")))?;
        Ok(Self::from_key(key))
    }

    /// Parses a base64-encoded 32-byte key.
    pub fn from_base64(text: &str) -> Result<Self> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| Error::bad_input("the master key is not valid base64"))?,
        );
        let key = DataKey::from_slice(&decoded)
            .ok_or_else(|| Error::bad_input("the master key must be 32 bytes (base64-encoded)"))?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: DataKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"strongroom local master key id\0")
            .chain_update(key.expose())
            .finalize();
        let fingerprint: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            id: format!("{KEY_ID_PREFIX}{fingerprint}"),
            key,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.expose()))
    }

    /// Reads a keyring file: one base64 key per line, the first one active; blank lines
    /// and `#` comments are ignored.
    pub fn read_keyring(path: &Path) -> Result<Vec<Self>> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::Internal(format!(
                "cannot read master key file {}: {e}",
                path.display()
            ))
        })?);
        warn_if_readable_by_others(path);
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(Self::from_base64)
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(Error::Internal(format!(
                "master key file {} holds no key",
                path.display()
            )));
        }
        Ok(keys)
    }

    /// Creates a keyring file holding a new key, readable by the owner only. Fails if the
    /// file exists.
    pub fn create_keyring(path: &Path) -> Result<Self> {
        let key = Self::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            Error::Internal(format!(
                "cannot create master key file {}: {e}",
                path.display()
            ))
        })?;
        let line = Zeroizing::new(format!("{}\n", key.to_base64().as_str()));
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                Error::Internal(format!(
                    "cannot write master key file {}: {e}",
                    path.display()
                ))
            })?;
        Ok(key)
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the master key file is readable by other users; chmod 600 it"
            );
        }
    }
}

/// Wraps data keys under the first master key of its keyring; unwraps under any of them,
/// so old keys keep working until every data key has been rotated off them.
#[derive(Debug)]
pub struct LocalKeyProvider {
    active: String,
    keys: HashMap<String, Arc<MasterKey>>,
    calls: ProviderCalls,
}

impl LocalKeyProvider {
    /// `keys` must not be empty; the first one is active.
    pub fn new(keys: Vec<MasterKey>, calls: ProviderCalls) -> Self {
        let active = keys.first().map(|k| k.id.clone()).unwrap_or_default();
        let keys = keys
            .into_iter()
            .map(|k| (k.id.clone(), Arc::new(k)))
            .collect();
        Self {
            active,
            keys,
            calls,
        }
    }

    /// The same keyring with `key_id` active (the target of a rotation), if it holds it.
    pub fn with_active(&self, key_id: &str) -> Option<Self> {
        self.keys.contains_key(key_id).then(|| Self {
            active: key_id.to_owned(),
            keys: self.keys.clone(),
            calls: self.calls.clone(),
        })
    }

    fn wrap(&self, key: &DataKey, context: &EncryptionContext) -> Result<WrappedKey, KeyError> {
        let master = self
            .keys
            .get(&self.active)
            .ok_or_else(|| KeyError::Provider("the keyring is empty".into()))?;
        let nonce = random_bytes::<12>().map_err(|e| KeyError::Provider(format!("rng: {e}")))?;
        let sealed = aead_seal(
            &master.key,
            &nonce[..],
            &Self::wrapping_aad(context),
            key.expose(),
        )
        .map_err(|e| KeyError::Provider(e.to_string()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(WrappedKey {
            key_id: self.active.clone(),
            blob,
        })
    }

    fn wrapping_aad(context: &EncryptionContext) -> Vec<u8> {
        let mut aad = b"strongroom/dek;".to_vec();
        aad.extend_from_slice(&context.key_aad());
        aad
    }
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn active_key_id(&self) -> &str {
        &self.active
    }

    fn owns_key(&self, key_id: &str) -> bool {
        key_id.starts_with(KEY_ID_PREFIX)
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KeyError> {
        self.calls.count("GenerateDataKey");
        let plaintext = DataKey::generate().map_err(|e| KeyError::Provider(format!("rng: {e}")))?;
        let wrapped = self.wrap(&plaintext, context)?;
        Ok(GeneratedKey { plaintext, wrapped })
    }

    async fn wrap_data_key(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KeyError> {
        self.calls.count("Encrypt");
        self.wrap(key, context)
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        self.calls.count("Decrypt");
        let master = self.keys.get(&wrapped.key_id).ok_or_else(|| {
            KeyError::Integrity(format!(
                "data key was wrapped by {}, which is not in the local keyring",
                wrapped.key_id
            ))
        })?;
        if wrapped.blob.len() < 12 {
            return Err(KeyError::Integrity("wrapped data key is truncated".into()));
        }
        let (nonce, sealed) = wrapped.blob.split_at(12);
        let opened = aead_open(&master.key, nonce, &Self::wrapping_aad(context), sealed)?;
        DataKey::from_slice(&opened)
            .ok_or_else(|| KeyError::Integrity("unwrapped data key is not 32 bytes".into()))
    }

    async fn health(&self) -> Result<(), KeyError> {
        Ok(())
    }
}

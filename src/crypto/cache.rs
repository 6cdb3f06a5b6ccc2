//! A cache of unwrapped data keys in front of a [`KeyProvider`], so reading a value does
//! not cost one KMS call each time. Entries are bounded by age, by uses and in number;
//! an evicted key is zeroized (its [`DataKey`] zeroizes on drop).
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{DataKey, EncryptionContext, GeneratedKey, KeyError, KeyProvider, WrappedKey};

/// Bounds of the data key cache. Any bound of zero turns the cache off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_age: Duration,
    pub max_uses: u32,
    pub max_entries: usize,
}

impl CacheLimits {
    fn enabled(&self) -> bool {
        !self.max_age.is_zero() && self.max_uses > 0 && self.max_entries > 0
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    key_id: String,
    blob: Vec<u8>,
    context: (uuid::Uuid, uuid::Uuid, i32),
}

impl CacheKey {
    fn new(wrapped: &WrappedKey, context: &EncryptionContext) -> Self {
        Self {
            key_id: wrapped.key_id.clone(),
            blob: wrapped.blob.clone(),
            context: (context.org_id, context.secret_id, context.version),
        }
    }
}

struct Entry {
    key: DataKey,
    created: Instant,
    uses: u32,
}

/// Serves repeated unwraps of the same wrapped key from memory.
pub struct CachingKeyProvider {
    inner: Arc<dyn KeyProvider>,
    limits: CacheLimits,
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl CachingKeyProvider {
    pub fn new(inner: Arc<dyn KeyProvider>, limits: CacheLimits) -> Self {
        Self {
            inner,
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        // The map holds no invariant a panic could break half-way.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cached key, if one is fresh and has uses left; counts the use.
    fn take(&self, key: &CacheKey) -> Option<DataKey> {
        let mut entries = self.entries();
        let entry = entries.get_mut(key)?;
        if entry.created.elapsed() >= self.limits.max_age || entry.uses >= self.limits.max_uses {
            entries.remove(key);
            return None;
        }
        entry.uses += 1;
        Some(entry.key.clone())
    }

    fn put(&self, key: CacheKey, data_key: DataKey, uses: u32) {
        let mut entries = self.entries();
        let max_age = self.limits.max_age;
        entries.retain(|_, e| e.created.elapsed() < max_age);
        while entries.len() >= self.limits.max_entries {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => entries.remove(&k),
                None => break,
            };
        }
        entries.insert(
            key,
            Entry {
                key: data_key,
                created: Instant::now(),
                uses,
            },
        );
    }
}

#[async_trait]
impl KeyProvider for CachingKeyProvider {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn active_key_id(&self) -> &str {
        self.inner.active_key_id()
    }

    fn owns_key(&self, key_id: &str) -> bool {
        self.inner.owns_key(key_id)
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KeyError> {
        // Never reuse a data key for encryption: every version gets a fresh one. Prime the
        // cache with it, so the first read of a new version costs no unwrap.
        let generated = self.inner.generate_data_key(context).await?;
        if self.limits.enabled() {
            let key = CacheKey::new(&generated.wrapped, context);
            self.put(key, generated.plaintext.clone(), 0);
        }
        Ok(generated)
    }

    async fn wrap_data_key(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KeyError> {
        self.inner.wrap_data_key(key, context).await
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        if !self.limits.enabled() {
            return self.inner.decrypt_data_key(wrapped, context).await;
        }
        let cache_key = CacheKey::new(wrapped, context);
        if let Some(key) = self.take(&cache_key) {
            return Ok(key);
        }
        let key = self.inner.decrypt_data_key(wrapped, context).await?;
        self.put(cache_key, key.clone(), 1);
        Ok(key)
    }

    async fn health(&self) -> Result<(), KeyError> {
        self.inner.health().await
    }
}

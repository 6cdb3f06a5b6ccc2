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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        crypto::{LocalKeyProvider, MasterKey},
        metrics::ProviderCalls,
    };

    fn context(version: i32) -> EncryptionContext {
        EncryptionContext {
            org_id: uuid::Uuid::from_u128(1),
            secret_id: uuid::Uuid::from_u128(2),
            version,
        }
    }

    /// A cache over the real local provider, and the provider's call counter.
    fn cache(limits: CacheLimits) -> (CachingKeyProvider, ProviderCalls) {
        let calls = ProviderCalls::detached("local");
        let keys = vec![MasterKey::generate().expect("rng")];
        let inner = Arc::new(LocalKeyProvider::new(keys, calls.clone()));
        (CachingKeyProvider::new(inner, limits), calls)
    }

    fn limits(max_age: Duration, max_uses: u32, max_entries: usize) -> CacheLimits {
        CacheLimits {
            max_age,
            max_uses,
            max_entries,
        }
    }

    async fn read(cache: &CachingKeyProvider, generated: &GeneratedKey, version: i32) {
        let key = cache
            .decrypt_data_key(&generated.wrapped, &context(version))
            .await
            .expect("unwrap");
        assert_eq!(key.expose(), generated.plaintext.expose());
    }

    #[tokio::test]
    async fn a_written_key_is_served_without_unwrapping_until_its_uses_run_out() {
        let (cache, calls) = cache(limits(Duration::from_secs(60), 3, 10));
        let generated = cache
            .generate_data_key(&context(1))
            .await
            .expect("generate");
        for _ in 0..3 {
            read(&cache, &generated, 1).await;
        }
        assert_eq!(calls.get("Decrypt"), 0, "primed on write");
        read(&cache, &generated, 1).await;
        assert_eq!(calls.get("Decrypt"), 1, "a used-up entry is not served");
    }

    #[tokio::test]
    async fn an_expired_key_is_never_served() {
        let (cache, calls) = cache(limits(Duration::from_millis(50), 100, 10));
        let generated = cache
            .generate_data_key(&context(1))
            .await
            .expect("generate");
        tokio::time::sleep(Duration::from_millis(80)).await;
        read(&cache, &generated, 1).await;
        assert_eq!(calls.get("Decrypt"), 1);
    }

    #[tokio::test]
    async fn the_oldest_entry_makes_room() {
        let (cache, calls) = cache(limits(Duration::from_secs(60), 100, 2));
        let first = cache
            .generate_data_key(&context(1))
            .await
            .expect("generate");
        let second = cache
            .generate_data_key(&context(2))
            .await
            .expect("generate");
        let third = cache
            .generate_data_key(&context(3))
            .await
            .expect("generate");
        read(&cache, &second, 2).await;
        read(&cache, &third, 3).await;
        assert_eq!(calls.get("Decrypt"), 0);
        read(&cache, &first, 1).await;
        assert_eq!(calls.get("Decrypt"), 1, "the first entry was evicted");
    }

    #[tokio::test]
    async fn a_wrong_context_is_not_answered_from_the_cache() {
        let (cache, _) = cache(limits(Duration::from_secs(60), 100, 10));
        let generated = cache
            .generate_data_key(&context(1))
            .await
            .expect("generate");
        let err = cache
            .decrypt_data_key(&generated.wrapped, &context(2))
            .await
            .expect_err("bound to version 1");
        assert!(matches!(err, KeyError::Integrity(_)), "{err:?}");
    }

    #[tokio::test]
    async fn zero_turns_the_cache_off() {
        let (cache, calls) = cache(limits(Duration::ZERO, 100, 10));
        let generated = cache
            .generate_data_key(&context(1))
            .await
            .expect("generate");
        read(&cache, &generated, 1).await;
        read(&cache, &generated, 1).await;
        assert_eq!(calls.get("Decrypt"), 2);
    }
}

//! A cache of unwrapped data keys in front of a [`KeyProvider`], so reading a value does
//! not cost one KMS call each time. Entries are bounded by age, by uses and in number
//! (`moka`, least recently used out first); an evicted key is zeroized when its last user
//! drops it ([`DataKey`] zeroizes on drop).
use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use moka::{future::Cache, policy::EvictionPolicy};

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
    context: (uuid::Uuid, uuid::Uuid, super::KeyBinding),
}

impl CacheKey {
    fn new(wrapped: &WrappedKey, context: &EncryptionContext) -> Self {
        Self {
            key_id: wrapped.key_id.clone(),
            blob: wrapped.blob.clone(),
            context: context.key_binding(),
        }
    }
}

/// A cached key and the reads it has served.
struct Entry {
    key: DataKey,
    uses: AtomicU32,
}

/// Serves repeated unwraps of the same wrapped key from memory.
pub struct CachingKeyProvider {
    inner: Arc<dyn KeyProvider>,
    limits: CacheLimits,
    entries: Option<Cache<CacheKey, Arc<Entry>>>,
}

impl CachingKeyProvider {
    pub fn new(inner: Arc<dyn KeyProvider>, limits: CacheLimits) -> Self {
        let entries = limits.enabled().then(|| {
            Cache::builder()
                .max_capacity(u64::try_from(limits.max_entries).unwrap_or(u64::MAX))
                .time_to_live(limits.max_age)
                .eviction_policy(EvictionPolicy::lru())
                .build()
        });
        Self {
            inner,
            limits,
            entries,
        }
    }

    /// Counts a use of `entry`; `None` once its uses have run out.
    fn use_of(&self, entry: &Entry) -> Option<DataKey> {
        let used = entry.uses.fetch_add(1, Ordering::Relaxed);
        (used < self.limits.max_uses).then(|| entry.key.clone())
    }

    /// Applies pending evictions now (moka applies them lazily), so a test sees the bounds.
    #[cfg(test)]
    async fn settle(&self) -> u64 {
        match &self.entries {
            Some(entries) => {
                entries.run_pending_tasks().await;
                entries.entry_count()
            }
            None => 0,
        }
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
        if let Some(entries) = &self.entries {
            let entry = Entry {
                key: generated.plaintext.clone(),
                uses: AtomicU32::new(0),
            };
            entries
                .insert(CacheKey::new(&generated.wrapped, context), Arc::new(entry))
                .await;
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
        let Some(entries) = &self.entries else {
            return self.inner.decrypt_data_key(wrapped, context).await;
        };
        let cache_key = CacheKey::new(wrapped, context);
        // Concurrent misses for one key share one unwrap.
        let entry = entries
            .try_get_with_by_ref(&cache_key, async {
                let key = self.inner.decrypt_data_key(wrapped, context).await?;
                let uses = AtomicU32::new(0);
                Ok::<_, KeyError>(Arc::new(Entry { key, uses }))
            })
            .await
            .map_err(|e| (*e).clone())?;
        if let Some(key) = self.use_of(&entry) {
            return Ok(key);
        }
        // Used up: unwrap afresh and start counting again.
        entries.invalidate(&cache_key).await;
        let key = self.inner.decrypt_data_key(wrapped, context).await?;
        let uses = AtomicU32::new(1);
        let fresh = Entry {
            key: key.clone(),
            uses,
        };
        entries.insert(cache_key, Arc::new(fresh)).await;
        Ok(key)
    }

    async fn health(&self) -> Result<(), KeyError> {
        self.inner.health().await
    }

    async fn forget_secret(&self, secret_id: uuid::Uuid) -> u64 {
        let Some(entries) = &self.entries else {
            return 0;
        };
        let purged: Vec<_> = entries
            .iter()
            .filter(|(key, _)| key.context.1 == secret_id)
            .map(|(key, _)| key)
            .collect();
        for key in &purged {
            entries.invalidate(key.as_ref()).await;
        }
        // Removed from the map at once; each key zeroizes when its last reader drops it.
        entries.run_pending_tasks().await;
        u64::try_from(purged.len()).unwrap_or(u64::MAX)
    }

    async fn forget_all(&self) -> u64 {
        let Some(entries) = &self.entries else {
            return 0;
        };
        let held = entries.iter().count();
        entries.invalidate_all();
        entries.run_pending_tasks().await;
        u64::try_from(held).unwrap_or(u64::MAX)
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
            row_id: None,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_unwrap() {
        let (cache, calls) = cache(limits(Duration::from_secs(60), 100, 10));
        // Generated behind the cache's back: the cache has never seen this key.
        let generated = cache
            .inner
            .generate_data_key(&context(1))
            .await
            .expect("generate");
        let (cache, generated) = (Arc::new(cache), Arc::new(generated));
        let readers: Vec<_> = (0..20)
            .map(|_| {
                let (cache, generated) = (cache.clone(), generated.clone());
                tokio::spawn(async move { read(&cache, &generated, 1).await })
            })
            .collect();
        for reader in readers {
            reader.await.expect("reader");
        }
        assert_eq!(calls.get("Decrypt"), 1, "one unwrap for twenty readers");
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
    async fn the_least_recently_used_entry_makes_room() {
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
        assert_eq!(cache.settle().await, 2, "held at most max_entries");
        read(&cache, &second, 2).await;
        read(&cache, &third, 3).await;
        assert_eq!(calls.get("Decrypt"), 0);
        read(&cache, &first, 1).await;
        assert_eq!(calls.get("Decrypt"), 1, "the first entry was evicted");
        assert_eq!(cache.settle().await, 2, "still at most max_entries");
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

    #[tokio::test]
    async fn a_purged_secrets_keys_are_forgotten_and_no_others() {
        let (cache, calls) = cache(limits(Duration::from_secs(60), 100, 10));
        let mut purged = Vec::new();
        for version in 1..=3 {
            let generated = cache.generate_data_key(&context(version)).await;
            purged.push(generated.expect("generate"));
        }
        let other_context = EncryptionContext {
            secret_id: uuid::Uuid::from_u128(3),
            ..context(1)
        };
        let other = cache
            .generate_data_key(&other_context)
            .await
            .expect("generate");
        assert_eq!(cache.forget_secret(context(1).secret_id).await, 3);
        assert_eq!(
            cache.settle().await,
            1,
            "only the other secret's key is left"
        );
        read(&cache, &purged[0], 1).await;
        assert_eq!(
            calls.get("Decrypt"),
            1,
            "a forgotten key is unwrapped afresh"
        );
        let key = cache
            .decrypt_data_key(&other.wrapped, &other_context)
            .await
            .expect("unwrap");
        assert_eq!(key.expose(), other.plaintext.expose());
        assert_eq!(
            calls.get("Decrypt"),
            1,
            "the other secret's key is still cached"
        );
        assert_eq!(cache.forget_all().await, 2);
        assert_eq!(cache.settle().await, 0);
    }
}

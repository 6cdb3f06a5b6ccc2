//! Authenticating bearer tokens, with a cache that keeps the token table off the hot path.
//!
//! Every request presents a token, and looking it up costs a statement; the lookups are
//! cached for at most [`MAX_TTL`] (one second). Staleness is bounded by that TTL alone,
//! not by invalidation messages: a revocation or expiry made through any replica reaches
//! every replica's cache within the TTL, with nothing to deliver, to lose or to reconnect
//! (a `LISTEN/NOTIFY` invalidation would still need the TTL as a backstop for the moments
//! its listener is down, and the TTL alone already meets the bound). The replica that
//! revokes a token also empties its own cache at once. Unknown tokens are cached too, so a
//! flood of made-up tokens costs one lookup per token per second. Expiry is checked at
//! every use, cached or not. The cache is keyed by the token's SHA-256, never the token.
use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use sea_orm::DatabaseConnection;

use crate::{
    Error, Result,
    domain::identity::{self, Authenticated},
};

/// The longest a cached lookup is trusted: a revoked token is refused everywhere within it.
pub const MAX_TTL: Duration = Duration::from_secs(1);

/// Tokens cached at most (about 300 bytes each).
const CAPACITY: u64 = 100_000;

/// Looks tokens up, through the cache.
pub struct Authenticator {
    cache: Option<Cache<[u8; 32], Option<Arc<Authenticated>>>>,
}

impl Authenticator {
    /// A cache with entries trusted for `ttl` (at most [`MAX_TTL`]); zero turns it off.
    pub fn new(ttl: Duration) -> Self {
        let ttl = ttl.min(MAX_TTL);
        let cache = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build()
        });
        Self { cache }
    }

    /// The principal `token` belongs to, if it is valid, unrevoked (as of at most the TTL
    /// ago) and unexpired.
    pub async fn authenticate(
        &self,
        db: &DatabaseConnection,
        token: &str,
    ) -> Result<Option<Authenticated>> {
        if !identity::is_well_formed(token) {
            return Ok(None);
        }
        let digest = identity::token_digest(token);
        let lookup = async {
            let stored = hex::encode(digest);
            Ok::<_, Error>(identity::find_unrevoked(db, &stored).await?.map(Arc::new))
        };
        let found = match &self.cache {
            None => lookup.await?,
            // Concurrent misses for one token share one lookup.
            Some(cache) => {
                cache
                    .try_get_with(digest, lookup)
                    .await
                    .map_err(|e| match e.storage() {
                        Some(storage) => Error::Storage(storage),
                        None => Error::Internal(format!("token lookup failed: {e}")),
                    })?
            }
        };
        let now = chrono::Utc::now();
        Ok(found
            .filter(|found| found.is_live_at(now))
            .map(|found| Authenticated::clone(&found)))
    }

    /// Whether `token` is one this server found valid within the cache's lifetime (and is
    /// still unexpired): answered from memory, never from the database.
    pub async fn known_valid(&self, token: &str) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        if !identity::is_well_formed(token) {
            return false;
        }
        let now = chrono::Utc::now();
        cache
            .get(&identity::token_digest(token))
            .await
            .flatten()
            .is_some_and(|found| found.is_live_at(now))
    }

    /// Forgets every cached lookup (after a revocation through this replica).
    pub fn forget_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }
}

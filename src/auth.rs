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

/// A token as found: valid (if unexpired at the time of use), or revoked.
#[derive(Debug)]
struct Found {
    authenticated: Authenticated,
    revoked: bool,
}

/// What a presented token turned out to be.
#[derive(Debug)]
pub enum Checked {
    Valid(Authenticated),
    /// A real token that is no longer accepted: whose, and why.
    Refused(Authenticated, Refusal),
    /// Not a token this server issued.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Revoked,
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// Looks tokens up, through the cache.
pub struct Authenticator {
    cache: Option<Cache<[u8; 32], Option<Arc<Found>>>>,
    /// Tokens whose refusal was audited in the last minute (DESIGN §9: at most once per
    /// token per minute).
    refusals_noted: moka::sync::Cache<uuid::Uuid, ()>,
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
        let refusals_noted = moka::sync::Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_live(Duration::from_secs(60))
            .build();
        Self {
            cache,
            refusals_noted,
        }
    }

    /// Whether the refusal of `token_id` is the first this minute (and so to be audited).
    pub fn first_refusal_this_minute(&self, token_id: uuid::Uuid) -> bool {
        self.refusals_noted.entry(token_id).or_insert(()).is_fresh()
    }

    /// The principal `token` belongs to, if it is valid, unrevoked (as of at most the TTL
    /// ago) and unexpired.
    pub async fn authenticate(
        &self,
        db: &DatabaseConnection,
        token: &str,
    ) -> Result<Option<Authenticated>> {
        Ok(match self.check(db, token).await? {
            Checked::Valid(authenticated) => Some(authenticated),
            Checked::Refused(..) | Checked::Unknown => None,
        })
    }

    /// What `token` is: valid, a real token refused (revoked as of at most the TTL ago, or
    /// expired now), or unknown.
    pub async fn check(&self, db: &DatabaseConnection, token: &str) -> Result<Checked> {
        if !identity::is_well_formed(token) {
            return Ok(Checked::Unknown);
        }
        let digest = identity::token_digest(token);
        let lookup = async {
            let stored = hex::encode(digest);
            let found = identity::find_by_hash(db, &stored).await?;
            Ok::<_, Error>(found.map(|(authenticated, revoked_at)| {
                Arc::new(Found {
                    authenticated,
                    revoked: revoked_at.is_some(),
                })
            }))
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
        let Some(found) = found else {
            return Ok(Checked::Unknown);
        };
        let authenticated = found.authenticated.clone();
        Ok(if found.revoked {
            Checked::Refused(authenticated, Refusal::Revoked)
        } else if !authenticated.is_live_at(chrono::Utc::now()) {
            Checked::Refused(authenticated, Refusal::Expired)
        } else {
            Checked::Valid(authenticated)
        })
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
            .is_some_and(|found| !found.revoked && found.authenticated.is_live_at(now))
    }

    /// Forgets every cached lookup (after a revocation through this replica).
    pub fn forget_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }
}

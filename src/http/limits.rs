//! Load limits on `/graphql`, from maintained crates: a request timeout and a cap on
//! requests in flight (tower), per-token rate limits and a per-address limit on requests
//! without a valid token (governor, GCRA). The defaults
//! leave a well-behaved client alone: 32 connections driven flat out by one token are a
//! benchmark, not an attack. Refusals are GraphQL-shaped, with a code.
use crate::error::Code;
use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::Response,
};
use governor::{
    DefaultKeyedRateLimiter, InsufficientCapacity, Quota, RateLimiter, clock::Clock,
    clock::DefaultClock,
};
use tower::BoxError;
use uuid::Uuid;

use super::media::Media;
use crate::{config::RateLimit, graphql::error_response};

/// Per-token rate limits; keys are token ids, so only valid tokens take room.
pub struct TokenRateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<Uuid>>,
}

impl TokenRateLimiter {
    pub fn new(limit: RateLimit) -> Arc<Self> {
        let limiter = match limit {
            RateLimit::Off => None,
            RateLimit::PerSecond { rate, burst } => Some(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        };
        let this = Arc::new(Self { limiter });
        if this.limiter.is_some() {
            forget_idle_keys(&this, |this| this.limiter.as_ref());
        }
        this
    }

    /// Charges `operations` to `token_id`; a refusal says when to retry.
    pub fn check(&self, token_id: Uuid, operations: usize) -> Result<(), RateLimited> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let cells = u32::try_from(operations)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&token_id, cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(RateLimited {
                    retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
                    batch_over_burst: None,
                    unauthenticated: false,
                })
            }
            Err(InsufficientCapacity(burst)) => Err(RateLimited {
                retry_after_seconds: 1,
                batch_over_burst: Some((operations, burst)),
                unauthenticated: false,
            }),
        }
    }
}

/// Requests without a valid token, per client address (`STRONGROOM_UNAUTHENTICATED_RATE_LIMIT`).
///
/// A request with no token or a malformed one takes a cell; one whose token turns out
/// unknown, revoked or expired takes a cell after its lookup. Once an address is out of
/// cells it is *blocked* for the wait GCRA gives: its requests are then refused with 429
/// before their token is looked up — so a flood of made-up tokens stops reaching the
/// database — unless the token is one this server found valid within the last second
/// (the credential cache). A valid token the server has not seen lately waits like the
/// rest: from outside it cannot be told apart from a made-up one without the lookup.
pub struct AddressRateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses out of cells, with the second they may try again.
    blocked: moka::sync::Cache<IpAddr, u64>,
}

impl AddressRateLimiter {
    pub fn new(limit: RateLimit) -> Arc<Self> {
        let limiter = match limit {
            RateLimit::Off => None,
            RateLimit::PerSecond { rate, burst } => Some(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        };
        let blocked = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .expire_after(BlockedFor)
            .build();
        let this = Arc::new(Self { limiter, blocked });
        if this.limiter.is_some() {
            forget_idle_keys(&this, |this| this.limiter.as_ref());
        }
        this
    }

    /// Refuses `address` while it is blocked.
    pub fn check_blocked(&self, address: IpAddr) -> Result<(), RateLimited> {
        match self.blocked.get(&address) {
            Some(retry_after_seconds) => Err(RateLimited::unauthenticated(retry_after_seconds)),
            None => Ok(()),
        }
    }

    /// Charges one request without a valid token to `address`.
    pub fn charge(&self, address: IpAddr) -> Result<(), RateLimited> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        match limiter.check_key(&address) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                self.blocked.insert(address, seconds);
                Err(RateLimited::unauthenticated(seconds))
            }
        }
    }
}

/// Every minute, for as long as `owner` lives, forgets the keys of its limiter that have
/// been idle long enough to be back at a full burst.
fn forget_idle_keys<T, K>(owner: &Arc<T>, limiter: fn(&T) -> Option<&DefaultKeyedRateLimiter<K>>)
where
    T: Send + Sync + 'static,
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    let weak = Arc::downgrade(owner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(owner) = weak.upgrade() else { break };
            if let Some(limiter) = limiter(&owner) {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    });
}

/// A blocked address stays blocked for as many seconds as it was told to wait.
struct BlockedFor;

impl moka::Expiry<IpAddr, u64> for BlockedFor {
    fn expire_after_create(
        &self,
        _: &IpAddr,
        seconds: &u64,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(*seconds))
    }
}

/// A request refused by the rate limit: HTTP 429 with `Retry-After`, and the same in
/// `extensions` (`RATE_LIMITED`, `retryAfterSeconds`).
pub struct RateLimited {
    retry_after_seconds: u64,
    /// `(operations, burst)` when a batch can never fit.
    batch_over_burst: Option<(usize, u32)>,
    /// Charged to the client address (no valid token), not to a token.
    unauthenticated: bool,
}

impl RateLimited {
    fn unauthenticated(retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds,
            batch_over_burst: None,
            unauthenticated: true,
        }
    }

    /// The refusal, in the media type the client negotiated.
    pub fn answer(self, media: Media) -> Response {
        let wait = self.retry_after_seconds;
        let message = match self.batch_over_burst {
            Some((operations, burst)) => format!(
                "this batch holds {operations} operations, more than this token's burst of \
                 {burst}: send fewer at a time (nothing was run)"
            ),
            None if self.unauthenticated => format!(
                "too many requests without a valid token from this address; retry in {wait} s \
                 with a valid token (nothing was run)"
            ),
            None => {
                format!("this token is over its rate limit; retry in {wait} s (nothing was run)")
            }
        };
        let mut body = error_response(Code::RateLimited, &message);
        body["errors"][0]["extensions"]["retryAfterSeconds"] = wait.into();
        let mut response = media.respond(StatusCode::TOO_MANY_REQUESTS, &body);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(wait));
        response
    }
}

/// The answer when the timeout or the in-flight cap refuses a request.
pub async fn load_refusal(timeout: Duration, media: Media, error: BoxError) -> Response {
    let (code, message, retry) = if error.is::<tower::timeout::error::Elapsed>() {
        (
            Code::Timeout,
            format!(
                "the request did not finish within {} s and was abandoned; a change it was \
                 making may or may not have been committed: check before retrying",
                timeout.as_secs()
            ),
            None,
        )
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        (
            Code::Overloaded,
            "the server is serving as many requests as it allows; nothing was run: \
             retry shortly"
                .to_owned(),
            Some(HeaderValue::from_static("1")),
        )
    } else {
        tracing::error!(error = %error, "request failed in a middleware");
        (
            Code::InternalServerError,
            "internal server error".to_owned(),
            None,
        )
    };
    let mut response = media.refusal(StatusCode::SERVICE_UNAVAILABLE, code, &message);
    if let Some(retry) = retry {
        response.headers_mut().insert(RETRY_AFTER, retry);
    }
    response
}

//! Load limits on `/graphql`, from maintained crates: a request timeout and a cap on
//! requests in flight (tower), and per-token rate limits (governor, GCRA). The defaults
//! leave a well-behaved client alone: 32 connections driven flat out by one token are a
//! benchmark, not an attack. Refusals are GraphQL-shaped, with a code.
use std::{num::NonZeroU32, sync::Arc, time::Duration};

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
            // Forget tokens idle long enough to be back at a full burst.
            let weak = Arc::downgrade(&this);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let Some(this) = weak.upgrade() else { break };
                    if let Some(limiter) = &this.limiter {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                }
            });
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
                })
            }
            Err(InsufficientCapacity(burst)) => Err(RateLimited {
                retry_after_seconds: 1,
                batch_over_burst: Some((operations, burst)),
            }),
        }
    }
}

/// A request refused by the rate limit: HTTP 429 with `Retry-After`, and the same in
/// `extensions` (`RATE_LIMITED`, `retryAfterSeconds`).
pub struct RateLimited {
    retry_after_seconds: u64,
    /// `(operations, burst)` when a batch can never fit.
    batch_over_burst: Option<(usize, u32)>,
}

impl RateLimited {
    /// The refusal, in the media type the client negotiated.
    pub fn answer(self, media: Media) -> Response {
        let wait = self.retry_after_seconds;
        let message = match self.batch_over_burst {
            Some((operations, burst)) => format!(
                "this batch holds {operations} operations, more than this token's burst of \
                 {burst}: send fewer at a time (nothing was run)"
            ),
            None => {
                format!("this token is over its rate limit; retry in {wait} s (nothing was run)")
            }
        };
        let mut body = error_response("RATE_LIMITED", &message);
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
            "TIMEOUT",
            format!(
                "the request did not finish within {} s and was abandoned; a change it was \
                 making may or may not have been committed: check before retrying",
                timeout.as_secs()
            ),
            None,
        )
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        (
            "OVERLOADED",
            "the server is serving as many requests as it allows; nothing was run: \
             retry shortly"
                .to_owned(),
            Some(HeaderValue::from_static("1")),
        )
    } else {
        tracing::error!(error = %error, "request failed in a middleware");
        (
            "INTERNAL_SERVER_ERROR",
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

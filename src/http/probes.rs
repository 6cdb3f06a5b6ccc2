//! Probes and metrics: `/healthz`, `/readyz`, `/metrics`.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{
        HeaderMap, StatusCode,
        header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE},
    },
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::Mutex;

use super::AppState;
use crate::{config::MetricsToken, crypto::KeyProvider, metrics::Metrics};

/// How long a key provider check answers `/readyz`: probes every second from several
/// orchestrators must not turn into a KMS call each (and a KMS quota burnt).
const KEY_CHECK_TTL: Duration = Duration::from_secs(5);

/// The last key provider check. Concurrent probes wait for one check rather than each
/// making their own.
#[derive(Default)]
pub struct KeyCheck(Mutex<Option<(Instant, bool)>>);

impl KeyCheck {
    async fn ok(&self, keys: &dyn KeyProvider) -> bool {
        let mut last = self.0.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < KEY_CHECK_TTL
        {
            return ok;
        }
        let checked = tokio::time::timeout(Duration::from_secs(5), keys.health()).await;
        let ok = matches!(checked, Ok(Ok(())));
        if let Ok(Err(e)) = &checked {
            tracing::warn!(error = %e, "readiness: key provider unavailable");
        }
        *last = Some((Instant::now(), ok));
        ok
    }
}

/// How long `/readyz` waits for the database: a probe must answer "not ready" during an
/// outage well within an orchestrator's probe timeout, not after the pool's acquire timeout.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let database = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, state.data.db.read().ping()).await;
    let database_ok = match database {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            false
        }
        Err(_) => {
            tracing::warn!(
                timeout = ?DATABASE_CHECK_TIMEOUT,
                "readiness: the database did not answer in time"
            );
            false
        }
    };
    let keys_ok = state.key_check.ok(state.data.keys.as_ref()).await;
    let status = if database_ok && keys_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = serde_json::json!({
        "database": word(database_ok),
        "keyProvider": word(keys_ok),
        "keyProviderKind": state.data.keys.kind(),
    });
    (status, Json(body)).into_response()
}

/// Who may read `/metrics` on the main address.
#[derive(Clone, Debug)]
pub enum MetricsAccess {
    /// Neither a token nor an address of their own: not served.
    Off,
    /// Served on `STRONGROOM_METRICS_LISTEN`, not here.
    Elsewhere,
    /// Served here to the bearer of the token.
    Token(MetricsToken),
}

/// `GET /metrics` on the main address.
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match &state.metrics_access {
        MetricsAccess::Off => (
            StatusCode::NOT_FOUND,
            "metrics are not served: set STRONGROOM_METRICS_TOKEN (a bearer token scrapers \
             send) or STRONGROOM_METRICS_LISTEN (an address of their own)\n",
        )
            .into_response(),
        MetricsAccess::Elsewhere => (
            StatusCode::NOT_FOUND,
            "metrics are served on the STRONGROOM_METRICS_LISTEN address\n",
        )
            .into_response(),
        MetricsAccess::Token(token) => render(&state.metrics, Some(token), &headers),
    }
}

/// The router of `STRONGROOM_METRICS_LISTEN`: `/metrics` only.
pub fn metrics_router(metrics: Arc<Metrics>, token: Option<MetricsToken>) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| async move { render(&metrics, token.as_ref(), &headers) }),
    )
}

/// The metrics, to the bearer of `token` (anyone, when there is none).
fn render(metrics: &Metrics, token: Option<&MetricsToken>, headers: &HeaderMap) -> Response {
    if let Some(token) = token {
        let presented = headers.get(AUTHORIZATION).and_then(super::bearer_token);
        if !presented.is_some_and(|presented| token.matches(presented)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(WWW_AUTHENTICATE, "Bearer")],
                "send the metrics token: Authorization: Bearer <STRONGROOM_METRICS_TOKEN>\n",
            )
                .into_response();
        }
    }
    match metrics.render() {
        Ok(text) => (
            [
                (
                    CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                (CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

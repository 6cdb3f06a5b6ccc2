//! CORS for browser frontends on other origins: off unless `STRONGROOM_CORS_ORIGINS` lists
//! origins, and then for exactly those. No credentials: tokens travel in `Authorization`,
//! never in cookies, so no page can make a browser send one on its own. A refused origin
//! gets no `Access-Control-Allow-Origin`, and its browser keeps the answer from the page.
use std::time::Duration;

use axum::http::{
    HeaderName, HeaderValue, Method,
    header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::REQUEST_ID;
use crate::config::CorsOrigin;

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The layer for `origins`; `None` when the list is empty (CORS off).
pub fn layer(origins: &[CorsOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    // Parsed at startup to the characters a header value may hold.
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.as_str()).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                REQUEST_ID,
                // Sent by Apollo Client.
                HeaderName::from_static("apollo-require-preflight"),
                HeaderName::from_static("apollographql-client-name"),
                HeaderName::from_static("apollographql-client-version"),
            ])
            .expose_headers([REQUEST_ID, RETRY_AFTER])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

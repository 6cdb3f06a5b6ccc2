//! What the pages the binary serves (the playground at `/`, the console at `/console`)
//! share: a Content-Security-Policy built from `(directive, sources)` pairs, and the
//! security headers every one of their responses carries.
use axum::{
    body::Body,
    http::{
        HeaderName, HeaderValue,
        header::{
            CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
            X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
        },
    },
    response::Response,
};

pub const HTML: &str = "text/html; charset=utf-8";
pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
pub const CSS: &str = "text/css; charset=utf-8";
pub const SVG: &str = "image/svg+xml";

/// For a file whose path names its exact bytes (a digest or content hash in it).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The policy's text; with `style_nonce`, `style-src` also allows `<style>` elements that
/// carry it.
pub fn content_security_policy(policy: &[(&str, &str)], style_nonce: Option<&str>) -> String {
    let directives: Vec<String> = policy
        .iter()
        .map(|(directive, sources)| match style_nonce {
            Some(nonce) if *directive == "style-src" => {
                format!("{directive} {sources} 'nonce-{nonce}'")
            }
            _ => format!("{directive} {sources}"),
        })
        .collect();
    directives.join("; ")
}

/// A response with the type, cache rule and policy given, and the other security headers:
/// no MIME sniffing (a file is only ever used as what its `Content-Type` says), no
/// referrer, no framing (clickjacking), and none of these files for other origins' pages.
pub fn respond(
    content_type: &'static str,
    cache_control: &'static str,
    policy: &str,
    body: impl Into<Body>,
) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    // Built from constants and base64: always a valid header value.
    if let Ok(policy) = HeaderValue::from_str(policy) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    for (name, value) in [
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
        (X_FRAME_OPTIONS, "DENY"),
        (CROSS_ORIGIN_OPENER_POLICY, "same-origin"),
        (CROSS_ORIGIN_RESOURCE_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");

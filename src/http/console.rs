//! The admin console at `/console` (DESIGN §12): a React + Apollo Client page built by Vite
//! from `console/` into `console/dist/`, which is checked in and embedded here, so the
//! binary serves it whole (no node at run time) and nothing loads from another origin.
//!
//! - `/console/assets/…` are Vite's content-hashed files: cached for a year, `immutable`;
//!   one not in the build is a 404 (an older page's, say).
//! - Any other path under `/console` that names no file (`/console/secrets/DB_URL`) is a
//!   view of the page: it gets `index.html`, `no-cache`, so a new build's asset names are
//!   picked up at once. The page routes itself from the path.
//! - The playground's strict policy (no inline script, no eval, `connect-src 'self'` for
//!   `/graphql` and `/graphql/ws`, nothing from another origin) and its security headers,
//!   without the style exceptions only GraphiQL needs.
use std::borrow::Cow;

use axum::{
    Router,
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};

use super::guarded::{CSS, HTML, IMMUTABLE, JAVASCRIPT, SVG, content_security_policy, respond};

// rust-embed over include_dir: it tracks each embedded file for rebuilds and, with
// `debug-embed`, embeds in debug builds too, so tests serve exactly what release ships.
#[derive(rust_embed::Embed)]
#[folder = "console/dist/"]
struct Built;

/// What the page may load and do: scripts and styles from this origin only (no inline
/// code, no eval), its icon, connections to this origin (HTTP and WebSocket). Nothing may
/// embed the page, change its base URL or submit a form.
const POLICY: [(&str, &str); 8] = [
    ("default-src", "'none'"),
    ("script-src", "'self'"),
    ("style-src", "'self'"),
    ("img-src", "'self' data:"),
    ("connect-src", "'self'"),
    ("base-uri", "'none'"),
    ("form-action", "'none'"),
    ("frame-ancestors", "'none'"),
];

static CONSOLE_POLICY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| content_security_policy(&POLICY, None));

/// `/console`, and everything under it; they need no application state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/{*path}", get(file_or_page))
}

async fn page() -> Response {
    match Built::get("index.html") {
        Some(index) => respond(HTML, "no-cache", &CONSOLE_POLICY, bytes(index.data)),
        None => {
            tracing::error!("the console's index.html is not in the build");
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

async fn file_or_page(Path(path): Path<String>) -> Response {
    if !names_a_file(&path) {
        return page().await;
    }
    let Some(file) = Built::get(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(content_type) = content_type(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Only Vite's hashed output never changes under its name; the icon may.
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        "no-cache"
    };
    respond(content_type, cache, &CONSOLE_POLICY, bytes(file.data))
}

/// A path of the build's files rather than a view: under `assets/`, or with an extension
/// (no view has one: secret names hold no `.`).
fn names_a_file(path: &str) -> bool {
    path.starts_with("assets/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
}

/// The type of the kinds of file Vite builds here; any other is not served.
fn content_type(path: &str) -> Option<&'static str> {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("js") => Some(JAVASCRIPT),
        Some("css") => Some(CSS),
        Some("svg") => Some(SVG),
        Some("html") => Some(HTML),
        _ => None,
    }
}

fn bytes(data: Cow<'static, [u8]>) -> axum::body::Body {
    match data {
        Cow::Borrowed(bytes) => axum::body::Body::from(bytes),
        Cow::Owned(bytes) => axum::body::Body::from(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_files_of_the_build_and_no_other_origin() {
        let index = Built::get("index.html").expect("console/dist/index.html is embedded");
        let html = String::from_utf8_lossy(&index.data).into_owned();
        assert!(!html.contains("://"), "another origin in the page:\n{html}");
        let links: Vec<&str> = ["src=\"", "href=\""]
            .iter()
            .flat_map(|attribute| html.split(attribute).skip(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(links.len() >= 2, "{links:?}");
        for link in links {
            let path = link
                .strip_prefix("/console/")
                .unwrap_or_else(|| panic!("{link} is not under /console/"));
            assert!(Built::get(path).is_some(), "{link} is not in the build");
            assert!(content_type(path).is_some(), "{link} would not be served");
        }
        let inline_scripts = html.matches("<script").count()
            - html
                .matches("<script type=\"module\" crossorigin src=")
                .count();
        assert_eq!(inline_scripts, 0, "an inline script in the page:\n{html}");
        assert!(
            !html.contains("<style"),
            "inline style in the page:\n{html}"
        );
    }

    #[test]
    fn views_are_the_page_and_files_are_files() {
        assert!(!names_a_file("secrets/DB_URL"));
        assert!(!names_a_file("secrets"));
        assert!(names_a_file("assets/index-abc.js"));
        assert!(names_a_file("assets/missing"));
        assert!(names_a_file("favicon.svg"));
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_other_origin() {
        let policy = &*CONSOLE_POLICY;
        let directives: Vec<&str> = policy.split("; ").collect();
        for expected in [
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "default-src 'none'",
        ] {
            assert!(directives.contains(&expected), "{expected} not in {policy}");
        }
        assert!(
            !policy.contains("unsafe") && !policy.contains("nonce"),
            "{policy}"
        );
        assert!(
            !policy.contains("http") && !policy.contains('*'),
            "{policy}"
        );
    }
}

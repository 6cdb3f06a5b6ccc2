//! The GraphiQL playground at `/`, served whole from the binary: GraphiQL, React and
//! ReactDOM (pinned production builds, `vendor/graphiql/`) and a small start script of
//! our own. Nothing loads from another origin, so the page works offline, and a strict
//! Content-Security-Policy (no inline script, no eval, same-origin connections only)
//! lets no script but these run on a page where API tokens are pasted.
//!
//! Each asset's path carries a digest of its bytes (`/playground/<digest>/<file>`), so a
//! browser may cache it for a year and a new build is never served a stale copy.
use std::sync::LazyLock;

use axum::{
    Router,
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

use super::guarded::{CSS, HTML, IMMUTABLE, JAVASCRIPT, SVG, respond};

/// What the page may load and do, as `(directive, sources)`: scripts from this origin only
/// (no inline code, no eval); styles from this origin, plus the one `<style>` element
/// GraphiQL's dialogs add (it carries the page's nonce) and the two fixed `style`
/// attributes of CodeMirror's jump-to-line box (by hash); GraphiQL's icons and fonts are
/// `data:` URLs inside its CSS; `connect-src 'self'` covers `/graphql` and the WebSocket
/// to this host. Nothing may embed the page, change its base URL or submit a form.
const POLICY: [(&str, &str); 10] = [
    ("default-src", "'none'"),
    ("script-src", "'self'"),
    ("style-src", "'self'"),
    (
        "style-src-attr",
        // `width: 10em` and `color: #888`, exactly.
        "'unsafe-hashes' 'sha256-H22cvujYHDQPJvzf4ie16OHKC3HsNj7RmRT3jO07Y/U=' \
         'sha256-Eaamrrh0b5a/naRsV/zg7s6+kGvexMXZQARWP6ukkg4='",
    ),
    ("img-src", "'self' data:"),
    ("font-src", "data:"),
    ("connect-src", "'self'"),
    ("base-uri", "'none'"),
    ("form-action", "'none'"),
    ("frame-ancestors", "'none'"),
];

/// The policy's text; with `style_nonce`, `style-src` also allows `<style>` elements that
/// carry it.
fn content_security_policy(style_nonce: Option<&str>) -> String {
    super::guarded::content_security_policy(&POLICY, style_nonce)
}

/// A file the page loads: its name in the URL, its type and its bytes.
struct Asset {
    file: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 7] = [
    Asset {
        file: "react.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../../vendor/graphiql/react.production.min.js"),
    },
    Asset {
        file: "react-dom.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../../vendor/graphiql/react-dom.production.min.js"),
    },
    Asset {
        file: "graphiql.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../../vendor/graphiql/graphiql.min.js"),
    },
    Asset {
        file: "graphiql.min.css",
        content_type: CSS,
        bytes: include_bytes!("../../vendor/graphiql/graphiql.min.css"),
    },
    Asset {
        file: "init.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("playground/init.js"),
    },
    Asset {
        file: "playground.css",
        content_type: CSS,
        bytes: include_bytes!("playground/playground.css"),
    },
    Asset {
        file: "favicon.svg",
        content_type: SVG,
        bytes: include_bytes!("playground/favicon.svg"),
    },
];

/// The page names each asset as `{file}` (made a digest path once) and the style nonce as
/// `{nonce}` (filled per response).
const PAGE_TEMPLATE: &str = include_str!("playground/index.html");

/// The page and each asset's digest (in `ASSETS` order), worked out once.
struct Playground {
    page: String,
    digests: Vec<String>,
}

static PLAYGROUND: LazyLock<Playground> = LazyLock::new(|| {
    let digests: Vec<String> = ASSETS
        .iter()
        .map(|asset| hex::encode(&Sha256::digest(asset.bytes)[..8]))
        .collect();
    let mut page = PAGE_TEMPLATE.to_owned();
    for (asset, digest) in ASSETS.iter().zip(&digests) {
        let path = format!("/playground/{digest}/{}", asset.file);
        page = page.replace(&format!("{{{}}}", asset.file), &path);
    }
    Playground { page, digests }
});

/// `GET /` and the assets under `/playground/`; they need no application state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/playground/{digest}/{file}", get(asset))
}

async fn page() -> Response {
    // Fresh per response, so a nonce seen once is no use later.
    let mut bytes = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::error!(error = %e, "no randomness for the playground's style nonce");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let nonce = STANDARD.encode(bytes);
    let page = PLAYGROUND.page.replace("{nonce}", &nonce);
    // Never stored: each copy holds its own nonce, and a new build's asset paths are
    // picked up at once.
    respond(
        HTML,
        "no-store",
        &content_security_policy(Some(&nonce)),
        page,
    )
}

async fn asset(Path((digest, file)): Path<(String, String)>) -> Response {
    let found = ASSETS
        .iter()
        .zip(&PLAYGROUND.digests)
        .find(|(asset, known)| asset.file == file && **known == digest);
    match found {
        // The path names these exact bytes: they never change under it.
        Some((asset, _)) => respond(asset.content_type, IMMUTABLE, &ASSET_POLICY, asset.bytes),
        // An old page's digest, or no such file.
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The policy of the assets themselves (it matters for one opened on its own, the SVG).
static ASSET_POLICY: LazyLock<String> = LazyLock::new(|| content_security_policy(None));

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_page_names_every_asset_by_digest() {
        let page = &PLAYGROUND.page;
        for (asset, digest) in ASSETS.iter().zip(&PLAYGROUND.digests) {
            let path = format!("\"/playground/{digest}/{}\"", asset.file);
            assert!(page.contains(&path), "{path} not in the page:\n{page}");
        }
        let placeholders = page.matches('{').count();
        assert_eq!(placeholders, 1, "only {{nonce}} is left to fill:\n{page}");
    }

    #[test]
    fn the_vendored_files_are_the_ones_their_readme_names() {
        let readme = include_str!("../../vendor/graphiql/README.md");
        let vendored = [
            "react.production.min.js",
            "react-dom.production.min.js",
            "graphiql.min.js",
            "graphiql.min.css",
        ];
        for file in vendored {
            let asset = ASSETS.iter().find(|asset| asset.file == file);
            let asset = asset.unwrap_or_else(|| panic!("{file} is not served"));
            let digest = hex::encode(Sha256::digest(asset.bytes));
            let row = format!("| `{file}` |");
            let listed = readme.lines().find(|line| line.starts_with(&row));
            assert!(
                listed.is_some_and(|line| line.contains(&digest)),
                "vendor/graphiql/README.md does not give {file} the sha256 {digest}"
            );
        }
    }

    #[test]
    fn the_policy_allows_no_inline_script_nor_eval_and_no_other_origin() {
        let policy = content_security_policy(Some("bm9uY2U="));
        assert!(HeaderValue::from_str(&policy).is_ok(), "{policy}");
        let directives: Vec<&str> = policy.split("; ").collect();
        assert!(directives.contains(&"script-src 'self'"), "{policy}");
        assert!(
            directives.contains(&"style-src 'self' 'nonce-bm9uY2U='"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert!(
            !policy.contains("http") && !policy.contains('*'),
            "{policy}"
        );
        assert!(!content_security_policy(None).contains("nonce"));
    }
}

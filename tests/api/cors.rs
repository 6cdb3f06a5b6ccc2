//! CORS: off by default; with `STRONGROOM_CORS_ORIGINS`, exactly the listed origins may call
//! the API from a browser (preflight answered, no credentials), and any other origin gets
//! no `Access-Control-Allow-Origin`, so its browser keeps the answer from the page. CORS
//! involves no store: these run on SQLite only.
use reqwest::{Method, header::HeaderMap};
use serde_json::json;

use crate::helpers::{Api, Store, TestApp, VIEWER, data};

const ALLOWED: &str = "https://app.example.com";
const ALSO_ALLOWED: &str = "http://localhost:3000";
const REFUSED: &str = "https://evil.example.com";

/// A browser's preflight for a POST with a token, from `origin`.
async fn preflight(api: &Api, origin: &str) -> (reqwest::StatusCode, HeaderMap) {
    let (status, headers, _) = api
        .send(
            |http, url| {
                http.request(Method::OPTIONS, url)
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header(
                        "access-control-request-headers",
                        "authorization,content-type",
                    )
            },
            "/graphql",
        )
        .await;
    (status, headers)
}

/// A POST of `{ viewer … }` with the admin token, from `origin`.
async fn post_from(app: &TestApp, origin: &str) -> (HeaderMap, serde_json::Value) {
    let token = app.admin_token.clone();
    let (status, headers, body) = app
        .send(
            |http, url| {
                http.post(url)
                    .bearer_auth(token)
                    .header("origin", origin)
                    .json(&json!({ "query": VIEWER }))
            },
            "/graphql",
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    (headers, serde_json::from_str(&body).expect("a JSON body"))
}

fn allow_origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_origins_may_call_and_others_may_not() {
    let origins = format!("{ALLOWED},{ALSO_ALLOWED}");
    let app = TestApp::spawn_with(Store::Sqlite, &[("STRONGROOM_CORS_ORIGINS", &origins)]).await;

    for origin in [ALLOWED, ALSO_ALLOWED] {
        let (status, headers) = preflight(&app, origin).await;
        assert!(status.is_success(), "preflight from {origin}: {status}");
        assert_eq!(allow_origin(&headers), Some(origin));
        assert!(listed(&headers, "access-control-allow-methods").contains(&"post".into()));
        let allowed_headers = listed(&headers, "access-control-allow-headers");
        for header in ["authorization", "content-type"] {
            assert!(
                allowed_headers.contains(&header.into()),
                "{allowed_headers:?}"
            );
        }
        assert!(headers.get("access-control-allow-credentials").is_none());
        assert!(headers.get("access-control-max-age").is_some());

        let (headers, body) = post_from(&app, origin).await;
        assert_eq!(allow_origin(&headers), Some(origin));
        assert!(
            listed(&headers, "vary").contains(&"origin".into()),
            "{headers:?}"
        );
        assert!(listed(&headers, "access-control-expose-headers").contains(&"x-request-id".into()));
        assert_eq!(data(&body)["viewer"]["role"], "ADMIN");
    }

    // Another origin: no grant on the preflight nor on the answer.
    let (_, headers) = preflight(&app, REFUSED).await;
    assert_eq!(allow_origin(&headers), None, "{headers:?}");
    let (headers, _) = post_from(&app, REFUSED).await;
    assert_eq!(allow_origin(&headers), None, "{headers:?}");
    // Nor for a prefix or a near miss of a listed one.
    for near in [
        "https://app.example.com.evil.example",
        "http://app.example.com",
    ] {
        let (_, headers) = preflight(&app, near).await;
        assert_eq!(allow_origin(&headers), None, "{near}: {headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_off_by_default() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let (_, headers) = preflight(&app, ALLOWED).await;
    assert_eq!(allow_origin(&headers), None, "{headers:?}");
    let (headers, body) = post_from(&app, ALLOWED).await;
    assert_eq!(allow_origin(&headers), None, "{headers:?}");
    assert_eq!(data(&body)["viewer"]["role"], "ADMIN");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_origin_list_stops_the_server_with_a_reason() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let (ok, _, stderr) = app.run_cli(&["serve"], &[("STRONGROOM_CORS_ORIGINS", "*")]);
    assert!(!ok, "serve started with `*` as an origin");
    assert!(stderr.contains("not a CORS origin"), "{stderr}");
}

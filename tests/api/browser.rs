//! The GraphiQL playground at `/`, as a browser sees it: served whole by the binary (no
//! request leaves for another origin), under a strict Content-Security-Policy that the
//! page never violates, with the Authorization header pre-filled as a placeholder and the
//! pasted token kept out of localStorage. The browser is the system's headless Chromium,
//! driven by `tests/node/browser.js` (playwright-core). The page touches no store: these
//! run on SQLite only.
use std::{collections::BTreeMap, path::Path, process::Stdio, time::Duration};

use reqwest::{StatusCode, Url, header::HeaderMap};
use serde_json::{Value, json};

use crate::helpers::{
    Output, Store, TestApp, assert_page_guarded, chromium, header, node_script, wait_with_timeout,
};

/// How long the browser may take before the test gives up (not a measurement: a busy
/// 2-core machine starts Chromium slowly).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
const SECRET_NAME: &str = "PLAYGROUND_KEY";
const SECRETS_QUERY: &str =
    "query PlaygroundSecrets { secrets(first: 5) { nodes { name currentVersion } } }";
const PLACEHOLDER: &str = r#""Authorization": "Bearer <paste an API token>""#;
/// The pinned third-party files, as vendored, by the name the page uses.
const VENDORED: [&str; 4] = [
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql.min.css",
];

/// `GET path`: the status, headers and body, and the URL the request went to.
async fn get(app: &TestApp, path: &str) -> (StatusCode, HeaderMap, String, Url) {
    let mut sent_to = String::new();
    let (status, headers, body) = app
        .send(
            |http, url| {
                sent_to.clone_from(&url);
                http.get(url)
            },
            path,
        )
        .await;
    (status, headers, body, Url::parse(&sent_to).expect("a URL"))
}

/// The shared guards, and the playground's own: GraphiQL's fonts (`data:` URLs) and its
/// style exceptions after `'self'`.
#[track_caller]
fn assert_guarded(what: &str, headers: &HeaderMap) -> BTreeMap<String, String> {
    let directives = assert_page_guarded(what, headers);
    assert_eq!(
        directives.get("font-src").map(String::as_str),
        Some("data:"),
        "{what}: {directives:?}"
    );
    let styles = directives.get("style-src").map(String::as_str);
    assert!(
        styles.is_some_and(|s| s.starts_with("'self'")),
        "{what}: {directives:?}"
    );
    directives
}

/// The `src` and `href` attribute values of a page.
fn links(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| html.split(attribute).skip(1))
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

/// The `nonce` attribute of the page's script tag, if any.
fn script_nonce(html: &str) -> Option<&str> {
    let rest = html.split("nonce=\"").nth(1)?;
    rest.split('"').next()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_assets_come_from_the_server_with_a_strict_policy() {
    let app = TestApp::spawn(Store::Sqlite).await;

    let (status, headers, html, _) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert!(
        header(&headers, "cache-control").contains("no-"),
        "{headers:?}"
    );
    let directives = assert_guarded("/", &headers);
    assert!(
        !html.contains("://"),
        "the page names another origin:\n{html}"
    );
    assert!(
        !html.contains("<style"),
        "inline style in the page:\n{html}"
    );
    assert!(
        !html.replace("<script defer src=", "").contains("<script"),
        "an inline script in the page:\n{html}"
    );

    // The style nonce is fresh per response and the one the start script carries.
    let nonce = script_nonce(&html).expect("a nonce on the start script");
    assert!(
        directives["style-src"].contains(&format!("'nonce-{nonce}'")),
        "{directives:?}"
    );
    let (_, _, again, _) = get(&app, "/").await;
    assert_ne!(script_nonce(&again), Some(nonce), "a nonce was reused");

    let links = links(&html);
    assert_eq!(links.len(), 7, "{links:?}");
    for link in &links {
        assert!(
            link.starts_with("/playground/") && !link.starts_with("//"),
            "{link} is not a path on this server"
        );
        let (status, headers, body, _) = get(&app, link).await;
        assert_eq!(status, StatusCode::OK, "{link}: {body}");
        let file = link.rsplit('/').next().unwrap_or_default();
        let content_type = match file.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => panic!("an asset of unexpected type: {link}"),
        };
        assert_eq!(header(&headers, "content-type"), content_type, "{link}");
        let cache = header(&headers, "cache-control");
        assert!(
            cache.contains("max-age=31536000") && cache.contains("immutable"),
            "{link}: {cache}"
        );
        assert_guarded(link, &headers);
        if VENDORED.contains(&file) {
            let vendored = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("vendor/graphiql")
                .join(file);
            let expected = std::fs::read(&vendored).expect("read a vendored file");
            assert!(
                body.as_bytes() == expected,
                "{link} is not {}",
                vendored.display()
            );
        }
    }
    for vendored in VENDORED {
        assert!(
            links
                .iter()
                .any(|link| link.ends_with(&format!("/{vendored}"))),
            "{vendored} not loaded by the page: {links:?}"
        );
    }

    // Another digest (an older build's page, say) names other bytes: not these.
    let (status, _, _, _) = get(&app, "/playground/0000000000000000/graphiql.min.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// What `tests/node/browser.js` saw; it panics with the script's output if the script
/// failed.
async fn browse(app: &TestApp, scenario: &'static str, env: &[(&'static str, &str)]) -> Value {
    let (_, _, _, url) = get(app, "/").await;
    let base = url.origin().ascii_serialization();
    let token = app.admin_token.clone();
    // Before the browser's clock starts: installing it may take a while.
    let chromium = tokio::task::spawn_blocking(chromium)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let env: Vec<(&'static str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let run = tokio::task::spawn_blocking(move || {
        let mut command = node_script("browser.js");
        command
            .args([scenario, base.as_str()])
            .env("CHROMIUM", chromium)
            .env("PLAYGROUND_TOKEN", token)
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = command.spawn().expect("run node tests/node/browser.js");
        let (mut stdout, mut stderr) = (Output::default(), Output::default());
        stdout.capture(process.stdout.take().expect("piped stdout"));
        stderr.capture(process.stderr.take().expect("piped stderr"));
        let status = wait_with_timeout(&mut process, BROWSER_TIMEOUT);
        if status.is_none() {
            let _ = process.kill();
            let _ = process.wait();
        }
        (status, stdout.finish(), stderr.finish())
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let (status, stdout, stderr) = run;
    let status = status.unwrap_or_else(|| {
        panic!("browser.js did not finish within {BROWSER_TIMEOUT:?}:\n{stdout}\n{stderr}")
    });
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("browser.js printed no report ({status}):\n{stdout}\n{stderr}"));
    assert!(
        status.success() && report["error"].is_null(),
        "the browser run failed ({status}): {:#}\nstderr:\n{stderr}",
        report
    );
    report
}

/// Text as rendered, with the editor's non-breaking indentation as plain spaces.
fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not text: {value}"))
        .replace('\u{a0}', " ")
}

/// What every browser run must show: the placeholder before the token was pasted and after
/// a reload, the token (and the value, where there is one) in no browser storage and in no
/// file of the browser's profile, nothing from another origin, no policy violation, no
/// script error.
#[track_caller]
fn assert_safe_run(report: &Value, base: &Url) {
    assert!(
        text(&report["placeholder"]).contains(PLACEHOLDER),
        "{report:#}"
    );
    assert!(
        text(&report["headersAfterReload"]).contains(PLACEHOLDER),
        "{report:#}"
    );
    assert_eq!(report["keptInStorage"], json!([]), "{report:#}");
    assert_eq!(report["keptInProfile"], json!([]), "{report:#}");
    assert!(report["storage"].is_string(), "{report:#}");

    let requests = report["requests"].as_array().expect("requests");
    assert!(requests.len() >= 8, "{report:#}"); // the page, its 7 assets, /graphql
    for request in requests {
        let url = Url::parse(request["url"].as_str().expect("a URL")).expect("a URL");
        assert_eq!(url.origin(), base.origin(), "{request} left the origin");
    }
    for socket in report["websockets"].as_array().expect("websockets") {
        let url = Url::parse(socket.as_str().expect("a URL")).expect("a URL");
        assert_eq!(url.scheme(), "ws", "{socket}");
        assert_eq!(
            (url.host_str(), url.port()),
            (base.host_str(), base.port()),
            "{socket} is not this server"
        );
    }
    assert_eq!(report["violations"], Value::Array(vec![]), "{report:#}");
    assert_eq!(report["pageErrors"], Value::Array(vec![]), "{report:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_runs_a_query_in_the_playground() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let secret = app.create_secret(SECRET_NAME, "playground-value-1").await;
    assert_eq!(secret["currentVersion"], 1);
    let (_, page_headers, _, base) = get(&app, "/").await;
    assert_guarded("/", &page_headers);

    let report = browse(&app, "query", &[("PLAYGROUND_QUERY", SECRETS_QUERY)]).await;

    // What the user sees in the result pane: the secret and its version, no error.
    let result = text(&report["result"]);
    assert!(
        result.contains(&format!(r#""name": "{SECRET_NAME}""#)),
        "{result}"
    );
    assert!(result.contains(r#""currentVersion": 1"#), "{result}");
    assert!(!result.contains("\"errors\""), "{result}");
    assert_safe_run(&report, &base);
    // Nor can the user switch header persistence on.
    let settings = text(&report["settings"]);
    assert!(settings.contains("Theme"), "{settings}");
    assert!(!settings.to_lowercase().contains("persist"), "{settings}");
    let requests = report["requests"].as_array().expect("requests");
    assert!(
        requests
            .iter()
            .any(|r| r["method"] == "POST" && r["url"].as_str() == Some(&format!("{base}graphql"))),
        "the query was not sent to /graphql: {report:#}"
    );
    // The page opened a WebSocket to /graphql/ws under the policy (connect-src 'self').
    assert!(
        report["websockets"]
            .as_array()
            .is_some_and(|sockets| !sockets.is_empty()),
        "{report:#}"
    );
}

/// A value sent in a mutation's variables reaches the server and is kept nowhere in the
/// browser: not in any storage of the page's origin, not in the profile on disk, and not
/// in the editors after a reload (the playground keeps its tabs in memory only).
#[tokio::test(flavor = "multi_thread")]
async fn a_value_typed_in_the_playground_is_kept_nowhere() {
    let app = TestApp::spawn(Store::Sqlite).await;
    app.create_secret(SECRET_NAME, "playground-value-1").await;
    let (_, _, _, base) = get(&app, "/").await;
    let value = format!("playground-canary-{}", uuid::Uuid::now_v7().simple());
    let mutation = "mutation PlaygroundUpdate($input: UpdateSecretInput!) {
        updateSecret(input: $input) { secret { name currentVersion } } }";
    let variables = json!({ "input": { "name": SECRET_NAME, "value": value } }).to_string();

    let report = browse(
        &app,
        "mutation",
        &[
            ("PLAYGROUND_QUERY", mutation),
            ("PLAYGROUND_VARIABLES", &variables),
            ("PLAYGROUND_VALUE", &value),
        ],
    )
    .await;

    let result = text(&report["result"]);
    assert!(result.contains(r#""currentVersion": 2"#), "{result}");
    assert!(!result.contains("\"errors\""), "{result}");
    assert_eq!(
        app.reveal(SECRET_NAME).await,
        value,
        "the page sent the value"
    );
    assert_safe_run(&report, &base);
    let query = text(&report["queryAfterReload"]);
    assert!(
        !query.contains("PlaygroundUpdate") && query.contains("viewer"),
        "a reload shows the default query, not the mutation: {query}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_watches_a_secret_change_in_the_playground() {
    let app = TestApp::spawn(Store::Sqlite).await;
    app.create_secret(SECRET_NAME, "playground-value-1").await;
    let (_, _, _, base) = get(&app, "/").await;
    let subscription = format!(
        r#"subscription WatchPlaygroundKey {{ secretEvents(names: ["{SECRET_NAME}"]) {{ kind secretName version occurredAt }} }}"#
    );

    // The script subscribes in the UI, then updates the secret over HTTP.
    let report = browse(
        &app,
        "subscription",
        &[
            ("PLAYGROUND_QUERY", &subscription),
            ("PLAYGROUND_SECRET", SECRET_NAME),
        ],
    )
    .await;

    let result = text(&report["result"]);
    assert!(result.contains(r#""kind": "UPDATED""#), "{result}");
    assert!(
        result.contains(&format!(r#""secretName": "{SECRET_NAME}""#)),
        "{result}"
    );
    assert!(!result.contains("\"errors\""), "{result}");
    assert_safe_run(&report, &base);
    assert!(
        report["websockets"]
            .as_array()
            .is_some_and(|sockets| !sockets.is_empty()),
        "the subscription did not go over a WebSocket: {report:#}"
    );
}

//! The HTTP client side: what a GraphQL client sends and sees.
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `extensions.code` of the first error, if any.
pub fn error_code(response: &Value) -> Option<String> {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

/// The `extensions.code` of every error, in order.
pub fn error_codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["extensions"]["code"].as_str().map(str::to_owned))
        .collect()
}

/// Asserts that the response failed with `code` (first error).
#[track_caller]
pub fn assert_code(response: &Value, code: &str) {
    assert_eq!(
        error_code(response).as_deref(),
        Some(code),
        "expected error code {code}; response: {response:#}"
    );
}

/// The only error code of a response, or `"OK"` for a success (which has `data`).
#[track_caller]
pub fn outcome(response: &Value) -> String {
    match error_codes(response).as_slice() {
        [] => {
            data(response);
            "OK".to_owned()
        }
        [code] => code.clone(),
        codes => panic!("more than one error ({codes:?}): {response:#}"),
    }
}

/// The response's `data`, asserting that it carries no error.
#[track_caller]
pub fn data(response: &Value) -> &Value {
    assert!(
        response.get("errors").is_none() && response["data"].is_object(),
        "expected a successful response; got: {response:#}"
    );
    &response["data"]
}

/// The server's default cap on the operations of one batched POST (`STRONGROOM_MAX_BATCH`).
pub const MAX_BATCH: usize = 10;
const DB_STATEMENTS_METRIC: &str = "strongroom_db_statements_total";

/// A cheap, cloneable HTTP client for one server: what concurrent tasks take with them.
#[derive(Clone)]
pub struct Api {
    pub(super) http: reqwest::Client,
    pub(super) base_url: String,
}

impl Api {
    /// `http://127.0.0.1:<port>`: for a client that is not this one (a Node tool, a raw
    /// socket).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// POSTs one GraphQL operation and returns the body, asserting HTTP 200.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .post_raw(token, json!({ "query": query, "variables": variables }))
            .await;
        assert_eq!(status, StatusCode::OK, "HTTP status; body: {body:#}");
        body
    }

    /// Sends every `(token, query, variables)` at once, each from its own task, and
    /// returns the responses in the order given: what racing clients do.
    pub async fn gql_all(&self, requests: Vec<(String, &'static str, Value)>) -> Vec<Value> {
        let requests = requests
            .into_iter()
            .map(|(token, query, variables)| (self.clone(), token, query, variables))
            .collect();
        all_at_once(requests).await
    }

    /// POSTs any JSON body (a batch, say) to `/graphql`. A body that is not JSON comes
    /// back as a JSON string.
    pub async fn post_raw(&self, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let request = self.http.post(format!("{}/graphql", self.base_url));
        let response = with_token(request, token)
            .json(&body)
            .send()
            .await
            .expect("POST /graphql");
        let status = response.status();
        let text = response.text().await.expect("read response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Runs `(query, variables)` operations as `token` in batched POSTs of at most
    /// [`MAX_BATCH`] and returns each operation's `data`, in order, asserting that none
    /// failed. The server runs the operations of one POST concurrently: none may depend on
    /// another of the same POST.
    pub async fn batches(&self, token: &str, operations: Vec<(&str, Value)>) -> Vec<Value> {
        let operations: Vec<Value> = operations
            .into_iter()
            .map(|(query, variables)| json!({ "query": query, "variables": variables }))
            .collect();
        let mut results = Vec::with_capacity(operations.len());
        for batch in operations.chunks(MAX_BATCH) {
            let body = Value::Array(batch.to_vec());
            let (status, responses) = self.post_raw(Some(token), body).await;
            assert_eq!(status, StatusCode::OK, "{responses:#}");
            let responses = responses.as_array().expect("a batch of responses");
            assert_eq!(responses.len(), batch.len());
            results.extend(responses.iter().map(|response| data(response).clone()));
        }
        results
    }

    /// POSTs any JSON body to `/graphql`; returns the status, the headers and the body text.
    pub async fn post_with_headers(
        &self,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let build = |http: &reqwest::Client, url| with_token(http.post(url), token).json(&body);
        self.send(build, "/graphql").await
    }

    /// Sends `request` (built on this client, e.g. a POST with another content type) to
    /// `path`; returns the status, the headers and the body text.
    pub async fn send(
        &self,
        build: impl FnOnce(&reqwest::Client, String) -> reqwest::RequestBuilder,
        path: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let response = build(&self.http, format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.text().await.expect("read response body"),
        )
    }

    pub async fn get_raw(&self, path_and_query: &str, token: Option<&str>) -> (StatusCode, String) {
        let request = self.http.get(format!("{}{path_and_query}", self.base_url));
        let response = with_token(request, token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        let status = response.status();
        (status, response.text().await.expect("read response body"))
    }

    /// `GET /readyz`: the status and the JSON body.
    pub async fn readyz(&self) -> (StatusCode, Value) {
        let (status, body) = self.get_raw("/readyz", None).await;
        let body = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/readyz answered {status} with non-JSON ({e}): {body}"));
        (status, body)
    }

    /// The counter `strongroom_key_provider_calls_total{provider, operation}` from
    /// `/metrics`; a label combination not (yet) exported counts 0.
    pub async fn provider_calls(&self, provider: &str, operation: &str) -> u64 {
        const METRIC: &str = "strongroom_key_provider_calls_total{";
        let (status, text) = self.get_raw("/metrics", Some(super::METRICS_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "GET /metrics: {text}");
        let wanted = |labels: &str| {
            let (mut provider_ok, mut operation_ok) = (false, false);
            for (key, value) in labels.split(',').filter_map(|pair| pair.split_once('=')) {
                let value = value.trim_matches('"');
                match key.trim() {
                    "provider" => provider_ok = value == provider,
                    "operation" => operation_ok = value == operation,
                    _ => {}
                }
            }
            provider_ok && operation_ok
        };
        text.lines()
            .filter_map(|line| line.strip_prefix(METRIC)?.split_once('}'))
            .filter(|(labels, _)| wanted(labels))
            .map(|(_, sample)| {
                let value = sample.split_whitespace().next().unwrap_or_default();
                value
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("counter value {value:?} in /metrics: {e}"))
                    as u64
            })
            .sum()
    }
}

impl Api {
    /// `strongroom_db_statements_total` from `/metrics`: the SQL statements this server
    /// has run so far. Reading it runs none.
    pub async fn db_statements(&self) -> u64 {
        self.counter(DB_STATEMENTS_METRIC).await
    }

    /// The counter `name` from `/metrics`, summed over its labels; it must be exported.
    pub async fn counter(&self, name: &str) -> u64 {
        let (status, text) = self.get_raw("/metrics", Some(super::METRICS_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "GET /metrics: {text}");
        let samples: Vec<u64> = text
            .lines()
            .filter_map(|line| {
                let (sample, value) = line.rsplit_once(' ')?;
                let sample = sample.split('{').next()?;
                (sample == name).then(|| {
                    value
                        .parse::<f64>()
                        .unwrap_or_else(|e| panic!("{line:?} in /metrics: {e}"))
                        as u64
                })
            })
            .collect();
        assert!(!samples.is_empty(), "no {name} in /metrics:\n{text}");
        samples.iter().sum()
    }
}

/// Sends every `(server, token, query, variables)` at once, each from its own task, and
/// returns the responses in the order given: racing clients, on one server or several.
pub async fn all_at_once(requests: Vec<(Api, String, &'static str, Value)>) -> Vec<Value> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(api, token, query, variables)| {
            tokio::spawn(async move { api.gql(Some(&token), query, variables).await })
        })
        .collect();
    let mut responses = Vec::with_capacity(tasks.len());
    for task in tasks {
        responses.push(task.await.expect("a racing request"));
    }
    responses
}

fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// A response's status, `Cache-Control` (empty if none) and JSON body.
pub async fn status_cache_body(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.expect("a JSON body");
    (status, cache, body)
}

/// A response header's text; panics if it is missing.
#[track_caller]
pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// Asserts what every page the binary serves (the playground, the console) and each of
/// their assets carries: the security headers, and a policy that allows scripts and
/// connections from this origin only, no inline script or eval, no framing, no base URL
/// or form target, nothing from another origin. Returns the policy's directives.
#[track_caller]
pub fn assert_page_guarded(
    what: &str,
    headers: &reqwest::header::HeaderMap,
) -> std::collections::BTreeMap<String, String> {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        assert_eq!(header(headers, name), value, "{what}: {name}");
    }
    let policy = header(headers, "content-security-policy");
    let directives: std::collections::BTreeMap<String, String> = policy
        .split(';')
        .filter_map(|directive| {
            let (name, sources) = directive.trim().split_once(' ')?;
            Some((name.to_owned(), sources.to_owned()))
        })
        .collect();
    for (name, sources) in [
        ("default-src", "'none'"),
        ("script-src", "'self'"),
        ("connect-src", "'self'"),
        ("img-src", "'self' data:"),
        ("base-uri", "'none'"),
        ("form-action", "'none'"),
        ("frame-ancestors", "'none'"),
    ] {
        assert_eq!(
            directives.get(name).map(String::as_str),
            Some(sources),
            "{what}: {name} in {policy}"
        );
    }
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
        "{what}: {policy}"
    );
    assert!(
        !policy.contains("http") && !policy.contains('*'),
        "{what}: another origin allowed in {policy}"
    );
    directives
}

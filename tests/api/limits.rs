//! Abuse limits and the HTTP surface around `/graphql`.
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, SECRET, Store, TestApp, VIEWER, assert_code, both_stores, data,
};

both_stores!(
    depth_limit_refuses_before_running,
    batch_size_is_limited,
    mutations_are_refused_over_get,
    introspection_fits_the_default_limits,
    health_and_playground,
);

/// `/graphql?query=...` for a GET request.
fn graphql_get(query: &str) -> String {
    let mut url = Url::parse("http://localhost/graphql").expect("a URL");
    url.query_pairs_mut().append_pair("query", query);
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

async fn exists(app: &TestApp, name: &str) -> bool {
    let response = app.admin(SECRET, json!({ "name": name })).await;
    !data(&response)["secret"].is_null()
}

async fn depth_limit_refuses_before_running(store: Store) {
    let app = TestApp::spawn_with(store, &[("STRONGROOM_MAX_DEPTH", "4")]).await;
    let create = |selection: &str| {
        format!(
            "mutation($input: CreateSecretInput!) {{ createSecret(input: $input) {selection} }}"
        )
    };
    let input = |name: &str| json!({ "input": { "name": name, "value": "v" } });

    // Depth 5: createSecret > secret > versions > nodes > version.
    let too_deep = create("{ secret { createdBy { id } versions { nodes { version } } } }");
    let response = app.admin(&too_deep, input("TOO_DEEP")).await;
    assert_code(&response, "GRAPHQL_VALIDATION_FAILED");
    assert!(!exists(&app, "TOO_DEEP").await, "the refused mutation ran");

    // Depth 4 is within the limit.
    let at_limit = create("{ secret { createdBy { id } } }");
    data(&app.admin(&at_limit, input("AT_LIMIT")).await);
    assert!(exists(&app, "AT_LIMIT").await);
}

fn create_operation(name: &str) -> Value {
    json!({ "query": CREATE_SECRET, "variables": { "input": { "name": name, "value": "v" } } })
}

async fn batch_size_is_limited(store: Store) {
    let app = TestApp::spawn(store).await;
    let token = Some(app.admin_token.as_str());

    let names: Vec<String> = (0..11).map(|i| format!("BATCHED_{i}")).collect();
    let batch = names.iter().map(|name| create_operation(name)).collect();
    let (status, body) = app.post_raw(token, Value::Array(batch)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_code(&body, "BAD_REQUEST");
    assert_eq!(app.secret_count().await, 0);
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM secrets").await,
        0
    );

    let batch = vec![create_operation("FIRST"), create_operation("SECOND")];
    let (status, body) = app.post_raw(token, Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let responses = body.as_array().expect("one response per operation");
    assert_eq!(responses.len(), 2);
    for (response, name) in responses.iter().zip(["FIRST", "SECOND"]) {
        assert_eq!(data(response)["createSecret"]["secret"]["name"], name);
    }
    assert_eq!(app.secret_count().await, 2);
}

async fn mutations_are_refused_over_get(store: Store) {
    let app = TestApp::spawn(store).await;
    let token = Some(app.admin_token.as_str());

    let mutation = r#"mutation { createSecret(input: { name: "VIA_GET", value: "v" }) {
        secret { id } } }"#;
    let (status, body) = app.get_raw(&graphql_get(mutation), token).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_code(&body, "BAD_REQUEST");
    assert!(!exists(&app, "VIA_GET").await, "the mutation ran");

    let (status, body) = app.get_raw(&graphql_get(VIEWER), token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(data(&body)["viewer"]["role"], "ADMIN");
}

/// GraphiQL's `IntrospectionQuery` (graphql-js `getIntrospectionQuery()`, defaults).
const INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name
    ofType { kind name
      ofType { kind name
        ofType { kind name
          ofType { kind name
            ofType { kind name
              ofType { kind name } } } } } } }
}
"#;

async fn introspection_fits_the_default_limits(store: Store) {
    let app = TestApp::spawn(store).await;
    let response = app.admin(INTROSPECTION_QUERY, json!({})).await;
    let schema = &data(&response)["__schema"];
    // The contract's root type names (DESIGN.md §3).
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    let types = schema["types"].as_array().expect("types");
    assert!(types.iter().any(|t| t["name"] == "Secret"));
}

async fn health_and_playground(store: Store) {
    let app = TestApp::spawn(store).await;
    for path in ["/healthz", "/readyz"] {
        let (status, body) = app.get_raw(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, page) = app.get_raw("/", None).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.to_lowercase();
    assert!(
        page.contains("<html") && page.contains("graphiql"),
        "{page}"
    );
}

/// A client of its own from `source` (any 127.0.0.0/8 address reaches the server), so a
/// test can be several client addresses at once.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<std::net::IpAddr>().ok())
        .build()
        .expect("a client")
}

async fn post_from(
    client: &reqwest::Client,
    app: &TestApp,
    token: Option<&str>,
    query: &str,
) -> (StatusCode, Option<String>, Value) {
    let mut request = client
        .post(format!("{}/graphql", app.api.base_url()))
        .json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("a response");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.expect("a JSON body");
    (status, retry_after, body)
}

/// A well-formed token nobody was ever given: looking it up costs a statement.
fn made_up_token() -> String {
    let body = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    format!("srt_{}", &body[..43])
}

/// `STRONGROOM_UNAUTHENTICATED_RATE_LIMIT` (5 per second, burst 20, here): one address
/// sending made-up tokens gets its 20 `UNAUTHENTICATED` answers, then 429 `RATE_LIMITED`
/// with `Retry-After` — and those 429s cost the database nothing (the statement counter
/// does not move). Other addresses are untouched: an admin and an anonymous caller from
/// elsewhere are answered as usual. Once the wait is over the address is heard again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unauthenticated_flood_is_refused_per_address_before_the_database() {
    let mut env = crate::helpers::QUIET.to_vec();
    env.push(("STRONGROOM_UNAUTHENTICATED_RATE_LIMIT", "5:20"));
    let app = TestApp::spawn_with(Store::Sqlite, &env).await;
    let flood = client_from("127.0.0.2");
    // The burst is honoured, then (it refills at 5 a second) the refusals come.
    let mut unauthenticated = 0;
    let refused = loop {
        let answer = post_from(&flood, &app, Some(&made_up_token()), VIEWER).await;
        if answer.0 != StatusCode::OK || unauthenticated == 40 {
            break answer;
        }
        assert_code(&answer.2, "UNAUTHENTICATED");
        unauthenticated += 1;
    };
    assert!(unauthenticated >= 20, "refused after {unauthenticated}");
    let (status, retry_after, body) = refused;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "after {unauthenticated}: {body}"
    );
    assert_code(&body, "RATE_LIMITED");
    let wait: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!(wait >= 1, "{wait}");
    assert_eq!(body["errors"][0]["extensions"]["retryAfterSeconds"], wait);
    assert!(body["data"].is_null(), "{body}");

    // Refused before the lookup: 20 more made-up tokens, no statement.
    let before = app.api.db_statements().await;
    for _ in 0..20 {
        let (status, _, body) = post_from(&flood, &app, Some(&made_up_token()), VIEWER).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
    let after = app.api.db_statements().await;
    assert_eq!(after - before, 0, "statements run for refused requests");
    // Without a token at all, the same address is refused too.
    let (status, _, _) = post_from(&flood, &app, None, "{ __typename }").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Other addresses are served as usual.
    let admin = client_from("127.0.0.1");
    let (status, _, body) = post_from(&admin, &app, Some(&app.admin_token), VIEWER).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data(&body)["viewer"]["role"], "ADMIN");
    let (status, _, body) = post_from(&client_from("127.0.0.3"), &app, None, VIEWER).await;
    assert_eq!(status, StatusCode::OK);
    assert_code(&body, "UNAUTHENTICATED");

    // Past the wait the address is heard again (its token looked up, and refused).
    tokio::time::sleep(std::time::Duration::from_secs(wait + 1)).await;
    let (status, _, body) = post_from(&flood, &app, Some(&made_up_token()), VIEWER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_code(&body, "UNAUTHENTICATED");
}

/// `/metrics` is served only behind `STRONGROOM_METRICS_TOKEN` (a bearer token) or on
/// `STRONGROOM_METRICS_LISTEN`: without the token it is 401, with neither setting 404, with
/// an address of its own it is served there (still asking for the token) and not on the
/// API's address. The token never shows in the logs.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_their_token_or_their_own_address() {
    use crate::helpers::METRICS_TOKEN;
    let app = TestApp::spawn(Store::Sqlite).await;
    let (status, text) = app.get_raw("/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("STRONGROOM_METRICS_TOKEN"), "{text}");
    let (status, _) = app.get_raw("/metrics", Some(&app.admin_token)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an API token is not the metrics token"
    );
    let (status, text) = app.get_raw("/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("strongroom_db_statements_total"), "{text}");
    assert!(
        !app.logs().contains(METRICS_TOKEN),
        "the metrics token is in the logs"
    );

    // Neither setting (an empty variable is an absent one): not served.
    let off = TestApp::spawn_with(Store::Sqlite, &[("STRONGROOM_METRICS_TOKEN", "")]).await;
    let (status, text) = off.get_raw("/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("STRONGROOM_METRICS_LISTEN"), "{text}");

    // An address of their own.
    let own = TestApp::spawn_with(
        Store::Sqlite,
        &[("STRONGROOM_METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let (status, _) = own.get_raw("/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not on the API's address");
    let logs = own.server_logs();
    let address = logs
        .split("metrics listening on http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .unwrap_or_else(|| panic!("no metrics address in the logs:\n{logs}"))
        .to_owned();
    let client = client_from("127.0.0.1");
    let url = format!("http://{address}/metrics");
    let response = client.get(&url).send().await.expect("a response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .get(&url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    assert!(text.contains("strongroom_http_connections"), "{text}");
    let response = client
        .post(format!("http://{address}/graphql"))
        .bearer_auth(&own.admin_token)
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "no API there");
}

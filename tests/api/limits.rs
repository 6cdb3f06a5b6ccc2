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

//! The shape of answers (DESIGN.md §3): errors null the nearest nullable parent as the
//! GraphQL spec says, fields come in query order, every error has a code, no error echoes
//! a value the client sent, and no `/graphql` answer may be cached.
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_API_TOKEN, Store, TestApp, UPSERT_RESOURCE, assert_code, both_stores, data, error_codes,
    id, resource_input,
};

both_stores!(
    a_refused_nullable_root_field_is_null_beside_its_siblings,
    an_error_nulls_the_nearest_nullable_parent,
    fields_come_in_query_order,
    errors_echo_no_value,
    a_scalar_that_does_not_parse_is_bad_user_input,
    no_graphql_answer_may_be_cached,
);

/// A value that must never come back in an error.
const INLINE_VALUE: &str = "sk_live_inline_4f2a9c";

/// `node(id:)` with a secret's id, as a member or viewer: `{"node": null}` beside the
/// sibling fields, one `FORBIDDEN` error at `["node"]`.
async fn a_refused_nullable_root_field_is_null_beside_its_siblings(store: Store) {
    let app = TestApp::spawn(store).await;
    let secret = app.create_secret("NODE_TARGET", "node-value").await;
    for role in ["MEMBER", "VIEWER"] {
        let token = app.new_principal_token(role).await;
        let query = "query($id: ID!) { viewer { role } node(id: $id) { id } }";
        let response = app
            .gql(Some(&token), query, json!({ "id": secret["id"] }))
            .await;
        assert_eq!(
            response["data"],
            json!({ "viewer": { "role": role }, "node": null }),
            "{role}: {response:#}"
        );
        assert_eq!(error_codes(&response), ["FORBIDDEN"]);
        assert_eq!(response["errors"][0]["path"], json!(["node"]));
    }
}

/// A failing non-null field nulls its nearest nullable ancestor (and only that): here a
/// reference's `secret`, whose `versions` connection (non-null) is given a bad cursor.
async fn an_error_nulls_the_nearest_nullable_parent(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("SHAPED", "shaped-value").await;
    let input = resource_input("PIPELINE", "shaped", &[("SHAPED", "sink.key")]);
    let resource = id(
        &data(&app.admin(UPSERT_RESOURCE, json!({ "input": input })).await)["upsertResource"]["resource"],
    );

    let query = r#"query($id: ID!) { resource(id: $id) { name references {
        field secret { name versions(first: 1, after: "not-a-cursor") { totalCount } } } } }"#;
    let response = app.admin(query, json!({ "id": resource })).await;
    assert_eq!(
        response["data"],
        json!({ "resource": { "name": "shaped",
            "references": [{ "field": "sink.key", "secret": null }] } }),
        "{response:#}"
    );
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"]);
    assert_eq!(
        response["errors"][0]["path"],
        json!(["resource", "references", 0, "secret", "versions"])
    );

    // At the root: a nullable root field becomes null, its siblings stay.
    let query = r#"{ viewer { role } secret(name: "SHAPED") {
        name versions(after: "not-a-cursor") { totalCount } } }"#;
    let response = app.admin(query, json!({})).await;
    assert_eq!(
        response["data"],
        json!({ "viewer": { "role": "ADMIN" }, "secret": null })
    );
    // A non-null root field that fails takes `data` with it, as the spec says.
    let query = r#"{ viewer { role } secretValue(name: "MISSING") { value } }"#;
    let response = app.admin(query, json!({})).await;
    assert!(response["data"].is_null(), "{response:#}");
    assert_code(&response, "NOT_FOUND");
}

/// Positions of `keys` in `text`, which must appear in that order.
#[track_caller]
fn assert_in_order(text: &str, keys: &[&str]) {
    let positions: Vec<usize> = keys
        .iter()
        .map(|key| {
            text.find(&format!("\"{key}\""))
                .unwrap_or_else(|| panic!("{key} missing from {text}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{keys:?} out of query order in {text}"
    );
}

/// Fields come in the order the query names them, whichever resolver finishes first (the
/// dependents and the creator are loaded, the name is not).
async fn fields_come_in_query_order(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("ORDERED", "ordered-value").await;
    let query = r#"{ secret(name: "ORDERED") {
        dependents { state } createdBy { name } name currentVersion description }
        viewer { role } }"#;
    let (status, _, text) = app
        .post_with_headers(Some(&app.admin_token), json!({ "query": query }))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_in_order(
        &text,
        &[
            "secret",
            "dependents",
            "createdBy",
            "name",
            "currentVersion",
            "description",
            "viewer",
        ],
    );
}

/// Parse errors, validation errors, unreadable bodies and unknown operation names quote
/// nothing a client sent as a value.
async fn errors_echo_no_value(store: Store) {
    let app = TestApp::spawn(store).await;
    let token = Some(app.admin_token.as_str());

    // An unterminated string: the parser's own message would quote the source line.
    let query = format!(r#"{{ secretValue(name: "{INLINE_VALUE}) {{ value }} }}"#);
    let (status, body) = app.post_raw(token, json!({ "query": query })).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_code(&body, "GRAPHQL_PARSE_FAILED");
    assert!(body["errors"][0]["locations"].is_array(), "{body:#}");
    assert!(!body.to_string().contains(INLINE_VALUE), "{body:#}");

    // A value where an enum goes: validation names the argument, not the value.
    let query = "query($kind: ResourceKind) { resources(kind: $kind) { totalCount } }";
    let response = app.admin(query, json!({ "kind": INLINE_VALUE })).await;
    assert_code(&response, "GRAPHQL_VALIDATION_FAILED");
    assert!(!response.to_string().contains(INLINE_VALUE), "{response:#}");

    // A body that is not a GraphQL request: the JSON parser would quote the value.
    let body = json!({ "query": "{ viewer { role } }", "variables": INLINE_VALUE });
    let (status, body) = app.post_raw(token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_code(&body, "BAD_REQUEST");
    assert!(!body.to_string().contains(INLINE_VALUE), "{body:#}");

    // An operation name that is not in the document.
    let body = json!({ "query": "query A { viewer { role } } query B { viewer { role } }",
                       "operationName": INLINE_VALUE });
    let (status, body) = app.post_raw(token, body).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_code(&body, "BAD_REQUEST");
    assert!(!body.to_string().contains(INLINE_VALUE), "{body:#}");
    let body = json!({ "query": "query A { viewer { role } } query B { viewer { role } }" });
    assert_code(&app.post_raw(token, body).await.1, "BAD_REQUEST");
}

/// A scalar the schema cannot parse (a `DateTime` here) is the caller's mistake.
async fn a_scalar_that_does_not_parse_is_bad_user_input(store: Store) {
    let app = TestApp::spawn(store).await;
    let account = app.create_service_account("VIEWER").await;
    let input = json!({ "input": { "principalId": account.id, "expiresAt": "next tuesday" } });
    let response = app.admin(CREATE_API_TOKEN, input).await;
    assert_code(&response, "BAD_USER_INPUT");
    assert!(
        !response.to_string().contains("next tuesday"),
        "{response:#}"
    );
    let tokens = "SELECT COUNT(*) FROM api_tokens";
    // The bootstrap admins' tokens and the account's first one; nothing new.
    assert_eq!(app.sql_query_one_i64(tokens).await, 3);
}

/// Every `/graphql` answer says `Cache-Control: no-store`: values travel in some of them.
async fn no_graphql_answer_may_be_cached(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("UNCACHED", "uncached-value").await;
    let token = app.admin_token.clone();
    let no_store = |headers: &reqwest::header::HeaderMap| {
        headers.get("cache-control").and_then(|v| v.to_str().ok()) == Some("no-store")
    };
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "a revealed value",
            json!({ "query": "{ secretValue(name: \"UNCACHED\") { value } }" }),
            StatusCode::OK,
        ),
        (
            "an error",
            json!({ "query": "{ secretValue(name: \"MISSING\") { value } }" }),
            StatusCode::OK,
        ),
        (
            "a batch too large",
            Value::Array(vec![json!({ "query": "{ viewer { role } }" }); 11]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "an unreadable body",
            json!({ "query": 42 }),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, body, expected) in cases {
        let (status, headers, text) = app.post_with_headers(Some(&token), body).await;
        assert_eq!(status, expected, "{what}: {text}");
        assert!(no_store(&headers), "{what}: {headers:?}");
    }
    let get = |query: &str| {
        let mut url = reqwest::Url::parse("http://localhost/graphql").expect("a URL");
        url.query_pairs_mut().append_pair("query", query);
        format!("/graphql?{}", url.query().unwrap_or_default())
    };
    for (query, expected) in [
        (
            "{ secretValue(name: \"UNCACHED\") { value } }",
            StatusCode::OK,
        ),
        (
            "mutation { deleteSecret(input: { name: \"UNCACHED\" }) { deletedSecretId } }",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let path = get(query);
        let (status, headers, text) = app
            .send(|http, url| http.get(url).bearer_auth(&token), &path)
            .await;
        assert_eq!(status, expected, "GET {query}: {text}");
        assert!(no_store(&headers), "GET {query}: {headers:?}");
    }
}

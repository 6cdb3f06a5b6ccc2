//! Automatic persisted queries (Apollo's APQ): a hash-only request is
//! `PERSISTED_QUERY_NOT_FOUND` until the query has been sent with its hash; then the hash
//! alone answers, over POST and over GET; a mutation sent by hash over GET is still
//! refused; a persisted query passes the same guards as any other. No store involved:
//! SQLite only.
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{CREATE_SECRET, Store, TestApp, VIEWER, assert_code, data};

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// `/graphql?…` for a hash-only GET, with `variables` as JSON.
fn get_path(hash: &str, variables: &Value) -> String {
    let extensions = persisted(hash).to_string();
    let variables = variables.to_string();
    let query: String = url_encode(&[("extensions", &extensions), ("variables", &variables)]);
    format!("/graphql?{query}")
}

fn url_encode(pairs: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://x/", pairs)
        .expect("a URL")
        .query()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_is_kept_by_hash_and_answered_by_hash() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let token = Some(app.admin_token.as_str());
    let hash = sha256_hex(VIEWER);

    // Unknown: the client is told to send the query.
    let (status, unknown) = app
        .post_raw(token, json!({ "extensions": persisted(&hash) }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_code(&unknown, "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");

    // The retry with the query is answered and kept.
    let body = json!({ "query": VIEWER, "extensions": persisted(&hash) });
    let (_, sent) = app.post_raw(token, body).await;
    assert_eq!(data(&sent)["viewer"]["role"], "ADMIN");

    // Now the hash alone answers, over POST and over GET.
    let (_, by_hash) = app
        .post_raw(token, json!({ "extensions": persisted(&hash) }))
        .await;
    assert_eq!(data(&by_hash)["viewer"]["role"], "ADMIN");
    let (status, text) = app.get_raw(&get_path(&hash, &json!({})), token).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let by_get: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(data(&by_get)["viewer"]["role"], "ADMIN");

    // A persisted query passes the same guards: a viewer's token reads no secret by hash.
    let secrets = "query { secrets { totalCount } }";
    let secrets_hash = sha256_hex(secrets);
    let body = json!({ "query": secrets, "extensions": persisted(&secrets_hash) });
    let (_, as_admin) = app.post_raw(token, body).await;
    assert!(data(&as_admin)["secrets"]["totalCount"].is_number());
    let viewer = app.new_principal_token("VIEWER").await;
    let (_, refused) = app
        .post_raw(
            Some(&viewer),
            json!({ "extensions": persisted(&secrets_hash) }),
        )
        .await;
    assert_code(&refused, "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_hash_is_refused_and_not_kept() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let token = Some(app.admin_token.as_str());
    let wrong = sha256_hex("{ __typename }");
    let body = json!({ "query": VIEWER, "extensions": persisted(&wrong) });
    let (_, refused) = app.post_raw(token, body).await;
    assert_code(&refused, "BAD_REQUEST");
    let (_, unknown) = app
        .post_raw(token, json!({ "extensions": persisted(&wrong) }))
        .await;
    assert_code(&unknown, "PERSISTED_QUERY_NOT_FOUND");
    let body = json!({ "query": VIEWER, "extensions": persisted("not-a-hash") });
    let (_, malformed) = app.post_raw(token, body).await;
    assert_code(&malformed, "BAD_REQUEST");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mutation_sent_by_hash_over_get_is_refused() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let token = Some(app.admin_token.as_str());
    let hash = sha256_hex(CREATE_SECRET);
    let input = json!({ "input": { "name": "APQ_FIRST", "value": "v1" } });
    let body =
        json!({ "query": CREATE_SECRET, "variables": input, "extensions": persisted(&hash) });
    let (_, created) = app.post_raw(token, body).await;
    assert_eq!(
        data(&created)["createSecret"]["secret"]["name"],
        "APQ_FIRST"
    );

    let input = json!({ "input": { "name": "APQ_BY_GET", "value": "v2" } });
    let (status, text) = app.get_raw(&get_path(&hash, &input), token).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{text}");
    assert_eq!(app.secret_count().await, 1, "the GET created nothing");
}

/// Persisted queries are kept per organization, and only for a caller with a valid
/// token: a query one organization registered is `PERSISTED_QUERY_NOT_FOUND` by hash to
/// another organization's admin (over POST and GET) and to a caller without a token, so
/// nobody learns which queries another runs; a query sent with its hash by a caller
/// without a token is answered but not kept.
#[tokio::test(flavor = "multi_thread")]
async fn persisted_queries_are_kept_per_organization_after_authentication() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let acme = Some(app.admin_token.as_str());
    let globex = Some(app.other_admin_token.as_str());
    let hash = sha256_hex(VIEWER);
    let body = json!({ "query": VIEWER, "extensions": persisted(&hash) });
    let (_, sent) = app.post_raw(acme, body).await;
    assert_eq!(data(&sent)["viewer"]["role"], "ADMIN");
    let (_, by_hash) = app
        .post_raw(acme, json!({ "extensions": persisted(&hash) }))
        .await;
    assert_eq!(data(&by_hash)["viewer"]["role"], "ADMIN");

    let (_, other) = app
        .post_raw(globex, json!({ "extensions": persisted(&hash) }))
        .await;
    assert_code(&other, "PERSISTED_QUERY_NOT_FOUND");
    let (_, text) = app.get_raw(&get_path(&hash, &json!({})), globex).await;
    let other: Value = serde_json::from_str(&text).expect("JSON");
    assert_code(&other, "PERSISTED_QUERY_NOT_FOUND");
    let (_, anonymous) = app
        .post_raw(None, json!({ "extensions": persisted(&hash) }))
        .await;
    assert_code(&anonymous, "PERSISTED_QUERY_NOT_FOUND");

    // A caller without a token cannot plant a query for anyone.
    let planted = "{ __typename }";
    let planted_hash = sha256_hex(planted);
    let body = json!({ "query": planted, "extensions": persisted(&planted_hash) });
    let (_, answered) = app.post_raw(None, body).await;
    assert_eq!(data(&answered)["__typename"], "Query");
    let (_, by_hash) = app
        .post_raw(acme, json!({ "extensions": persisted(&planted_hash) }))
        .await;
    assert_code(&by_hash, "PERSISTED_QUERY_NOT_FOUND");
}

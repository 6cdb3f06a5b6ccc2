//! `GET /v1/resources/{id}/secrets` (DESIGN §11): a resource's pinned values over plain
//! HTTP, for tools that do not speak GraphQL — same authorization, audit and usage as
//! `resourceSecrets`, refusals as statuses with `{"error": {"code", "message"}}`.
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{DELETE_SECRET, Store, TestApp, UPDATE_SECRET, both_stores, data};

both_stores!(pinned_values_over_plain_http);

const BIND: &str = "mutation($resourceId: ID!, $principalId: ID!) {
    bindRuntime(input: { resourceId: $resourceId, principalId: $principalId }) {
        resource { name } } }";
const DISABLE: &str = "mutation($name: String!) {
    disableSecret(input: { name: $name, reason: \"scream test\" }) { secret { state } } }";
const USAGE: &str = "query($name: String!) { dependents(secretName: $name) {
    resource { name } lastFetchedVersion lastFetchOutcome } }";

/// `GET /v1/resources/{id}/secrets` with `token`: status, `Cache-Control`, body.
async fn get(app: &TestApp, id: &str, token: Option<&str>) -> (StatusCode, String, Value) {
    let mut request =
        reqwest::Client::new().get(format!("{}/v1/resources/{id}/secrets", app.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /v1");
    crate::helpers::status_cache_body(response).await
}

#[track_caller]
fn assert_refused(answer: &(StatusCode, String, Value), status: StatusCode, code: &str) {
    let (got, cache, body) = answer;
    assert_eq!(
        (*got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body.get("secrets").is_none(), "{body}");
    assert_eq!(cache, "no-store");
}

async fn pinned_values_over_plain_http(store: Store) {
    let app = TestApp::spawn_with(store, &[("STRONGROOM_USAGE_FLUSH_SECONDS", "1")]).await;
    app.create_secret("SHELL_KEY", "shell-v1").await;
    let etl = app
        .deploy_pipeline("etl", &[("SHELL_KEY", "api.key")])
        .await;
    // The current version moves on; the deployment still pins version 1.
    let input = json!({ "input": { "name": "SHELL_KEY", "value": "shell-v2" } });
    data(&app.admin(UPDATE_SECRET, input).await);
    let runtime = app.create_service_account("RUNTIME").await;
    data(
        &app.admin(
            BIND,
            json!({ "resourceId": etl, "principalId": runtime.id }),
        )
        .await,
    );

    let (status, cache, body) = get(&app, &etl, Some(&runtime.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(cache, "no-store");
    assert_eq!(
        body["resource"],
        json!({ "id": etl, "kind": "PIPELINE", "name": "etl" })
    );
    assert!(body["deployment"]["id"].is_string() && body["deployment"]["deployedAt"].is_string());
    assert_eq!(
        body["secrets"],
        json!([{ "name": "SHELL_KEY", "field": "api.key", "version": 1, "value": "shell-v1" }])
    );
    let (status, _, as_admin) = get(&app, &etl, Some(&app.admin_token)).await;
    assert_eq!(
        (status, &as_admin["secrets"]),
        (StatusCode::OK, &body["secrets"])
    );

    // Audited as resourceSecrets is, and recorded as usage.
    let audited = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'resource.fetch_secrets'",
        )
        .await;
    assert_eq!(audited, 2);
    let mut usage = Value::Null;
    for _ in 0..100 {
        let response = app.admin(USAGE, json!({ "name": "SHELL_KEY" })).await;
        usage = data(&response)["dependents"][0].clone();
        if usage["lastFetchOutcome"] == "SERVED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(usage["lastFetchedVersion"], 1, "{usage}");

    // Refusals.
    let member = app.create_service_account("MEMBER").await;
    assert_refused(
        &get(&app, &etl, None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    );
    assert_refused(
        &get(&app, &etl, Some("srt_not-a-real-token")).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    );
    assert_refused(
        &get(&app, &etl, Some(&member.token)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    assert_refused(
        &get(&app, "not-an-id", Some(&app.admin_token)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_refused(
        &get(&app, &etl, Some(&app.other_admin_token)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let other = app.deploy_pipeline("billing", &[("SHELL_KEY", "k")]).await;
    assert_refused(
        &get(&app, &other, Some(&runtime.token)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    data(&app.admin(DISABLE, json!({ "name": "SHELL_KEY" })).await);
    let disabled = get(&app, &etl, Some(&runtime.token)).await;
    assert_refused(&disabled, StatusCode::CONFLICT, "SECRET_DISABLED");
    assert_eq!(disabled.2["error"]["disabledSecrets"], json!(["SHELL_KEY"]));
    let input = json!({ "input": { "name": "SHELL_KEY", "force": true } });
    data(&app.admin(DELETE_SECRET, input).await);
    let missing = get(&app, &etl, Some(&runtime.token)).await;
    assert_refused(&missing, StatusCode::CONFLICT, "MISSING_SECRETS");
    for answer in [&disabled, &missing] {
        let text = answer.2.to_string();
        assert!(
            !text.contains("shell-v1") && !text.contains("shell-v2"),
            "{text}"
        );
    }
}

/// Requests without a valid token are limited per address here too: the refusal keeps its
/// 429 and `Retry-After`, in this endpoint's shape (SQLite only: no store involved).
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_without_a_token_is_refused_in_this_shape() {
    let settings = [("STRONGROOM_UNAUTHENTICATED_RATE_LIMIT", "1:3")];
    let app = TestApp::spawn_with(Store::Sqlite, &settings).await;
    let mut last = None;
    for _ in 0..10 {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/resources/x/secrets", app.base_url()))
            .send()
            .await
            .expect("GET /v1");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            last = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = last.expect("the flood was limited");
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    assert!(body["error"]["message"].is_string());
}

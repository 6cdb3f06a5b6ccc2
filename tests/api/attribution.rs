//! Who acted with what (DESIGN §9): every audit event of a request names the credential it
//! came with (never the token), nobody issues tokens for another person, and a revoked or
//! expired token presented again is logged by its prefix, counted and audited at most once
//! a minute.
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    CREATE_API_TOKEN, SECRET_VALUE, Store, TestApp, assert_code, both_stores, data,
};

both_stores!(
    every_event_names_the_credential_it_came_with,
    nobody_issues_tokens_for_another_person,
    a_refused_token_is_logged_counted_and_audited_once_a_minute,
);

const TRAIL: &str = "query { auditEvents(first: 100) { nodes {
    action outcome credential { kind id prefix issuer subject } } } }";
const TOKENS: &str = "query { apiTokens(first: 100) { nodes { id prefix principal { name } } } }";
const REVOKE: &str =
    "mutation($id: ID!) { revokeApiToken(input: { id: $id }) { apiToken { id } } }";
const REFUSED: &str = "strongroom_auth_refused_total";

/// `(action, outcome, credential)` of every audit event, oldest first.
async fn trail(app: &TestApp) -> Vec<(String, String, Value)> {
    let response = app.admin(TRAIL, json!({})).await;
    let mut events: Vec<(String, String, Value)> = data(&response)["auditEvents"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&n["action"]),
                text(&n["outcome"]),
                n["credential"].clone(),
            )
        })
        .collect();
    events.reverse();
    events
}

/// The id and prefix of the token whose prefix `token` starts with.
async fn token_record(app: &TestApp, token: &str) -> (String, String) {
    let response = app.admin(TOKENS, json!({})).await;
    let found = data(&response)["apiTokens"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|t| t["prefix"].as_str().is_some_and(|p| token.starts_with(p)))
        .unwrap_or_else(|| panic!("no token record for this token: {response}"))
        .clone();
    let text = |v: &Value| v.as_str().expect("text").to_owned();
    (text(&found["id"]), text(&found["prefix"]))
}

/// A change, a reveal (written by the group commit) and a guard's refusal each name the
/// token used — its id and display prefix, as `apiTokens` lists it — and no event holds
/// a token; the command line's events (bootstrap) name none.
async fn every_event_names_the_credential_it_came_with(store: Store) {
    let app = TestApp::spawn(store).await;
    let viewer = app.create_service_account("VIEWER").await;
    app.create_secret("ATTRIBUTED", "attributed-value").await;
    assert_eq!(app.reveal("ATTRIBUTED").await, "attributed-value");
    let refused = app
        .gql(
            Some(&viewer.token),
            SECRET_VALUE,
            json!({ "name": "ATTRIBUTED" }),
        )
        .await;
    assert_code(&refused, "FORBIDDEN");

    let (admin_id, admin_prefix) = token_record(&app, &app.admin_token).await;
    let (viewer_id, viewer_prefix) = token_record(&app, &viewer.token).await;
    let admin = json!({ "kind": "API_TOKEN", "id": admin_id, "prefix": admin_prefix,
                        "issuer": null, "subject": null });
    let as_viewer = json!({ "kind": "API_TOKEN", "id": viewer_id, "prefix": viewer_prefix,
                            "issuer": null, "subject": null });
    let events = trail(&app).await;
    let of = |action: &str| {
        events
            .iter()
            .find(|(a, _, _)| a == action)
            .unwrap_or_else(|| panic!("no {action} event in {events:?}"))
            .clone()
    };
    assert_eq!(of("secret.create").2, admin);
    assert_eq!(of("secret.reveal").2, admin);
    assert_eq!(of("service_account.create").2, admin);
    let denied = of("secretValue");
    assert_eq!((denied.1.as_str(), &denied.2), ("DENIED", &as_viewer));
    assert_eq!(
        events[0],
        ("token.create".to_owned(), "ALLOWED".to_owned(), Value::Null),
        "the command line's bootstrap names no credential"
    );
    let text = serde_json::to_string(&events).expect("json");
    for token in [&app.admin_token, &viewer.token] {
        assert!(!text.contains(token.as_str()), "a token in the audit trail");
    }
}

/// An admin issues tokens for service accounts and for themself, never for another person
/// (FORBIDDEN, saying why, no token issued).
async fn nobody_issues_tokens_for_another_person(store: Store) {
    let app = TestApp::spawn(store).await;
    // No mutation creates people yet (the console's sign-in will): another person of the
    // organization, as the database would hold one.
    let inserted = app
        .sql_with(
            "INSERT INTO principals (id, org_id, kind, name, role, created_at)
             SELECT $1, o.id, 'USER', 'another-person', 'MEMBER', $2
             FROM organizations o WHERE o.name = 'acme'",
            vec![uuid::Uuid::now_v7().into(), chrono::Utc::now().into()],
        )
        .await;
    assert_eq!(inserted, 1);
    let principals = app
        .admin("query { principals { nodes { id name } } }", json!({}))
        .await;
    let id_of = |name: &str| {
        data(&principals)["principals"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["id"].as_str())
            .unwrap_or_else(|| panic!("no principal {name}"))
            .to_owned()
    };
    let count_before = app
        .sql_query_one_i64("SELECT COUNT(*) FROM api_tokens")
        .await;
    let refused = app
        .admin(
            CREATE_API_TOKEN,
            json!({ "input": { "principalId": id_of("another-person") } }),
        )
        .await;
    assert_code(&refused, "FORBIDDEN");
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("another-person is a person"), "{message}");
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM api_tokens")
            .await,
        count_before,
        "no token issued"
    );
    let own = app
        .admin(
            CREATE_API_TOKEN,
            json!({ "input": { "principalId": id_of("admin") } }),
        )
        .await;
    assert!(data(&own)["createApiToken"]["token"].is_string());
    let account = app.create_service_account("MEMBER").await;
    let theirs = app
        .admin(
            CREATE_API_TOKEN,
            json!({ "input": { "principalId": account.id } }),
        )
        .await;
    assert!(data(&theirs)["createApiToken"]["token"].is_string());
}

/// A revoked token used six times and an expired one used twice: each request is
/// UNAUTHENTICATED, each use is counted by reason, each token audited once (`auth.refused`,
/// DENIED, its prefix, its credential), the log names the prefix and never the token.
async fn a_refused_token_is_logged_counted_and_audited_once_a_minute(store: Store) {
    let app = TestApp::spawn(store).await;
    let account = app.create_service_account("ADMIN").await;
    let (id, prefix) = token_record(&app, &account.token).await;
    data(&app.admin(REVOKE, json!({ "id": id })).await);
    let expires_at = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let input = json!({ "input": { "principalId": account.id, "expiresAt": expires_at } });
    let expiring = app.admin(CREATE_API_TOKEN, input).await;
    let expiring = data(&expiring)["createApiToken"]["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let (revoked_before, expired_before) = (
        refusals(&app, "revoked").await,
        refusals(&app, "expired").await,
    );
    // Past the auth cache's second, so every replica sees the revocation.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    for _ in 0..6 {
        let response = app
            .gql(Some(&account.token), "{ viewer { role } }", json!({}))
            .await;
        assert_code(&response, "UNAUTHENTICATED");
    }
    for _ in 0..2 {
        let response = app
            .gql(Some(&expiring), "{ viewer { role } }", json!({}))
            .await;
        assert_code(&response, "UNAUTHENTICATED");
    }
    assert_eq!(refusals(&app, "revoked").await - revoked_before, 6);
    assert_eq!(refusals(&app, "expired").await - expired_before, 2);

    let response = app
        .admin(
            "query { auditEvents(first: 50, filter: { action: \"auth.refused\" }) {
                nodes { outcome detail credential { kind prefix } } } }",
            json!({}),
        )
        .await;
    let mut refused: Vec<(String, String)> = data(&response)["auditEvents"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            assert_eq!(n["outcome"], "DENIED");
            assert_eq!(n["credential"]["kind"], "API_TOKEN");
            assert_eq!(n["credential"]["prefix"], n["detail"]["prefix"]);
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&n["detail"]["reason"]), text(&n["detail"]["prefix"]))
        })
        .collect();
    refused.sort();
    let expiring_prefix = token_record(&app, &expiring).await.1;
    assert_eq!(
        refused,
        [
            ("expired".to_owned(), expiring_prefix),
            ("revoked".to_owned(), prefix.clone())
        ],
        "each token audited once"
    );
    let logs = app.server_logs();
    assert!(logs.contains(&prefix), "the log names the prefix");
    assert!(!logs.contains(&account.token) && !logs.contains(&expiring));
}

async fn refusals(app: &TestApp, reason: &str) -> u64 {
    let (_, text) = app
        .get_raw("/metrics", Some(crate::helpers::METRICS_TOKEN))
        .await;
    text.lines()
        .filter(|line| line.starts_with(REFUSED) && line.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

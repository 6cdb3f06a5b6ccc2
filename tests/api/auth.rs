//! Authentication, roles and tenant isolation.
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_API_TOKEN, CREATE_SECRET, DELETE_SECRET, SECRET, SECRET_COUNT, SECRET_VALUE, Store,
    TestApp, UPDATE_SECRET, VIEWER, assert_code, both_stores, data, error_code,
};

both_stores!(
    missing_or_invalid_token_is_unauthenticated,
    members_and_viewers_cannot_reach_secrets,
    other_organization_sees_nothing,
    revoked_token_is_unauthenticated,
    expiring_token,
    admins_list_principals_and_tokens,
);

const NODE: &str = "query($id: ID!) { node(id: $id) { id ... on Secret { name } } }";
const SECRETS: &str = "query { secrets { totalCount nodes { name } } }";
const AUDIT_EVENTS: &str = "query { auditEvents(first: 10) { edges { node { action } } } }";
const DENIED_EVENTS: &str = "query { auditEvents(first: 100, filter: { outcome: DENIED }) {
    nodes { action outcome principal { id name } } } }";
const REVOKE_API_TOKEN: &str = "mutation($input: RevokeApiTokenInput!) {
    revokeApiToken(input: $input) { apiToken { id revokedAt } } }";

async fn missing_or_invalid_token_is_unauthenticated(store: Store) {
    let app = TestApp::spawn(store).await;
    let forged = format!("{}x", app.admin_token);
    let create = json!({ "input": { "name": "ANONYMOUS", "value": "x" } });

    for token in [None, Some(""), Some("garbage"), Some(forged.as_str())] {
        for (query, variables) in [
            (VIEWER, json!({})),
            (SECRET_COUNT, json!({})),
            (CREATE_SECRET, create.clone()),
        ] {
            let response = app.gql(token, query, variables).await;
            assert_code(&response, "UNAUTHENTICATED");
        }
    }
    let response = app.admin(SECRET, json!({ "name": "ANONYMOUS" })).await;
    assert!(data(&response)["secret"].is_null(), "created: {response}");
}

/// Every secret field and mutation, as (field name, document, variables).
fn secret_operations(name: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("secret", SECRET, json!({ "name": name })),
        ("secrets", SECRETS, json!({})),
        ("secretValue", SECRET_VALUE, json!({ "name": name })),
        ("auditEvents", AUDIT_EVENTS, json!({})),
        (
            "createSecret",
            CREATE_SECRET,
            json!({ "input": { "name": "INTRUDER", "value": "x" } }),
        ),
        (
            "updateSecret",
            UPDATE_SECRET,
            json!({ "input": { "name": name, "value": "overwritten" } }),
        ),
        (
            "deleteSecret",
            DELETE_SECRET,
            json!({ "input": { "name": name } }),
        ),
    ]
}

async fn members_and_viewers_cannot_reach_secrets(store: Store) {
    const NAME: &str = "DB_PASSWORD";
    const VALUE: &str = "hunter2-correct-horse";
    let app = TestApp::spawn(store).await;
    let secret = app.create_secret(NAME, VALUE).await;

    for role in ["MEMBER", "VIEWER"] {
        let token = app.new_principal_token(role).await;
        let token = Some(token.as_str());

        let viewer = app.gql(token, VIEWER, json!({})).await;
        let viewer = &data(&viewer)["viewer"];
        assert_eq!(viewer["role"], role);
        assert_eq!(viewer["principal"]["role"], role);
        assert_eq!(viewer["organization"]["name"], "acme");
        let principal_id = &viewer["principal"]["id"];

        for (field, query, variables) in secret_operations(NAME) {
            let response = app.gql(token, query, variables).await;
            assert_eq!(
                error_code(&response).as_deref(),
                Some("FORBIDDEN"),
                "{role} on {field}: {response:#}"
            );
            assert!(
                !response.to_string().contains(VALUE),
                "{role} on {field}: {response}"
            );
        }

        let response = app.gql(token, NODE, json!({ "id": secret["id"] })).await;
        assert_code(&response, "FORBIDDEN");
        assert!(response["data"]["node"].is_null(), "{role}: {response}");
        assert!(!response.to_string().contains(NAME), "{role}: {response}");

        let response = app.admin(DENIED_EVENTS, json!({})).await;
        let denied: Vec<&Value> = data(&response)["auditEvents"]["nodes"]
            .as_array()
            .expect("audit events")
            .iter()
            .filter(|event| &event["principal"]["id"] == principal_id)
            .collect();
        for (field, _, _) in secret_operations(NAME) {
            assert!(
                denied.iter().any(|event| event["action"] == field),
                "no DENIED event for {role} on {field}; got {denied:#?}"
            );
        }
        assert!(denied.iter().all(|event| event["outcome"] == "DENIED"));
    }

    // Nothing the refused calls asked for happened.
    let response = app.admin(SECRET, json!({ "name": NAME })).await;
    assert_eq!(data(&response)["secret"]["currentVersion"], 1);
    assert_eq!(app.reveal(NAME).await, VALUE);
    assert_eq!(app.secret_count().await, 1);
}

/// A response with `name` blanked out of its error messages: what a client could compare.
fn observable(response: &Value, name: &str) -> Value {
    let errors: Vec<Value> = response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|error| {
            json!({
                "message": error["message"].as_str().map(|m| m.replace(name, "<name>")),
                "code": error["extensions"]["code"],
                "path": error["path"],
            })
        })
        .collect();
    json!({ "data": response["data"], "errors": errors })
}

/// The variables of a probe for one secret name.
type VariablesFor = fn(&str) -> Value;

async fn other_organization_sees_nothing(store: Store) {
    const NAME: &str = "ACME_ONLY";
    const MISSING: &str = "NO_SUCH_SECRET";
    const VALUE: &str = "acme-private-value";
    let app = TestApp::spawn(store).await;
    let secret = app.create_secret(NAME, VALUE).await;
    let deleted = app.create_secret("DELETED_SECRET", "gone").await;
    let delete = json!({ "input": { "name": "DELETED_SECRET" } });
    data(&app.admin(DELETE_SECRET, delete).await);
    let globex = Some(app.other_admin_token.as_str());

    let probes: [(&str, VariablesFor); 4] = [
        (SECRET, |name| json!({ "name": name })),
        (SECRET_VALUE, |name| json!({ "name": name })),
        (
            UPDATE_SECRET,
            |name| json!({ "input": { "name": name, "value": "globex was here" } }),
        ),
        (DELETE_SECRET, |name| json!({ "input": { "name": name } })),
    ];
    for (query, variables) in probes {
        let foreign = app.gql(globex, query, variables(NAME)).await;
        let missing = app.gql(globex, query, variables(MISSING)).await;
        assert_eq!(
            observable(&foreign, NAME),
            observable(&missing, MISSING),
            "another organization's secret must look missing:\n{query}"
        );
        assert!(!foreign.to_string().contains(VALUE), "{foreign}");
        if query == SECRET {
            assert!(data(&foreign)["secret"].is_null(), "{foreign}");
        } else {
            assert_code(&foreign, "NOT_FOUND");
        }
    }

    let foreign = app.gql(globex, NODE, json!({ "id": secret["id"] })).await;
    let missing = app.gql(globex, NODE, json!({ "id": deleted["id"] })).await;
    assert!(data(&foreign)["node"].is_null(), "{foreign}");
    assert_eq!(foreign, missing);

    let listed = app.gql(globex, SECRETS, json!({})).await;
    assert_eq!(data(&listed)["secrets"]["totalCount"], 0);
    assert_eq!(data(&listed)["secrets"]["nodes"], json!([]));

    // Names are unique per organization: globex may use the same one.
    let create = json!({ "input": { "name": NAME, "value": "globex-value" } });
    data(&app.gql(globex, CREATE_SECRET, create).await);

    assert_eq!(app.reveal(NAME).await, VALUE);
    let response = app.admin(SECRET, json!({ "name": NAME })).await;
    assert_eq!(data(&response)["secret"]["currentVersion"], 1);
    assert_eq!(app.secret_count().await, 1);
}

async fn create_api_token(app: &TestApp, input: Value) -> Value {
    app.admin(CREATE_API_TOKEN, json!({ "input": input })).await
}

async fn revoked_token_is_unauthenticated(store: Store) {
    let app = TestApp::spawn(store).await;
    let account = app.create_service_account("ADMIN").await;
    let input = json!({ "principalId": account.id, "description": "deploy job" });
    let response = create_api_token(&app, input).await;
    let created = &data(&response)["createApiToken"];
    let token = created["token"].as_str().expect("token");
    assert!(created["apiToken"]["revokedAt"].is_null());

    let viewer = app.gql(Some(token), VIEWER, json!({})).await;
    assert_eq!(data(&viewer)["viewer"]["principal"]["id"], account.id);

    let input = json!({ "input": { "id": created["apiToken"]["id"] } });
    let revoked = app.admin(REVOKE_API_TOKEN, input).await;
    let revoked = &data(&revoked)["revokeApiToken"]["apiToken"];
    assert_eq!(revoked["id"], created["apiToken"]["id"]);
    assert!(revoked["revokedAt"].is_string(), "{revoked}");

    assert_code(
        &app.gql(Some(token), VIEWER, json!({})).await,
        "UNAUTHENTICATED",
    );
    assert_code(
        &app.gql(Some(token), SECRET_COUNT, json!({})).await,
        "UNAUTHENTICATED",
    );
    // The account's other token is not affected.
    let viewer = app.gql(Some(&account.token), VIEWER, json!({})).await;
    assert_eq!(data(&viewer)["viewer"]["principal"]["id"], account.id);
}

async fn expiring_token(store: Store) {
    let app = TestApp::spawn(store).await;
    let account = app.create_service_account("VIEWER").await;
    let expiring_in = |offset: TimeDelta| {
        let expires_at = (Utc::now() + offset).to_rfc3339_opts(SecondsFormat::Millis, true);
        json!({ "principalId": account.id, "expiresAt": expires_at })
    };

    let past = expiring_in(-TimeDelta::hours(1));
    assert_code(&create_api_token(&app, past).await, "BAD_USER_INPUT");

    let response = create_api_token(&app, expiring_in(TimeDelta::seconds(2))).await;
    let created = &data(&response)["createApiToken"];
    assert!(created["apiToken"]["expiresAt"].is_string(), "{created}");
    let token = created["token"].as_str().expect("token");
    data(&app.gql(Some(token), VIEWER, json!({})).await);

    // Behaviour, not timing: the token stops working once it has expired.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.gql(Some(token), VIEWER, json!({})).await;
        if error_code(&response).as_deref() == Some("UNAUTHENTICATED") {
            break;
        }
        data(&response);
        assert!(
            Instant::now() < deadline,
            "the token still works 10 s after it expired"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const PRINCIPALS_AND_TOKENS: &str = "query($principal: ID) {
    principals(first: 50) { nodes { id kind name role } }
    apiTokens(principalId: $principal, first: 50) {
        nodes { id prefix description revokedAt principal { id } } } }";

/// Admins can find every principal and token (to revoke one) without ever seeing a token
/// again; other roles cannot list them; another organization's are invisible.
async fn admins_list_principals_and_tokens(store: Store) {
    let app = TestApp::spawn(store).await;
    let account = app.create_service_account("MEMBER").await;
    let input = json!({ "principalId": account.id, "description": "second" });
    let created = create_api_token(&app, input).await;
    let second = data(&created)["createApiToken"]["apiToken"]["id"].clone();
    let revoke = json!({ "input": { "id": second } });
    data(&app.admin(REVOKE_API_TOKEN, revoke).await);

    let listed = app
        .admin(PRINCIPALS_AND_TOKENS, json!({ "principal": account.id }))
        .await;
    let principals = data(&listed)["principals"]["nodes"]
        .as_array()
        .expect("principals");
    let kinds: Vec<(&str, &str)> = principals
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap_or(""),
                p["role"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds, [("USER", "ADMIN"), ("SERVICE_ACCOUNT", "MEMBER")]);

    let tokens = data(&listed)["apiTokens"]["nodes"]
        .as_array()
        .expect("tokens");
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    // Newest first: the revoked second token, then the account's initial token.
    assert_eq!(tokens[0]["id"], second);
    assert!(tokens[0]["revokedAt"].is_string());
    assert!(tokens[1]["revokedAt"].is_null());
    for token in tokens {
        assert_eq!(token["principal"]["id"], account.id);
        let prefix = token["prefix"].as_str().expect("prefix");
        assert!(prefix.starts_with("srt_") && prefix.len() < 16, "{prefix}");
        assert!(account.token.starts_with(prefix) || tokens[0] == *token);
    }
    let body = listed.to_string();
    assert!(!body.contains(&account.token) && !body.contains(&app.admin_token));

    let member = app
        .gql(Some(&account.token), PRINCIPALS_AND_TOKENS, json!({}))
        .await;
    assert_code(&member, "FORBIDDEN");
    let other = app
        .gql(
            Some(&app.other_admin_token),
            PRINCIPALS_AND_TOKENS,
            json!({ "principal": account.id }),
        )
        .await;
    let other_tokens = &data(&other)["apiTokens"]["nodes"];
    assert_eq!(
        other_tokens,
        &json!([]),
        "another organization sees no token"
    );
    let names: Vec<&str> = data(&other)["principals"]["nodes"]
        .as_array()
        .expect("principals")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["admin"], "only globex's own admin");
}

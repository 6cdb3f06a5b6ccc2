//! Least privilege (DESIGN §9): a RUNTIME service account sees and fetches only the
//! resources bound to it; an INSPECTOR reads what an admin reads but no value and changes
//! nothing. (`guards` proves the same for every field of the schema; these follow a
//! pipeline's runtime and an integration service through what they would do.)
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, SECRET, SECRET_COUNT, SECRET_VALUE, Store, TestApp, UPSERT_RESOURCE,
    assert_code, both_stores, data, resource_input,
};

both_stores!(
    a_runtime_sees_and_fetches_only_what_is_bound_to_it,
    racing_binds_make_one_binding,
    an_inspector_reads_everything_but_values_and_changes_nothing,
);

const BIND: &str = "mutation($resourceId: ID!, $principalId: ID!) {
    bindRuntime(input: { resourceId: $resourceId, principalId: $principalId }) {
        resource { name runtimePrincipals { name role } } } }";
const UNBIND: &str = "mutation($resourceId: ID!, $principalId: ID!) {
    unbindRuntime(input: { resourceId: $resourceId, principalId: $principalId }) {
        resource { name runtimePrincipals { name } } } }";
const RESOURCES: &str = "query { resources(first: 50) { totalCount nodes { name } } }";
const RESOURCE: &str = "query($id: ID!) { resource(id: $id) { name } node(id: $id) { id } }";
const RESOURCE_SECRETS: &str =
    "query($id: ID!) { resourceSecrets(resourceId: $id) { name field version value } }";
const DEPENDENTS: &str = "query($name: String!) {
    dependents(secretName: $name) { resource { name } state deployedVersion } }";
const AUDIT: &str = "query($action: String!) {
    auditEvents(first: 50, filter: { action: $action }) { nodes { targetName detail } } }";

const ETL_VALUE: &str = "runtime-etl-password";
const BILLING_VALUE: &str = "runtime-billing-key";

/// Two deployed pipelines, `etl` (DB_PASSWORD) and `billing` (BILLING_KEY); their ids.
async fn two_pipelines(app: &TestApp) -> (String, String) {
    app.create_secret("DB_PASSWORD", ETL_VALUE).await;
    app.create_secret("BILLING_KEY", BILLING_VALUE).await;
    let etl = app
        .deploy_pipeline("etl", &[("DB_PASSWORD", "db.password")])
        .await;
    let billing = app
        .deploy_pipeline("billing", &[("BILLING_KEY", "api.key")])
        .await;
    (etl, billing)
}

fn bind_vars(resource: &str, principal: &str) -> Value {
    json!({ "resourceId": resource, "principalId": principal })
}

async fn audited(app: &TestApp, action: &str) -> Vec<Value> {
    let response = app.admin(AUDIT, json!({ "action": action })).await;
    data(&response)["auditEvents"]["nodes"]
        .as_array()
        .expect("nodes")
        .clone()
}

async fn a_runtime_sees_and_fetches_only_what_is_bound_to_it(store: Store) {
    let app = TestApp::spawn(store).await;
    let (etl, billing) = two_pipelines(&app).await;
    let runtime = app.create_service_account("RUNTIME").await;
    let member = app.create_service_account("MEMBER").await;
    let as_runtime = |query: &'static str, variables: Value| {
        let (api, token) = (app.api.clone(), runtime.token.clone());
        async move { api.gql(Some(&token), query, variables).await }
    };

    // Bound to nothing: it sees nothing, and an unbound resource reads as missing.
    let listed = as_runtime(RESOURCES, json!({})).await;
    assert_eq!(data(&listed)["resources"]["totalCount"], 0);
    let fetched = as_runtime(RESOURCE_SECRETS, json!({ "id": etl })).await;
    assert_code(&fetched, "NOT_FOUND");
    assert!(!fetched.to_string().contains(ETL_VALUE), "{fetched}");

    // Only a RUNTIME service account can be bound.
    let refused = app.admin(BIND, bind_vars(&etl, &member.id)).await;
    assert_code(&refused, "BAD_USER_INPUT");
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("RUNTIME"), "{message}");
    // Another organization's admin cannot bind to acme's resource.
    let foreign = app
        .gql(
            Some(&app.other_admin_token),
            BIND,
            bind_vars(&etl, &runtime.id),
        )
        .await;
    assert_code(&foreign, "NOT_FOUND");

    // Bound (twice: one binding) to etl.
    for _ in 0..2 {
        let bound = app.admin(BIND, bind_vars(&etl, &runtime.id)).await;
        let principals = &data(&bound)["bindRuntime"]["resource"]["runtimePrincipals"];
        assert_eq!(principals.as_array().map(Vec::len), Some(1), "{bound}");
        assert_eq!(principals[0]["role"], "RUNTIME");
    }
    assert_eq!(audited(&app, "resource.bind_runtime").await.len(), 1);

    let viewer = as_runtime("query { viewer { role } }", json!({})).await;
    assert_eq!(data(&viewer)["viewer"]["role"], "RUNTIME");
    let listed = as_runtime(RESOURCES, json!({})).await;
    assert_eq!(
        data(&listed)["resources"],
        json!({ "totalCount": 1, "nodes": [{ "name": "etl" }] })
    );
    let seen = as_runtime(RESOURCE, json!({ "id": etl })).await;
    assert_eq!(data(&seen)["resource"]["name"], "etl");
    assert_eq!(data(&seen)["node"]["id"], etl.as_str());
    let unseen = as_runtime(RESOURCE, json!({ "id": billing })).await;
    assert_eq!(data(&unseen), &json!({ "resource": null, "node": null }));

    let fetched = as_runtime(RESOURCE_SECRETS, json!({ "id": etl })).await;
    assert_eq!(
        data(&fetched)["resourceSecrets"],
        json!([{ "name": "DB_PASSWORD", "field": "db.password", "version": 1, "value": ETL_VALUE }])
    );
    let other = as_runtime(RESOURCE_SECRETS, json!({ "id": billing })).await;
    assert_code(&other, "NOT_FOUND");
    assert!(!other.to_string().contains(BILLING_VALUE), "{other}");

    // Nothing else: no secret, no value, no change.
    let name = json!({ "name": "DB_PASSWORD" });
    for (query, variables) in [
        (SECRET, name.clone()),
        (SECRET_VALUE, name.clone()),
        (SECRET_COUNT, json!({})),
        (DEPENDENTS, name.clone()),
        (
            CREATE_SECRET,
            json!({ "input": { "name": "RUNTIME_MADE", "value": "x" } }),
        ),
        (
            UPSERT_RESOURCE,
            json!({ "input": resource_input("PIPELINE", "etl", &[("BILLING_KEY", "db.password")]) }),
        ),
        (BIND, bind_vars(&billing, &runtime.id)),
    ] {
        let refused = as_runtime(query, variables).await;
        assert_code(&refused, "FORBIDDEN");
        assert!(!refused.to_string().contains(ETL_VALUE), "{refused}");
    }
    let references = app
        .admin(
            "query($id: ID!) { resource(id: $id) { references { secretName } } }",
            json!({ "id": etl }),
        )
        .await;
    assert_eq!(
        data(&references)["resource"]["references"],
        json!([{ "secretName": "DB_PASSWORD" }]),
        "the refused upsert changed nothing"
    );

    // Unbound: from the next request on it sees and fetches nothing again.
    let unbound = app.admin(UNBIND, bind_vars(&etl, &runtime.id)).await;
    assert_eq!(
        data(&unbound)["unbindRuntime"]["resource"]["runtimePrincipals"],
        json!([])
    );
    assert_eq!(audited(&app, "resource.unbind_runtime").await.len(), 1);
    let fetched = as_runtime(RESOURCE_SECRETS, json!({ "id": etl })).await;
    assert_code(&fetched, "NOT_FOUND");
    let listed = as_runtime(RESOURCES, json!({})).await;
    assert_eq!(data(&listed)["resources"]["totalCount"], 0);
}

/// Ten admins binding the same account to the same resource at once: one binding, one
/// audit event (the unique index decides).
async fn racing_binds_make_one_binding(store: Store) {
    let app = TestApp::spawn(store).await;
    let (etl, _) = two_pipelines(&app).await;
    let runtime = app.create_service_account("RUNTIME").await;
    let binds: Vec<_> = (0..10)
        .map(|_| {
            let (api, token) = (app.api.clone(), app.admin_token.clone());
            let variables = bind_vars(&etl, &runtime.id);
            tokio::spawn(async move { api.gql(Some(&token), BIND, variables).await })
        })
        .collect();
    for bind in binds {
        let response = bind.await.expect("a bind task");
        let principals = &data(&response)["bindRuntime"]["resource"]["runtimePrincipals"];
        assert_eq!(principals.as_array().map(Vec::len), Some(1), "{response}");
    }
    let rows = app
        .sql_query_one_i64("SELECT COUNT(*) FROM runtime_bindings")
        .await;
    assert_eq!(rows, 1);
    assert_eq!(audited(&app, "resource.bind_runtime").await.len(), 1);
}

async fn an_inspector_reads_everything_but_values_and_changes_nothing(store: Store) {
    let app = TestApp::spawn(store).await;
    let (etl, _) = two_pipelines(&app).await;
    let inspector = app.create_service_account("INSPECTOR").await;
    let as_inspector = |query: &'static str, variables: Value| {
        let (api, token) = (app.api.clone(), inspector.token.clone());
        async move { api.gql(Some(&token), query, variables).await }
    };

    // "Which pipelines reference this secret?" — without the power to read it.
    let name = json!({ "name": "DB_PASSWORD" });
    let dependents = as_inspector(DEPENDENTS, name.clone()).await;
    assert_eq!(
        data(&dependents)["dependents"],
        json!([{ "resource": { "name": "etl" }, "state": "UP_TO_DATE", "deployedVersion": 1 }])
    );
    let secret = as_inspector(SECRET, name.clone()).await;
    assert_eq!(data(&secret)["secret"]["currentVersion"], 1);
    let trail = as_inspector(AUDIT, json!({ "action": "secret.create" })).await;
    assert_eq!(
        data(&trail)["auditEvents"]["nodes"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    for (query, variables) in [
        (SECRET_VALUE, name.clone()),
        (RESOURCE_SECRETS, json!({ "id": etl })),
        (
            CREATE_SECRET,
            json!({ "input": { "name": "INSPECTOR_MADE", "value": "x" } }),
        ),
    ] {
        let refused = as_inspector(query, variables).await;
        assert_code(&refused, "FORBIDDEN");
        let body = refused.to_string();
        assert!(
            !body.contains(ETL_VALUE) && !body.contains(BILLING_VALUE),
            "{body}"
        );
    }
    let count = app.admin(SECRET_COUNT, json!({})).await;
    assert_eq!(
        data(&count)["secrets"]["totalCount"],
        2,
        "nothing was created"
    );
}

//! Least privilege (DESIGN §9): a RUNTIME service account sees and fetches only the
//! resources bound to it; an INSPECTOR reads what an admin reads but no value and changes
//! nothing. (`guards` proves the same for every field of the schema; these follow a
//! pipeline's runtime and an integration service through what they would do.)
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Api, DEPENDENT_EVENTS, Incoming, Replica, SECRET_EVENTS, Subscriber, UPDATE_SECRET,
};

use crate::helpers::{
    CREATE_SECRET, SECRET, SECRET_COUNT, SECRET_VALUE, Store, TestApp, UPSERT_RESOURCE,
    assert_code, both_stores, data, resource_input,
};

both_stores!(
    a_runtime_sees_and_fetches_only_what_is_bound_to_it,
    racing_binds_make_one_binding,
    an_inspector_reads_everything_but_values_and_changes_nothing,
    a_protected_resource_is_changed_only_by_admins,
    protecting_races_a_members_change,
    selected_access_pins_only_the_listed_resources,
    narrowing_follows_the_delete_rules,
    a_new_secret_can_start_with_no_resource_allowed,
    narrowing_races_deploys,
    a_runtime_watches_only_the_resource_bound_to_it,
);

const SET_ACCESS: &str = "mutation($input: SetSecretAccessInput!) {
    setSecretAccess(input: $input) {
        secret { name access allowedResources { name } }
        affectedDependents { resource { name } state } } }";
const ACCESS_DEPENDENTS: &str = "query($name: String!) {
    dependents(secretName: $name) { resource { name } state } }";

const PROTECT: &str = "mutation($id: ID!, $protected: Boolean!) {
    setResourceProtected(input: { resourceId: $id, protected: $protected }) {
        resource { name protected } } }";
const DEPLOY: &str = "mutation($id: ID!) { deployResource(input: { id: $id }) {
    deployment { id } } }";
const DELETE_RESOURCE: &str = "mutation($id: ID!) { deleteResource(input: { id: $id }) {
    deletedResourceId } }";
const STATE: &str = "query($id: ID!) { resource(id: $id) {
    name description protected references { secretName field } activeDeployment { id } } }";

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

fn upsert_vars(name: &str, description: &str, references: &[(&str, &str)]) -> Value {
    let mut input = resource_input("PIPELINE", name, references);
    input["description"] = json!(description);
    json!({ "input": input })
}

/// Protected, a pipeline's references, description, deployment and existence are the
/// admins' alone: a member's upsert, deploy and delete are each FORBIDDEN (saying why),
/// audited as DENIED, and change nothing, while the member's other resources are theirs
/// as before; once unprotected, the member deploys it again.
async fn a_protected_resource_is_changed_only_by_admins(store: Store) {
    let app = TestApp::spawn(store).await;
    let (etl, _) = two_pipelines(&app).await;
    let member = app.create_service_account("MEMBER").await;
    let as_member = |query: &'static str, variables: Value| {
        let (api, token) = (app.api.clone(), member.token.clone());
        async move { api.gql(Some(&token), query, variables).await }
    };
    for _ in 0..2 {
        let protected = app
            .admin(PROTECT, json!({ "id": etl, "protected": true }))
            .await;
        assert_eq!(
            data(&protected)["setResourceProtected"]["resource"],
            json!({ "name": "etl", "protected": true })
        );
    }
    assert_eq!(
        audited(&app, "resource.protect").await.len(),
        1,
        "set twice, changed once"
    );
    let refused = as_member(PROTECT, json!({ "id": etl, "protected": false })).await;
    assert_code(&refused, "FORBIDDEN");

    let before = app.admin(STATE, json!({ "id": etl })).await;
    let hijack = upsert_vars(
        "etl",
        "pointed elsewhere",
        &[("BILLING_KEY", "db.password")],
    );
    for (query, variables) in [
        (UPSERT_RESOURCE, hijack.clone()),
        (DEPLOY, json!({ "id": etl })),
        (DELETE_RESOURCE, json!({ "id": etl })),
    ] {
        let refused = as_member(query, variables).await;
        assert_code(&refused, "FORBIDDEN");
        let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("etl is protected"), "{message}");
    }
    assert_eq!(
        app.admin(STATE, json!({ "id": etl })).await,
        before,
        "nothing changed"
    );
    for action in ["resource.upsert", "resource.deploy", "resource.delete"] {
        let denied: Vec<Value> = audited(&app, action)
            .await
            .into_iter()
            .filter(|event| event["detail"]["reason"] == "protected")
            .collect();
        assert_eq!(denied.len(), 1, "{action} refused and audited once");
    }

    // The member's own resources are unaffected.
    let own = as_member(UPSERT_RESOURCE, upsert_vars("member-own", "mine", &[])).await;
    assert!(data(&own)["upsertResource"]["resource"]["id"].is_string());
    // Admins change it as before.
    data(&app.admin(UPSERT_RESOURCE, hijack).await);
    data(&app.admin(DEPLOY, json!({ "id": etl })).await);
    // Unprotected, it is the members' again.
    data(
        &app.admin(PROTECT, json!({ "id": etl, "protected": false }))
            .await,
    );
    assert_eq!(audited(&app, "resource.unprotect").await.len(), 1);
    data(&as_member(DEPLOY, json!({ "id": etl })).await);
}

/// Protecting a pipeline while a member changes it, ten times over: the member's change
/// either lands before the protection (its audit event first) or is refused and changes
/// nothing, never after it — the check is made on the row the writing transaction locked.
async fn protecting_races_a_members_change(store: Store) {
    let app = TestApp::spawn(store).await;
    let member = app.create_service_account("MEMBER").await;
    for round in 0..10 {
        let name = format!("raced-{round}");
        let created = app
            .admin(UPSERT_RESOURCE, upsert_vars(&name, "original", &[]))
            .await;
        let id = data(&created)["upsertResource"]["resource"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let protect = {
            let (api, token) = (app.api.clone(), app.admin_token.clone());
            let variables = json!({ "id": id, "protected": true });
            tokio::spawn(async move { api.gql(Some(&token), PROTECT, variables).await })
        };
        let change = {
            let (api, token) = (app.api.clone(), member.token.clone());
            let variables = upsert_vars(&name, "changed by the member", &[]);
            tokio::spawn(async move { api.gql(Some(&token), UPSERT_RESOURCE, variables).await })
        };
        data(&protect.await.expect("the protect task"));
        let changed = change.await.expect("the change task");
        let state = app.admin(STATE, json!({ "id": id })).await;
        let description = data(&state)["resource"]["description"].clone();
        if changed.get("errors").is_some() {
            assert_code(&changed, "FORBIDDEN");
            assert_eq!(description, "original", "round {round}: refused, unchanged");
        } else {
            assert_eq!(description, "changed by the member", "round {round}");
            let order = app
                .sql_strings(&format!(
                    "SELECT action FROM audit_events WHERE target_name = '{name}' \
                     AND outcome = 'ALLOWED' ORDER BY occurred_at, id"
                ))
                .await;
            assert_eq!(
                order,
                ["resource.upsert", "resource.upsert", "resource.protect"],
                "round {round}: the member's change landed before the protection"
            );
        }
    }
}

fn access_input(name: &str, access: &str, resources: &[&str], flags: Value) -> Value {
    let mut input = json!({ "name": name, "access": access, "resourceIds": resources });
    if let (Some(input), Some(flags)) = (input.as_object_mut(), flags.as_object()) {
        input.extend(flags.clone());
    }
    json!({ "input": input })
}

/// `(resource name, state)` of a secret's dependents, as an admin sees them.
async fn states(app: &TestApp, secret: &str) -> Vec<(String, String)> {
    let response = app
        .admin(ACCESS_DEPENDENTS, json!({ "name": secret }))
        .await;
    let mut states: Vec<(String, String)> = data(&response)["dependents"]
        .as_array()
        .expect("dependents")
        .iter()
        .map(|d| {
            let name = d["resource"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (name, d["state"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    states.sort();
    states
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// An upserted, undeployed PIPELINE `name` referencing `secret` at `field`; its id.
async fn pipeline(app: &TestApp, name: &str, secret: &str) -> String {
    let input = json!({ "input": resource_input("PIPELINE", name, &[(secret, "conn.password")]) });
    let response = app.admin(UPSERT_RESOURCE, input).await;
    data(&response)["upsertResource"]["resource"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// With selected access only the listed pipeline deploys with the secret; to a member,
/// another pipeline's reference is refused exactly like a reference to a secret that does
/// not exist (same code, same message but for the name, nothing pinned), while an admin
/// sees it as NOT_ALLOWED. Refusals: ALL_RESOURCES with a list, an unknown resource, a
/// member.
async fn selected_access_pins_only_the_listed_resources(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("SHARED", "shared-value").await;
    let allowed = pipeline(&app, "allowed-pipe", "SHARED").await;
    let other = pipeline(&app, "other-pipe", "SHARED").await;
    let ghost = pipeline(&app, "ghost-pipe", "NEVER_MADE").await;
    let member = app.create_service_account("MEMBER").await;

    let set = app
        .admin(
            SET_ACCESS,
            access_input("SHARED", "SELECTED_RESOURCES", &[&allowed], json!({})),
        )
        .await;
    assert_eq!(
        data(&set)["setSecretAccess"]["secret"],
        json!({ "name": "SHARED", "access": "SELECTED_RESOURCES",
                "allowedResources": [{ "name": "allowed-pipe" }] })
    );
    assert_eq!(audited(&app, "secret.set_access").await.len(), 1);

    let deploy_as_member = |id: String| {
        let (api, token) = (app.api.clone(), member.token.clone());
        async move { api.gql(Some(&token), DEPLOY, json!({ "id": id })).await }
    };
    let not_allowed = deploy_as_member(other.clone()).await;
    let missing = deploy_as_member(ghost.clone()).await;
    assert_code(&not_allowed, "MISSING_SECRETS");
    assert_code(&missing, "MISSING_SECRETS");
    assert_eq!(
        not_allowed.to_string().replace("SHARED", "NAME"),
        missing.to_string().replace("NEVER_MADE", "NAME"),
        "not allowed reads exactly like missing"
    );
    assert!(!not_allowed.to_string().contains("shared-value"));
    assert_eq!(
        states(&app, "SHARED").await,
        pairs(&[
            ("allowed-pipe", "NOT_DEPLOYED"),
            ("other-pipe", "NOT_ALLOWED")
        ])
    );
    let deployed = deploy_as_member(allowed.clone()).await;
    assert!(data(&deployed)["deployResource"]["deployment"]["id"].is_string());
    let fetched = app.admin(RESOURCE_SECRETS, json!({ "id": allowed })).await;
    assert_eq!(
        data(&fetched)["resourceSecrets"][0]["value"],
        "shared-value"
    );
    assert_eq!(
        states(&app, "SHARED").await,
        pairs(&[
            ("allowed-pipe", "UP_TO_DATE"),
            ("other-pipe", "NOT_ALLOWED")
        ])
    );

    let listed_with_all = access_input("SHARED", "ALL_RESOURCES", &[&allowed], json!({}));
    assert_code(
        &app.admin(SET_ACCESS, listed_with_all).await,
        "BAD_USER_INPUT",
    );
    let unknown = access_input(
        "SHARED",
        "SELECTED_RESOURCES",
        &[&allowed, &app_foreign_resource(&app).await],
        json!({}),
    );
    assert_code(&app.admin(SET_ACCESS, unknown).await, "NOT_FOUND");
    let by_member = app
        .gql(
            Some(&member.token),
            SET_ACCESS,
            access_input("SHARED", "ALL_RESOURCES", &[], json!({})),
        )
        .await;
    assert_code(&by_member, "FORBIDDEN");
    assert_eq!(
        audited(&app, "secret.set_access").await.len(),
        1,
        "refusals change nothing"
    );

    // All resources again: the other pipeline deploys.
    data(
        &app.admin(
            SET_ACCESS,
            access_input("SHARED", "ALL_RESOURCES", &[], json!({})),
        )
        .await,
    );
    data(&deploy_as_member(other).await);
}

/// A resource of another organization (globex): unknown to acme.
async fn app_foreign_resource(app: &TestApp) -> String {
    let input = json!({ "input": resource_input("PIPELINE", "globex-pipe", &[]) });
    let response = app
        .gql(Some(&app.other_admin_token), UPSERT_RESOURCE, input)
        .await;
    data(&response)["upsertResource"]["resource"]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// Narrowing a deployed dependent away: `dryRun` lists it and changes nothing; without
/// `force`, HAS_DEPENDENTS and nothing changes; with it, the deployment fails (BROKEN),
/// its values are refused, the change is audited and announced.
async fn narrowing_follows_the_delete_rules(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("NARROWED", "narrowed-value").await;
    let etl = pipeline(&app, "etl", "NARROWED").await;
    data(&app.admin(DEPLOY, json!({ "id": etl })).await);
    let narrow = |flags: Value| access_input("NARROWED", "SELECTED_RESOURCES", &[], flags);

    let dry = app
        .admin(SET_ACCESS, narrow(json!({ "dryRun": true })))
        .await;
    assert_eq!(
        data(&dry)["setSecretAccess"]["affectedDependents"],
        json!([{ "resource": { "name": "etl" }, "state": "UP_TO_DATE" }])
    );
    assert_eq!(
        data(&dry)["setSecretAccess"]["secret"]["access"],
        "ALL_RESOURCES"
    );
    let blocked = app.admin(SET_ACCESS, narrow(json!({}))).await;
    assert_code(&blocked, "HAS_DEPENDENTS");
    assert_eq!(
        states(&app, "NARROWED").await,
        pairs(&[("etl", "UP_TO_DATE")])
    );
    assert!(audited(&app, "secret.set_access").await.is_empty());

    let forced = app
        .admin(SET_ACCESS, narrow(json!({ "force": true })))
        .await;
    assert_eq!(
        data(&forced)["setSecretAccess"]["affectedDependents"],
        json!([{ "resource": { "name": "etl" }, "state": "BROKEN" }])
    );
    assert_eq!(states(&app, "NARROWED").await, pairs(&[("etl", "BROKEN")]));
    let state = app.admin(STATE, json!({ "id": etl })).await;
    let deployment = &data(&state)["resource"]["activeDeployment"];
    assert!(
        deployment.is_object(),
        "the failed deployment stays current: {state}"
    );
    let fetched = app.admin(RESOURCE_SECRETS, json!({ "id": etl })).await;
    assert!(fetched.get("errors").is_some(), "{fetched}");
    assert!(!fetched.to_string().contains("narrowed-value"));
    let events = audited(&app, "secret.set_access").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["force"], true);
    assert_eq!(
        events[0]["detail"]["brokenDeployments"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let kinds = app
        .sql_strings("SELECT kind FROM event_outbox ORDER BY id")
        .await;
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("dependent.broken"),
        "{kinds:?}"
    );
    // A redeploy is refused like a missing secret, until access includes it again.
    assert_code(
        &app.admin(DEPLOY, json!({ "id": etl })).await,
        "MISSING_SECRETS",
    );
    let widened = access_input("NARROWED", "SELECTED_RESOURCES", &[&etl], json!({}));
    data(&app.admin(SET_ACCESS, widened).await);
    data(&app.admin(DEPLOY, json!({ "id": etl })).await);
    assert_eq!(
        states(&app, "NARROWED").await,
        pairs(&[("etl", "UP_TO_DATE")])
    );
}

/// `STRONGROOM_DEFAULT_SECRET_ACCESS=SELECTED_RESOURCES`: a new secret may be used by no
/// resource until an admin lists one.
async fn a_new_secret_can_start_with_no_resource_allowed(store: Store) {
    let settings = [("STRONGROOM_DEFAULT_SECRET_ACCESS", "SELECTED_RESOURCES")];
    let app = TestApp::spawn_with(store, &settings).await;
    app.create_secret("LOCKED_DOWN", "v1").await;
    let secret = app
        .admin(
            "query { secret(name: \"LOCKED_DOWN\") { access allowedResources { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&secret)["secret"],
        json!({ "access": "SELECTED_RESOURCES", "allowedResources": [] })
    );
    let etl = pipeline(&app, "etl", "LOCKED_DOWN").await;
    assert_code(
        &app.admin(DEPLOY, json!({ "id": etl })).await,
        "MISSING_SECRETS",
    );
    let listed = access_input("LOCKED_DOWN", "SELECTED_RESOURCES", &[&etl], json!({}));
    data(&app.admin(SET_ACCESS, listed).await);
    data(&app.admin(DEPLOY, json!({ "id": etl })).await);
}

/// Narrowing (without force) races a deploy of the resource it shuts out, 15 rounds: the
/// deploy pins the secret and the narrowing is refused (HAS_DEPENDENTS), or the narrowing
/// lands and the deploy is refused (MISSING_SECRETS) — never both.
async fn narrowing_races_deploys(store: Store) {
    let app = TestApp::spawn(store).await;
    let member = app.create_service_account("MEMBER").await;
    let servers = [&app.api, &app.api];
    race_narrowing_against_deploys(&app, &servers, &member.token, 15).await;
}

/// The same race across three replicas on one PostgreSQL database: the narrowing on one
/// server, the deploy on another.
#[tokio::test(flavor = "multi_thread")]
async fn narrowing_races_deploys_across_replicas() {
    let app = TestApp::spawn(Store::Postgres).await;
    let replicas: Vec<Replica> = (0..2)
        .map(|_| app.start_replica(&[] as &[(&str, &str)]))
        .collect();
    let member = app.create_service_account("MEMBER").await;
    let servers = [&replicas[0].api, &replicas[1].api];
    race_narrowing_against_deploys(&app, &servers, &member.token, 10).await;
}

async fn race_narrowing_against_deploys(
    app: &TestApp,
    servers: &[&Api; 2],
    member_token: &str,
    rounds: usize,
) {
    let (mut narrowed, mut deployed) = (0, 0);
    for round in 0..rounds {
        let secret = format!("RACED_{round}");
        app.create_secret(&secret, "raced").await;
        let id = pipeline(app, &format!("raced-{round}"), &secret).await;
        let narrow = {
            let (api, token) = (servers[0].clone(), app.admin_token.clone());
            let input = access_input(&secret, "SELECTED_RESOURCES", &[], json!({}));
            tokio::spawn(async move { api.gql(Some(&token), SET_ACCESS, input).await })
        };
        let deploy = {
            let (api, token) = (servers[1].clone(), member_token.to_owned());
            let variables = json!({ "id": id });
            tokio::spawn(async move { api.gql(Some(&token), DEPLOY, variables).await })
        };
        let narrow = narrow.await.expect("the narrowing task");
        let deploy = deploy.await.expect("the deploy task");
        let state = states(app, &secret).await;
        match (
            narrow.get("errors").is_none(),
            deploy.get("errors").is_none(),
        ) {
            (true, false) => {
                assert_code(&deploy, "MISSING_SECRETS");
                assert_eq!(state, pairs(&[(&format!("raced-{round}"), "NOT_ALLOWED")]));
                narrowed += 1;
            }
            (false, true) => {
                assert_code(&narrow, "HAS_DEPENDENTS");
                assert_eq!(state, pairs(&[(&format!("raced-{round}"), "UP_TO_DATE")]));
                deployed += 1;
            }
            outcome => panic!("round {round}: {outcome:?}\n{narrow}\n{deploy}"),
        }
    }
    // No active deployment pins a secret whose access leaves its resource out.
    let leaks = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM deployment_pins p
             JOIN deployments d ON d.id = p.deployment_id AND d.state = 'ACTIVE'
             JOIN secrets s ON s.id = p.secret_id AND s.access = 'SELECTED_RESOURCES'
             LEFT JOIN secret_allowed_resources a
               ON a.secret_id = s.id AND a.resource_id = d.resource_id
             WHERE a.id IS NULL",
        )
        .await;
    assert_eq!(leaks, 0);
    println!("narrowing vs deploy: {narrowed} narrowed first, {deployed} deployed first");
}

/// The code of the refusal `ws` gets for subscription `id` (an `error` message, or a
/// `next` carrying errors).
async fn refusal_of(ws: &mut Subscriber, id: &str) -> String {
    loop {
        match ws.recv().await {
            Incoming::Error { id: got, payload } if got == id => {
                return payload[0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            Incoming::Next { id: got, payload } if got == id => {
                return payload["errors"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            // An earlier refused subscription's end.
            Incoming::Complete { id: got } if got != id => {}
            other => panic!("expected subscription {id} refused, got {other:?}"),
        }
    }
}

/// A RUNTIME account may hold a subscription connection, for `dependentEvents` of a
/// resource bound to it and the `secretEvents` of secrets that resource references (what
/// `strongroom run --watch` needs), and nothing else: no organization-wide or unbound
/// dependent events, no events of secrets only other resources reference. It sees its
/// pipeline go STALE when the secret is updated (and UP_TO_DATE when redeployed), and the
/// update itself.
async fn a_runtime_watches_only_the_resource_bound_to_it(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("WATCHED_KEY", "v1").await;
    app.create_secret("OTHER_KEY", "o1").await;
    let watched = app
        .deploy_pipeline("watched", &[("WATCHED_KEY", "k")])
        .await;
    let unwatched = app
        .deploy_pipeline("unwatched", &[("WATCHED_KEY", "k"), ("OTHER_KEY", "o")])
        .await;
    let runtime = app.create_service_account("RUNTIME").await;
    data(&app.admin(BIND, bind_vars(&watched, &runtime.id)).await);

    let mut ws = Subscriber::start(&app.api, &runtime.token).await;
    for (query, variables) in [
        (SECRET_EVENTS, json!({})),
        (SECRET_EVENTS, json!({ "names": ["OTHER_KEY"] })),
        (
            SECRET_EVENTS,
            json!({ "names": ["WATCHED_KEY", "OTHER_KEY"] }),
        ),
        (DEPENDENT_EVENTS, json!({})),
        (DEPENDENT_EVENTS, json!({ "resourceId": unwatched })),
    ] {
        let id = ws.subscribe(query, variables.clone()).await;
        assert_eq!(refusal_of(&mut ws, &id).await, "FORBIDDEN", "{variables}");
    }
    let dependents = ws
        .subscribe(DEPENDENT_EVENTS, json!({ "resourceId": watched }))
        .await;
    let secrets = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["WATCHED_KEY"] }))
        .await;
    // The server starts listening when it first runs the subscription: change the secret
    // (STALE) and redeploy (UP_TO_DATE) until an event of each has arrived, a bounded
    // number of times.
    let (mut dependent_event, mut secret_event) = (None, None);
    for round in 0..20 {
        let input =
            json!({ "input": { "name": "WATCHED_KEY", "value": format!("v{}", round + 2) } });
        data(&app.admin(UPDATE_SECRET, input).await);
        data(&app.admin(DEPLOY, json!({ "id": watched })).await);
        while let Some(message) = next_message(&mut ws).await {
            let Incoming::Next { id, payload } = message else {
                panic!("not an event: {message:?}");
            };
            assert!(payload.get("errors").is_none(), "{payload}");
            if id == dependents {
                dependent_event.get_or_insert(payload);
            } else {
                assert_eq!(id, secrets, "{payload}");
                secret_event.get_or_insert(payload);
            }
        }
        if dependent_event.is_some() && secret_event.is_some() {
            break;
        }
    }
    let (Some(dependent_event), Some(secret_event)) = (dependent_event, secret_event) else {
        panic!("the runtime did not hear both feeds");
    };
    let dependent = &dependent_event["data"]["dependentEvents"]["dependent"];
    assert_eq!(
        dependent["resource"]["name"], "watched",
        "{dependent_event}"
    );
    assert!(
        ["STALE", "UP_TO_DATE"].contains(&dependent["state"].as_str().unwrap_or_default()),
        "{dependent_event}"
    );
    let secret = &secret_event["data"]["secretEvents"];
    assert_eq!(
        (&secret["secretName"], &secret["kind"]),
        (&json!("WATCHED_KEY"), &json!("UPDATED")),
        "{secret_event}"
    );

    // Unbound, it hears nothing more of either.
    data(&app.admin(UNBIND, bind_vars(&watched, &runtime.id)).await);
    let input = json!({ "input": { "name": "WATCHED_KEY", "value": "after-unbind" } });
    data(&app.admin(UPDATE_SECRET, input).await);
    assert!(
        next_message(&mut ws).await.is_none(),
        "an unbound runtime heard an event"
    );
}

/// The next message within half a second, past the ends of refused subscriptions.
async fn next_message(ws: &mut Subscriber) -> Option<Incoming> {
    loop {
        match ws.recv_within(Duration::from_millis(500)).await? {
            Incoming::Complete { .. } => {}
            message => return Some(message),
        }
    }
}

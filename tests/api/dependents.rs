//! Resources, their deployments pinned to secret versions, and the dependents of a secret
//! (DESIGN.md §1–3): how each dependent stands as its secret changes, what retention keeps,
//! what a delete breaks, who may see what, and that a page of secrets with their
//! dependents costs a constant number of SQL statements.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, DEPLOY_RESOURCE, QUIET, Store, TestApp, UPSERT_RESOURCE, assert_code,
    both_stores, data, error_codes, id, resource_input,
};

both_stores!(
    the_story,
    member_cannot_see_secrets_through_dependents,
    upsert_replaces_by_kind_and_name,
    no_n_plus_one,
);

/// The fields of a `Dependent` that every document here selects.
macro_rules! dependent_fields {
    () => {
        "resource { id kind name } field state deployedVersion deployedAt"
    };
}

const DELETE_RESOURCE: &str =
    "mutation($id: ID!) { deleteResource(input: { id: $id }) { deletedResourceId } }";
const RESOURCE: &str = "query($id: ID!) { resource(id: $id) {
    id kind name description references { secretName field }
    activeDeployment { id state deployedAt failedAt failureReason pins { secretName version } } } }";
const REFERENCED_SECRETS: &str = "query($id: ID!) { resource(id: $id) {
    name references { secretName field secret { name } } } }";
const RESOURCES: &str = "query($kind: ResourceKind) {
    resources(kind: $kind, first: 50) { totalCount nodes { id kind name } } }";
const DEPENDENTS: &str = concat!(
    "query($name: String!) { dependents(secretName: $name) { ",
    dependent_fields!(),
    " } }"
);
const RESOURCE_SECRETS: &str =
    "query($id: ID!) { resourceSecrets(resourceId: $id) { name field version value } }";
const UPDATE_SECRET: &str = concat!(
    "mutation($name: String!, $value: String!) {
        updateSecret(input: { name: $name, value: $value }) {
            secret { currentVersion } staleDependents { ",
    dependent_fields!(),
    " } } }"
);
const DELETE_SECRET: &str = concat!(
    "mutation($input: DeleteSecretInput!) { deleteSecret(input: $input) {
        deletedSecretId affectedDependents { ",
    dependent_fields!(),
    " } } }"
);
const VERSIONS: &str = "query($name: String!) { secret(name: $name) {
    currentVersion versions(first: 100) { nodes { version } } } }";
const ALLOWED_EVENTS: &str = "query($action: String!) {
    auditEvents(first: 50, filter: { action: $action, outcome: ALLOWED }) {
        nodes { action outcome targetName detail } } }";
const SECRETS_WITH_DEPENDENTS: &str = "query($first: Int) {
    secrets(first: $first) { nodes { name dependents { resource { name } state } } } }";

async fn upsert(app: &TestApp, token: &str, input: Value) -> Value {
    app.gql(Some(token), UPSERT_RESOURCE, json!({ "input": input }))
        .await
}

/// Upserts a resource as `token` and returns it.
async fn upsert_ok(app: &TestApp, token: &str, input: Value) -> Value {
    data(&upsert(app, token, input).await)["upsertResource"]["resource"].clone()
}

async fn deploy(app: &TestApp, token: &str, resource_id: &str) -> Value {
    app.gql(Some(token), DEPLOY_RESOURCE, json!({ "id": resource_id }))
        .await
}

/// Deploys a resource as `token`; returns the new deployment, checked to be its active one.
async fn deploy_ok(app: &TestApp, token: &str, resource_id: &str) -> Value {
    let response = deploy(app, token, resource_id).await;
    let payload = &data(&response)["deployResource"];
    let deployment = payload["deployment"].clone();
    assert_eq!(deployment["state"], "ACTIVE", "{payload:#}");
    assert_eq!(
        payload["resource"]["activeDeployment"]["id"], deployment["id"],
        "{payload:#}"
    );
    deployment
}

async fn delete_resource(app: &TestApp, token: &str, resource_id: &str) -> Value {
    app.gql(Some(token), DELETE_RESOURCE, json!({ "id": resource_id }))
        .await
}

/// `resource(id:)` as `token` (null when it is not visible).
async fn resource(app: &TestApp, token: &str, resource_id: &str) -> Value {
    let response = app
        .gql(Some(token), RESOURCE, json!({ "id": resource_id }))
        .await;
    data(&response)["resource"].clone()
}

/// `resources(kind:)` as `token`: `totalCount` and `nodes { id kind name }`.
async fn resources(app: &TestApp, token: &str, kind: Option<&str>) -> Value {
    let response = app
        .gql(Some(token), RESOURCES, json!({ "kind": kind }))
        .await;
    data(&response)["resources"].clone()
}

/// `dependents(secretName:)` as the admin.
async fn dependents(app: &TestApp, secret_name: &str) -> Value {
    let response = app.admin(DEPENDENTS, json!({ "name": secret_name })).await;
    data(&response)["dependents"].clone()
}

/// The dependent of `resource_name` in a list of dependents; there must be exactly one.
#[track_caller]
fn entry<'a>(dependents: &'a Value, resource_name: &str) -> &'a Value {
    let matching: Vec<&Value> = dependents
        .as_array()
        .unwrap_or_else(|| panic!("a list of dependents: {dependents:#}"))
        .iter()
        .filter(|d| d["resource"]["name"] == resource_name)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "one dependent named {resource_name} in {dependents:#}"
    );
    matching[0]
}

/// `(state, deployedVersion)` of the dependent `resource_name`.
#[track_caller]
fn standing<'a>(dependents: &'a Value, resource_name: &str) -> (&'a str, Option<i64>) {
    let dependent = entry(dependents, resource_name);
    let state = dependent["state"].as_str().expect("a state");
    (state, dependent["deployedVersion"].as_i64())
}

/// The resource names of a list of dependents, sorted.
fn resource_names(dependents: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = dependents
        .as_array()
        .unwrap_or_else(|| panic!("a list of dependents: {dependents:#}"))
        .iter()
        .map(|d| d["resource"]["name"].as_str().expect("a resource name"))
        .collect();
    names.sort_unstable();
    names
}

async fn resource_secrets(app: &TestApp, token: &str, resource_id: &str) -> Value {
    let variables = json!({ "id": resource_id });
    app.gql(Some(token), RESOURCE_SECRETS, variables).await
}

/// `updateSecret` as the admin: the payload.
async fn update_secret(app: &TestApp, name: &str, value: &str) -> Value {
    let response = app
        .admin(UPDATE_SECRET, json!({ "name": name, "value": value }))
        .await;
    data(&response)["updateSecret"].clone()
}

async fn delete_secret(app: &TestApp, input: Value) -> Value {
    app.admin(DELETE_SECRET, json!({ "input": input })).await
}

/// The version numbers a secret lists, newest first.
async fn listed_versions(app: &TestApp, name: &str) -> Vec<i64> {
    let response = app.admin(VERSIONS, json!({ "name": name })).await;
    let nodes = data(&response)["secret"]["versions"]["nodes"]
        .as_array()
        .expect("versions")
        .clone();
    nodes
        .iter()
        .map(|v| v["version"].as_i64().expect("a version number"))
        .collect()
}

/// The named `extensions` entry of the first error.
fn extension<'a>(response: &'a Value, name: &str) -> &'a Value {
    &response["errors"][0]["extensions"][name]
}

/// `object` reduced to `keys` (a server may add fields).
fn pick(object: &Value, keys: &[&str]) -> Value {
    keys.iter()
        .map(|&key| (key.to_owned(), object[key].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The uuid inside an opaque global id (base64url of `Kind:uuid`), for matching the
/// facts an audit event records.
fn uuid_of(global_id: &str) -> String {
    let decoded = URL_SAFE_NO_PAD.decode(global_id).expect("a base64url id");
    let text = String::from_utf8(decoded).expect("a UTF-8 id");
    let (_, uuid) = text.split_once(':').expect("a `Kind:uuid` id");
    uuid.to_owned()
}

/// The value of `HOOK_KEY` version `version`: no value is a substring of another.
fn hook_value(version: i64) -> String {
    format!("whsec-{version:02}-c0ffee7a")
}

/// Create, reference, deploy, update, redeploy, retain, refuse to delete, force-delete:
/// each step checked against the dependents' states and the pinned values.
async fn the_story(store: Store) {
    const HOOK: &str = "HOOK_KEY";
    const ALERTS_FIELD: &str = "sinks.alerts.hash_key";
    const ARCHIVE_FIELD: &str = "sinks.archive.hash_key";
    let app = TestApp::spawn(store).await;
    let admin = app.admin_token.as_str();
    let member = app.create_service_account("MEMBER").await;
    let secret = app.create_secret(HOOK, &hook_value(1)).await;
    assert_eq!(secret["currentVersion"], 1);

    let pipeline = |name, field| resource_input("PIPELINE", name, &[(HOOK, field)]);
    let alerts = upsert_ok(&app, &member.token, pipeline("alerts", ALERTS_FIELD)).await;
    let archive = upsert_ok(&app, &member.token, pipeline("archive", ARCHIVE_FIELD)).await;
    let alerts_id = id(&alerts);
    assert_ne!(alerts_id, id(&archive));

    // The member deploys `alerts`: it is pinned to version 1; `archive` is not deployed.
    let first = deploy_ok(&app, &member.token, &alerts_id).await;
    assert_eq!(first["pins"], json!([{ "secretName": HOOK, "version": 1 }]));
    assert_eq!(first["deployedBy"]["id"], member.id.as_str());
    let listed = dependents(&app, HOOK).await;
    assert_eq!(resource_names(&listed), ["alerts", "archive"]);
    assert_eq!(standing(&listed, "alerts"), ("UP_TO_DATE", Some(1)));
    assert_eq!(standing(&listed, "archive"), ("NOT_DEPLOYED", None));
    let alerts_entry = entry(&listed, "alerts");
    assert_eq!(alerts_entry["field"], ALERTS_FIELD);
    assert_eq!(alerts_entry["resource"]["kind"], "PIPELINE");
    assert_eq!(alerts_entry["deployedAt"], first["deployedAt"]);
    assert!(first["deployedAt"].is_string(), "{first:#}");
    assert_eq!(entry(&listed, "archive")["field"], ARCHIVE_FIELD);
    assert!(entry(&listed, "archive")["deployedAt"].is_null());

    // An integration that references a missing secret cannot be deployed.
    let input = resource_input("INTEGRATION", "billing", &[("MISSING_ONE", "auth.token")]);
    let integration_id = id(&upsert_ok(&app, &member.token, input).await);
    let refused = deploy(&app, &member.token, &integration_id).await;
    assert_code(&refused, "MISSING_SECRETS");
    let missing = extension(&refused, "missingSecrets");
    assert!(
        missing
            .as_array()
            .is_some_and(|names| names.contains(&json!("MISSING_ONE"))),
        "{refused:#}"
    );
    let integration = resource(&app, &member.token, &integration_id).await;
    assert!(integration["activeDeployment"].is_null(), "{integration:#}");

    // An update leaves `alerts` on version 1 (stale) until it is redeployed.
    let updated = update_secret(&app, HOOK, &hook_value(2)).await;
    assert_eq!(updated["secret"]["currentVersion"], 2);
    let stale = &updated["staleDependents"];
    assert_eq!(resource_names(stale), ["alerts"]);
    assert_eq!(standing(stale, "alerts"), ("STALE", Some(1)));
    let listed = dependents(&app, HOOK).await;
    assert_eq!(standing(&listed, "alerts"), ("STALE", Some(1)));
    assert_eq!(standing(&listed, "archive"), ("NOT_DEPLOYED", None));
    let pinned = |version: i64| {
        let value = hook_value(version);
        json!([{ "name": HOOK, "field": ALERTS_FIELD, "version": version, "value": value }])
    };
    let fetched = resource_secrets(&app, admin, &alerts_id).await;
    assert_eq!(data(&fetched)["resourceSecrets"], pinned(1));

    let second = deploy_ok(&app, &member.token, &alerts_id).await;
    assert_eq!(
        second["pins"],
        json!([{ "secretName": HOOK, "version": 2 }])
    );
    let listed = dependents(&app, HOOK).await;
    assert_eq!(standing(&listed, "alerts"), ("UP_TO_DATE", Some(2)));
    let fetched = resource_secrets(&app, admin, &alerts_id).await;
    assert_eq!(data(&fetched)["resourceSecrets"], pinned(2));

    // Version 2 is older than the newest 10, and kept because `alerts` is pinned to it.
    for version in 3..=14 {
        let updated = update_secret(&app, HOOK, &hook_value(version)).await;
        assert_eq!(updated["secret"]["currentVersion"], version);
    }
    let fetched = resource_secrets(&app, admin, &alerts_id).await;
    assert_eq!(data(&fetched)["resourceSecrets"], pinned(2));
    let mut retained: Vec<i64> = (5..=14).rev().collect();
    retained.push(2);
    assert_eq!(listed_versions(&app, HOOK).await, retained);
    let listed = dependents(&app, HOOK).await;
    assert_eq!(standing(&listed, "alerts"), ("STALE", Some(2)));

    // A dry run lists the impact and deletes nothing.
    let dry_run = delete_secret(&app, json!({ "name": HOOK, "dryRun": true })).await;
    let payload = &data(&dry_run)["deleteSecret"];
    assert!(payload["deletedSecretId"].is_null(), "{payload:#}");
    let affected = &payload["affectedDependents"];
    assert_eq!(resource_names(affected), ["alerts", "archive"]);
    assert_eq!(standing(affected, "alerts"), ("STALE", Some(2)));
    assert_eq!(app.reveal(HOOK).await, hook_value(14));

    // Without `force`, a deployed dependent stops the delete.
    let refused = delete_secret(&app, json!({ "name": HOOK })).await;
    assert_code(&refused, "HAS_DEPENDENTS");
    let listed = extension(&refused, "dependents");
    let alerts_listed = listed
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == "alerts"))
        .unwrap_or_else(|| panic!("alerts among the dependents: {refused:#}"));
    let keys = [
        "resourceId",
        "kind",
        "name",
        "field",
        "state",
        "deployedVersion",
    ];
    assert_eq!(
        pick(alerts_listed, &keys),
        json!({ "resourceId": alerts_id, "kind": "PIPELINE", "name": "alerts",
                "field": ALERTS_FIELD, "state": "STALE", "deployedVersion": 2 })
    );
    assert_eq!(app.reveal(HOOK).await, hook_value(14));
    assert_eq!(listed_versions(&app, HOOK).await, retained);

    // With `force`, it goes, and breaks `alerts`.
    let forced = delete_secret(&app, json!({ "name": HOOK, "force": true })).await;
    let payload = &data(&forced)["deleteSecret"];
    assert_eq!(payload["deletedSecretId"], secret["id"]);
    assert_eq!(
        standing(&payload["affectedDependents"], "alerts").0,
        "BROKEN"
    );
    let listed = dependents(&app, HOOK).await;
    assert_eq!(standing(&listed, "alerts").0, "BROKEN");
    let broken = resource(&app, &member.token, &alerts_id).await;
    let deployment = &broken["activeDeployment"];
    assert_eq!(deployment["state"], "FAILED", "{broken:#}");
    assert_eq!(deployment["id"], second["id"], "{broken:#}");

    let fetched = resource_secrets(&app, admin, &alerts_id).await;
    assert_code(&fetched, "MISSING_SECRETS");
    let missing = extension(&fetched, "missingSecrets");
    assert_eq!(missing, &json!([HOOK]), "{fetched:#}");
    let body = fetched.to_string();
    for version in 1..=14 {
        assert!(
            !body.contains(&hook_value(version)),
            "value v{version} in {body}"
        );
    }

    let audit = app
        .admin(ALLOWED_EVENTS, json!({ "action": "secret.delete" }))
        .await;
    let events = &data(&audit)["auditEvents"]["nodes"];
    let [event] = events.as_array().expect("audit events").as_slice() else {
        panic!("one allowed secret.delete event: {events:#}");
    };
    assert_eq!(event["targetName"], HOOK);
    assert_eq!(event["detail"]["force"], true, "{event:#}");
    let detail = event["detail"].to_string();
    let broken_id = id(deployment);
    assert!(
        detail.contains(&broken_id) || detail.contains(&uuid_of(&broken_id)),
        "the broken deployment {broken_id} in {event:#}"
    );
}

/// Members and viewers may see resources and secret names, never a secret; viewers may
/// not change resources.
async fn member_cannot_see_secrets_through_dependents(store: Store) {
    const HOOK: &str = "HOOK_KEY";
    const FIELD: &str = "sinks.alerts.hash_key";
    const VALUE: &str = "whsec-member-view-5e1d";
    let app = TestApp::spawn(store).await;
    app.create_secret(HOOK, VALUE).await;
    let member = app.new_principal_token("MEMBER").await;
    let viewer = app.new_principal_token("VIEWER").await;
    let input = resource_input("PIPELINE", "alerts", &[(HOOK, FIELD)]);
    let alerts_id = id(&upsert_ok(&app, &member, input).await);
    let deployment = deploy_ok(&app, &member, &alerts_id).await;

    let variables = json!({ "id": alerts_id });
    let as_admin = app.admin(REFERENCED_SECRETS, variables.clone()).await;
    assert_eq!(
        data(&as_admin)["resource"]["references"],
        json!([{ "secretName": HOOK, "field": FIELD, "secret": { "name": HOOK } }])
    );

    // A viewer reads resources...
    let seen = resource(&app, &viewer, &alerts_id).await;
    assert_eq!(seen["name"], "alerts");
    assert_eq!(seen["activeDeployment"]["id"], deployment["id"]);
    let listing = resources(&app, &viewer, None).await;
    assert_eq!(listing["totalCount"], 1);
    assert_eq!(listing["nodes"][0]["id"], alerts_id.as_str());

    // ...and changes none.
    let input = resource_input("PIPELINE", "by_viewer", &[(HOOK, FIELD)]);
    assert_code(&upsert(&app, &viewer, input).await, "FORBIDDEN");
    assert_code(&deploy(&app, &viewer, &alerts_id).await, "FORBIDDEN");
    assert_code(
        &delete_resource(&app, &viewer, &alerts_id).await,
        "FORBIDDEN",
    );
    assert_eq!(resources(&app, &viewer, None).await["totalCount"], 1);
    let unchanged = resource(&app, &viewer, &alerts_id).await;
    assert_eq!(unchanged["activeDeployment"]["id"], deployment["id"]);

    // Neither a member nor a viewer reaches the secret, by any path.
    for token in [&member, &viewer] {
        let listed = app
            .gql(Some(token), DEPENDENTS, json!({ "name": HOOK }))
            .await;
        assert_code(&listed, "FORBIDDEN");
        let fetched = resource_secrets(&app, token, &alerts_id).await;
        assert_code(&fetched, "FORBIDDEN");
        let referenced = app
            .gql(Some(token), REFERENCED_SECRETS, variables.clone())
            .await;
        for response in [&listed, &fetched, &referenced] {
            assert!(!response.to_string().contains(VALUE), "{response:#}");
        }

        // One refused field, its siblings intact.
        assert_eq!(error_codes(&referenced), ["FORBIDDEN"], "{referenced:#}");
        assert_eq!(
            referenced["errors"][0]["path"],
            json!(["resource", "references", 0, "secret"])
        );
        assert_eq!(
            referenced["data"]["resource"],
            json!({ "name": "alerts",
                    "references": [{ "secretName": HOOK, "field": FIELD, "secret": null }] }),
            "a refused nullable field is null, not missing (GraphQL spec, \"Handling Field \
             Errors\"; Apollo Client reports a missing field)"
        );
    }
}

/// `(secretName, field)` of a resource's references, sorted.
fn references(resource: &Value) -> Vec<(String, String)> {
    let text = |value: &Value| value.as_str().expect("a string").to_owned();
    let mut references: Vec<(String, String)> = resource["references"]
        .as_array()
        .unwrap_or_else(|| panic!("references in {resource:#}"))
        .iter()
        .map(|r| (text(&r["secretName"]), text(&r["field"])))
        .collect();
    references.sort();
    references
}

/// Upserts replace by kind and name; kinds filter; bad input is refused; deletes delete;
/// another organization sees nothing.
async fn upsert_replaces_by_kind_and_name(store: Store) {
    let app = TestApp::spawn(store).await;
    let member = app.new_principal_token("MEMBER").await;

    let input = resource_input("PIPELINE", "etl", &[("DB_PASSWORD", "source.password")]);
    let created = upsert_ok(&app, &member, input).await;
    let pipeline_id = id(&created);
    assert_eq!(created["kind"], "PIPELINE");
    assert!(created["description"].is_null());

    let mut input = resource_input(
        "PIPELINE",
        "etl",
        &[("API_KEY", "sink.key"), ("DB_PASSWORD", "source.dsn")],
    );
    input["description"] = json!("nightly load");
    let replaced = upsert_ok(&app, &member, input).await;
    assert_eq!(id(&replaced), pipeline_id);
    let expected = vec![
        ("API_KEY".to_owned(), "sink.key".to_owned()),
        ("DB_PASSWORD".to_owned(), "source.dsn".to_owned()),
    ];
    for pipeline in [&replaced, &resource(&app, &member, &pipeline_id).await] {
        assert_eq!(pipeline["name"], "etl");
        assert_eq!(pipeline["description"], "nightly load");
        assert_eq!(references(pipeline), expected, "{pipeline:#}");
    }

    let input = resource_input("INTEGRATION", "etl", &[("API_KEY", "auth.key")]);
    let integration = upsert_ok(&app, &member, input).await;
    let integration_id = id(&integration);
    assert_ne!(integration_id, pipeline_id);
    assert_eq!(integration["kind"], "INTEGRATION");

    let node = |id: &str, kind: &str| json!({ "id": id, "kind": kind, "name": "etl" });
    let pipelines = resources(&app, &member, Some("PIPELINE")).await;
    assert_eq!(pipelines["totalCount"], 1);
    assert_eq!(pipelines["nodes"], json!([node(&pipeline_id, "PIPELINE")]));
    let integrations = resources(&app, &member, Some("INTEGRATION")).await;
    assert_eq!(integrations["totalCount"], 1);
    let integration_node = node(&integration_id, "INTEGRATION");
    assert_eq!(integrations["nodes"], json!([integration_node]));
    assert_eq!(resources(&app, &member, None).await["totalCount"], 2);

    for input in [
        resource_input("PIPELINE", "", &[("API_KEY", "sink.key")]),
        resource_input("PIPELINE", "loader", &[("API_KEY", "")]),
        resource_input("PIPELINE", "loader", &[("1BAD", "sink.key")]),
    ] {
        let response = upsert(&app, &member, input.clone()).await;
        assert_code(&response, "BAD_USER_INPUT");
    }
    assert_eq!(resources(&app, &member, None).await["totalCount"], 2);

    // Another organization sees none of it and cannot touch it.
    let other = app.other_admin_token.as_str();
    assert!(resource(&app, other, &pipeline_id).await.is_null());
    assert_eq!(resources(&app, other, None).await["totalCount"], 0);
    assert_code(&deploy(&app, other, &pipeline_id).await, "NOT_FOUND");
    assert_code(
        &delete_resource(&app, other, &pipeline_id).await,
        "NOT_FOUND",
    );
    let input = resource_input("PIPELINE", "etl", &[("OTHER_KEY", "sink.key")]);
    assert_ne!(id(&upsert_ok(&app, other, input).await), pipeline_id);
    let unchanged = resource(&app, &member, &pipeline_id).await;
    assert_eq!(references(&unchanged), expected);

    let deleted = delete_resource(&app, &member, &pipeline_id).await;
    assert_eq!(
        data(&deleted)["deleteResource"]["deletedResourceId"],
        pipeline_id.as_str()
    );
    assert!(resource(&app, &member, &pipeline_id).await.is_null());
    assert_eq!(
        resources(&app, &member, Some("PIPELINE")).await["totalCount"],
        0
    );
    let integrations = resources(&app, &member, None).await;
    assert_eq!(integrations["nodes"], json!([integration_node]));
    let again = delete_resource(&app, &member, &pipeline_id).await;
    assert_code(&again, "NOT_FOUND");
    assert_code(&deploy(&app, &member, &pipeline_id).await, "NOT_FOUND");
}

fn pipeline_for(secret_name: &str) -> String {
    format!("pipeline_{}", secret_name.to_lowercase())
}

/// A page of secrets with their dependents costs the same number of SQL statements
/// whatever its size.
async fn no_n_plus_one(store: Store) {
    const SECRETS: usize = 100;
    // With the token cache on, a slow page (a loaded machine) found its token expired and
    // counted one lookup more than a quick one.
    let app = TestApp::spawn_with(store, &QUIET).await;
    let names: Vec<String> = (0..SECRETS).map(|i| format!("SECRET_{i:03}")).collect();

    let creates = names
        .iter()
        .map(|name| {
            let input = json!({ "name": name, "value": format!("value of {name}") });
            (CREATE_SECRET, json!({ "input": input }))
        })
        .collect();
    app.admin_batches(creates).await;
    let upserts = names
        .iter()
        .map(|name| {
            let input = resource_input("PIPELINE", &pipeline_for(name), &[(name, "sink.key")]);
            (UPSERT_RESOURCE, json!({ "input": input }))
        })
        .collect();
    let upserted = app.admin_batches(upserts).await;
    app.deploy_upserted(&upserted).await;

    let page = async |first: usize| {
        let response = app
            .admin(SECRETS_WITH_DEPENDENTS, json!({ "first": first }))
            .await;
        let nodes = data(&response)["secrets"]["nodes"].clone();
        let nodes = nodes.as_array().expect("secrets").clone();
        assert_eq!(nodes.len(), first);
        for node in nodes {
            let name = node["name"].as_str().expect("a name");
            let expected =
                json!([{ "resource": { "name": pipeline_for(name) }, "state": "UP_TO_DATE" }]);
            assert_eq!(node["dependents"], expected, "{node:#}");
        }
    };
    // Once unmeasured, so no one-time cost (a connection opening, say) counts below.
    page(1).await;
    let mut deltas = Vec::new();
    for first in [1, 10, 100] {
        // Nothing else talks to the server between the two reads.
        let before = app.db_statements().await;
        page(first).await;
        let after = app.db_statements().await;
        deltas.push((first, after - before));
    }
    println!(
        "SQL statements per page of secrets with dependents (page size, statements): {deltas:?}"
    );
    assert!(
        deltas.iter().all(|&(_, n)| n == deltas[0].1),
        "statements grow with the page size: {deltas:?}"
    );
}

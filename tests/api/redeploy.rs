//! `redeployStale` (DESIGN §8): after a secret changes, one call deploys every resource
//! left `STALE` on it, lists the one that cannot deploy with its code and leaves it as it
//! was, leaves alone what is not stale, is audited, reaches subscribers as `STALE →
//! UP_TO_DATE` transitions, and is refused to members, viewers and other organizations.
use serde_json::{Value, json};

use crate::helpers::{
    DEPENDENT_EVENTS, DEPLOY_RESOURCE, Store, Subscriber, TestApp, UPDATE_SECRET, UPSERT_RESOURCE,
    assert_code, both_stores, data, id, resource_input,
};

both_stores!(
    the_stale_come_back_up_to_date_and_the_failure_is_listed,
    refusals_change_nothing,
    subscribers_see_each_redeploy,
);

const DB_URL: &str = "DB_URL";
const FIELD: &str = "DATABASE_URL";
/// Named by a reference, never created.
const MISSING: &str = "MISSING_TOKEN";

const REDEPLOY_STALE: &str = "mutation($name: String!) {
    redeployStale(input: { secretName: $name }) {
        deployments { id state resource { id name } pins { secretName field version } }
        failed { resource { id name } code message } } }";
const DEPENDENTS: &str = "query($name: String!) {
    dependents(secretName: $name) { resource { name } state deployedVersion } }";
const ACTIVE_DEPLOYMENT: &str = "query($id: ID!) { resource(id: $id) {
    activeDeployment { id state pins { secretName version } } } }";
const EVENTS: &str = "query($action: String!) {
    auditEvents(first: 10, filter: { action: $action, outcome: ALLOWED }) {
        totalCount nodes { action targetName principal { name } detail } } }";

/// Upserts a PIPELINE `name` with `references` as the admin; returns its id.
async fn upsert(app: &TestApp, name: &str, references: &[(&str, &str)]) -> String {
    let input = json!({ "input": resource_input("PIPELINE", name, references) });
    id(&data(&app.admin(UPSERT_RESOURCE, input).await)["upsertResource"]["resource"])
}

async fn deploy(app: &TestApp, resource_id: &str) {
    let deployed = app
        .admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
        .await;
    assert_eq!(
        data(&deployed)["deployResource"]["deployment"]["state"],
        "ACTIVE"
    );
}

async fn update(app: &TestApp, name: &str, value: &str) {
    let input = json!({ "input": { "name": name, "value": value } });
    data(&app.admin(UPDATE_SECRET, input).await);
}

async fn redeploy_stale(app: &TestApp, token: &str, name: &str) -> Value {
    app.gql(Some(token), REDEPLOY_STALE, json!({ "name": name }))
        .await
}

/// `(resource name, state, deployed version)` of every dependent of `name`, sorted.
async fn standings(app: &TestApp, name: &str) -> Vec<(String, String, Option<i64>)> {
    let response = app.admin(DEPENDENTS, json!({ "name": name })).await;
    let mut standings: Vec<_> = data(&response)["dependents"]
        .as_array()
        .expect("a list of dependents")
        .iter()
        .map(|d| {
            (
                text(&d["resource"]["name"]),
                text(&d["state"]),
                d["deployedVersion"].as_i64(),
            )
        })
        .collect();
    standings.sort();
    standings
}

/// A resource's current deployment (`id state pins`), as the admin.
async fn active_deployment(app: &TestApp, resource_id: &str) -> Value {
    let response = app
        .admin(ACTIVE_DEPLOYMENT, json!({ "id": resource_id }))
        .await;
    data(&response)["resource"]["activeDeployment"].clone()
}

/// The allowed audit events of `action`: `(totalCount, nodes)`.
async fn events(app: &TestApp, action: &str) -> (i64, Vec<Value>) {
    let response = app.admin(EVENTS, json!({ "action": action })).await;
    let events = &data(&response)["auditEvents"];
    let nodes = events["nodes"].as_array().expect("events").clone();
    (events["totalCount"].as_i64().expect("a count"), nodes)
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string, not {value}"))
        .to_owned()
}

/// `name` of each element of `list` (each the `resource` of `key`, when given), in order.
fn names(list: &Value, key: Option<&str>) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list:#}"))
        .iter()
        .map(|item| text(&key.map_or(item, |key| &item[key])["name"]))
        .collect()
}

fn standing(name: &str, state: &str, version: Option<i64>) -> (String, String, Option<i64>) {
    (name.to_owned(), state.to_owned(), version)
}

/// Three pipelines deployed on DB_URL v1, then DB_URL v2: all three stale. One of them
/// (`billing`) has since been given a reference to a secret that does not exist; its v1
/// deployment stays current. `fresh` was deployed on v2 and `idle` never was.
/// `redeployStale` brings `ingest` and `report` to v2, lists `billing` as MISSING_SECRETS
/// and leaves it, `fresh` and `idle` exactly as they were; a second call finds only
/// `billing` again.
async fn the_stale_come_back_up_to_date_and_the_failure_is_listed(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret(DB_URL, "postgres://db/v1").await;
    let reference = [(DB_URL, FIELD)];
    let ingest = upsert(&app, "ingest", &reference).await;
    let report = upsert(&app, "report", &reference).await;
    let billing = upsert(&app, "billing", &reference).await;
    let fresh = upsert(&app, "fresh", &reference).await;
    upsert(&app, "idle", &reference).await;
    for resource_id in [&ingest, &report, &billing] {
        deploy(&app, resource_id).await;
    }
    update(&app, DB_URL, "postgres://db/v2").await;
    deploy(&app, &fresh).await;
    // References change; the deployment (and what it pinned) does not.
    let both = [(DB_URL, FIELD), (MISSING, "auth.token")];
    assert_eq!(upsert(&app, "billing", &both).await, billing);

    let before = standings(&app, DB_URL).await;
    assert_eq!(
        before,
        [
            standing("billing", "STALE", Some(1)),
            standing("fresh", "UP_TO_DATE", Some(2)),
            standing("idle", "NOT_DEPLOYED", None),
            standing("ingest", "STALE", Some(1)),
            standing("report", "STALE", Some(1)),
        ]
    );
    let billing_before = active_deployment(&app, &billing).await;
    let fresh_before = active_deployment(&app, &fresh).await;
    let (deploys_before, _) = events(&app, "resource.deploy").await;

    let response = redeploy_stale(&app, &app.admin_token, DB_URL).await;
    let payload = &data(&response)["redeployStale"];
    let deployments = &payload["deployments"];
    assert_eq!(names(deployments, Some("resource")), ["ingest", "report"]);
    for (deployment, resource_id) in deployments
        .as_array()
        .expect("deployments")
        .iter()
        .zip([&ingest, &report])
    {
        assert_eq!(deployment["resource"]["id"], resource_id.as_str());
        assert_eq!(deployment["state"], "ACTIVE", "{deployment:#}");
        assert_eq!(
            deployment["pins"],
            json!([{ "secretName": DB_URL, "field": FIELD, "version": 2 }])
        );
        assert_eq!(
            active_deployment(&app, resource_id).await["id"],
            deployment["id"]
        );
    }
    let [failure] = payload["failed"].as_array().expect("failed").as_slice() else {
        panic!("one failure: {payload:#}");
    };
    assert_eq!(failure["resource"]["id"], billing.as_str());
    assert_eq!(failure["resource"]["name"], "billing");
    assert_eq!(failure["code"], "MISSING_SECRETS");
    assert!(
        text(&failure["message"]).contains(MISSING),
        "the message names the missing secret: {failure:#}"
    );

    assert_eq!(
        standings(&app, DB_URL).await,
        [
            standing("billing", "STALE", Some(1)),
            standing("fresh", "UP_TO_DATE", Some(2)),
            standing("idle", "NOT_DEPLOYED", None),
            standing("ingest", "UP_TO_DATE", Some(2)),
            standing("report", "UP_TO_DATE", Some(2)),
        ]
    );
    // Nothing else changed for the failed one, nor for the one already up to date.
    assert_eq!(active_deployment(&app, &billing).await, billing_before);
    assert_eq!(active_deployment(&app, &fresh).await, fresh_before);

    // One event for the call, naming what was deployed and what failed; one per deploy.
    let (count, calls) = events(&app, "secret.redeploy_stale").await;
    assert_eq!(count, 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["targetName"], DB_URL);
    assert_eq!(call["principal"]["name"], "admin");
    let detail = &call["detail"];
    assert_eq!(names(&detail["deployed"], None), ["ingest", "report"]);
    assert_eq!(names(&detail["failed"], None), ["billing"]);
    assert_eq!(detail["failed"][0]["code"], "MISSING_SECRETS");
    assert_eq!(detail["skipped"], json!([]));
    let (deploys_after, _) = events(&app, "resource.deploy").await;
    assert_eq!(deploys_after, deploys_before + 2);

    // Again: only `billing` is still stale, and it still cannot deploy.
    let again = redeploy_stale(&app, &app.admin_token, DB_URL).await;
    let payload = &data(&again)["redeployStale"];
    assert_eq!(payload["deployments"], json!([]));
    assert_eq!(names(&payload["failed"], Some("resource")), ["billing"]);
    assert_eq!(active_deployment(&app, &billing).await, billing_before);
    assert_eq!(events(&app, "secret.redeploy_stale").await.0, 2);
}

/// Members and viewers are FORBIDDEN, another organization's admin and a secret that does
/// not exist get NOT_FOUND, a malformed name BAD_USER_INPUT: none deploys anything.
async fn refusals_change_nothing(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret(DB_URL, "postgres://db/v1").await;
    let etl = upsert(&app, "etl", &[(DB_URL, FIELD)]).await;
    deploy(&app, &etl).await;
    update(&app, DB_URL, "postgres://db/v2").await;
    let deployed = active_deployment(&app, &etl).await;
    let member = app.new_principal_token("MEMBER").await;
    let viewer = app.new_principal_token("VIEWER").await;

    for token in [&member, &viewer] {
        let refused = redeploy_stale(&app, token, DB_URL).await;
        assert_code(&refused, "FORBIDDEN");
        assert!(refused["data"].is_null(), "{refused:#}");
    }
    let other_organization = redeploy_stale(&app, &app.other_admin_token, DB_URL).await;
    assert_code(&other_organization, "NOT_FOUND");
    let missing = redeploy_stale(&app, &app.admin_token, "NO_SUCH_SECRET").await;
    assert_code(&missing, "NOT_FOUND");
    let malformed = redeploy_stale(&app, &app.admin_token, "not a name").await;
    assert_code(&malformed, "BAD_USER_INPUT");

    assert_eq!(
        standings(&app, DB_URL).await,
        [standing("etl", "STALE", Some(1))]
    );
    assert_eq!(active_deployment(&app, &etl).await, deployed);
    assert_eq!(events(&app, "secret.redeploy_stale").await.0, 0);
}

/// A subscriber to DB_URL's dependents receives `STALE → UP_TO_DATE` for each resource
/// redeployed, in the order deployed, and nothing for the one that failed: the next events
/// are the following update's.
async fn subscribers_see_each_redeploy(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret(DB_URL, "postgres://db/v1").await;
    let first = upsert(&app, "a-loader", &[(DB_URL, FIELD)]).await;
    let second = upsert(&app, "b-loader", &[(DB_URL, FIELD)]).await;
    let broken = upsert(&app, "c-loader", &[(DB_URL, FIELD)]).await;
    for resource_id in [&first, &second, &broken] {
        deploy(&app, resource_id).await;
    }
    update(&app, DB_URL, "postgres://db/v2").await;
    upsert(
        &app,
        "c-loader",
        &[(DB_URL, FIELD), (MISSING, "auth.token")],
    )
    .await;

    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    let dependents = ws
        .subscribe(DEPENDENT_EVENTS, json!({ "secretName": DB_URL }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;

    let response = redeploy_stale(&app, &app.admin_token, DB_URL).await;
    let payload = &data(&response)["redeployStale"];
    assert_eq!(
        names(&payload["deployments"], Some("resource")),
        ["a-loader", "b-loader"]
    );
    assert_eq!(names(&payload["failed"], Some("resource")), ["c-loader"]);

    let transition = |event: &Value| {
        let dependent = &event["dependent"];
        (
            text(&event["secretName"]),
            text(&dependent["resource"]["name"]),
            event["previousState"].clone(),
            text(&dependent["state"]),
            dependent["deployedVersion"].clone(),
        )
    };
    let expected = |name: &str, from: &str, to: &str, version: i64| {
        (
            DB_URL.to_owned(),
            name.to_owned(),
            json!(from),
            to.to_owned(),
            json!(version),
        )
    };
    for (name, resource_id) in [("a-loader", &first), ("b-loader", &second)] {
        let event = ws.next_event(&dependents).await;
        assert_eq!(
            transition(&event),
            expected(name, "STALE", "UP_TO_DATE", 2),
            "{event:#}"
        );
        assert_eq!(event["dependent"]["resource"]["id"], resource_id.as_str());
    }

    // The next events are v3's: nothing about `c-loader` came in between.
    update(&app, DB_URL, "postgres://db/v3").await;
    for name in ["a-loader", "b-loader"] {
        let event = ws.next_event(&dependents).await;
        assert_eq!(transition(&event), expected(name, "UP_TO_DATE", "STALE", 2));
    }
}

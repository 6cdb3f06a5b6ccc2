//! Guarantees under races (DESIGN.md §6), on both stores: many clients at once against one
//! server, each race checked by how many requests won and what the database holds after.
//! (Several servers on one database: `replicas`.)
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, DELETE_SECRET, DEPLOY_RESOURCE, Store, TestApp, UPDATE_SECRET, UPSERT_RESOURCE,
    both_stores, data, id, outcome, resource_input,
};

both_stores!(
    concurrent_deploys_leave_one_current_deployment,
    deploys_racing_guarded_deletes_never_both_win,
    pruning_never_destroys_a_pinned_version,
    an_update_storm_lands_every_update,
    description_only_updates_apply_at_their_version,
    racing_creates_stand_or_fall_alone,
);

const RESOURCE_SECRETS: &str =
    "query($id: ID!) { resourceSecrets(resourceId: $id) { name version value } }";
const ACTIVE_DEPLOYMENT: &str = "query($id: ID!) { resource(id: $id) {
    activeDeployment { id state pins { secretName version } } } }";
const DEPENDENTS: &str =
    "query($name: String!) { dependents(secretName: $name) { state deployedVersion } }";
const UPDATE_DESCRIPTION: &str = "mutation($input: UpdateSecretInput!) {
    updateSecret(input: $input) { secret { currentVersion description } } }";
const SECRET_DESCRIPTION: &str =
    "query($name: String!) { secret(name: $name) { currentVersion description } }";

/// Creates a pipeline named `name` referencing `secrets` (as `field_<n>`); returns its id.
async fn pipeline(app: &TestApp, name: &str, secrets: &[&str]) -> String {
    let fields: Vec<String> = (0..secrets.len()).map(|i| format!("field_{i}")).collect();
    let references: Vec<(&str, &str)> = secrets
        .iter()
        .zip(&fields)
        .map(|(s, f)| (*s, f.as_str()))
        .collect();
    let input = resource_input("PIPELINE", name, &references);
    let response = app.admin(UPSERT_RESOURCE, json!({ "input": input })).await;
    id(&data(&response)["upsertResource"]["resource"])
}

fn deploy(token: &str, resource_id: &str) -> (String, &'static str, Value) {
    (
        token.to_owned(),
        DEPLOY_RESOURCE,
        json!({ "id": resource_id }),
    )
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.sql_query_one_i64(sql).await
}

/// Deploys of one resource from many clients at once all succeed, one after the other:
/// afterwards exactly one deployment is current (the database's unique index allows no
/// other), and it is the one the API reports.
async fn concurrent_deploys_leave_one_current_deployment(store: Store) {
    const DEPLOYS: usize = 20;
    let app = TestApp::spawn(store).await;
    let member = app.new_principal_token("MEMBER").await;
    app.create_secret("RACED_KEY", "v1").await;
    let resource = pipeline(&app, "raced", &["RACED_KEY"]).await;

    let responses = app
        .gql_all((0..DEPLOYS).map(|_| deploy(&member, &resource)).collect())
        .await;
    let deployed: BTreeSet<String> = responses
        .iter()
        .map(|r| id(&data(r)["deployResource"]["deployment"]))
        .collect();
    assert_eq!(
        deployed.len(),
        DEPLOYS,
        "every deploy made its own deployment"
    );

    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM deployments").await,
        DEPLOYS as i64
    );
    let current = "SELECT COUNT(*) FROM deployments WHERE state <> 'SUPERSEDED'";
    assert_eq!(count(&app, current).await, 1, "one current deployment");
    let active = app
        .admin(ACTIVE_DEPLOYMENT, json!({ "id": resource }))
        .await;
    let active = &data(&active)["resource"]["activeDeployment"];
    assert!(deployed.contains(&id(active)), "{active:#}");
    assert_eq!(active["state"], "ACTIVE");
    let listed = app.admin(DEPENDENTS, json!({ "name": "RACED_KEY" })).await;
    assert_eq!(
        data(&listed)["dependents"],
        json!([{ "state": "UP_TO_DATE", "deployedVersion": 1 }])
    );
}

/// A deploy and a delete without `force` of the secret it pins, started together, 40
/// times: exactly one of them wins each time. Either the deploy commits first (the delete
/// answers `HAS_DEPENDENTS`, the secret stays) or the delete does (the deploy answers
/// `MISSING_SECRETS`, nothing is deployed). No deployment fails, none pins a deleted
/// secret.
async fn deploys_racing_guarded_deletes_never_both_win(store: Store) {
    const ROUNDS: usize = 40;
    let app = TestApp::spawn(store).await;
    let member = app.new_principal_token("MEMBER").await;
    let mut requests = Vec::new();
    for round in 0..ROUNDS {
        let secret = format!("CONTESTED_{round}");
        app.create_secret(&secret, &format!("value-{round}")).await;
        let resource = pipeline(&app, &format!("contested-{round}"), &[&secret]).await;
        requests.push(deploy(&member, &resource));
        let delete = json!({ "input": { "name": secret } });
        requests.push((app.admin_token.clone(), DELETE_SECRET, delete));
    }

    let responses = app.gql_all(requests).await;
    let mut outcomes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (round, pair) in responses.chunks(2).enumerate() {
        let (deployed, deleted) = (outcome(&pair[0]), outcome(&pair[1]));
        let one_winner = matches!(
            (deployed.as_str(), deleted.as_str()),
            ("OK", "HAS_DEPENDENTS") | ("MISSING_SECRETS", "OK")
        );
        assert!(
            one_winner,
            "round {round}: deploy {deployed}, delete {deleted}:\n{:#}\n{:#}",
            pair[0], pair[1]
        );
        *outcomes.entry((deployed, deleted)).or_default() += 1;
    }
    println!("deploy vs guarded delete, {store:?}: {outcomes:?}");

    let deploys_won = outcomes
        .get(&("OK".to_owned(), "HAS_DEPENDENTS".to_owned()))
        .copied()
        .unwrap_or(0) as i64;
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM secrets WHERE state <> 'DELETED'"
        )
        .await,
        deploys_won
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM deployments").await,
        deploys_won
    );
    let failed = "SELECT COUNT(*) FROM deployments WHERE state <> 'ACTIVE'";
    assert_eq!(count(&app, failed).await, 0, "no deployment failed");
    let orphaned = "SELECT COUNT(*) FROM deployment_pins p
        WHERE NOT EXISTS (SELECT 1 FROM secrets s WHERE s.id = p.secret_id)";
    assert_eq!(
        count(&app, orphaned).await,
        0,
        "no pin names a deleted secret"
    );
}

/// With retention 1, every update destroys all but the current version and the versions
/// an active deployment pins. Updates, deploys and fetches of the pinned values all race:
/// every fetch serves exactly the value written as the version it names, and afterwards
/// the current deployment's pinned version is still stored.
async fn pruning_never_destroys_a_pinned_version(store: Store) {
    const EACH: usize = 15;
    let app = TestApp::spawn_with(store, &[("STRONGROOM_VERSION_RETENTION", "1")]).await;
    let member = app.new_principal_token("MEMBER").await;
    app.create_secret("PRUNED_KEY", "pruned-v1").await;
    let resource = pipeline(&app, "pinned", &["PRUNED_KEY"]).await;
    data(
        &app.gql(Some(&member), DEPLOY_RESOURCE, json!({ "id": resource }))
            .await,
    );

    let admin = app.admin_token.clone();
    let mut requests = Vec::new();
    for i in 0..EACH {
        let input = json!({ "input": { "name": "PRUNED_KEY", "value": format!("pruned-u{i}") } });
        requests.push((admin.clone(), UPDATE_SECRET, input));
        requests.push(deploy(&member, &resource));
        requests.push((admin.clone(), RESOURCE_SECRETS, json!({ "id": resource })));
    }
    let responses = app.gql_all(requests).await;

    // Which value each version holds, from the updates' answers.
    let mut written: BTreeMap<i64, String> = BTreeMap::from([(1, "pruned-v1".to_owned())]);
    for (i, response) in responses.iter().step_by(3).enumerate() {
        let version = data(response)["updateSecret"]["secret"]["currentVersion"].as_i64();
        written.insert(version.expect("a version"), format!("pruned-u{i}"));
    }
    assert_eq!(written.len(), EACH + 1, "each update made its own version");
    for response in responses.iter().skip(1).step_by(3) {
        assert_eq!(outcome(response), "OK", "deploy: {response:#}");
    }
    for response in responses.iter().skip(2).step_by(3) {
        let served = &data(response)["resourceSecrets"][0];
        let version = served["version"].as_i64().expect("a version");
        assert_eq!(
            served["value"].as_str(),
            written.get(&version).map(String::as_str),
            "the value served as version {version}: {response:#}"
        );
    }

    let active = app
        .admin(ACTIVE_DEPLOYMENT, json!({ "id": resource }))
        .await;
    let pinned = data(&active)["resource"]["activeDeployment"]["pins"][0]["version"]
        .as_i64()
        .expect("a pinned version");
    let fetched = app.admin(RESOURCE_SECRETS, json!({ "id": resource })).await;
    let served = &data(&fetched)["resourceSecrets"][0];
    assert_eq!(served["version"], pinned);
    assert_eq!(
        served["value"].as_str(),
        written.get(&pinned).map(String::as_str)
    );
    // Retention 1 kept at most the current version and one that a deployment pinned when
    // the last update pruned (a redeploy since may have released it).
    let kept = count(&app, "SELECT COUNT(*) FROM secret_versions").await;
    assert!((1..=2).contains(&kept), "{kept} versions kept");
}

/// Many updates without `expectedVersion` at once: every one lands, each with its own
/// version number — writers of one secret take turns, none is refused because others were
/// writing. Never a refusal, a duplicate or a gap.
async fn an_update_storm_lands_every_update(store: Store) {
    const WRITERS: usize = 40;
    let app = TestApp::spawn(store).await;
    app.create_secret("STORMED", "storm-0").await;
    let requests = (1..=WRITERS)
        .map(|i| {
            let input = json!({ "input": { "name": "STORMED", "value": format!("storm-{i}") } });
            (app.admin_token.clone(), UPDATE_SECRET, input)
        })
        .collect();
    let responses = app.gql_all(requests).await;
    let mut versions = Vec::new();
    for response in &responses {
        assert_eq!(outcome(response), "OK", "{response:#}");
        versions.push(
            data(response)["updateSecret"]["secret"]["currentVersion"]
                .as_i64()
                .expect("a version"),
        );
    }
    versions.sort_unstable();
    let landed = versions.len() as i64;
    assert_eq!(landed, WRITERS as i64);
    assert_eq!(versions, (2..=landed + 1).collect::<Vec<_>>());
    let current = app
        .admin(SECRET_DESCRIPTION, json!({ "name": "STORMED" }))
        .await;
    assert_eq!(data(&current)["secret"]["currentVersion"], landed + 1);
}

/// `expectedVersion` is a precondition on the value's version. A description-only update
/// makes no version: with `expectedVersion: 1` it applies while the secret is at version
/// 1 and is refused once a value update made version 2; description-only updates of the
/// same version apply in commit order (the last one stands).
async fn description_only_updates_apply_at_their_version(store: Store) {
    const EDITORS: usize = 10;
    let app = TestApp::spawn(store).await;
    app.create_secret("DESCRIBED", "described-v1").await;
    let mut requests: Vec<(String, &'static str, Value)> = (0..EDITORS)
        .map(|i| {
            let input = json!({ "input": {
                "name": "DESCRIBED", "description": format!("edit {i}"), "expectedVersion": 1 } });
            (app.admin_token.clone(), UPDATE_DESCRIPTION, input)
        })
        .collect();
    let value_update =
        json!({ "input": { "name": "DESCRIBED", "value": "described-v2", "expectedVersion": 1 } });
    requests.insert(
        EDITORS / 2,
        (app.admin_token.clone(), UPDATE_DESCRIPTION, value_update),
    );
    let mut responses = app.gql_all(requests).await;

    // The value update cannot lose to description edits: they leave the version at 1.
    let value_response = responses.remove(EDITORS / 2);
    assert_eq!(
        data(&value_response)["updateSecret"]["secret"]["currentVersion"],
        2
    );
    let mut applied = Vec::new();
    for (i, response) in responses.iter().enumerate() {
        match outcome(response).as_str() {
            "OK" => {
                let secret = &data(response)["updateSecret"]["secret"];
                assert_eq!(
                    secret["currentVersion"], 1,
                    "applied at version 1: {response:#}"
                );
                applied.push(format!("edit {i}"));
            }
            "VERSION_CONFLICT" => {
                let extensions = &response["errors"][0]["extensions"];
                assert_eq!(
                    (
                        &extensions["expectedVersion"],
                        &extensions["currentVersion"]
                    ),
                    (&json!(1), &json!(2)),
                    "{response:#}"
                );
            }
            other => panic!("a description edit answered {other}: {response:#}"),
        }
    }
    let stored = app
        .admin(SECRET_DESCRIPTION, json!({ "name": "DESCRIBED" }))
        .await;
    let stored = &data(&stored)["secret"];
    assert_eq!(stored["currentVersion"], 2);
    let description = stored["description"].as_str().map(str::to_owned);
    match description {
        Some(text) => assert!(
            applied.contains(&text),
            "{text:?} was not applied: {applied:?}"
        ),
        None => assert!(applied.is_empty(), "edits {applied:?} applied, none stands"),
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM secret_versions").await, 2);
    let events = "SELECT COUNT(*) FROM audit_events WHERE action = 'secret.update'";
    assert_eq!(count(&app, events).await, applied.len() as i64 + 1);

    // The same rule, one request at a time.
    let edit = |expected: i64| json!({ "input": { "name": "DESCRIBED", "description": "settled", "expectedVersion": expected } });
    let stale = app.admin(UPDATE_DESCRIPTION, edit(1)).await;
    assert_eq!(outcome(&stale), "VERSION_CONFLICT");
    let current = app.admin(UPDATE_DESCRIPTION, edit(2)).await;
    assert_eq!(
        data(&current)["updateSecret"]["secret"],
        json!({ "currentVersion": 2, "description": "settled" })
    );
}

/// Many creates at once, four of each name: on SQLite they share group commits (one
/// transaction, a savepoint each), and a writer refused by the unique index must undo only
/// its own statements. Each name is created exactly once, with one version and one audit
/// row; the three others of its name are refused with `ALREADY_EXISTS` (by the check before
/// the write or by the index, whichever the timing picks); nothing else is written.
async fn racing_creates_stand_or_fall_alone(store: Store) {
    const NAMES: usize = 12;
    const WRITERS: usize = 4 * NAMES;
    let app = TestApp::spawn(store).await;
    let requests = (0..WRITERS)
        .map(|i| {
            let input = json!({ "input": {
                "name": format!("CONTESTED_{:02}", i % NAMES),
                "value": format!("v-{i}"),
            } });
            (app.admin_token.clone(), CREATE_SECRET, input)
        })
        .collect();
    let responses = app.gql_all(requests).await;
    let mut winners = BTreeMap::<String, usize>::new();
    for (i, response) in responses.iter().enumerate() {
        let name = format!("CONTESTED_{:02}", i % NAMES);
        match outcome(response).as_str() {
            "OK" => {
                let secret = &data(response)["createSecret"]["secret"];
                assert_eq!(secret["name"], name.as_str());
                assert_eq!(secret["currentVersion"], 1);
                *winners.entry(name).or_default() += 1;
            }
            "ALREADY_EXISTS" => {}
            other => panic!("writer {i}: {other}: {response:#}"),
        }
    }
    assert_eq!(winners.len(), NAMES, "every name created: {winners:?}");
    assert!(winners.values().all(|n| *n == 1), "once each: {winners:?}");
    let created = NAMES as i64;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM secrets").await, created);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM secret_versions").await,
        created
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'secret.create' \
             AND outcome = 'ALLOWED'"
        )
        .await,
        created,
        "one audit row per secret created"
    );
    // And the values are the winners' own.
    for (i, response) in responses.iter().enumerate() {
        if outcome(response) != "OK" {
            continue;
        }
        let name = format!("CONTESTED_{:02}", i % NAMES);
        assert_eq!(app.reveal(&name).await, format!("v-{i}"));
    }
}

//! A secret's whole life (DESIGN §8), over HTTP against the real binary on both stores:
//! the recovery window (a forced delete, the name reserved, restore with every version,
//! failed deployments failed until redeployed), purge by call and by window (nothing
//! left in the database), rollback (the old value as a new version, dependents stale),
//! disable (deploys refused, updates still work), rotation (due, announced once), and the
//! events of each transition.
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    DELETE_SECRET, DEPLOY_RESOURCE, SECRET_EVENTS, SECRET_VALUE, Store, Subscriber, TestApp,
    UPDATE_SECRET, UPSERT_RESOURCE, assert_code, both_stores, data, error_code, id, resource_input,
};

both_stores!(
    a_forced_delete_is_restorable_until_its_window_ends,
    purge_by_call_and_by_window_leaves_nothing_behind,
    rollback_brings_an_old_value_back_as_a_new_version,
    a_disabled_secret_cannot_be_deployed_but_can_be_updated,
    a_due_rotation_is_found_and_announced_once,
    every_transition_is_announced_in_order,
);

const STATE: &str = "query($name: String!) { secret(name: $name) {
    state currentVersion disabledAt disabledReason purgeAt rotationPeriodDays rotationDueAt
    versions { nodes { version } } } }";
const DISABLE: &str = "mutation($name: String!, $reason: String!) {
    disableSecret(input: { name: $name, reason: $reason }) { secret { state disabledReason } } }";
const ENABLE: &str = "mutation($name: String!) {
    enableSecret(input: { name: $name }) { secret { state disabledAt } } }";
const RESTORE: &str = "mutation($name: String!) {
    restoreSecret(input: { name: $name }) { secret { state purgeAt currentVersion } } }";
const PURGE: &str = "mutation($name: String!) {
    purgeSecret(input: { name: $name }) { purgedSecretId } }";
const ROLLBACK: &str = "mutation($name: String!, $to: Int!, $expected: Int) {
    rollbackSecret(input: { name: $name, toVersion: $to, expectedVersion: $expected }) {
        secret { currentVersion } staleDependents { resource { name } deployedVersion } } }";
const FORCE_DELETE: &str = "mutation($name: String!) {
    deleteSecret(input: { name: $name, force: true }) {
        deletedSecretId purgeAt affectedDependents { state } } }";
const NAMES: &str = "query($filter: SecretFilter) { secrets(first: 50, filter: $filter) {
    totalCount nodes { name state } } }";
const CURRENT_DEPLOYMENT: &str = "query($id: ID!) {
    resource(id: $id) { activeDeployment { id state } } }";
const DEPENDENTS: &str = "query($name: String!) {
    dependents(secretName: $name) { resource { name } state deployedVersion } }";

async fn secret_state(app: &TestApp, name: &str) -> Value {
    let response = app.admin(STATE, json!({ "name": name })).await;
    data(&response)["secret"].clone()
}

async fn update(app: &TestApp, name: &str, value: &str) -> Value {
    let input = json!({ "input": { "name": name, "value": value } });
    app.admin(UPDATE_SECRET, input).await
}

/// A pipeline referencing `secrets`, deployed; returns its id.
async fn deployed_pipeline(app: &TestApp, name: &str, secrets: &[&str]) -> String {
    let references: Vec<(&str, &str)> = secrets.iter().map(|s| (*s, "FIELD")).collect();
    let input = json!({ "input": resource_input("PIPELINE", name, &references) });
    let upserted = app.admin(UPSERT_RESOURCE, input).await;
    let resource_id = id(&data(&upserted)["upsertResource"]["resource"]);
    data(
        &app.admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
            .await,
    );
    resource_id
}

async fn names(app: &TestApp, filter: Value) -> Vec<String> {
    let response = app.admin(NAMES, json!({ "filter": filter })).await;
    data(&response)["secrets"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().unwrap_or_default().to_owned())
        // The probes `Subscriber::ready` creates are not the test's.
        .filter(|name| !name.starts_with(crate::helpers::PROBE_PREFIX))
        .collect()
}

async fn reveal(app: &TestApp, name: &str, version: Option<i64>) -> Value {
    app.admin(SECRET_VALUE, json!({ "name": name, "version": version }))
        .await
}

/// The recovery window: a forced delete breaks the pipeline and reserves the name; the
/// secret is listed only when asked for; restore brings every version back; the failed
/// deployment stays failed until it is redeployed.
async fn a_forced_delete_is_restorable_until_its_window_ends(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("DB_URL", "v1").await;
    data(&update(&app, "DB_URL", "v2").await);
    let pipeline = deployed_pipeline(&app, "etl", &["DB_URL"]).await;

    let deleted = app.admin(FORCE_DELETE, json!({ "name": "DB_URL" })).await;
    let deleted = &data(&deleted)["deleteSecret"];
    assert_eq!(
        deleted["affectedDependents"],
        json!([{ "state": "BROKEN" }])
    );
    let purge_at = deleted["purgeAt"].as_str().expect("a purge time");
    let purge_at: chrono::DateTime<chrono::Utc> = purge_at.parse().expect("RFC 3339");
    let window = purge_at - chrono::Utc::now();
    assert!(
        window > chrono::TimeDelta::days(6) && window <= chrono::TimeDelta::days(7),
        "the default window is 7 days: {window}"
    );

    let seen = secret_state(&app, "DB_URL").await;
    assert_eq!(seen["state"], "DELETED");
    assert_code(&reveal(&app, "DB_URL", None).await, "NOT_FOUND");
    assert_eq!(names(&app, json!({})).await, Vec::<String>::new());
    assert_eq!(names(&app, json!({ "state": "DELETED" })).await, ["DB_URL"]);
    // The name is reserved, and the refusal says what to do.
    let input = json!({ "input": { "name": "db_url", "value": "other" } });
    let taken = app.admin(crate::helpers::CREATE_SECRET, input).await;
    assert_code(&taken, "ALREADY_EXISTS");
    let message = taken["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("restoreSecret") && message.contains("purgeSecret"),
        "{message}"
    );
    // Nothing can be deployed with it meanwhile.
    let redeploy = app.admin(DEPLOY_RESOURCE, json!({ "id": pipeline })).await;
    assert_code(&redeploy, "MISSING_SECRETS");

    let restored = app.admin(RESTORE, json!({ "name": "DB_URL" })).await;
    let restored = &data(&restored)["restoreSecret"]["secret"];
    assert_eq!(
        (restored["state"].clone(), restored["purgeAt"].clone()),
        (json!("ACTIVE"), Value::Null)
    );
    for (version, value) in [(1, "v1"), (2, "v2")] {
        let read = reveal(&app, "DB_URL", Some(version)).await;
        assert_eq!(data(&read)["secretValue"]["value"], value);
    }
    // The deployment the delete failed stays failed until redeployed.
    let current = app
        .admin(CURRENT_DEPLOYMENT, json!({ "id": pipeline }))
        .await;
    assert_eq!(
        data(&current)["resource"]["activeDeployment"]["state"],
        "FAILED"
    );
    let listed = app.admin(DEPENDENTS, json!({ "name": "DB_URL" })).await;
    assert_eq!(data(&listed)["dependents"][0]["state"], "BROKEN");
    data(&app.admin(DEPLOY_RESOURCE, json!({ "id": pipeline })).await);
    let listed = app.admin(DEPENDENTS, json!({ "name": "DB_URL" })).await;
    assert_eq!(
        data(&listed)["dependents"],
        json!([{ "resource": { "name": "etl" }, "state": "UP_TO_DATE", "deployedVersion": 2 }])
    );
    // Restoring what is not deleted is NOT_FOUND.
    assert_code(
        &app.admin(RESTORE, json!({ "name": "DB_URL" })).await,
        "NOT_FOUND",
    );
}

/// Counts of what the database still holds of a secret: its row and its versions (each
/// with a ciphertext and a wrapped data key).
async fn stored(app: &TestApp, name: &str) -> (i64, i64) {
    let key = name.to_ascii_lowercase();
    let rows = app
        .sql_query_one_i64(&format!(
            "SELECT COUNT(*) FROM secrets WHERE name_key = '{key}'"
        ))
        .await;
    let versions = app
        .sql_query_one_i64(&format!(
            "SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.name_key = '{key}'"
        ))
        .await;
    let orphans = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM secret_versions v \
             WHERE NOT EXISTS (SELECT 1 FROM secrets s WHERE s.id = v.secret_id)",
        )
        .await;
    assert_eq!(orphans, 0, "no version outlives its secret");
    (rows, versions)
}

/// A purge — by call, or by the background sweep once the window ended — leaves no row,
/// no ciphertext and no wrapped key of the secret, frees its name, and is audited; only a
/// deleted secret can be purged.
async fn purge_by_call_and_by_window_leaves_nothing_behind(store: Store) {
    let settings = [
        ("STRONGROOM_RECOVERY_WINDOW_SECS", "2"),
        ("STRONGROOM_SWEEP_INTERVAL_SECS", "1"),
    ];
    let app = TestApp::spawn_with(store, &settings).await;
    for name in ["BY_CALL", "BY_WINDOW", "KEPT"] {
        app.create_secret(name, "one").await;
        data(&update(&app, name, "two").await);
    }
    assert_code(
        &app.admin(PURGE, json!({ "name": "BY_CALL" })).await,
        "BAD_USER_INPUT",
    );

    // By call, long before its window ends.
    let input = json!({ "input": { "name": "BY_CALL", "recoveryWindowDays": 30 } });
    data(&app.admin(DELETE_SECRET, input).await);
    assert_eq!(
        stored(&app, "BY_CALL").await,
        (1, 2),
        "kept while restorable"
    );
    let purged = app.admin(PURGE, json!({ "name": "BY_CALL" })).await;
    assert!(data(&purged)["purgeSecret"]["purgedSecretId"].is_string());
    assert_eq!(stored(&app, "BY_CALL").await, (0, 0));
    assert_code(
        &app.admin(PURGE, json!({ "name": "BY_CALL" })).await,
        "NOT_FOUND",
    );
    app.create_secret("BY_CALL", "reused").await;

    // By window (the server's: two seconds), swept in the background.
    data(
        &app.admin(DELETE_SECRET, json!({ "input": { "name": "BY_WINDOW" } }))
            .await,
    );
    let mut left = (1, 2);
    for _ in 0..200 {
        left = stored(&app, "BY_WINDOW").await;
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, (0, 0), "purged once its window ended");
    assert_eq!(
        stored(&app, "KEPT").await,
        (1, 2),
        "the sweep touches nothing else"
    );
    assert!(secret_state(&app, "BY_WINDOW").await.is_null());

    let trail = "query { auditEvents(first: 50, filter: { action: \"secret.purge\" }) {
        nodes { targetName principal { name } detail } } }";
    let response = app.admin(trail, json!({})).await;
    let mut purges: Vec<(String, Value)> = data(&response)["auditEvents"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["targetName"].as_str().unwrap_or_default().to_owned(),
                n["principal"].clone(),
            )
        })
        .collect();
    purges.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        purges,
        [
            ("BY_CALL".to_owned(), json!({ "name": "admin" })),
            ("BY_WINDOW".to_owned(), Value::Null),
        ],
        "each purge audited once; the sweep's by no principal"
    );
}

/// Rollback makes v4 with v1's value under a fresh data key; what was pinned to v3 is now
/// stale; only retained versions can be rolled back to; check-and-set applies.
async fn rollback_brings_an_old_value_back_as_a_new_version(store: Store) {
    let app = TestApp::spawn_with(store, &[("STRONGROOM_VERSION_RETENTION", "3")]).await;
    app.create_secret("API_KEY", "first").await;
    data(&update(&app, "API_KEY", "second").await);
    data(&update(&app, "API_KEY", "third").await);
    deployed_pipeline(&app, "sync", &["API_KEY"]).await;

    let conflict = app
        .admin(
            ROLLBACK,
            json!({ "name": "API_KEY", "to": 1, "expected": 2 }),
        )
        .await;
    assert_code(&conflict, "VERSION_CONFLICT");
    let rolled = app
        .admin(
            ROLLBACK,
            json!({ "name": "API_KEY", "to": 1, "expected": 3 }),
        )
        .await;
    let rolled = &data(&rolled)["rollbackSecret"];
    assert_eq!(rolled["secret"]["currentVersion"], 4);
    assert_eq!(
        rolled["staleDependents"],
        json!([{ "resource": { "name": "sync" }, "deployedVersion": 3 }])
    );
    let read = reveal(&app, "API_KEY", None).await;
    assert_eq!(
        data(&read)["secretValue"],
        json!({ "name": "API_KEY", "version": 4, "value": "first" })
    );
    // A fresh data key: v4 shares neither wrapped key nor ciphertext with v1.
    let shared = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM secret_versions a JOIN secret_versions b \
             ON a.secret_id = b.secret_id AND a.version = 1 AND b.version = 4 \
             WHERE a.wrapped_key = b.wrapped_key OR a.ciphertext = b.ciphertext",
        )
        .await;
    assert_eq!(shared, 0);
    let trail = "query { auditEvents(first: 5, filter: { action: \"secret.rollback\" }) {
        nodes { targetName detail } } }";
    let audited = app.admin(trail, json!({})).await;
    let audited = &data(&audited)["auditEvents"]["nodes"];
    assert_eq!(audited[0]["targetName"], "API_KEY");
    assert!(
        audited[0]["detail"].to_string().contains("rolledBackFrom"),
        "{audited}"
    );

    // Retention 3 keeps v2, v3 (pinned) and v4; v1 is gone.
    let gone = app
        .admin(ROLLBACK, json!({ "name": "API_KEY", "to": 1 }))
        .await;
    assert_code(&gone, "NOT_FOUND");
    for to in [4, 0, 9] {
        let refused = app
            .admin(ROLLBACK, json!({ "name": "API_KEY", "to": to }))
            .await;
        assert_code(&refused, "BAD_USER_INPUT");
    }
}

/// Disabled: deploys that need it are refused with `SECRET_DISABLED` and change nothing;
/// updates still work; enabled again, deploys work.
async fn a_disabled_secret_cannot_be_deployed_but_can_be_updated(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("HOOK", "v1").await;
    app.create_secret("OTHER", "v1").await;
    let pipeline = deployed_pipeline(&app, "hooks", &["HOOK", "OTHER"]).await;
    let before = app
        .admin(CURRENT_DEPLOYMENT, json!({ "id": pipeline }))
        .await;

    let disabled = app
        .admin(DISABLE, json!({ "name": "HOOK", "reason": "scream test" }))
        .await;
    assert_eq!(
        data(&disabled)["disableSecret"]["secret"],
        json!({ "state": "DISABLED", "disabledReason": "scream test" })
    );
    // Disabling again keeps the first reason.
    let again = app
        .admin(DISABLE, json!({ "name": "HOOK", "reason": "second" }))
        .await;
    assert_eq!(
        data(&again)["disableSecret"]["secret"]["disabledReason"],
        "scream test"
    );

    let refused = app.admin(DEPLOY_RESOURCE, json!({ "id": pipeline })).await;
    assert_code(&refused, "SECRET_DISABLED");
    assert_eq!(
        refused["errors"][0]["extensions"]["disabledSecrets"],
        json!(["HOOK"])
    );
    let after = app
        .admin(CURRENT_DEPLOYMENT, json!({ "id": pipeline }))
        .await;
    assert_eq!(after, before, "a refused deploy changes nothing");

    let updated = update(&app, "HOOK", "v2").await;
    assert_eq!(
        data(&updated)["updateSecret"]["secret"]["currentVersion"],
        2
    );
    assert_eq!(secret_state(&app, "HOOK").await["state"], "DISABLED");
    assert_eq!(names(&app, json!({ "state": "DISABLED" })).await, ["HOOK"]);

    let enabled = app.admin(ENABLE, json!({ "name": "HOOK" })).await;
    assert_eq!(
        data(&enabled)["enableSecret"]["secret"],
        json!({ "state": "ACTIVE", "disabledAt": null })
    );
    data(&app.admin(DEPLOY_RESOURCE, json!({ "id": pipeline })).await);
    let listed = app.admin(DEPENDENTS, json!({ "name": "HOOK" })).await;
    assert_eq!(data(&listed)["dependents"][0]["state"], "UP_TO_DATE");
    assert_code(
        &app.admin(DISABLE, json!({ "name": "MISSING", "reason": "x" }))
            .await,
        "NOT_FOUND",
    );
}

/// Rotation: due a period after the value last changed; `rotationDue` finds it once due;
/// the sweep announces it once per due date; a new value moves the date.
async fn a_due_rotation_is_found_and_announced_once(store: Store) {
    let app = TestApp::spawn_with(store, &[("STRONGROOM_SWEEP_INTERVAL_SECS", "1")]).await;
    let create = "mutation($input: CreateSecretInput!) {
        createSecret(input: $input) { secret { rotationPeriodDays rotationDueAt createdAt } } }";
    let input = json!({ "input": { "name": "ROTATED", "value": "v1", "rotationPeriodDays": 30 } });
    let created = app.admin(create, input).await;
    let created = &data(&created)["createSecret"]["secret"];
    assert_eq!(created["rotationPeriodDays"], 30);
    let due: chrono::DateTime<chrono::Utc> = created["rotationDueAt"]
        .as_str()
        .expect("due")
        .parse()
        .expect("time");
    let at: chrono::DateTime<chrono::Utc> = created["createdAt"]
        .as_str()
        .expect("created")
        .parse()
        .expect("time");
    assert_eq!(due - at, chrono::TimeDelta::days(30));
    app.create_secret("UNROTATED", "v1").await;
    let bad = json!({ "input": { "name": "BAD", "value": "v1", "rotationPeriodDays": 0 } });
    assert_code(&app.admin(create, bad).await, "BAD_USER_INPUT");
    assert_eq!(
        names(&app, json!({ "rotationDue": true })).await,
        Vec::<String>::new()
    );

    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["ROTATED"] }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    // Thirty days pass.
    app.sql("UPDATE secrets SET rotation_due_at = created_at WHERE name = 'ROTATED'")
        .await;
    assert_eq!(
        names(&app, json!({ "rotationDue": true })).await,
        ["ROTATED"]
    );
    assert_eq!(
        names(&app, json!({ "rotationDue": false })).await,
        ["UNROTATED"]
    );
    let event = ws.next_event(&sub).await;
    assert_eq!(
        (event["kind"].clone(), event["version"].clone()),
        (json!("ROTATION_DUE"), json!(1))
    );
    // Once: three more sweeps announce nothing.
    assert_eq!(ws.recv_within(Duration::from_secs(3)).await, None);

    // Rotating it moves the due date a period past the change.
    data(&update(&app, "ROTATED", "v2").await);
    let event = ws.next_event(&sub).await;
    assert_eq!(event["kind"], "UPDATED");
    assert_eq!(
        names(&app, json!({ "rotationDue": true })).await,
        Vec::<String>::new()
    );
    let state = secret_state(&app, "ROTATED").await;
    let due: chrono::DateTime<chrono::Utc> = state["rotationDueAt"]
        .as_str()
        .expect("due")
        .parse()
        .expect("time");
    assert!(
        due > chrono::Utc::now() + chrono::TimeDelta::days(29),
        "{state}"
    );
    // Removing the period removes the due date.
    let input = json!({ "input": { "name": "ROTATED", "rotationPeriodDays": null } });
    data(&app.admin(UPDATE_SECRET, input).await);
    assert!(secret_state(&app, "ROTATED").await["rotationDueAt"].is_null());
}

/// Each lifecycle transition is announced to subscribers, in order, with the dependent
/// transitions it causes.
async fn every_transition_is_announced_in_order(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("WATCHED", "v1").await;
    data(&update(&app, "WATCHED", "v2").await);
    deployed_pipeline(&app, "consumer", &["WATCHED"]).await;
    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    let secrets = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["WATCHED"] }))
        .await;
    let dependents = ws
        .subscribe(
            crate::helpers::DEPENDENT_EVENTS,
            json!({ "secretName": "WATCHED" }),
        )
        .await;
    ws.ready(&app.api, &app.admin_token).await;

    data(
        &app.admin(DISABLE, json!({ "name": "WATCHED", "reason": "r" }))
            .await,
    );
    data(&app.admin(ENABLE, json!({ "name": "WATCHED" })).await);
    data(
        &app.admin(ROLLBACK, json!({ "name": "WATCHED", "to": 1 }))
            .await,
    );
    data(&app.admin(FORCE_DELETE, json!({ "name": "WATCHED" })).await);
    data(&app.admin(RESTORE, json!({ "name": "WATCHED" })).await);
    data(
        &app.admin(
            DELETE_SECRET,
            json!({ "input": { "name": "WATCHED", "force": true } }),
        )
        .await,
    );
    data(&app.admin(PURGE, json!({ "name": "WATCHED" })).await);

    let mut kinds = Vec::new();
    let mut transitions = Vec::new();
    while kinds.len() < 7 || transitions.len() < 2 {
        match ws.recv().await {
            crate::helpers::Incoming::Next { id, payload } if id == secrets => {
                let event = &payload["data"]["secretEvents"];
                kinds.push((event["kind"].clone(), event["version"].clone()));
            }
            crate::helpers::Incoming::Next { id, payload } if id == dependents => {
                let event = &payload["data"]["dependentEvents"];
                transitions.push((
                    event["previousState"].clone(),
                    event["dependent"]["state"].clone(),
                ));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<(Value, Value)> = [
        ("DISABLED", 2),
        ("ENABLED", 2),
        ("ROLLED_BACK", 3),
        ("DELETED", 3),
        ("RESTORED", 3),
        ("DELETED", 3),
        ("PURGED", 3),
    ]
    .iter()
    .map(|(kind, version)| (json!(kind), json!(version)))
    .collect();
    assert_eq!(kinds, expected);
    // The rollback left the pipeline stale; the forced delete broke it; the restore left
    // its failed deployment failed (still BROKEN: no transition); the second delete found
    // it broken already.
    assert_eq!(
        transitions,
        [
            (json!("UP_TO_DATE"), json!("STALE")),
            (json!("STALE"), json!("BROKEN")),
        ]
    );
    assert_eq!(ws.recv_within(Duration::from_millis(500)).await, None);
    assert_eq!(
        error_code(&reveal(&app, "WATCHED", None).await).as_deref(),
        Some("NOT_FOUND")
    );
}

//! Several `strongroom serve` processes on one PostgreSQL database behave as one server
//! (DESIGN.md §6): check-and-set, deploys, guarded deletes and token revocation hold
//! across replicas, because the database — not any one process — decides. PostgreSQL only:
//! SQLite is the embedded, one-process store.
use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{
    Api, CREATE_API_TOKEN, DELETE_SECRET, DEPLOY_RESOURCE, Replica, Store, TestApp, UPDATE_SECRET,
    UPSERT_RESOURCE, VIEWER, all_at_once, assert_code, data, error_codes, id, resource_input,
};

const REPLICAS: usize = 3;
/// How long a replica may keep accepting a revoked token: the auth cache's TTL (the
/// server's default and maximum, `STRONGROOM_AUTH_CACHE_MILLIS=1000`).
const AUTH_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
const REVOKE_API_TOKEN: &str = "mutation($input: RevokeApiTokenInput!) {
    revokeApiToken(input: $input) { apiToken { id revokedAt } } }";

/// The app (its own server) and two more replicas on its database.
async fn cluster() -> (TestApp, Vec<Replica>) {
    let app = TestApp::spawn(Store::Postgres).await;
    let replicas = (1..REPLICAS)
        .map(|_| app.start_replica(&[] as &[(&str, &str)]))
        .collect();
    (app, replicas)
}

/// Every server of the cluster, the app's first.
fn servers<'a>(app: &'a TestApp, replicas: &'a [Replica]) -> Vec<&'a Api> {
    std::iter::once(&app.api)
        .chain(replicas.iter().map(|r| &r.api))
        .collect()
}

/// Sends every request at once, request `i` to server `i % servers`; returns the
/// responses in order.
async fn race(servers: &[&Api], requests: Vec<(String, &'static str, Value)>) -> Vec<Value> {
    let requests = requests
        .into_iter()
        .enumerate()
        .map(|(i, (token, query, variables))| {
            (servers[i % servers.len()].clone(), token, query, variables)
        })
        .collect();
    all_at_once(requests).await
}

fn succeeded(response: &Value) -> bool {
    response.get("errors").is_none()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_set_holds_across_replicas() {
    const RACERS: usize = 30;
    let (app, replicas) = cluster().await;
    let servers = servers(&app, &replicas);
    app.create_secret("SHARED_KEY", "initial").await;

    let racers = (0..RACERS)
        .map(|i| {
            let input = json!({ "input": {
                "name": "SHARED_KEY", "value": format!("racer-{i}"), "expectedVersion": 1 } });
            (app.admin_token.clone(), UPDATE_SECRET, input)
        })
        .collect();
    let responses = race(&servers, racers).await;
    let winners: Vec<usize> = (0..RACERS).filter(|&i| succeeded(&responses[i])).collect();
    let conflicts = responses
        .iter()
        .filter(|r| error_codes(r) == ["VERSION_CONFLICT"])
        .count();
    assert_eq!(
        (winners.len(), conflicts),
        (1, RACERS - 1),
        "one winner across {REPLICAS} servers: {responses:#?}"
    );
    // Every server reads the winner's value.
    let winner = format!("racer-{}", winners[0]);
    for server in &servers {
        let read = server
            .gql(
                Some(&app.admin_token),
                "query { secretValue(name: \"SHARED_KEY\") { version value } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data(&read)["secretValue"],
            json!({ "version": 2, "value": winner })
        );
    }

    // Without expectedVersion every update lands once, with its own version number.
    let writers = (0..RACERS)
        .map(|i| {
            let input = json!({ "input": { "name": "SHARED_KEY", "value": format!("w-{i}") } });
            (app.admin_token.clone(), UPDATE_SECRET, input)
        })
        .collect();
    let responses = race(&servers, writers).await;
    let mut versions: Vec<i64> = responses
        .iter()
        .filter(|r| succeeded(r))
        .map(|r| {
            data(r)["updateSecret"]["secret"]["currentVersion"]
                .as_i64()
                .expect("a version")
        })
        .collect();
    for refused in responses.iter().filter(|r| !succeeded(r)) {
        assert_eq!(error_codes(refused), ["VERSION_CONFLICT"], "{refused:#}");
        assert_eq!(refused["errors"][0]["extensions"]["retryable"], true);
    }
    versions.sort_unstable();
    let landed = versions.len() as i64;
    assert_eq!(versions, (3..landed + 3).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_and_guarded_deletes_hold_across_replicas() {
    const DEPLOYS: usize = 21;
    const ROUNDS: usize = 20;
    let (app, replicas) = cluster().await;
    let servers = servers(&app, &replicas);
    let member = app.new_principal_token("MEMBER").await;
    let admin = app.admin_token.clone();
    let upsert = |name: &str, secret: &str| {
        let input = resource_input("PIPELINE", name, &[(secret, "sink.key")]);
        json!({ "input": input })
    };

    // One resource deployed through every replica at once: one current deployment.
    app.create_secret("FLEET_KEY", "fleet-1").await;
    let resource = id(&data(
        &app.admin(UPSERT_RESOURCE, upsert("fleet", "FLEET_KEY"))
            .await,
    )["upsertResource"]["resource"]);
    let deploys = (0..DEPLOYS)
        .map(|_| (member.clone(), DEPLOY_RESOURCE, json!({ "id": resource })))
        .collect();
    let responses = race(&servers, deploys).await;
    let made: BTreeSet<String> = responses
        .iter()
        .map(|r| id(&data(r)["deployResource"]["deployment"]))
        .collect();
    assert_eq!(made.len(), DEPLOYS);
    let current = "SELECT COUNT(*) FROM deployments WHERE state <> 'SUPERSEDED'";
    assert_eq!(app.sql_query_one_i64(current).await, 1);

    // A deploy through one replica against a guarded delete through another.
    let mut requests = Vec::new();
    for round in 0..ROUNDS {
        let secret = format!("SPLIT_{round}");
        app.create_secret(&secret, "split").await;
        let input = upsert(&format!("split-{round}"), &secret);
        let resource =
            id(&data(&app.admin(UPSERT_RESOURCE, input).await)["upsertResource"]["resource"]);
        requests.push((member.clone(), DEPLOY_RESOURCE, json!({ "id": resource })));
        requests.push((
            admin.clone(),
            DELETE_SECRET,
            json!({ "input": { "name": secret } }),
        ));
    }
    let responses = race(&servers, requests).await;
    let mut deploys_won = 0;
    for (round, pair) in responses.chunks(2).enumerate() {
        let outcome = (error_codes(&pair[0]), error_codes(&pair[1]));
        match (outcome.0.as_slice(), outcome.1.as_slice()) {
            ([], [code]) if code == "HAS_DEPENDENTS" => deploys_won += 1,
            ([code], []) if code == "MISSING_SECRETS" => {}
            _ => panic!("round {round}: both or neither won: {pair:#?}"),
        }
    }
    let split_secrets =
        "SELECT COUNT(*) FROM secrets WHERE name LIKE 'SPLIT%' AND state <> 'DELETED'";
    assert_eq!(app.sql_query_one_i64(split_secrets).await, deploys_won);
    let not_active = "SELECT COUNT(*) FROM deployments WHERE state = 'FAILED'";
    assert_eq!(app.sql_query_one_i64(not_active).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_refused_by_every_replica() {
    let (app, replicas) = cluster().await;
    let servers = servers(&app, &replicas);
    let account = app.create_service_account("ADMIN").await;
    let input = json!({ "input": { "principalId": account.id, "description": "fleet job" } });
    let created = app.admin(CREATE_API_TOKEN, input).await;
    let created = &data(&created)["createApiToken"];
    let token = created["token"].as_str().expect("a token").to_owned();
    for server in &servers {
        let viewer = server.gql(Some(&token), VIEWER, json!({})).await;
        assert_eq!(data(&viewer)["viewer"]["principal"]["id"], account.id);
    }

    // Every server has the token in its cache now. Revoked through the last replica: that
    // one refuses it at once; every other one within the cache's TTL (one second), counted
    // from the revocation's answer, since each cached it before the revocation was sent.
    let revoke = json!({ "input": { "id": created["apiToken"]["id"] } });
    let revoked = servers[REPLICAS - 1]
        .gql(Some(&app.admin_token), REVOKE_API_TOKEN, revoke)
        .await;
    assert!(data(&revoked)["revokeApiToken"]["apiToken"]["revokedAt"].is_string());
    let at_once = servers[REPLICAS - 1]
        .gql(Some(&token), VIEWER, json!({}))
        .await;
    assert_code(&at_once, "UNAUTHENTICATED");
    tokio::time::sleep(AUTH_CACHE_TTL).await;
    for (i, server) in servers.iter().enumerate() {
        let refused = server.gql(Some(&token), VIEWER, json!({})).await;
        assert_code(&refused, "UNAUTHENTICATED");
        assert!(refused["data"].is_null(), "server {i}: {refused:#}");
    }
    // The account's first token still works everywhere.
    for server in &servers {
        let viewer = server.gql(Some(&account.token), VIEWER, json!({})).await;
        assert_eq!(data(&viewer)["viewer"]["principal"]["id"], account.id);
    }
}

/// Three replicas sweeping one database every second: each secret whose window ends is
/// purged exactly once (one audit row each, nothing left), and each due rotation is
/// announced exactly once; meanwhile a restore and a purge of one deleted secret, sent
/// together through different replicas, never both win.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_sweeps_and_races_hold_across_replicas() {
    const SECRETS: usize = 12;
    let sweeping = [
        ("STRONGROOM_SWEEP_INTERVAL_SECS", "1"),
        ("STRONGROOM_RECOVERY_WINDOW_SECS", "2"),
    ];
    let app = TestApp::spawn_with(Store::Postgres, &sweeping).await;
    let replicas: Vec<Replica> = (1..REPLICAS)
        .map(|_| app.start_replica(&sweeping))
        .collect();
    let servers = servers(&app, &replicas);

    let create =
        "mutation($input: CreateSecretInput!) { createSecret(input: $input) { secret { id } } }";
    for i in 0..SECRETS {
        let input = json!({ "input": {
            "name": format!("SWEPT_{i}"), "value": "v", "rotationPeriodDays": 1 } });
        data(&app.admin(create, input).await);
    }
    let audited = |action: &str| {
        format!(
            "SELECT COUNT(*) FROM audit_events WHERE action = '{action}' \
             AND target_name LIKE 'SWEPT%'"
        )
    };
    let settled = |sql: String, want: i64| {
        let app = &app;
        async move {
            let mut seen = -1;
            for _ in 0..300 {
                seen = app.sql_query_one_i64(&sql).await;
                if seen >= want {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            seen
        }
    };
    // Every rotation comes due at once: each replica's sweep sees all of them.
    app.sql("UPDATE secrets SET rotation_due_at = created_at")
        .await;
    let announced = settled(audited("secret.rotation_due"), SECRETS as i64).await;
    assert_eq!(announced, SECRETS as i64, "each due date announced");
    // Three more sweeps of each replica announce nothing again.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        app.sql_query_one_i64(&audited("secret.rotation_due")).await,
        SECRETS as i64,
        "each due date announced once"
    );

    // Every secret deleted with the 2-second window, through all replicas at once.
    let deletes = (0..SECRETS)
        .map(|i| {
            let input = json!({ "input": { "name": format!("SWEPT_{i}") } });
            (app.admin_token.clone(), DELETE_SECRET, input)
        })
        .collect();
    for response in race(&servers, deletes).await {
        data(&response);
    }
    let swept = "SELECT COUNT(*) FROM secrets WHERE name LIKE 'SWEPT%'";
    let mut left = i64::MAX;
    for _ in 0..300 {
        left = app.sql_query_one_i64(swept).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "every window ended and was swept");
    assert_eq!(
        settled(audited("secret.purge"), SECRETS as i64).await,
        SECRETS as i64,
        "each purged once"
    );

    // Restore against purge, 10 rounds, each pair through two replicas at once.
    let restore =
        "mutation($name: String!) { restoreSecret(input: { name: $name }) { secret { state } } }";
    let purge =
        "mutation($name: String!) { purgeSecret(input: { name: $name }) { purgedSecretId } }";
    let mut requests = Vec::new();
    for round in 0..10 {
        let name = format!("CONTESTED_{round}");
        app.create_secret(&name, "v").await;
        let input = json!({ "input": { "name": name, "recoveryWindowDays": 30 } });
        data(&app.admin(DELETE_SECRET, input).await);
        requests.push((app.admin_token.clone(), restore, json!({ "name": name })));
        requests.push((app.admin_token.clone(), purge, json!({ "name": name })));
    }
    let responses = race(&servers, requests).await;
    for (round, pair) in responses.chunks(2).enumerate() {
        let outcome = (error_codes(&pair[0]), error_codes(&pair[1]));
        let restored = match (outcome.0.as_slice(), outcome.1.as_slice()) {
            // Restored first: the purge finds nothing deleted to purge.
            ([], [code]) if code == "BAD_USER_INPUT" => true,
            // Purged first: nothing left to restore.
            ([code], []) if code == "NOT_FOUND" => false,
            _ => panic!("round {round}: both or neither won: {pair:#?}"),
        };
        let name = format!("contested_{round}");
        let rows = app
            .sql_query_one_i64(&format!(
                "SELECT COUNT(*) FROM secrets WHERE name_key = '{name}'"
            ))
            .await;
        assert_eq!(rows, i64::from(restored), "round {round}");
    }
}

//! Who really fetched what (DESIGN.md §8): each `resourceSecrets` call is recorded per
//! resource and secret (`Dependent.lastFetchedAt`, `lastFetchedVersion`,
//! `lastFetchOutcome`), coalesced in memory and written once per flush interval
//! (`STRONGROOM_USAGE_FLUSH_SECONDS`, 1 here), and on graceful shutdown; and the reads of
//! a disabled secret (`SECRET_DISABLED`, audited) or a deleted one (as if absent).
//!
//! Recording is asynchronous by design, so the tests wait for it: they poll until the
//! recorded state shows, for at most [`RECORDED_WITHIN`], and never assert a duration.
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

use crate::helpers::{
    DELETE_SECRET, DEPLOY_RESOURCE, SECRET_VALUE, Store, TestApp, UPDATE_SECRET, assert_code,
    both_stores, data,
};

both_stores!(
    fetches_say_who_runs_which_version,
    a_burst_of_fetches_costs_a_write_per_interval,
    the_scream_test,
    disabled_and_deleted_secrets_are_not_read,
    usage_is_written_on_graceful_shutdown,
    members_and_viewers_see_no_usage,
);

const FLUSH_EVERY_SECOND: [(&str, &str); 1] = [("STRONGROOM_USAGE_FLUSH_SECONDS", "1")];

/// How long a test waits for a recorded fetch to show: far beyond the 1 s interval, so
/// only a fetch that is never recorded runs into it.
const RECORDED_WITHIN: Duration = Duration::from_secs(30);

const DEPENDENTS: &str = "query($name: String!) { dependents(secretName: $name) {
    resource { id name } field state deployedVersion
    lastFetchedAt lastFetchedVersion lastFetchOutcome } }";
const RESOURCE_SECRETS: &str =
    "query($id: ID!) { resourceSecrets(resourceId: $id) { name field version value } }";
const DISABLE_SECRET: &str = "mutation($name: String!, $reason: String!) {
    disableSecret(input: { name: $name, reason: $reason }) { secret { name state } } }";
const ENABLE_SECRET: &str = "mutation($name: String!) {
    enableSecret(input: { name: $name }) { secret { name state } } }";
const NOT_ACCESSED_SINCE: &str = "query($since: DateTime!) {
    secrets(first: 50, filter: { notAccessedSince: $since }) { nodes { name lastAccessedAt } } }";
const DENIED_EVENTS: &str = "query($action: String!) {
    auditEvents(first: 50, filter: { action: $action, outcome: DENIED }) {
        nodes { action outcome targetName detail principal { id } } } }";

async fn fetch(app: &TestApp, resource_id: &str) -> Value {
    app.admin(RESOURCE_SECRETS, json!({ "id": resource_id }))
        .await
}

/// `resourceSecrets` as the admin, asserting it served; returns `[(name, version)]`.
async fn fetch_ok(app: &TestApp, resource_id: &str) -> Vec<(String, i64)> {
    let response = fetch(app, resource_id).await;
    data(&response)["resourceSecrets"]
        .as_array()
        .expect("a list of values")
        .iter()
        .map(|s| {
            let name = s["name"].as_str().expect("a name").to_owned();
            (name, s["version"].as_i64().expect("a version"))
        })
        .collect()
}

async fn update_secret(app: &TestApp, name: &str, value: &str) {
    let input = json!({ "input": { "name": name, "value": value } });
    data(&app.admin(UPDATE_SECRET, input).await);
}

async fn disable(app: &TestApp, name: &str) {
    let variables = json!({ "name": name, "reason": "scream test before deleting it" });
    let response = app.admin(DISABLE_SECRET, variables).await;
    assert_eq!(
        data(&response)["disableSecret"]["secret"]["state"],
        "DISABLED"
    );
}

async fn enable(app: &TestApp, name: &str) {
    let response = app.admin(ENABLE_SECRET, json!({ "name": name })).await;
    assert_eq!(data(&response)["enableSecret"]["secret"]["state"], "ACTIVE");
}

/// The names `secrets(filter: { notAccessedSince })` lists.
async fn not_accessed_since(app: &TestApp, since: DateTime<Utc>) -> Vec<String> {
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let response = app
        .admin(NOT_ACCESSED_SINCE, json!({ "since": since }))
        .await;
    let nodes = data(&response)["secrets"]["nodes"]
        .as_array()
        .expect("secrets")
        .clone();
    nodes
        .iter()
        .map(|n| n["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// The dependent of `secret` that is `resource`, as the admin sees it now.
async fn dependent(app: &TestApp, secret: &str, resource: &str) -> Value {
    let response = app.admin(DEPENDENTS, json!({ "name": secret })).await;
    let listed = data(&response)["dependents"]
        .as_array()
        .expect("a list of dependents")
        .clone();
    let mut matching = listed.iter().filter(|d| d["resource"]["name"] == resource);
    let found = matching
        .next()
        .unwrap_or_else(|| panic!("no dependent {resource} of {secret}: {listed:#?}"));
    assert!(matching.next().is_none(), "{listed:#?}");
    found.clone()
}

/// Polls the dependent of `secret` that is `resource` until `recorded` holds; fails after
/// [`RECORDED_WITHIN`], naming what it waited for and what it saw.
async fn dependent_once(
    app: &TestApp,
    secret: &str,
    resource: &str,
    what: &str,
    recorded: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + RECORDED_WITHIN;
    loop {
        let seen = dependent(app, secret, resource).await;
        if recorded(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not recorded within {RECORDED_WITHIN:?}; the dependent is {seen:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether the dependent's last fetch was at `since` or later, with `outcome`.
fn fetched_since(dependent: &Value, since: DateTime<Utc>, outcome: &str) -> bool {
    time(&dependent["lastFetchedAt"]).is_some_and(|at| at >= since)
        && dependent["lastFetchOutcome"] == outcome
}

/// Now, to the second below: a lower bound for a time the server records afterwards
/// (same clock; the server keeps microseconds).
fn now_floor() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// A deployed pipeline's fetch shows on its dependent: served, which version, when; and
/// on its secret (`lastAccessedAt`), so `notAccessedSince` tells it from the secret no one
/// fetched. After an update the dependent is STALE and its fetches still serve the old
/// version — which is what usage then says: "something still runs the old version". A
/// redeploy moves it.
async fn fetches_say_who_runs_which_version(store: Store) {
    let app = TestApp::spawn_with(store, &FLUSH_EVERY_SECOND).await;
    app.create_secret("WAREHOUSE_DSN", "dsn-v1-5e1f").await;
    app.create_secret("UNUSED_TOKEN", "unused-0c11").await;
    let etl = app
        .deploy_pipeline("etl", &[("WAREHOUSE_DSN", "db.dsn")])
        .await;
    let idle = app
        .deploy_pipeline("idle", &[("WAREHOUSE_DSN", "db.dsn")])
        .await;
    assert_ne!(etl, idle);

    let before = now_floor();
    assert_eq!(fetch_ok(&app, &etl).await, [("WAREHOUSE_DSN".into(), 1)]);
    let served = dependent_once(&app, "WAREHOUSE_DSN", "etl", "the first fetch", |d| {
        fetched_since(d, before, "SERVED")
    })
    .await;
    assert_eq!(served["lastFetchedVersion"], 1, "{served:#}");
    assert_eq!(served["state"], "UP_TO_DATE", "{served:#}");
    // Fetched by no one: nothing recorded.
    let never = dependent(&app, "WAREHOUSE_DSN", "idle").await;
    for field in ["lastFetchedAt", "lastFetchedVersion", "lastFetchOutcome"] {
        assert!(never[field].is_null(), "{field}: {never:#}");
    }
    // The fetch counts as an access of the secret (written by the same flush, first).
    assert_eq!(not_accessed_since(&app, before).await, ["UNUSED_TOKEN"]);

    update_secret(&app, "WAREHOUSE_DSN", "dsn-v2-77a0").await;
    let first_fetch = time(&served["lastFetchedAt"]).expect("a time");
    assert_eq!(fetch_ok(&app, &etl).await, [("WAREHOUSE_DSN".into(), 1)]);
    let still_old = dependent_once(&app, "WAREHOUSE_DSN", "etl", "the stale fetch", |d| {
        time(&d["lastFetchedAt"]).is_some_and(|at| at > first_fetch)
    })
    .await;
    assert_eq!(still_old["state"], "STALE", "{still_old:#}");
    assert_eq!(still_old["lastFetchedVersion"], 1, "{still_old:#}");
    assert_eq!(still_old["lastFetchOutcome"], "SERVED", "{still_old:#}");

    let redeployed = app.admin(DEPLOY_RESOURCE, json!({ "id": etl })).await;
    data(&redeployed);
    assert_eq!(fetch_ok(&app, &etl).await, [("WAREHOUSE_DSN".into(), 2)]);
    let current = dependent_once(&app, "WAREHOUSE_DSN", "etl", "the redeployed fetch", |d| {
        d["lastFetchedVersion"] == 2
    })
    .await;
    assert_eq!(current["state"], "UP_TO_DATE", "{current:#}");
}

/// Fetches are coalesced: a burst of 50 leaves the last one recorded, for a couple of
/// statements per flush interval instead of a write per fetch.
///
/// The bound asserted: each flush that has anything to write costs 2 statements here (one
/// upsert of the usage rows, one update of `last_accessed_at`), and flushes happen once per
/// interval (1 s), so over `T` seconds the recording may cost at most `2 × (⌊T⌋ + 1)`
/// statements beyond what the fetches themselves cost. That is the contract ("at most one
/// write per resource and secret per interval") measured, whatever the machine's speed; a
/// write per fetch would cost 50 or more.
async fn a_burst_of_fetches_costs_a_write_per_interval(store: Store) {
    const BURST: usize = 50;
    const STATEMENTS_PER_FLUSH: u64 = 2;
    // Every request then costs exactly one token lookup, however they interleave.
    // And no background sweep (purge, rotation) or webhook poll runs statements in the
    // window.
    let env = [
        FLUSH_EVERY_SECOND[0],
        ("STRONGROOM_AUTH_CACHE_MILLIS", "0"),
        ("STRONGROOM_SWEEP_INTERVAL_SECS", "86400"),
        ("STRONGROOM_WEBHOOK_WORKERS", "0"),
    ];
    let app = TestApp::spawn_with(store, &env).await;
    app.create_secret("EVENTS_TOKEN", "tok-19c3").await;
    let ingest = app
        .deploy_pipeline("ingest", &[("EVENTS_TOKEN", "source.token")])
        .await;

    // What one fetch costs, recording aside: the fewest of three (a flush may land in one).
    let since = now_floor();
    let mut per_fetch = u64::MAX;
    for _ in 0..3 {
        let before = app.db_statements().await;
        fetch_ok(&app, &ingest).await;
        per_fetch = per_fetch.min(app.db_statements().await - before);
    }
    // Those fetches' own flush, out of the way.
    dependent_once(&app, "EVENTS_TOKEN", "ingest", "the first fetches", |d| {
        fetched_since(d, since, "SERVED")
    })
    .await;

    // Back to back rather than all at once: concurrent reads share audit group commits,
    // which would make the fetches' own cost, and so the recording's, inexact.
    let started = Instant::now();
    let before = app.db_statements().await;
    for _ in 0..BURST {
        assert_eq!(fetch_ok(&app, &ingest).await, [("EVENTS_TOKEN".into(), 1)]);
    }
    // Wait for the last fetch's record behind the server's back (reading it through the
    // API would cost statements): it is at least as late as the last fetch's audit row.
    let last_recorded = "SELECT COUNT(*) FROM secret_usage WHERE last_fetched_at >= \
         (SELECT MAX(occurred_at) FROM audit_events WHERE action = 'resource.fetch_secrets')";
    let deadline = Instant::now() + RECORDED_WITHIN;
    while app.sql_query_one_i64(last_recorded).await != 1 {
        assert!(
            Instant::now() < deadline,
            "the burst's last fetch was not recorded within {RECORDED_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spent = app.db_statements().await - before;
    let elapsed = started.elapsed().as_secs();

    let fetches = per_fetch * BURST as u64;
    let recording = spent.saturating_sub(fetches);
    let bound = STATEMENTS_PER_FLUSH * (elapsed + 1);
    println!(
        "{store:?}: {BURST} fetches cost {spent} statements over {elapsed} s, \
         {per_fetch} per fetch; recording: {recording} (bound {bound})"
    );
    assert!(
        recording >= 1,
        "the last fetch was recorded, yet recording cost no statement"
    );
    assert!(
        spent <= fetches + bound,
        "{BURST} fetches cost {spent} statements on {store:?}: {fetches} for the fetches \
         ({per_fetch} each) and {recording} for recording them over {elapsed} s, more \
         than {STATEMENTS_PER_FLUSH} per flush interval ({bound})"
    );
    let last = dependent(&app, "EVENTS_TOKEN", "ingest").await;
    assert_eq!(last["lastFetchOutcome"], "SERVED", "{last:#}");
    assert_eq!(last["lastFetchedVersion"], 1, "{last:#}");
}

/// Disable a secret a deployed pipeline uses: its fetches are refused, naming the secret,
/// each refusal audited; the dependent shows `DISABLED`; the pipeline's other secret keeps
/// its record. Enable it: served again.
async fn the_scream_test(store: Store) {
    const OLD: &str = "LEGACY_API_KEY";
    const OTHER: &str = "QUEUE_PASSWORD";
    let app = TestApp::spawn_with(store, &FLUSH_EVERY_SECOND).await;
    let old_value = "legacy-6b2d90";
    app.create_secret(OLD, old_value).await;
    app.create_secret(OTHER, "queue-0a4c1e").await;
    let sync = app
        .deploy_pipeline("sync", &[(OLD, "api.key"), (OTHER, "queue.password")])
        .await;
    let since = now_floor();
    assert_eq!(fetch_ok(&app, &sync).await.len(), 2);
    let other_served = dependent_once(&app, OTHER, "sync", "the served fetch", |d| {
        fetched_since(d, since, "SERVED")
    })
    .await;

    disable(&app, OLD).await;
    let since = now_floor();
    for _ in 0..2 {
        let refused = fetch(&app, &sync).await;
        assert_code(&refused, "SECRET_DISABLED");
        assert_eq!(
            refused["errors"][0]["extensions"]["disabledSecrets"],
            json!([OLD]),
            "{refused:#}"
        );
        assert!(refused["data"].is_null(), "{refused:#}");
        let body = refused.to_string();
        assert!(
            !body.contains(old_value) && !body.contains("queue-0a4c1e"),
            "{body}"
        );
    }
    let denied = app
        .admin(DENIED_EVENTS, json!({ "action": "resource.fetch_secrets" }))
        .await;
    let denied = data(&denied)["auditEvents"]["nodes"]
        .as_array()
        .expect("events")
        .clone();
    assert_eq!(denied.len(), 2, "each refusal is audited: {denied:#?}");
    for event in &denied {
        assert_eq!(event["targetName"], "sync", "{event:#}");
        assert_eq!(
            event["detail"]["disabledSecrets"],
            json!([OLD]),
            "{event:#}"
        );
        assert!(event["principal"]["id"].is_string(), "{event:#}");
    }

    let screaming = dependent_once(&app, OLD, "sync", "the refused fetch", |d| {
        fetched_since(d, since, "DISABLED")
    })
    .await;
    assert!(screaming["lastFetchedVersion"].is_null(), "{screaming:#}");
    // Not served, but not this secret's doing: its record stands.
    let other = dependent(&app, OTHER, "sync").await;
    assert_eq!(other["lastFetchOutcome"], "SERVED", "{other:#}");
    assert_eq!(other["lastFetchedAt"], other_served["lastFetchedAt"]);

    enable(&app, OLD).await;
    let since = now_floor();
    assert_eq!(fetch_ok(&app, &sync).await.len(), 2);
    let restored = dependent_once(&app, OLD, "sync", "the fetch once enabled", |d| {
        fetched_since(d, since, "SERVED")
    })
    .await;
    assert_eq!(restored["lastFetchedVersion"], 1, "{restored:#}");
}

/// `secretValue` of a disabled secret is refused and audited, of a deleted one is
/// `NOT_FOUND` (any version); a deployment pinned to a deleted secret serves nothing
/// (`MISSING_SECRETS`), and its dependent shows the fetch `BROKEN`.
async fn disabled_and_deleted_secrets_are_not_read(store: Store) {
    let app = TestApp::spawn_with(store, &FLUSH_EVERY_SECOND).await;
    let (paused, gone, late) = ("paused-value-3f1a", "gone-value-c47b", "late-value-8e03");
    app.create_secret("PAUSED", paused).await;
    app.create_secret("GONE", gone).await;
    app.create_secret("LATE", late).await;
    let report = app
        .deploy_pipeline("report", &[("GONE", "smtp.password")])
        .await;
    let mailer = app
        .deploy_pipeline("mailer", &[("LATE", "smtp.password")])
        .await;
    assert_eq!(app.reveal("PAUSED").await, paused);

    disable(&app, "PAUSED").await;
    for version in [json!(null), json!(1)] {
        let refused = app
            .admin(
                SECRET_VALUE,
                json!({ "name": "PAUSED", "version": version }),
            )
            .await;
        assert_code(&refused, "SECRET_DISABLED");
        assert_eq!(
            refused["errors"][0]["extensions"]["disabledSecrets"],
            json!(["PAUSED"])
        );
        assert!(!refused.to_string().contains(paused), "{refused:#}");
    }
    let denied = app
        .admin(DENIED_EVENTS, json!({ "action": "secret.reveal" }))
        .await;
    let denied = data(&denied)["auditEvents"]["nodes"].clone();
    assert_eq!(denied.as_array().map(Vec::len), Some(2), "{denied:#}");
    assert_eq!(denied[0]["targetName"], "PAUSED", "{denied:#}");
    assert_eq!(denied[0]["detail"]["code"], "SECRET_DISABLED", "{denied:#}");

    // Deleted with a recovery window: the rows stay, the values are out of reach.
    let input = json!({ "input": { "name": "GONE", "force": true } });
    data(&app.admin(DELETE_SECRET, input).await);
    for version in [json!(null), json!(1), json!(2)] {
        let absent = app
            .admin(SECRET_VALUE, json!({ "name": "GONE", "version": version }))
            .await;
        assert_code(&absent, "NOT_FOUND");
        let message = absent["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("secret GONE"), "{absent:#}");
        assert!(!absent.to_string().contains(gone), "{absent:#}");
    }
    let since = now_floor();
    let broken = fetch(&app, &report).await;
    assert_code(&broken, "MISSING_SECRETS");
    assert_eq!(
        broken["errors"][0]["extensions"]["missingSecrets"],
        json!(["GONE"])
    );
    assert!(!broken.to_string().contains(gone), "{broken:#}");
    // The refusal is in the audit log, as a failure naming what was missing.
    let trail = "query { auditEvents(first: 10, filter: {
        action: \"resource.fetch_secrets\", outcome: FAILED }) { nodes { targetName detail } } }";
    let audited = app.admin(trail, json!({})).await;
    let audited = &data(&audited)["auditEvents"]["nodes"];
    assert_eq!(audited[0]["targetName"], "report", "{audited:#}");
    assert_eq!(
        audited[0]["detail"]["missingSecrets"],
        json!(["GONE"]),
        "{audited:#}"
    );
    let recorded = dependent_once(&app, "GONE", "report", "the broken fetch", |d| {
        fetched_since(d, since, "BROKEN")
    })
    .await;
    assert!(recorded["lastFetchedVersion"].is_null(), "{recorded:#}");

    // Defence in depth: a deployment still active on a deleted secret (which no mutation
    // leaves behind) serves nothing either.
    let marked = app
        .sql("UPDATE secrets SET state = 'DELETED' WHERE name = 'LATE'")
        .await;
    assert_eq!(marked, 1);
    let refused = fetch(&app, &mailer).await;
    assert_code(&refused, "MISSING_SECRETS");
    assert_eq!(
        refused["errors"][0]["extensions"]["missingSecrets"],
        json!(["LATE"])
    );
    assert!(!refused.to_string().contains(late), "{refused:#}");
}

/// A server stopped gracefully writes the usage it holds: with an interval of an hour,
/// the fetch shows right after a restart.
async fn usage_is_written_on_graceful_shutdown(store: Store) {
    let hourly = [("STRONGROOM_USAGE_FLUSH_SECONDS", "3600")];
    let mut app = TestApp::spawn_with(store, &hourly).await;
    app.create_secret("NIGHTLY_KEY", "nightly-8d21").await;
    let nightly = app
        .deploy_pipeline("nightly", &[("NIGHTLY_KEY", "s3.key")])
        .await;
    let since = now_floor();
    fetch_ok(&app, &nightly).await;
    let pending = dependent(&app, "NIGHTLY_KEY", "nightly").await;
    assert!(pending["lastFetchedAt"].is_null(), "{pending:#}");

    app.restart_with(&hourly).await;
    let written = dependent(&app, "NIGHTLY_KEY", "nightly").await;
    assert!(fetched_since(&written, since, "SERVED"), "{written:#}");
    assert_eq!(written["lastFetchedVersion"], 1, "{written:#}");
}

/// Usage is part of `Dependent`, which only admins see: a member or viewer asking for it
/// is refused and gets no data.
async fn members_and_viewers_see_no_usage(store: Store) {
    let app = TestApp::spawn_with(store, &FLUSH_EVERY_SECOND).await;
    app.create_secret("SHARED_DSN", "shared-dsn-91").await;
    let job = app
        .deploy_pipeline("job", &[("SHARED_DSN", "db.dsn")])
        .await;
    let since = now_floor();
    fetch_ok(&app, &job).await;
    dependent_once(&app, "SHARED_DSN", "job", "the fetch", |d| {
        fetched_since(d, since, "SERVED")
    })
    .await;

    let through_references = "query($id: ID!) { resource(id: $id) { name references {
        secretName secret { dependents { lastFetchedAt lastFetchedVersion lastFetchOutcome } } } } }";
    for role in ["MEMBER", "VIEWER"] {
        let token = app.new_principal_token(role).await;
        let direct = app
            .gql(Some(&token), DEPENDENTS, json!({ "name": "SHARED_DSN" }))
            .await;
        assert_code(&direct, "FORBIDDEN");
        assert!(direct["data"].is_null(), "{role}: {direct:#}");

        let nested = app
            .gql(Some(&token), through_references, json!({ "id": job }))
            .await;
        assert_code(&nested, "FORBIDDEN");
        let reference = &nested["data"]["resource"]["references"][0];
        assert_eq!(reference["secretName"], "SHARED_DSN", "{role}: {nested:#}");
        assert!(reference["secret"].is_null(), "{role}: {nested:#}");
        let body = nested.to_string();
        assert!(!body.contains("SERVED"), "{role}: {body}");
    }
}

/// Replicas on one PostgreSQL database each write their own usage, and the newest fetch
/// wins whichever writes last: here the replica holding the older fetch writes it last
/// (on its shutdown), and the newer one stands, while the replica's other record lands.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_keep_the_newest_fetch() {
    let app = TestApp::spawn_with(Store::Postgres, &FLUSH_EVERY_SECOND).await;
    app.create_secret("SHARED_TOKEN", "shared-v1-40e2").await;
    let shared = app
        .deploy_pipeline("shared", &[("SHARED_TOKEN", "auth.token")])
        .await;
    let solo = app
        .deploy_pipeline("solo", &[("SHARED_TOKEN", "auth.token")])
        .await;
    let mut replica = app.start_replica(&[("STRONGROOM_USAGE_FLUSH_SECONDS", "3600")]);

    let on_replica = |resource_id: &str| {
        let variables = json!({ "id": resource_id });
        replica.gql(Some(&app.admin_token), RESOURCE_SECRETS, variables)
    };
    for resource_id in [&shared, &solo] {
        let served = on_replica(resource_id).await;
        assert_eq!(data(&served)["resourceSecrets"][0]["version"], 1);
    }
    update_secret(&app, "SHARED_TOKEN", "shared-v2-91bb").await;
    data(&app.admin(DEPLOY_RESOURCE, json!({ "id": shared })).await);
    assert_eq!(fetch_ok(&app, &shared).await, [("SHARED_TOKEN".into(), 2)]);
    let newest = dependent_once(&app, "SHARED_TOKEN", "shared", "the newer fetch", |d| {
        d["lastFetchedVersion"] == 2
    })
    .await;
    assert!(dependent(&app, "SHARED_TOKEN", "solo").await["lastFetchedAt"].is_null());

    replica.stop();
    let solo_recorded = dependent(&app, "SHARED_TOKEN", "solo").await;
    assert_eq!(
        solo_recorded["lastFetchOutcome"], "SERVED",
        "{solo_recorded:#}"
    );
    assert_eq!(solo_recorded["lastFetchedVersion"], 1, "{solo_recorded:#}");
    let still_newest = dependent(&app, "SHARED_TOKEN", "shared").await;
    assert_eq!(still_newest["lastFetchedVersion"], 2, "{still_newest:#}");
    assert_eq!(still_newest["lastFetchedAt"], newest["lastFetchedAt"]);
}

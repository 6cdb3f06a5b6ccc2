//! The AWS KMS key provider against moto: envelope format, rotation, migration from the
//! local provider, outages and the data key cache.
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{
        CREATE_SECRET, SECRET, SECRET_VALUE, Store, StoredVersion, TestApp, UPDATE_SECRET,
        assert_code, both_stores, data,
    },
    moto::Moto,
    secrets::lifecycle_on,
};

both_stores!(
    aws_lifecycle,
    wrapped_key_is_a_kms_blob,
    rotation_between_kms_keys,
    local_to_aws_migration,
    kms_outage,
    cache_bounds_default,
    cache_bounds_max_uses,
    cache_bounds_max_age,
    cache_bounds_disabled,
    tampered_wrapped_key_is_integrity_error,
    readiness_probes_do_not_burn_kms_calls,
    a_row_naming_an_unconfigured_key_is_refused,
    load_limits_answer_with_codes,
);

/// Every read unwraps its data key with the provider.
const CACHE_OFF: (&str, &str) = ("STRONGROOM_KEY_CACHE_MAX_AGE_SECS", "0");
/// What "within seconds, not minutes" means here: far above the configured timeouts.
const OUTAGE_BOUND: Duration = Duration::from_secs(30);
const DATA_KEY_LEN: usize = 32;
const NO_CONTEXT: &[(&str, &str)] = &[];

/// Secrets with their values, version 1 first: four versions in all.
const SECRETS: [(&str, &[&str]); 3] = [
    ("ALPHA", &["alpha-1", "alpha-2"]),
    ("BRAVO", &["bravo-1"]),
    ("CHARLIE", &["charlie-1"]),
];
const VERSION_COUNT: usize = 4;
/// Written once the server runs on KMS.
const DELTA: (&str, &[&str]) = ("DELTA", &["delta-1"]);

/// moto with one key, and a server wrapping data keys under it (by key id). Keep it
/// whole while the test runs: dropping `moto` kills it.
struct AwsApp {
    app: TestApp,
    moto: Moto,
    arn: String,
}

async fn aws_app(store: Store, extra_env: &[(&'static str, &str)]) -> AwsApp {
    let moto = Moto::start().await;
    let (key_id, arn) = moto.create_key().await;
    let app = TestApp::spawn_with(store, &with(moto.server_env(&key_id), extra_env)).await;
    AwsApp { app, moto, arn }
}

/// `env` with `extra` added.
fn with(
    mut env: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    env.extend(extra.iter().map(|&(key, value)| (key, value.to_owned())));
    env
}

fn name_value(name: &str, value: &str) -> Value {
    json!({ "input": { "name": name, "value": value } })
}

/// Creates each secret with its first value and updates it with the others.
async fn write_all(app: &TestApp, secrets: &[(&str, &[&str])]) {
    for (name, values) in secrets {
        app.create_secret(name, values[0]).await;
        for value in &values[1..] {
            let updated = app.admin(UPDATE_SECRET, name_value(name, value)).await;
            data(&updated); // asserts success
        }
    }
}

/// Reads every version of every secret back through the API.
async fn assert_all_readable(app: &TestApp, secrets: &[(&str, &[&str])]) {
    for (name, values) in secrets {
        for (version, value) in (1..).zip(values.iter()) {
            let response = app
                .admin(SECRET_VALUE, json!({ "name": name, "version": version }))
                .await;
            assert_eq!(
                data(&response)["secretValue"],
                json!({ "name": name, "version": version, "value": value }),
                "{name} version {version}"
            );
        }
    }
}

/// The plaintext data key of a stored version, unwrapped by moto under `key_id`.
async fn unwrap_with(
    moto: &Moto,
    version: &StoredVersion,
    key_id: &str,
) -> Result<Vec<u8>, String> {
    let context = version.context();
    moto.decrypt(&version.wrapped_key, &context, Some(key_id))
        .await
}

/// Every stored version is wrapped by the KMS key `arn`, and moto unwraps it to a data key.
async fn assert_wrapped_by(moto: &Moto, versions: &[StoredVersion], arn: &str) {
    assert!(!versions.is_empty());
    for version in versions {
        assert_eq!(version.key_id, arn, "{version:?}");
        let data_key = unwrap_with(moto, version, arn).await;
        let data_key = data_key.unwrap_or_else(|code| panic!("Decrypt {version:?}: {code}"));
        assert_eq!(data_key.len(), DATA_KEY_LEN, "{version:?}");
    }
}

/// `rotate-keys` succeeded and its summary says it re-wrapped `count` data keys
/// (`N rotated` or `rotated N ...`).
fn assert_rotated(cli: (bool, String, String), count: usize) {
    let (success, stdout, stderr) = cli;
    assert!(success, "rotate-keys failed:\n{stdout}\n{stderr}");
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let reported = words.windows(2).find_map(|pair| match pair {
        [count, "rotated"] | ["rotated", count] => count.parse::<usize>().ok(),
        _ => None,
    });
    assert_eq!(
        reported,
        Some(count),
        "rotated count in the summary; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

async fn assert_ready(app: &TestApp, kind: &str) {
    assert_eq!(
        app.readyz().await,
        (
            StatusCode::OK,
            json!({ "database": "ok", "keyProvider": "ok", "keyProviderKind": kind })
        )
    );
}

async fn aws_lifecycle(store: Store) {
    const ALIAS: &str = "alias/strongroom";
    let moto = Moto::start().await;
    let (key_id, arn) = moto.create_key().await;
    moto.create_alias(ALIAS, &key_id).await;
    let app = TestApp::spawn_with(store, &moto.server_env(ALIAS)).await;
    assert_ready(&app, "aws").await;

    lifecycle_on(&app, Some(&arn)).await;

    // Two versions written, both through KMS; the local provider was never asked.
    assert_eq!(app.provider_calls("aws", "GenerateDataKey").await, 2);
    for operation in ["GenerateDataKey", "Decrypt", "Encrypt"] {
        assert_eq!(
            app.provider_calls("local", operation).await,
            0,
            "{operation}"
        );
    }
}

async fn wrapped_key_is_a_kms_blob(store: Store) {
    let AwsApp { app, moto, arn } = aws_app(store, &[]).await;
    app.create_secret("WEBHOOK_KEY", "whsec_1").await;

    let [stored]: [StoredVersion; 1] = app.stored_versions().await.try_into().expect("one version");
    // Configured by key id, recorded by ARN (what KMS answered).
    assert_wrapped_by(&moto, std::slice::from_ref(&stored), &arn).await;

    // Another version row of the same secret, and the old binding by version number.
    let mut other_version = stored.context();
    other_version[2].1 = uuid::Uuid::now_v7().hyphenated().to_string();
    let mut by_number = stored.context();
    by_number[2] = ("strongroom:version", "1".to_owned());
    let mut other_secret = stored.context();
    other_secret[1].1 = uuid::Uuid::now_v7().hyphenated().to_string();
    for context in [&other_version[..], &by_number[..], &other_secret[..]] {
        assert_eq!(
            moto.decrypt(&stored.wrapped_key, context, Some(&arn)).await,
            Err("InvalidCiphertextException".to_owned()),
            "context {context:?}"
        );
    }
    assert_eq!(
        moto.decrypt(&stored.wrapped_key, NO_CONTEXT, Some(&arn))
            .await,
        Err("InvalidCiphertextException".to_owned()),
        "no context"
    );
    assert_eq!(app.reveal("WEBHOOK_KEY").await, "whsec_1");
}

async fn rotation_between_kms_keys(store: Store) {
    const ALIAS_B: &str = "alias/strongroom-b";
    let moto = Moto::start().await;
    let (key_a, arn_a) = moto.create_key().await;
    let (key_b, arn_b) = moto.create_key().await;
    moto.create_alias(ALIAS_B, &key_b).await;
    let env_a = moto.server_env(&key_a);
    let mut app = TestApp::spawn_with(store, &with(env_a.clone(), &[CACHE_OFF])).await;
    write_all(&app, &SECRETS).await;
    let before = app.stored_versions().await;
    assert_eq!(before.len(), VERSION_COUNT);
    assert_wrapped_by(&moto, &before, &arn_a).await;

    // A server on key B that was not told about key A refuses A's data keys without asking
    // KMS: a stored row names only keys the server is configured with.
    app.restart_with(&with(moto.server_env(&key_b), &[CACHE_OFF]))
        .await;
    let refused = app.admin(SECRET_VALUE, json!({ "name": "BRAVO" })).await;
    assert_code(&refused, "INTEGRITY_ERROR");
    assert_eq!(app.provider_calls("aws", "Decrypt").await, 0);

    // The operator's way: key B active, key A retired; reads keep working meanwhile.
    let env_b = with(
        moto.server_env(ALIAS_B),
        &[
            ("STRONGROOM_KMS_RETIRED_KEY_IDS", key_a.as_str()),
            CACHE_OFF,
        ],
    );
    app.restart_with(&env_b).await;
    assert_all_readable(&app, &SECRETS).await;
    let rotate = ["rotate-keys", "--to", ALIAS_B];
    assert_rotated(app.run_cli(&rotate, &env_b), VERSION_COUNT);

    let after = app.stored_versions().await;
    assert_eq!(after.len(), VERSION_COUNT);
    assert_wrapped_by(&moto, &after, &arn_b).await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((&old.secret_id, old.version), (&new.secret_id, new.version));
        // Re-wrapped, not re-encrypted: the same data key under another KMS key.
        assert_eq!(
            unwrap_with(&moto, new, &arn_b).await,
            unwrap_with(&moto, old, &arn_a).await,
            "{new:?}"
        );
        assert_eq!(
            unwrap_with(&moto, new, &arn_a).await,
            Err("AccessDeniedException".to_owned()),
            "Decrypt of a key B blob naming key A: {new:?}"
        );
    }
    assert_all_readable(&app, &SECRETS).await;

    // Key A retired for good: a server on key B alone unwraps every rotated blob.
    app.restart_with(&with(moto.server_env(&key_b), &[CACHE_OFF]))
        .await;
    assert_all_readable(&app, &SECRETS).await;
    let decrypts = app.provider_calls("aws", "Decrypt").await;
    assert!(decrypts >= VERSION_COUNT as u64, "{decrypts} Decrypt calls");
    app.create_secret("DELTA", "delta-1").await;

    let settled = app.stored_versions().await;
    assert_wrapped_by(&moto, &settled, &arn_b).await;
    assert_rotated(app.run_cli(&rotate, &env_b), 0);
    assert_eq!(
        app.stored_versions().await,
        settled,
        "a second rotation changes nothing"
    );
}

async fn local_to_aws_migration(store: Store) {
    let moto = Moto::start().await;
    let (_, arn) = moto.create_key().await;
    // Configured by ARN this time.
    let aws = with(moto.server_env(&arn), &[CACHE_OFF]);
    let mut app = TestApp::spawn(store).await;
    assert_ready(&app, "local").await;
    write_all(&app, &SECRETS).await;
    let local = app.stored_versions().await;
    assert_eq!(local.len(), VERSION_COUNT);
    for version in &local {
        assert!(version.key_id.starts_with("local:"), "{version:?}");
    }

    // Mixed state: the server runs on KMS, the old versions are still local-wrapped.
    app.restart_with(&aws).await;
    assert_ready(&app, "aws").await;
    assert_all_readable(&app, &SECRETS).await;
    let local_decrypts = app.provider_calls("local", "Decrypt").await;
    assert!(
        local_decrypts >= VERSION_COUNT as u64,
        "{local_decrypts} local Decrypt calls"
    );
    write_all(&app, &[DELTA]).await;
    let mut delta = app.stored_versions().await;
    delta.retain(|version| version.secret_name == DELTA.0);
    assert_wrapped_by(&moto, &delta, &arn).await;

    assert_rotated(
        app.run_cli(&["rotate-keys", "--to", &arn], &aws),
        VERSION_COUNT,
    );
    let migrated = app.stored_versions().await;
    assert_eq!(migrated.len(), VERSION_COUNT + 1);
    assert_wrapped_by(&moto, &migrated, &arn).await;

    // A fresh server reads everything through KMS alone.
    app.restart_with(&aws).await;
    assert_all_readable(&app, &SECRETS).await;
    assert_all_readable(&app, &[DELTA]).await;
    assert_eq!(app.provider_calls("local", "Decrypt").await, 0);
    app.create_secret("ECHO", "echo-1").await;
    assert_wrapped_by(&moto, &app.stored_versions().await, &arn).await;
    assert_eq!(app.reveal("ECHO").await, "echo-1");
}

const SECRET_NAMES: &str = "query { secrets { totalCount nodes { name currentVersion } } }";
const ALLOWED_EVENTS: &str = "query($name: String!) {
    auditEvents(first: 50, filter: { targetName: $name, outcome: ALLOWED }) {
        nodes { action } } }";

async fn allowed_actions(app: &TestApp, name: &str) -> Vec<String> {
    let response = app.admin(ALLOWED_EVENTS, json!({ "name": name })).await;
    let events = data(&response)["auditEvents"]["nodes"]
        .as_array()
        .expect("nodes");
    events
        .iter()
        .map(|event| event["action"].as_str().expect("action").to_owned())
        .collect()
}

/// Sends a mutation while KMS hangs: it must fail with `KMS_UNAVAILABLE`, in seconds.
async fn assert_fails_fast(app: &TestApp, mutation: &str, name: &str, value: &str) {
    let started = Instant::now();
    let response = app.admin(mutation, name_value(name, value)).await;
    let elapsed = started.elapsed();
    assert_code(&response, "KMS_UNAVAILABLE");
    assert!(
        elapsed < OUTAGE_BOUND,
        "{name}: failed only after {elapsed:?}"
    );
}

async fn kms_outage(store: Store) {
    let timeouts = [
        ("STRONGROOM_KMS_OPERATION_TIMEOUT_MS", "3000"),
        ("STRONGROOM_KMS_ATTEMPT_TIMEOUT_MS", "1000"),
        ("STRONGROOM_KMS_CONNECT_TIMEOUT_MS", "1000"),
    ];
    let AwsApp { app, moto, .. } = aws_app(store, &timeouts).await;
    app.create_secret("CACHED", "cached-1").await;
    assert_eq!(app.reveal("CACHED").await, "cached-1");

    moto.stop_responding();
    assert_fails_fast(&app, CREATE_SECRET, "FRESH", "fresh-1").await;
    assert_fails_fast(&app, UPDATE_SECRET, "CACHED", "cached-2").await;

    // Nothing was written, nothing was audited as done, and reads still work.
    assert_eq!(
        data(&app.admin(SECRET_NAMES, json!({})).await)["secrets"],
        json!({ "totalCount": 1, "nodes": [{ "name": "CACHED", "currentVersion": 1 }] })
    );
    let fresh = app.admin(SECRET, json!({ "name": "FRESH" })).await;
    assert!(data(&fresh)["secret"].is_null(), "{fresh}");
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM secret_versions")
            .await,
        1
    );
    assert!(allowed_actions(&app, "FRESH").await.is_empty());
    assert_eq!(
        allowed_actions(&app, "CACHED").await,
        ["secret.reveal", "secret.create"]
    );
    // Its data key is cached.
    assert_eq!(app.reveal("CACHED").await, "cached-1");
    let (status, ready) = app.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["keyProvider"], "unavailable", "{ready}");
    assert_eq!(ready["database"], "ok", "{ready}");

    // Back without restarting strongroom.
    moto.resume();
    assert_eq!(
        app.create_secret("FRESH", "fresh-1").await["currentVersion"],
        1
    );
    assert_eq!(app.reveal("FRESH").await, "fresh-1");
    // Readiness caches its KMS check for a few seconds, then follows.
    let deadline = Instant::now() + OUTAGE_BOUND;
    while app.readyz().await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "still not ready after KMS came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_ready(&app, "aws").await;
}

/// Readiness probes, however many, cost at most one KMS call per few seconds.
async fn readiness_probes_do_not_burn_kms_calls(store: Store) {
    // `_moto` keeps the emulator running until the test ends.
    let AwsApp {
        app, moto: _moto, ..
    } = aws_app(store, &[]).await;
    assert_ready(&app, "aws").await;
    let before = app.provider_calls("aws", "DescribeKey").await;
    let probes: Vec<_> = (0..50)
        .map(|_| {
            let api = app.api.clone();
            tokio::spawn(async move { api.readyz().await })
        })
        .collect();
    for probe in probes {
        let (status, body) = probe.await.expect("probe task");
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let calls = app.provider_calls("aws", "DescribeKey").await - before;
    assert!(
        calls <= 1,
        "50 concurrent probes made {calls} DescribeKey calls"
    );
}

/// A row that names a KMS key the server is not configured with is refused before KMS is
/// asked, even though KMS itself would unwrap it (the blob is genuine).
async fn a_row_naming_an_unconfigured_key_is_refused(store: Store) {
    let AwsApp { app, moto, .. } = aws_app(store, &[CACHE_OFF]).await;
    app.create_secret("TARGET", "target-1").await;
    // A genuine data key for the same context under another key of the same account.
    let (_, other_arn) = moto.create_key().await;
    let [target]: [StoredVersion; 1] = app.stored_versions().await.try_into().expect("one");
    let planted = moto.generate_data_key(&other_arn, &target.context()).await;
    app.set_wrapped_key(&target, &other_arn, &planted).await;
    let decrypts = app.provider_calls("aws", "Decrypt").await;
    let response = app.admin(SECRET_VALUE, json!({ "name": "TARGET" })).await;
    assert_code(&response, "INTEGRITY_ERROR");
    assert_eq!(app.provider_calls("aws", "Decrypt").await, decrypts);
}

/// Reads `name` `reads` times (checking the value) and returns the `Decrypt` calls the
/// server made to KMS meanwhile.
async fn decrypts_for_reads(app: &TestApp, name: &str, value: &str, reads: usize) -> u64 {
    let before = app.provider_calls("aws", "Decrypt").await;
    for _ in 0..reads {
        assert_eq!(app.reveal(name).await, value);
    }
    app.provider_calls("aws", "Decrypt").await - before
}

async fn cache_bounds_default(store: Store) {
    let aws = aws_app(store, &[]).await;
    let app = &aws.app;
    app.create_secret("HOT", "hot-1").await;
    let decrypts = decrypts_for_reads(app, "HOT", "hot-1", 100).await;
    assert!(decrypts <= 1, "100 reads cost {decrypts} Decrypt calls");
}

async fn cache_bounds_max_uses(store: Store) {
    let aws = aws_app(store, &[("STRONGROOM_KEY_CACHE_MAX_USES", "5")]).await;
    let app = &aws.app;
    app.create_secret("HOT", "hot-1").await;
    // Primed on write: reads 1-5 from that entry, 6-10 and 11-12 from re-fetched ones
    // (3 without priming). A used-up entry is never served.
    let decrypts = decrypts_for_reads(app, "HOT", "hot-1", 12).await;
    assert!(
        (2..=3).contains(&decrypts),
        "12 reads with 5 uses per entry cost {decrypts} Decrypt calls"
    );
}

async fn cache_bounds_max_age(store: Store) {
    let aws = aws_app(store, &[("STRONGROOM_KEY_CACHE_MAX_AGE_SECS", "1")]).await;
    let app = &aws.app;
    app.create_secret("HOT", "hot-1").await;
    decrypts_for_reads(app, "HOT", "hot-1", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // An expired entry is never served.
    assert_eq!(decrypts_for_reads(app, "HOT", "hot-1", 1).await, 1);
}

async fn cache_bounds_disabled(store: Store) {
    let aws = aws_app(store, &[CACHE_OFF]).await;
    let app = &aws.app;
    app.create_secret("HOT", "hot-1").await;
    assert_eq!(decrypts_for_reads(app, "HOT", "hot-1", 3).await, 3);
}

async fn tampered_wrapped_key_is_integrity_error(store: Store) {
    // No cache: every read unwraps what is stored now.
    let aws = aws_app(store, &[CACHE_OFF]).await;
    let app = &aws.app;
    app.create_secret("TARGET", "target-1").await;
    app.create_secret("OTHER", "other-1").await;
    let stored = app.stored_versions().await;
    let [other, target] = &stored[..] else {
        panic!("expected two versions: {stored:?}");
    };
    let reveal_target = async || app.admin(SECRET_VALUE, json!({ "name": "TARGET" })).await;

    // The end of the blob is authenticated ciphertext (its start names the KMS key).
    let mut flipped = target.wrapped_key.clone();
    *flipped.last_mut().expect("a non-empty blob") ^= 0x01;
    app.set_wrapped_key(target, &target.key_id, &flipped).await;
    assert_code(&reveal_target().await, "INTEGRITY_ERROR");

    // Another secret's data key, genuine but bound to another context.
    app.set_wrapped_key(target, &other.key_id, &other.wrapped_key)
        .await;
    assert_code(&reveal_target().await, "INTEGRITY_ERROR");

    // Restored, it opens again: the errors came from the tampering alone.
    app.set_wrapped_key(target, &target.key_id, &target.wrapped_key)
        .await;
    assert_eq!(app.reveal("TARGET").await, "target-1");
    assert_eq!(app.reveal("OTHER").await, "other-1");
}

/// The request timeout and the in-flight cap answer GraphQL-shaped 503s with codes, and an
/// abandoned request leaves nothing half-done. A hung KMS holds the only request slot.
async fn load_limits_answer_with_codes(store: Store) {
    let limits = [
        ("STRONGROOM_REQUEST_TIMEOUT_SECS", "2"),
        ("STRONGROOM_MAX_CONCURRENT_REQUESTS", "1"),
        // KMS's own timeouts are longer: the request timeout must be what fires.
        ("STRONGROOM_KMS_OPERATION_TIMEOUT_MS", "30000"),
        ("STRONGROOM_KMS_ATTEMPT_TIMEOUT_MS", "30000"),
    ];
    let AwsApp { app, moto, .. } = aws_app(store, &limits).await;
    let admin = app.admin_token.clone();
    moto.stop_responding();

    let create = json!({ "query": CREATE_SECRET, "variables": name_value("ABANDONED", "v") });
    let slow = {
        let (api, admin) = (app.api.clone(), admin.clone());
        tokio::spawn(async move { api.post_with_headers(Some(&admin), create).await })
    };
    // Ordering, not timing: the create is in flight (KMS hangs for far longer than this).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let viewer = json!({ "query": "{ viewer { role } }" });
    let (status, headers, body) = app.post_with_headers(Some(&admin), viewer.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_code(&body, "OVERLOADED");
    assert_eq!(
        headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(
        headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    // Probes are not behind the cap.
    assert_eq!(app.get_raw("/healthz", None).await.0, StatusCode::OK);

    let (status, headers, body) = slow.await.expect("the slow request");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_code(&body, "TIMEOUT");
    assert_eq!(
        headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );

    moto.resume();
    assert_eq!(
        app.secret_count().await,
        0,
        "the abandoned create wrote something"
    );
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM secret_versions")
            .await,
        0
    );
    assert_eq!(
        app.create_secret("ABANDONED", "v").await["currentVersion"],
        1
    );
}

//! Values and tokens stay out of the database's plaintext and the logs; a ciphertext or
//! wrapped key moved to another row does not decrypt; a value leaves only once its read is
//! recorded in the audit log.
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde_json::json;

use crate::helpers::{
    CREATE_API_TOKEN, DEPLOY_RESOURCE, SECRET_VALUE, Store, TestApp, UPSERT_RESOURCE, assert_code,
    both_stores, data, id, resource_input,
};

both_stores!(
    reads_fail_closed_when_the_audit_log_refuses,
    values_and_tokens_do_not_leak,
    moved_ciphertext_fails_integrity,
    moved_wrapped_key_fails_integrity,
);

/// The forms a leaked string could take in storage: itself, hex and base64.
fn encodings(secret: &str) -> [String; 3] {
    let hex = secret.bytes().map(|b| format!("{b:02x}")).collect();
    [secret.to_owned(), hex, BASE64.encode(secret)]
}

#[track_caller]
fn assert_absent(haystack: &[u8], secrets: &[String], place: &str) {
    for secret in secrets {
        for needle in encodings(secret) {
            let found = haystack
                .windows(needle.len())
                .any(|window| window == needle.as_bytes());
            assert!(!found, "{place} contains a secret (as {needle:?})");
        }
    }
}

/// Every row of every table in the app's PostgreSQL database, as text.
async fn postgres_dump(app: &TestApp) -> String {
    let tables = app
        .sql_strings(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .await;
    assert!(tables.iter().any(|t| t == "secret_versions"), "{tables:?}");
    assert!(tables.iter().any(|t| t == "api_tokens"), "{tables:?}");
    let mut dump = String::new();
    for table in tables {
        let rows = format!(r#"SELECT row_to_json(t)::text FROM "{table}" t"#);
        dump += &app.sql_strings(&rows).await.join("\n");
    }
    dump
}

async fn values_and_tokens_do_not_leak(store: Store) {
    let app = TestApp::spawn(store).await;
    let canary = format!("canary-{}", uuid::Uuid::now_v7().simple());
    app.create_secret("LEAK_CANARY", &canary).await;
    assert_eq!(app.reveal("LEAK_CANARY").await, canary);

    let account = app.create_service_account("MEMBER").await;
    let input = json!({ "input": { "principalId": account.id, "description": "leak check" } });
    let response = app.admin(CREATE_API_TOKEN, input).await;
    let api_token = data(&response)["createApiToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let secrets = [
        canary,
        app.admin_token.clone(),
        app.other_admin_token.clone(),
        account.token,
        api_token,
    ];

    // The bootstrap prints the admin tokens on stdout by design; the value appears nowhere.
    assert_absent(app.logs().as_bytes(), &secrets[..1], "the captured output");
    assert_absent(app.server_logs().as_bytes(), &secrets, "the server log");
    assert_absent(
        app.bootstrap_logs().as_bytes(),
        &secrets,
        "the bootstrap log",
    );
    match store {
        Store::Sqlite => {
            let files = app.sqlite_files();
            assert!(!files.is_empty(), "no SQLite files found");
            for file in files {
                let bytes = std::fs::read(&file).expect("read the SQLite file");
                assert_absent(&bytes, &secrets, &file.display().to_string());
            }
        }
        Store::Postgres => {
            let dump = postgres_dump(&app).await;
            assert!(dump.contains("LEAK_CANARY"), "the dump is missing rows");
            assert_absent(dump.as_bytes(), &secrets, "the PostgreSQL database");
        }
    }
}

/// Creates `victim` and `donor`, copies `columns` of the donor's version row onto the
/// victim's, and expects reading the victim to fail its integrity check.
async fn assert_move_detected(store: Store, columns: &[&str]) {
    const VICTIM: &str = "VICTIM";
    const DONOR: &str = "DONOR";
    let app = TestApp::spawn(store).await;
    let victim_value = format!("victim-{}", uuid::Uuid::now_v7().simple());
    let donor_value = format!("donor-{}", uuid::Uuid::now_v7().simple());
    app.create_secret(VICTIM, &victim_value).await;
    app.create_secret(DONOR, &donor_value).await;

    let assignments: Vec<String> = columns
        .iter()
        .map(|column| {
            format!(
                "{column} = (SELECT d.{column} FROM secret_versions d \
                 JOIN secrets s ON s.id = d.secret_id WHERE s.name = '{DONOR}')"
            )
        })
        .collect();
    let moved = app
        .sql(&format!(
            "UPDATE secret_versions SET {} \
             WHERE secret_id = (SELECT id FROM secrets WHERE name = '{VICTIM}')",
            assignments.join(", ")
        ))
        .await;
    assert_eq!(moved, 1, "the victim has one version row");

    let response = app.admin(SECRET_VALUE, json!({ "name": VICTIM })).await;
    assert_code(&response, "INTEGRITY_ERROR");
    let body = response.to_string();
    assert!(
        !body.contains(&victim_value) && !body.contains(&donor_value),
        "{body}"
    );
    // The donor itself is untouched.
    assert_eq!(app.reveal(DONOR).await, donor_value);
}

async fn moved_ciphertext_fails_integrity(store: Store) {
    assert_move_detected(store, &["ciphertext", "nonce", "wrapped_key", "key_id"]).await;
}

async fn moved_wrapped_key_fails_integrity(store: Store) {
    assert_move_detected(store, &["wrapped_key"]).await;
}

/// Makes the database refuse the audit rows of plaintext reads (and nothing else), as a
/// full disk or a broken replica would.
async fn refuse_read_audits(app: &TestApp, store: Store) {
    let statements: &[&str] = match store {
        Store::Sqlite => &[
            "CREATE TRIGGER refuse_read_audits BEFORE INSERT ON audit_events \
             WHEN NEW.action IN ('secret.reveal', 'resource.fetch_secrets') \
             BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
        ],
        Store::Postgres => &[
            "CREATE FUNCTION refuse_read_audits() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.action IN ('secret.reveal', 'resource.fetch_secrets') THEN \
             RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_read_audits BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_read_audits()",
        ],
    };
    for statement in statements {
        app.sql(statement).await;
    }
}

/// A value is returned only after the audit row of its read is committed: when that row
/// cannot be written, `secretValue` and `resourceSecrets` answer an error and no value —
/// while reveals racing each other (one group commit) — and serve again once it can.
async fn reads_fail_closed_when_the_audit_log_refuses(store: Store) {
    const VALUE: &str = "fail-closed-4b1d7e";
    let app = TestApp::spawn(store).await;
    app.create_secret("AUDITED", VALUE).await;
    let input = resource_input("PIPELINE", "audited-etl", &[("AUDITED", "db.password")]);
    let upserted = app.admin(UPSERT_RESOURCE, json!({ "input": input })).await;
    let resource_id = id(&data(&upserted)["upsertResource"]["resource"]);
    let deployed = app
        .admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
        .await;
    data(&deployed);
    let fetch = "query($id: ID!) { resourceSecrets(resourceId: $id) { name value } }";
    let reveal = json!({ "name": "AUDITED" });
    let recorded_reads = "SELECT COUNT(*) FROM audit_events \
         WHERE action IN ('secret.reveal', 'resource.fetch_secrets')";

    refuse_read_audits(&app, store).await;
    let reveals = (0..8)
        .map(|_| (app.admin_token.clone(), SECRET_VALUE, reveal.clone()))
        .collect();
    let mut answers = app.gql_all(reveals).await;
    answers.push(
        app.gql(Some(&app.admin_token), fetch, json!({ "id": resource_id }))
            .await,
    );
    for answer in &answers {
        assert_code(answer, "INTERNAL_SERVER_ERROR");
        let text = answer.to_string();
        assert!(!text.contains(VALUE), "a value left unaudited: {text}");
        assert!(
            !text.contains("audit refused"),
            "an internal cause leaked: {text}"
        );
    }
    assert_eq!(app.sql_query_one_i64(recorded_reads).await, 0);

    app.sql(match store {
        Store::Sqlite => "DROP TRIGGER refuse_read_audits",
        Store::Postgres => "DROP TRIGGER refuse_read_audits ON audit_events",
    })
    .await;
    let revealed = app.gql(Some(&app.admin_token), SECRET_VALUE, reveal).await;
    assert_eq!(data(&revealed)["secretValue"]["value"], VALUE);
    let fetched = app
        .gql(Some(&app.admin_token), fetch, json!({ "id": resource_id }))
        .await;
    assert_eq!(data(&fetched)["resourceSecrets"][0]["value"], VALUE);
    assert_eq!(app.sql_query_one_i64(recorded_reads).await, 2);
}

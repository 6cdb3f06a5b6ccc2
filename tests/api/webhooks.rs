//! Signed webhooks (DESIGN §11): every request a real receiver gets is verified with the
//! Standard Webhooks specification's own library (npm `standardwebhooks`, in
//! `tests/node/webhook_receiver.js`), never with our own code; a copy with one byte of the
//! body changed must fail that verification.
use std::{
    collections::{BTreeSet, HashMap},
    process::Child,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, Store, TestApp, UPDATE_SECRET, assert_code, both_stores, data, node_script,
    start_node_service,
};

both_stores!(
    deliveries_are_signed_filtered_and_free_of_values,
    failed_attempts_are_retried_with_the_same_id_then_given_up,
    an_endpoint_failing_for_too_long_is_disabled,
    a_rotated_secret_signs_and_the_old_one_does_not,
);

const CREATE_ENDPOINT: &str = "mutation($input: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $input) {
        endpoint { id url events secretNames enabled disabledReason createdAt }
        signingSecret } }";
const ROTATE: &str = "mutation($id: ID!) { rotateWebhookSecret(input: { id: $id }) {
    endpoint { id } signingSecret } }";
const SET_ENABLED: &str = "mutation($id: ID!, $enabled: Boolean!) {
    setWebhookEnabled(input: { id: $id, enabled: $enabled }) {
        endpoint { enabled disabledReason } } }";
const DELETE_ENDPOINT: &str = "mutation($id: ID!) {
    deleteWebhookEndpoint(input: { id: $id }) { deletedId } }";
const ENDPOINT: &str = "query($id: ID!) { node(id: $id) { ... on WebhookEndpoint {
    enabled disabledReason
    deliveries(first: 50) { totalCount nodes {
        eventId eventType attempt status responseStatus error attemptedAt nextAttemptAt } } } } }";
const LIST: &str = "{ webhookEndpoints(first: 10) { totalCount nodes { id url } } }";

/// The server settings every webhook test runs with: the receiver's loopback host listed,
/// retries a second apart.
const WEBHOOK_ENV: [(&str, &str); 2] = [
    ("STRONGROOM_WEBHOOK_ALLOW_HOSTS", "127.0.0.1"),
    ("STRONGROOM_WEBHOOK_RETRY_SCHEDULE", "1,1,1"),
];

/// The node receiver, on a free loopback port.
struct Receiver {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Receiver {
    fn start() -> Self {
        let mut command = node_script("webhook_receiver.js");
        command.env("PORT", "0");
        let (child, started) = start_node_service(command, "tests/node/webhook_receiver.js");
        let port = started["port"].as_u64().expect("a port") as u16;
        Self {
            child,
            port,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn control(&self, path: &str, body: Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("control the receiver");
        assert!(response.status().is_success(), "{path}: {response:?}");
    }

    async fn verify_with(&self, secrets: &[&str]) {
        self.control("/_control/secrets", json!(secrets)).await;
    }

    async fn answer(&self, path: &str, statuses: &[u16], then: u16) {
        self.control(
            "/_control/respond",
            json!({ "path": path, "statuses": statuses, "then": then }),
        )
        .await;
    }

    async fn received(&self) -> Vec<Value> {
        self.http
            .get(self.url("/_control/received"))
            .send()
            .await
            .expect("ask the receiver")
            .json()
            .await
            .expect("JSON")
    }

    /// What it received, once `done` holds of it (within a minute).
    async fn received_once(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = self.received().await;
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver never got {what}; it got: {received:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_endpoint(app: &TestApp, input: Value) -> (String, String) {
    let response = app.admin(CREATE_ENDPOINT, json!({ "input": input })).await;
    let created = &data(&response)["createWebhookEndpoint"];
    (
        created["endpoint"]["id"]
            .as_str()
            .expect("an id")
            .to_owned(),
        created["signingSecret"]
            .as_str()
            .expect("a signing secret")
            .to_owned(),
    )
}

async fn endpoint(app: &TestApp, id: &str) -> Value {
    data(&app.admin(ENDPOINT, json!({ "id": id })).await)["node"].clone()
}

/// The endpoint's delivery records, once `done` holds of them (within a minute).
async fn deliveries_once(app: &TestApp, id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let endpoint = endpoint(app, id).await;
        let nodes = endpoint["deliveries"]["nodes"]
            .as_array()
            .expect("deliveries")
            .clone();
        if done(&nodes) {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "the deliveries never got there: {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn body(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().expect("a body")).expect("a JSON body")
}

#[track_caller]
fn assert_verified(request: &Value, secret_index: u64) {
    assert_eq!(
        request["verifiedWith"],
        json!([secret_index]),
        "standardwebhooks does not verify it with secret {secret_index} (alone): {request:#}"
    );
    assert_eq!(
        request["tamperedVerifies"],
        json!(false),
        "a tampered body verified: {request:#}"
    );
}

async fn deliveries_are_signed_filtered_and_free_of_values(store: Store) {
    let receiver = Receiver::start();
    let app = TestApp::spawn_with(store, &WEBHOOK_ENV).await;
    let (id, secret) = create_endpoint(
        &app,
        json!({
            "url": receiver.url("/hooks/ci"),
            "events": ["SECRET_CREATED", "SECRET_UPDATED", "DEPENDENT_STALE"],
            "secretNames": ["hooked"],
        }),
    )
    .await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.verify_with(&[&secret]).await;
    let listed = data(&app.admin(LIST, json!({})).await)["webhookEndpoints"].clone();
    assert_eq!(listed["totalCount"], 1);
    assert_eq!(listed["nodes"][0]["url"], receiver.url("/hooks/ci"));

    app.create_secret("HOOKED", "hooked-value-one").await;
    // Not one of the endpoint's secrets: never posted.
    app.create_secret("UNHOOKED", "unhooked-value").await;
    let etl = app.deploy_pipeline("etl", &[("HOOKED", "db.url")]).await;
    let input = json!({ "input": { "name": "HOOKED", "value": "hooked-value-two" } });
    data(&app.admin(UPDATE_SECRET, input).await);

    let received = receiver
        .received_once("three deliveries", |r| r.len() >= 3)
        .await;
    let mut by_type: HashMap<String, Value> = HashMap::new();
    for request in &received {
        assert_verified(request, 0);
        assert_eq!(request["path"], "/hooks/ci");
        assert_eq!(request["contentType"], "application/json");
        for value in ["hooked-value-one", "hooked-value-two", "unhooked-value"] {
            assert!(
                !request["body"].as_str().unwrap_or_default().contains(value),
                "a value in a payload: {request:#}"
            );
        }
        let body = body(request);
        by_type.insert(body["type"].as_str().expect("a type").to_owned(), body);
    }
    assert_eq!(
        by_type.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "secret.created".to_owned(),
            "secret.updated".to_owned(),
            "dependent.stale".to_owned(),
        ]),
        "{received:#?}"
    );
    let updated = &by_type["secret.updated"];
    assert_eq!(updated["data"]["secret"]["name"], "HOOKED");
    assert_eq!(updated["data"]["version"], 2);
    assert!(updated["timestamp"].is_string(), "{updated}");
    let stale = &by_type["dependent.stale"]["data"];
    assert_eq!(
        (
            &stale["resource"]["id"],
            &stale["resource"]["name"],
            &stale["resource"]["kind"]
        ),
        (&json!(etl), &json!("etl"), &json!("PIPELINE")),
        "{stale}"
    );
    assert_eq!(
        (
            &stale["field"],
            &stale["previousState"],
            &stale["state"],
            &stale["deployedVersion"]
        ),
        (
            &json!("db.url"),
            &json!("UP_TO_DATE"),
            &json!("STALE"),
            &json!(1)
        )
    );
    // Each event once, each with its own id.
    let ids: BTreeSet<&str> = received.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "{received:#?}");

    let deliveries = deliveries_once(&app, &id, |d| d.len() >= 3).await;
    for delivery in &deliveries {
        assert_eq!(
            (
                &delivery["status"],
                &delivery["attempt"],
                &delivery["responseStatus"]
            ),
            (&json!("SUCCEEDED"), &json!(1), &json!(204)),
            "{delivery}"
        );
        assert!(ids.contains(delivery["eventId"].as_str().expect("an event id")));
    }
    // Only the three were ever queued: the other secret's creation and the first
    // deploy (not a stale, broken or healed dependent) were not.
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM webhook_messages")
            .await,
        3
    );
    // The signing secret is stored encrypted, and logged nowhere.
    let key_bytes = secret.trim_start_matches("whsec_");
    assert!(
        !app.logs().contains(key_bytes),
        "the signing secret in the logs"
    );
    assert_eq!(
        app.sql_query_one_i64(&format!(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE url LIKE '%{key_bytes}%'"
        ))
        .await,
        0
    );

    // Members and viewers see none of it, an inspector reads it but changes nothing;
    // deleting takes the records with it.
    for role in ["MEMBER", "VIEWER"] {
        let account = app.create_service_account(role).await;
        let listed = app.gql(Some(&account.token), LIST, json!({})).await;
        assert_code(&listed, "FORBIDDEN");
    }
    let inspector = app.create_service_account("INSPECTOR").await;
    let listed = app.gql(Some(&inspector.token), LIST, json!({})).await;
    assert_eq!(data(&listed)["webhookEndpoints"]["totalCount"], 1);
    let refused = app
        .gql(Some(&inspector.token), ROTATE, json!({ "id": id }))
        .await;
    assert_code(&refused, "FORBIDDEN");
    let deleted = app.admin(DELETE_ENDPOINT, json!({ "id": id })).await;
    assert_eq!(
        data(&deleted)["deleteWebhookEndpoint"]["deletedId"],
        json!(id)
    );
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM webhook_deliveries")
            .await,
        0
    );
    assert_eq!(
        app.sql_strings(
            "SELECT action FROM audit_events WHERE action LIKE 'webhook.%' ORDER BY occurred_at"
        )
        .await,
        ["webhook.create", "webhook.delete"]
    );
}

async fn failed_attempts_are_retried_with_the_same_id_then_given_up(store: Store) {
    let receiver = Receiver::start();
    let app = TestApp::spawn_with(store, &WEBHOOK_ENV).await;
    // Fails twice, then answers 200; the other always fails.
    receiver.answer("/flaky", &[500, 503], 200).await;
    receiver.answer("/down", &[], 500).await;
    let (flaky, flaky_secret) = create_endpoint(
        &app,
        json!({ "url": receiver.url("/flaky"), "events": ["SECRET_CREATED"] }),
    )
    .await;
    let (down, down_secret) = create_endpoint(
        &app,
        json!({ "url": receiver.url("/down"), "events": ["SECRET_CREATED"] }),
    )
    .await;
    receiver.verify_with(&[&flaky_secret, &down_secret]).await;
    app.create_secret("RETRIED", "retried-value").await;

    // The schedule is 1,1,1: a first attempt and three retries, then no more.
    let received = receiver
        .received_once("3 attempts at /flaky and 4 at /down", |r| {
            let at = |path: &str| r.iter().filter(|q| q["path"] == path).count();
            at("/flaky") >= 3 && at("/down") >= 4
        })
        .await;
    let flaky_requests: Vec<&Value> = received.iter().filter(|r| r["path"] == "/flaky").collect();
    let ids: BTreeSet<&str> = received.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids.len(),
        1,
        "every attempt, to either endpoint, carries the event's one id: {received:#?}"
    );
    for request in &flaky_requests {
        assert_verified(request, 0);
    }
    for request in received.iter().filter(|r| r["path"] == "/down") {
        assert_verified(request, 1);
    }

    let flaky_deliveries = deliveries_once(&app, &flaky, |d| {
        d.first().is_some_and(|d| d["status"] == "SUCCEEDED")
    })
    .await;
    let summary = |d: &[Value]| -> Vec<(i64, String, Option<i64>, bool)> {
        d.iter()
            .map(|d| {
                (
                    d["attempt"].as_i64().expect("attempt"),
                    d["status"].as_str().expect("status").to_owned(),
                    d["responseStatus"].as_i64(),
                    d["nextAttemptAt"].is_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        summary(&flaky_deliveries),
        [
            (3, "SUCCEEDED".into(), Some(200), false),
            (2, "PENDING".into(), Some(503), true),
            (1, "PENDING".into(), Some(500), true),
        ],
        "newest first: {flaky_deliveries:#?}"
    );
    assert_eq!(flaky_deliveries[1]["error"], "answered 503");

    let down_deliveries = deliveries_once(&app, &down, |d| {
        d.first().is_some_and(|d| d["status"] == "FAILED")
    })
    .await;
    assert_eq!(
        summary(&down_deliveries),
        [
            (4, "FAILED".into(), Some(500), false),
            (3, "PENDING".into(), Some(500), true),
            (2, "PENDING".into(), Some(500), true),
            (1, "PENDING".into(), Some(500), true),
        ],
        "{down_deliveries:#?}"
    );
    assert_eq!(
        app.sql_query_one_i64(
            "SELECT COUNT(*) FROM webhook_messages WHERE status = 'FAILED' AND attempts = 4"
        )
        .await,
        1
    );
    // Nothing more is posted after the last attempt was recorded.
    let after = receiver.received().await;
    assert_eq!(after.iter().filter(|r| r["path"] == "/down").count(), 4);
}

async fn an_endpoint_failing_for_too_long_is_disabled(store: Store) {
    let receiver = Receiver::start();
    let env = [
        WEBHOOK_ENV[0],
        ("STRONGROOM_WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1,1,1"),
        ("STRONGROOM_WEBHOOK_DISABLE_AFTER_SECS", "2"),
    ];
    let app = TestApp::spawn_with(store, &env).await;
    receiver.answer("/broken", &[], 500).await;
    let (id, _) = create_endpoint(
        &app,
        json!({ "url": receiver.url("/broken"), "events": ["SECRET_CREATED"] }),
    )
    .await;
    app.create_secret("DOOMED", "doomed-value").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let disabled = loop {
        let endpoint = endpoint(&app, &id).await;
        if endpoint["enabled"] == false {
            break endpoint;
        }
        assert!(Instant::now() < deadline, "never disabled: {endpoint:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = disabled["disabledReason"].as_str().expect("a reason");
    assert!(
        reason.contains("disabled automatically") && reason.contains("answered 500"),
        "{reason}"
    );
    // Disabled by the first attempt that failed 2 s or more after the streak began (the
    // first failure); its message waits, pending.
    let attempts = disabled["deliveries"]["nodes"]
        .as_array()
        .expect("deliveries");
    let at = |d: &Value| {
        chrono::DateTime::parse_from_rfc3339(d["attemptedAt"].as_str().expect("a time"))
            .expect("RFC 3339")
    };
    let (last, first) = (&attempts[0], &attempts[attempts.len() - 1]);
    assert!(attempts.len() >= 2, "{disabled:#}");
    assert!(
        at(last) - at(first) >= chrono::TimeDelta::seconds(2),
        "disabled before failing for 2 s: {disabled:#}"
    );
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM webhook_messages WHERE status = 'PENDING'")
            .await,
        1
    );
    // An admin enables it again: the reason goes, and the pending message is posted.
    receiver.answer("/broken", &[], 204).await;
    let enabled = app
        .admin(SET_ENABLED, json!({ "id": id, "enabled": true }))
        .await;
    assert_eq!(
        data(&enabled)["setWebhookEnabled"]["endpoint"],
        json!({ "enabled": true, "disabledReason": null })
    );
    deliveries_once(&app, &id, |d| {
        d.first().is_some_and(|d| d["status"] == "SUCCEEDED")
    })
    .await;
}

async fn a_rotated_secret_signs_and_the_old_one_does_not(store: Store) {
    let receiver = Receiver::start();
    let app = TestApp::spawn_with(store, &WEBHOOK_ENV).await;
    let (id, old) = create_endpoint(
        &app,
        json!({ "url": receiver.url("/rotating"), "events": ["SECRET_CREATED"] }),
    )
    .await;
    receiver.verify_with(&[&old]).await;
    app.create_secret("BEFORE_ROTATION", "before-value").await;
    let before = receiver
        .received_once("one delivery", |r| !r.is_empty())
        .await;
    assert_verified(&before[0], 0);

    let rotated = app.admin(ROTATE, json!({ "id": id })).await;
    let new = data(&rotated)["rotateWebhookSecret"]["signingSecret"]
        .as_str()
        .expect("a new secret")
        .to_owned();
    assert_ne!(new, old);
    receiver.verify_with(&[&old, &new]).await;
    app.create_secret("AFTER_ROTATION", "after-value").await;
    let received = receiver
        .received_once("a second delivery", |r| r.len() >= 2)
        .await;
    let after = received
        .iter()
        .find(|r| body(r)["data"]["secret"]["name"] == "AFTER_ROTATION")
        .expect("the second event");
    // Verified by the new secret only (index 1), not by the old (index 0).
    assert_verified(after, 1);
}

/// Targets that would reach into the server's own network are refused at creation, with a
/// message saying why, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn private_and_plain_http_targets_are_refused() {
    let app = TestApp::spawn_with(Store::Sqlite, &WEBHOOK_ENV).await;
    for (url, says) in [
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
        ("https://[::1]/hook", "private"),
        // Listed is 127.0.0.1 alone.
        ("http://127.0.0.2:9/hook", "https:// only"),
        ("https://127.0.0.2:9/hook", "private"),
        ("https://localhost:9/hook", "resolves to a private"),
        ("http://ci.example.com/hook", "https:// only"),
        ("https://user:pw@ci.example.com/hook", "credentials"),
        ("ftp://ci.example.com/hook", "https://"),
        ("not a url", "not a valid URL"),
    ] {
        let response = app
            .admin(
                CREATE_ENDPOINT,
                json!({ "input": { "url": url, "events": ["SECRET_UPDATED"] } }),
            )
            .await;
        assert_code(&response, "BAD_USER_INPUT");
        let message = response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains(says), "{url}: {message}");
    }
    let no_events = app
        .admin(
            CREATE_ENDPOINT,
            json!({ "input": { "url": "http://127.0.0.1:9/x", "events": [] } }),
        )
        .await;
    assert_code(&no_events, "BAD_USER_INPUT");
    let bad_name = app
        .admin(
            CREATE_ENDPOINT,
            json!({ "input": { "url": "http://127.0.0.1:9/x", "events": ["SECRET_UPDATED"],
                               "secretNames": ["not a name"] } }),
        )
        .await;
    assert_code(&bad_name, "BAD_USER_INPUT");
    let member = app.create_service_account("MEMBER").await;
    let by_member = app
        .gql(
            Some(&member.token),
            CREATE_ENDPOINT,
            json!({ "input": { "url": "http://127.0.0.1:9/x", "events": ["SECRET_UPDATED"] } }),
        )
        .await;
    assert_code(&by_member, "FORBIDDEN");
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM webhook_endpoints")
            .await,
        0
    );
}

/// A redirect is an answer like any other non-2xx: recorded, retried, never followed.
#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed() {
    let receiver = Receiver::start();
    let app = TestApp::spawn_with(Store::Sqlite, &WEBHOOK_ENV).await;
    receiver.answer("/moved", &[], 307).await;
    let (id, _) = create_endpoint(
        &app,
        json!({ "url": receiver.url("/moved"), "events": ["SECRET_CREATED"] }),
    )
    .await;
    app.create_secret("REDIRECTED", "redirected-value").await;
    let deliveries = deliveries_once(&app, &id, |d| !d.is_empty()).await;
    assert_eq!(
        (
            &deliveries[0]["status"],
            &deliveries[0]["responseStatus"],
            &deliveries[0]["error"]
        ),
        (&json!("PENDING"), &json!(307), &json!("answered 307"))
    );
    let received = receiver.received().await;
    assert!(
        received.iter().all(|r| r["path"] != "/landed"),
        "a redirect was followed: {received:#?}"
    );
}

/// On PostgreSQL every replica dispatches and delivers; each event still reaches the
/// endpoint once, with one delivery record, however many replicas raced for it.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_post_each_event_once() {
    const EVENTS: usize = 60;
    crate::helpers::bounded("replicas_post_each_event_once", async {
        let receiver = Receiver::start();
        let app = TestApp::spawn_with(Store::Postgres, &WEBHOOK_ENV).await;
        let replica = app.start_replica(&WEBHOOK_ENV);
        let (id, secret) = create_endpoint(
            &app,
            json!({ "url": receiver.url("/once"), "events": ["SECRET_CREATED"] }),
        )
        .await;
        receiver.verify_with(&[&secret]).await;
        let mut writes = Vec::new();
        for i in 0..EVENTS {
            let api = if i % 2 == 0 {
                app.api.clone()
            } else {
                replica.api.clone()
            };
            let token = app.admin_token.clone();
            writes.push(tokio::spawn(async move {
                let input = json!({ "input": { "name": format!("ONCE_{i}"), "value": format!("once-value-{i}") } });
                data(&api.gql(Some(&token), CREATE_SECRET, input).await);
            }));
        }
        for write in writes {
            write.await.expect("a write");
        }
        deliveries_once(&app, &id, |_| true).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while app
            .sql_query_one_i64("SELECT COUNT(*) FROM webhook_messages WHERE status = 'SUCCEEDED'")
            .await
            < EVENTS as i64
        {
            assert!(Instant::now() < deadline, "not every event was delivered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every message is done: nothing can be posted again.
        let received = receiver.received().await;
        let ids: BTreeSet<&str> = received.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(
            (received.len(), ids.len()),
            (EVENTS, EVENTS),
            "each event once"
        );
        for request in &received {
            assert_verified(request, 0);
            assert!(!request["body"].as_str().unwrap_or_default().contains("once-value"));
        }
        assert_eq!(
            app.sql_query_one_i64("SELECT COUNT(*) FROM webhook_deliveries")
                .await,
            EVENTS as i64
        );
        drop(replica);
    })
    .await;
}

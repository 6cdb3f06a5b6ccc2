//! The secret lifecycle, validation, optimistic concurrency and pagination.
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, DELETE_SECRET, SECRET_VALUE, Store, TestApp, UPDATE_SECRET, VIEWER, assert_code,
    both_stores, data, error_codes,
};

both_stores!(
    lifecycle,
    names_are_unique_ignoring_case,
    racing_updates_with_the_same_expected_version,
    stale_expected_version_is_a_conflict,
    invalid_names_are_rejected,
    value_size_limits,
    pagination,
    name_filter_is_literal,
);

const HISTORY: &str = "query($name: String!) { secret(name: $name) {
    currentVersion createdBy { id } updatedBy { id }
    versions(first: 100) { nodes { version keyId createdAt createdBy { id } } } } }";
const AUDIT_TRAIL: &str = "query($name: String!) {
    auditEvents(first: 50, filter: { targetName: $name, outcome: ALLOWED }) {
        nodes { action outcome targetName requestId principal { id } } } }";
const PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String,
        $filter: SecretFilter) {
    secrets(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
        totalCount
        edges { cursor node { name } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

/// `{ input: { name, value } }`, for `createSecret` and `updateSecret`.
fn name_value(name: &str, value: &str) -> Value {
    json!({ "input": { "name": name, "value": value } })
}

/// `currentVersion` and the listed version numbers (newest first) of a secret.
async fn versions(app: &TestApp, name: &str) -> (i64, Vec<i64>) {
    let response = app.admin(HISTORY, json!({ "name": name })).await;
    let secret = &data(&response)["secret"];
    let listed = secret["versions"]["nodes"].as_array().expect("versions");
    let numbers = listed
        .iter()
        .map(|v| v["version"].as_i64().expect("version"));
    (
        secret["currentVersion"].as_i64().expect("currentVersion"),
        numbers.collect(),
    )
}

async fn reveal_version(app: &TestApp, name: &str, version: i64) -> Value {
    let response = app
        .admin(SECRET_VALUE, json!({ "name": name, "version": version }))
        .await;
    data(&response)["secretValue"].clone()
}

async fn lifecycle(store: Store) {
    let app = TestApp::spawn(store).await;
    lifecycle_on(&app, None).await;
}

/// Create, list, update, reveal (current and old version), history, delete, gone — and
/// the audit trail of it all. Every version's `keyId` is `key_id` when given.
pub async fn lifecycle_on(app: &TestApp, key_id: Option<&str>) {
    const NAME: &str = "STRIPE_API_KEY";
    let viewer = app.admin(VIEWER, json!({})).await;
    let admin_id = data(&viewer)["viewer"]["principal"]["id"].clone();

    let input =
        json!({ "input": { "name": NAME, "value": "sk_live_1", "description": "payments" } });
    let created = app.admin(CREATE_SECRET, input).await;
    let secret = data(&created)["createSecret"]["secret"].clone();
    assert_eq!(secret["name"], NAME);
    assert_eq!(secret["description"], "payments");
    assert_eq!(secret["currentVersion"], 1);

    let listed = app
        .admin(
            "query { secrets { totalCount nodes { id name } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&listed)["secrets"]["totalCount"], 1);
    assert_eq!(
        data(&listed)["secrets"]["nodes"],
        json!([{ "id": secret["id"], "name": NAME }])
    );

    let updated = app
        .admin(UPDATE_SECRET, name_value(NAME, "sk_live_2"))
        .await;
    assert_eq!(
        data(&updated)["updateSecret"]["secret"]["currentVersion"],
        2
    );

    assert_eq!(
        data(&app.admin(SECRET_VALUE, json!({ "name": NAME })).await)["secretValue"],
        json!({ "name": NAME, "version": 2, "value": "sk_live_2" })
    );
    assert_eq!(
        reveal_version(app, NAME, 1).await,
        json!({ "name": NAME, "version": 1, "value": "sk_live_1" })
    );

    let history = app.admin(HISTORY, json!({ "name": NAME })).await;
    let history = &data(&history)["secret"];
    assert_eq!(history["createdBy"]["id"], admin_id);
    assert_eq!(history["updatedBy"]["id"], admin_id);
    assert_eq!(versions(app, NAME).await, (2, vec![2, 1]));
    for version in history["versions"]["nodes"].as_array().expect("versions") {
        let stored_key_id = version["keyId"].as_str().expect("keyId");
        match key_id {
            Some(key_id) => assert_eq!(stored_key_id, key_id, "{version}"),
            None => assert!(!stored_key_id.is_empty(), "{version}"),
        }
        assert_eq!(version["createdBy"]["id"], admin_id);
    }

    let deleted = app
        .admin(DELETE_SECRET, json!({ "input": { "name": NAME } }))
        .await;
    assert_eq!(
        data(&deleted)["deleteSecret"]["deletedSecretId"],
        secret["id"]
    );
    // Deleted, not yet purged: still visible (to be restored), values unreadable.
    let query = "query($name: String!) { secret(name: $name) { state purgeAt } }";
    let gone = app.admin(query, json!({ "name": NAME })).await;
    assert_eq!(data(&gone)["secret"]["state"], "DELETED", "{gone}");
    assert!(data(&gone)["secret"]["purgeAt"].is_string(), "{gone}");
    assert_code(
        &app.admin(SECRET_VALUE, json!({ "name": NAME })).await,
        "NOT_FOUND",
    );
    assert_eq!(app.secret_count().await, 0);

    let trail = app.admin(AUDIT_TRAIL, json!({ "name": NAME })).await;
    let events = data(&trail)["auditEvents"]["nodes"]
        .as_array()
        .expect("audit events");
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "secret.delete",
            "secret.reveal",
            "secret.reveal",
            "secret.update",
            "secret.create"
        ],
        "newest first: {events:#?}"
    );
    for event in events {
        assert_eq!(event["outcome"], "ALLOWED");
        assert_eq!(event["targetName"], NAME);
        assert_eq!(event["principal"]["id"], admin_id);
        assert!(event["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    }
}

async fn names_are_unique_ignoring_case(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("hook_key", "original").await;
    for name in ["hook_key", "HOOK_KEY", "Hook_Key"] {
        let response = app.admin(CREATE_SECRET, name_value(name, "other")).await;
        assert_code(&response, "ALREADY_EXISTS");
    }
    assert_eq!(app.secret_count().await, 1);
    assert_eq!(app.reveal("hook_key").await, "original");
}

/// Sends every `updateSecret` input at once and returns the responses in input order.
async fn concurrent_updates(app: &TestApp, inputs: Vec<Value>) -> Vec<Value> {
    let requests = inputs
        .into_iter()
        .map(|input| {
            (
                app.admin_token.clone(),
                UPDATE_SECRET,
                json!({ "input": input }),
            )
        })
        .collect();
    app.gql_all(requests).await
}

fn new_version(response: &Value) -> i64 {
    data(response)["updateSecret"]["secret"]["currentVersion"]
        .as_i64()
        .expect("currentVersion")
}

async fn racing_updates_with_the_same_expected_version(store: Store) {
    const NAME: &str = "RACE_KEY";
    let app = TestApp::spawn(store).await;
    app.create_secret(NAME, "initial").await;

    let racers: Vec<Value> = (0..20)
        .map(|i| json!({ "name": NAME, "value": format!("racer-{i}"), "expectedVersion": 1 }))
        .collect();
    let responses = concurrent_updates(&app, racers).await;
    let winners: Vec<usize> = (0..responses.len())
        .filter(|&i| responses[i].get("errors").is_none())
        .collect();
    let conflicts = responses
        .iter()
        .filter(|r| error_codes(r) == ["VERSION_CONFLICT"])
        .count();
    assert_eq!(
        (winners.len(), conflicts),
        (1, 19),
        "expected one winner and 19 conflicts; got {responses:#?}"
    );
    assert_eq!(new_version(&responses[winners[0]]), 2);
    assert_eq!(versions(&app, NAME).await, (2, vec![2, 1]));
    assert_eq!(app.reveal(NAME).await, format!("racer-{}", winners[0]));

    // Without expectedVersion every update lands, each with its own version number.
    let writers: Vec<Value> = (0..10)
        .map(|i| json!({ "name": NAME, "value": format!("writer-{i}") }))
        .collect();
    let responses = concurrent_updates(&app, writers).await;
    let mut assigned: Vec<i64> = responses.iter().map(new_version).collect();
    assigned.sort_unstable();
    assert_eq!(assigned, (3..=12).collect::<Vec<_>>());
    // Retention keeps the newest 10.
    assert_eq!(
        versions(&app, NAME).await,
        (12, (3..=12).rev().collect::<Vec<_>>())
    );
}

async fn stale_expected_version_is_a_conflict(store: Store) {
    const NAME: &str = "CAS_KEY";
    let app = TestApp::spawn(store).await;
    app.create_secret(NAME, "one").await;
    let update =
        |value: &str| json!({ "input": { "name": NAME, "value": value, "expectedVersion": 1 } });

    assert_eq!(
        new_version(&app.admin(UPDATE_SECRET, update("two")).await),
        2
    );
    let stale = app.admin(UPDATE_SECRET, update("three")).await;
    assert_code(&stale, "VERSION_CONFLICT");

    assert_eq!(app.reveal(NAME).await, "two");
    assert_eq!(versions(&app, NAME).await, (2, vec![2, 1]));
}

async fn invalid_names_are_rejected(store: Store) {
    let app = TestApp::spawn(store).await;
    let too_long = "A".repeat(129);
    let invalid = [
        "",
        too_long.as_str(),
        "1ABC",
        "A-B",
        "A B",
        "SECR\u{0415}T", // Cyrillic Ie, looks like E
        "A\u{0000}B",
    ];
    for name in invalid {
        let response = app.admin(CREATE_SECRET, name_value(name, "value")).await;
        assert_code(&response, "BAD_USER_INPUT");
    }
    assert_eq!(app.secret_count().await, 0);
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM secrets").await,
        0
    );

    let longest = format!("A{}", "b_9".repeat(42)) + "x";
    assert_eq!(longest.len(), 128);
    assert_eq!(app.create_secret(&longest, "value").await["name"], longest);
    assert_eq!(app.secret_count().await, 1);
}

/// A valid UTF-8 string of exactly `bytes` bytes, mostly two-byte characters, so a
/// limit counted in characters rather than bytes shows.
fn value_of_len(bytes: usize) -> String {
    "é".repeat(bytes / 2) + &"x".repeat(bytes % 2)
}

async fn value_size_limits(store: Store) {
    const NAME: &str = "BIG_VALUE";
    let app = TestApp::spawn(store).await;
    let largest = value_of_len(65_536);
    let too_large = value_of_len(65_537);

    app.create_secret(NAME, &largest).await;
    assert_eq!(app.reveal(NAME).await, largest);

    for (name, value) in [("TOO_LARGE", too_large.as_str()), ("EMPTY", "")] {
        let response = app.admin(CREATE_SECRET, name_value(name, value)).await;
        assert_code(&response, "BAD_USER_INPUT");
    }
    for value in [too_large.as_str(), ""] {
        let response = app.admin(UPDATE_SECRET, name_value(NAME, value)).await;
        assert_code(&response, "BAD_USER_INPUT");
    }
    assert_eq!(app.secret_count().await, 1);
    assert_eq!(versions(&app, NAME).await, (1, vec![1]));
}

struct Page {
    total: i64,
    names: Vec<String>,
    has_next: bool,
    has_previous: bool,
    start: Value,
    end: Value,
}

async fn page(app: &TestApp, arguments: Value) -> Page {
    let response = app.admin(PAGE, arguments).await;
    let connection = &data(&response)["secrets"];
    let edges = connection["edges"].as_array().expect("edges");
    let info = &connection["pageInfo"];
    if let (Some(first), Some(last)) = (edges.first(), edges.last()) {
        assert_eq!(first["cursor"], info["startCursor"]);
        assert_eq!(last["cursor"], info["endCursor"]);
    }
    Page {
        total: connection["totalCount"].as_i64().expect("totalCount"),
        names: edges
            .iter()
            .map(|edge| edge["node"]["name"].as_str().expect("name").to_owned())
            .collect(),
        has_next: info["hasNextPage"].as_bool().expect("hasNextPage"),
        has_previous: info["hasPreviousPage"].as_bool().expect("hasPreviousPage"),
        start: info["startCursor"].clone(),
        end: info["endCursor"].clone(),
    }
}

async fn pagination(store: Store) {
    let app = TestApp::spawn(store).await;
    // Case-insensitive order differs from byte order (which would put Bravo first).
    for name in ["Delta", "alpha", "echo", "Bravo", "charlie"] {
        app.create_secret(name, "value").await;
    }

    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = page(&app, json!({ "first": 2, "after": after })).await;
        assert_eq!(page.total, 5);
        pages.push(page.names);
        if !page.has_next {
            break;
        }
        assert!(pages.len() < 5, "pagination does not end: {pages:?}");
        after = page.end;
    }
    assert_eq!(
        pages,
        [
            vec!["alpha", "Bravo"],
            vec!["charlie", "Delta"],
            vec!["echo"]
        ]
    );

    let tail = page(&app, json!({ "last": 2 })).await;
    assert_eq!(tail.names, ["Delta", "echo"]);
    assert!(tail.has_previous);
    let before_tail = page(&app, json!({ "last": 2, "before": tail.start })).await;
    assert_eq!(before_tail.names, ["Bravo", "charlie"]);
    assert!(before_tail.has_previous);

    assert_eq!(page(&app, json!({ "first": 100 })).await.names.len(), 5);
    for too_many in [json!({ "first": 101 }), json!({ "last": 101 })] {
        assert_code(&app.admin(PAGE, too_many).await, "BAD_USER_INPUT");
    }
}

async fn name_filter_is_literal(store: Store) {
    let app = TestApp::spawn(store).await;
    for name in ["db_pass", "dbXpass", "api_key", "dbpass"] {
        app.create_secret(name, "value").await;
    }
    // The matching names, sorted here: this test is about matching, not order.
    let matching = async |fragment: &str| {
        let mut page = page(&app, json!({ "filter": { "nameContains": fragment } })).await;
        assert_eq!(page.total, page.names.len() as i64);
        page.names.sort();
        page.names
    };
    assert_eq!(matching("pass").await, ["dbXpass", "db_pass", "dbpass"]);
    // `_` and `%` are characters, not SQL wildcards.
    assert_eq!(matching("b_p").await, ["db_pass"]);
    assert_eq!(matching("_").await, ["api_key", "db_pass"]);
    // A fragment no name can contain matches nothing, or is refused: never a wildcard.
    let percent = app
        .admin(PAGE, json!({ "filter": { "nameContains": "%" } }))
        .await;
    if percent.get("errors").is_some() {
        assert_code(&percent, "BAD_USER_INPUT");
    } else {
        assert_eq!(data(&percent)["secrets"]["totalCount"], 0, "{percent}");
    }
    assert!(matching("nothing").await.is_empty());
}

//! Bounded abuse (DESIGN.md §6): what a holder of a viewer token can make the server do.
//! Refusals cost the audit log a row per request and field, not a row per refusal;
//! a principal's refusals write at most 20 rows a minute, the rest folded into one
//! counted row; aliases and root fields are capped before anything runs; a token over its
//! rate limit is told when to come back.
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Store, TestApp, UPSERT_RESOURCE, assert_code, both_stores, data, resource_input,
};

both_stores!(
    a_flood_of_refused_aliases_costs_one_audit_row,
    a_batch_of_refusals_costs_a_handful_of_rows,
    aliases_and_root_fields_are_capped_before_anything_runs,
    rate_limits_are_per_token,
    a_viewer_probing_in_a_loop_costs_a_bounded_number_of_rows,
);

const DENIED_ROWS: &str = "SELECT COUNT(*) FROM audit_events WHERE outcome = 'DENIED'";
const DENIED_EVENTS: &str = "query { auditEvents(first: 50, filter: { outcome: DENIED }) {
    totalCount nodes { action outcome principal { id } detail } } }";

/// `count` aliases of `field`: `f0: field f1: field ...`.
fn aliases(count: usize, field: &str) -> String {
    let fields: Vec<String> = (0..count).map(|i| format!("f{i}: {field}")).collect();
    fields.join(" ")
}

/// `count` aliases of a root field in one operation: `{ f0: field f1: field ... }`.
fn aliased(count: usize, field: &str) -> String {
    format!("{{ {} }}", aliases(count, field))
}

/// The DENIED audit events, as the admin reads them.
async fn denied_events(app: &TestApp) -> Vec<Value> {
    let response = app.admin(DENIED_EVENTS, json!({})).await;
    let events = &data(&response)["auditEvents"];
    events["nodes"].as_array().expect("nodes").clone()
}

/// 400 aliases of a refused field (the alias cap raised to let them through) write one
/// audit row that counts them; so do 100 refusals of a nested field.
async fn a_flood_of_refused_aliases_costs_one_audit_row(store: Store) {
    let limits = [
        ("STRONGROOM_MAX_ALIASES", "1000"),
        ("STRONGROOM_MAX_ROOT_FIELDS", "1000"),
    ];
    let app = TestApp::spawn_with(store, &limits).await;
    app.create_secret("FLOODED", "flooded-value").await;
    let viewer = app.create_service_account("VIEWER").await;

    let flood = aliased(400, r#"secretValue(name: "FLOODED") { value }"#);
    let response = app.gql(Some(&viewer.token), &flood, json!({})).await;
    assert_code(&response, "FORBIDDEN");
    assert_eq!(response["errors"].as_array().map(Vec::len), Some(400));
    assert!(!response.to_string().contains("flooded-value"));
    assert_eq!(app.sql_query_one_i64(DENIED_ROWS).await, 1);
    let events = denied_events(&app).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["action"], "secretValue");
    assert_eq!(events[0]["principal"]["id"], viewer.id.as_str());
    assert_eq!(
        events[0]["detail"],
        json!({ "role": "VIEWER", "count": 400 })
    );

    // A nested refused field: every reference's `secret`, one row for all 100.
    let references: Vec<(String, String)> = (0..100)
        .map(|i| ("FLOODED".to_owned(), format!("field_{i}")))
        .collect();
    let references: Vec<(&str, &str)> = references
        .iter()
        .map(|(s, f)| (s.as_str(), f.as_str()))
        .collect();
    let input = resource_input("PIPELINE", "wide", &references);
    data(&app.admin(UPSERT_RESOURCE, json!({ "input": input })).await);
    let nested = "{ resources(first: 10) { nodes { references { field secret { name } } } } }";
    let response = app.gql(Some(&viewer.token), nested, json!({})).await;
    assert_eq!(response["errors"].as_array().map(Vec::len), Some(100));
    let listed = &response["data"]["resources"]["nodes"][0]["references"];
    assert_eq!(listed[99], json!({ "field": "field_99", "secret": null }));
    assert_eq!(app.sql_query_one_i64(DENIED_ROWS).await, 2);
    let events = denied_events(&app).await;
    assert_eq!(events[0]["action"], "secret");
    assert_eq!(
        events[0]["detail"],
        json!({ "role": "VIEWER", "count": 100 })
    );
}

/// Every refused root field a viewer can name, in a query and a mutation.
const REFUSED_QUERY: &str = r#"query Refused {
    secret(name: "X") { name } secrets { totalCount } secretValue(name: "X") { value }
    dependents(secretName: "X") { state } auditEvents { totalCount }
    principals { totalCount } apiTokens { totalCount } }"#;
const REFUSED_MUTATION: &str = r#"mutation Refused {
    createSecret(input: { name: "X", value: "v" }) { secret { name } }
    updateSecret(input: { name: "X", value: "v" }) { secret { name } }
    deleteSecret(input: { name: "X" }) { deletedSecretId }
    createServiceAccount(input: { name: "x", role: ADMIN }) { token } }"#;
/// Refused fields per query and per mutation above.
const QUERY_FIELDS: u64 = 7;
const MUTATION_FIELDS: u64 = 4;

/// A batch of ten operations refused on eleven different fields writes five rows: four
/// fields with their counts, and a fifth that folds in the rest.
async fn a_batch_of_refusals_costs_a_handful_of_rows(store: Store) {
    let app = TestApp::spawn(store).await;
    let viewer = app.new_principal_token("VIEWER").await;
    let batch: Vec<Value> = (0..5)
        .flat_map(|_| {
            [
                json!({ "query": REFUSED_QUERY }),
                json!({ "query": REFUSED_MUTATION }),
            ]
        })
        .collect();
    let (status, responses) = app.post_raw(Some(&viewer), Value::Array(batch)).await;
    assert_eq!(status, StatusCode::OK, "{responses:#}");
    for response in responses.as_array().expect("a batch of responses") {
        assert_code(response, "FORBIDDEN");
    }

    assert_eq!(app.sql_query_one_i64(DENIED_ROWS).await, 5);
    let events = denied_events(&app).await;
    let counted: u64 = events
        .iter()
        .map(|e| e["detail"]["count"].as_u64().expect("a count"))
        .sum();
    assert_eq!(counted, 5 * (QUERY_FIELDS + MUTATION_FIELDS));
    let folded: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "other_fields")
        .collect();
    let [folded] = folded.as_slice() else {
        panic!("one folded row: {events:#?}");
    };
    let fields = folded["detail"]["fields"].as_object().expect("fields");
    assert_eq!(
        fields.len() as u64,
        QUERY_FIELDS + MUTATION_FIELDS - 4,
        "{folded:#}"
    );
}

/// Over the caps, an operation is refused whole, before any resolver runs: nothing is
/// audited as refused and nothing is written.
async fn aliases_and_root_fields_are_capped_before_anything_runs(store: Store) {
    let app = TestApp::spawn(store).await;
    let viewer = app.new_principal_token("VIEWER").await;

    let nested = |count| format!("{{ viewer {{ {} }} }}", aliases(count, "role"));
    let response = app.gql(Some(&viewer), &nested(16), json!({})).await;
    assert_code(&response, "GRAPHQL_VALIDATION_FAILED");
    let message = response["errors"][0]["message"]
        .as_str()
        .expect("a message");
    assert!(
        message.contains("at most 15 aliases; this one uses 16"),
        "{message}"
    );
    // Nested aliases count too, and a fragment's count each time it is spread.
    let spread = "{ viewer { ...R ...R } } fragment R on Viewer { \
        a: role b: role c: role d: role e: role f: role g: role h: role }";
    assert_code(
        &app.gql(Some(&viewer), spread, json!({})).await,
        "GRAPHQL_VALIDATION_FAILED",
    );
    let fine = app.gql(Some(&viewer), &nested(15), json!({})).await;
    assert_eq!(data(&fine)["viewer"]["f14"], "VIEWER");

    let roots: Vec<String> = (0..11)
        .map(|i| format!(r#"s{i}: secret(name: "X") {{ name }}"#))
        .collect();
    let too_wide = format!("{{ {} }}", roots.join(" "));
    let response = app.gql(Some(&viewer), &too_wide, json!({})).await;
    assert_code(&response, "GRAPHQL_VALIDATION_FAILED");
    let message = response["errors"][0]["message"]
        .as_str()
        .expect("a message");
    assert!(
        message.contains("at most 10 root fields; this one selects 11"),
        "{message}"
    );

    let mutations: Vec<String> = (0..16)
        .map(|i| format!(r#"m{i}: createSecret(input: {{ name: "CAPPED_{i}", value: "v" }}) {{ secret {{ name }} }}"#))
        .collect();
    let response = app
        .admin(
            &format!("mutation {{ {} }}", mutations.join(" ")),
            json!({}),
        )
        .await;
    assert_code(&response, "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(app.secret_count().await, 0, "a refused operation ran");
    assert_eq!(app.sql_query_one_i64(DENIED_ROWS).await, 0);
}

/// `STRONGROOM_RATE_LIMIT=1:3`: each token may send 3 operations at once, then one per
/// second; the next is refused with HTTP 429, `Retry-After` and `RATE_LIMITED`. Another
/// token is not affected; a batch larger than the burst can never pass.
async fn rate_limits_are_per_token(store: Store) {
    const QUERY: &str = "{ viewer { role } }";
    let app = TestApp::spawn_with(store, &[("STRONGROOM_RATE_LIMIT", "1:3")]).await;
    let busy = app.new_principal_token("VIEWER").await;
    let calm = app.new_principal_token("VIEWER").await;
    let query = json!({ "query": QUERY });

    let mut served = 0;
    let refusal = loop {
        let (status, headers, body) = app.post_with_headers(Some(&busy), query.clone()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break (headers, body);
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        served += 1;
        // The burst is 3; ten requests take far less than the seven seconds it would
        // take to earn seven more.
        assert!(served < 10, "never rate limited after {served} requests");
    };
    assert!(served >= 3, "the burst of 3 was not granted: {served}");
    let (headers, body) = refusal;
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_code(&body, "RATE_LIMITED");
    let retry_after = body["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .expect("retryAfterSeconds");
    assert!(retry_after >= 1, "{body:#}");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some(retry_after.to_string().as_str())
    );
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );

    // Another token has its own allowance.
    let (status, _, body) = app.post_with_headers(Some(&calm), query.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A batch of 4 never fits a burst of 3.
    let fresh = app.new_principal_token("VIEWER").await;
    let batch = Value::Array(vec![query.clone(); 4]);
    let (status, _, body) = app.post_with_headers(Some(&fresh), batch).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    let message = body["errors"][0]["message"].as_str().expect("a message");
    assert!(
        message.contains("more than this token's burst of 3"),
        "{message}"
    );
}

/// A viewer refused 50 times in a row (one refused field per request): the audit log
/// holds at most 20 rows per minute for it plus one `denials_folded` row per minute that
/// counts the rest, written once that minute is over — every refusal counted, and far
/// fewer rows than refusals.
async fn a_viewer_probing_in_a_loop_costs_a_bounded_number_of_rows(store: Store) {
    const PROBES: i64 = 50;
    let app = TestApp::spawn(store).await;
    app.create_secret("PROBED", "probed-value").await;
    let viewer = app.create_service_account("VIEWER").await;
    for _ in 0..PROBES {
        let response = app
            .gql(
                Some(&viewer.token),
                r#"{ secretValue(name: "PROBED") { value } }"#,
                json!({}),
            )
            .await;
        assert_code(&response, "FORBIDDEN");
    }
    let own = "SELECT COUNT(*) FROM audit_events WHERE outcome = 'DENIED' \
               AND action = 'secretValue'";
    let own_rows = app.sql_query_one_i64(own).await;
    // The 50 may straddle a minute boundary: two budgets at most.
    assert!(own_rows <= 40, "{own_rows} rows for {PROBES} refusals");
    // The folded counts are written once their minute is over (checked every 5 s).
    let folded = "SELECT COUNT(*) FROM audit_events WHERE action = 'denials_folded'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while app.sql_query_one_i64(folded).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no denials_folded row within 90 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let events = denied_events(&app).await;
    let folded: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "denials_folded")
        .collect();
    let folded_count: i64 = folded
        .iter()
        .map(|e| e["detail"]["count"].as_i64().expect("a count"))
        .sum();
    for event in &folded {
        assert_eq!(event["detail"]["role"], "VIEWER", "{event}");
        assert_eq!(
            event["detail"]["fields"]["secretValue"], event["detail"]["count"],
            "{event}"
        );
        assert_eq!(event["principal"]["id"], viewer.id.as_str(), "{event}");
    }
    assert_eq!(own_rows + folded_count, PROBES, "every refusal counted");
}

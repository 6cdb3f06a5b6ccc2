//! Subscriptions (DESIGN §7) over real WebSockets against the real binary: what a
//! subscriber receives, in order, when secrets change and dependents change state; who may
//! subscribe; and that one organization never hears another's changes. On PostgreSQL the
//! subscriber sits on another replica than the writer (events travel by LISTEN/NOTIFY); on
//! SQLite, one process.
use serde_json::{Value, json};

use crate::helpers::{
    Api, CREATE_API_TOKEN, CREATE_SECRET, DELETE_SECRET, DEPENDENT_EVENTS, DEPLOY_RESOURCE,
    Incoming, Replica, SECRET_EVENTS, Store, Subscriber, TestApp, UPDATE_SECRET, UPSERT_RESOURCE,
    bearer, both_stores, data, id, resource_input,
};

const REVOKE_API_TOKEN: &str = "mutation($input: RevokeApiTokenInput!) {
    revokeApiToken(input: $input) { apiToken { id revokedAt } } }";

both_stores!(
    a_secrets_life_reaches_subscribers_in_order,
    racing_updates_arrive_in_commit_order,
    members_and_viewers_are_refused,
    credentials_decide_the_connection,
    another_organizations_events_never_arrive,
    a_revoked_token_is_disconnected,
    a_subscriber_that_never_reads_stalls_no_one,
    a_subscription_over_http_is_pointed_to_the_websocket,
);

/// Where subscribers connect: on PostgreSQL a second replica, so every event must cross
/// processes through the database; on SQLite the one server.
struct Cluster {
    app: TestApp,
    replica: Option<Replica>,
}

impl Cluster {
    async fn start(store: Store) -> Self {
        let app = TestApp::spawn(store).await;
        let replica =
            (store == Store::Postgres).then(|| app.start_replica(&[] as &[(&str, &str)]));
        Self { app, replica }
    }

    /// The server subscribers connect to.
    fn listener(&self) -> &Api {
        self.replica.as_ref().map_or(&self.app.api, |r| &r.api)
    }
}

async fn update(app: &TestApp, name: &str, value: &str) -> Value {
    let input = json!({ "input": { "name": name, "value": value } });
    app.admin(UPDATE_SECRET, input).await
}

async fn upsert_and_deploy(app: &TestApp, name: &str, references: &[(&str, &str)]) -> String {
    let input = json!({ "input": resource_input("PIPELINE", name, references) });
    let upserted = app.admin(UPSERT_RESOURCE, input).await;
    let resource_id = id(&data(&upserted)["upsertResource"]["resource"]);
    data(
        &app.admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
            .await,
    );
    resource_id
}

/// The parts of a secret event a test compares: kind, name, version, who.
fn secret_event(event: &Value) -> (String, String, Value, Value) {
    assert!(event["occurredAt"].is_string(), "occurredAt: {event}");
    (
        event["kind"].as_str().unwrap_or_default().to_owned(),
        event["secretName"].as_str().unwrap_or_default().to_owned(),
        event["version"].clone(),
        event["principal"]["name"].clone(),
    )
}

/// The parts of a dependent event a test compares: secret, resource, field, previous
/// state, state, deployed version.
fn dependent_event(event: &Value) -> (String, String, String, Value, String, Value) {
    assert!(event["occurredAt"].is_string(), "occurredAt: {event}");
    let dependent = &event["dependent"];
    (
        event["secretName"].as_str().unwrap_or_default().to_owned(),
        dependent["resource"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        dependent["field"].as_str().unwrap_or_default().to_owned(),
        event["previousState"].clone(),
        dependent["state"].as_str().unwrap_or_default().to_owned(),
        dependent["deployedVersion"].clone(),
    )
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// Create, update (the pipeline goes stale), redeploy (up to date again), a reference to a
/// secret that does not exist yet (broken until created), and a forced delete (broken):
/// each subscriber receives exactly these events, in this order, and never a value.
async fn a_secrets_life_reaches_subscribers_in_order(store: Store) {
    let cluster = Cluster::start(store).await;
    let app = &cluster.app;
    let mut ws = Subscriber::start(cluster.listener(), &app.admin_token).await;
    let names = json!({ "names": ["DB_URL", "LATER"] });
    let secrets = ws.subscribe(SECRET_EVENTS, names).await;
    let db_url = ws
        .subscribe(DEPENDENT_EVENTS, json!({ "secretName": "DB_URL" }))
        .await;
    let later = ws
        .subscribe(DEPENDENT_EVENTS, json!({ "secretName": "LATER" }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    let admin = json!("admin");

    app.create_secret("DB_URL", "postgres://v1").await;
    assert_eq!(
        secret_event(&ws.next_event(&secrets).await),
        (s("CREATED"), s("DB_URL"), json!(1), admin.clone())
    );
    let resource_id = upsert_and_deploy(app, "etl", &[("DB_URL", "DATABASE_URL")]).await;
    // Deployed for the first time: its reference was not deployed before.
    assert_eq!(
        dependent_event(&ws.next_event(&db_url).await),
        (
            s("DB_URL"),
            s("etl"),
            s("DATABASE_URL"),
            json!("NOT_DEPLOYED"),
            s("UP_TO_DATE"),
            json!(1)
        )
    );

    data(&update(app, "DB_URL", "postgres://v2").await);
    let [updated, stale] =
        <[Value; 2]>::try_from(ws.next_of(&[&secrets, &db_url]).await).expect("two events");
    assert_eq!(
        secret_event(&updated),
        (s("UPDATED"), s("DB_URL"), json!(2), admin.clone())
    );
    assert_eq!(
        dependent_event(&stale),
        (
            s("DB_URL"),
            s("etl"),
            s("DATABASE_URL"),
            json!("UP_TO_DATE"),
            s("STALE"),
            json!(1)
        )
    );
    assert_eq!(stale["dependent"]["resource"]["id"], resource_id.as_str());

    // A second update: the pipeline was already stale, so only the secret event.
    data(&update(app, "DB_URL", "postgres://v3").await);
    assert_eq!(
        secret_event(&ws.next_event(&secrets).await),
        (s("UPDATED"), s("DB_URL"), json!(3), admin.clone())
    );
    data(
        &app.admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
            .await,
    );
    assert_eq!(
        dependent_event(&ws.next_event(&db_url).await),
        (
            s("DB_URL"),
            s("etl"),
            s("DATABASE_URL"),
            json!("STALE"),
            s("UP_TO_DATE"),
            json!(3)
        )
    );

    // A reference to a secret that does not exist yet is broken until it is created.
    let input = json!({ "input": resource_input("INTEGRATION", "hooks", &[("LATER", "TOKEN")]) });
    data(&app.admin(UPSERT_RESOURCE, input).await);
    app.create_secret("LATER", "later").await;
    let [created, fixed] =
        <[Value; 2]>::try_from(ws.next_of(&[&secrets, &later]).await).expect("two events");
    assert_eq!(
        secret_event(&created),
        (s("CREATED"), s("LATER"), json!(1), admin.clone())
    );
    assert_eq!(
        dependent_event(&fixed),
        (
            s("LATER"),
            s("hooks"),
            s("TOKEN"),
            json!("BROKEN"),
            s("NOT_DEPLOYED"),
            Value::Null
        )
    );

    let input = json!({ "input": { "name": "DB_URL", "force": true } });
    data(&app.admin(DELETE_SECRET, input).await);
    let [deleted, broken] =
        <[Value; 2]>::try_from(ws.next_of(&[&secrets, &db_url]).await).expect("two events");
    assert_eq!(
        secret_event(&deleted),
        (s("DELETED"), s("DB_URL"), json!(3), admin)
    );
    assert_eq!(
        dependent_event(&broken),
        (
            s("DB_URL"),
            s("etl"),
            s("DATABASE_URL"),
            json!("UP_TO_DATE"),
            s("BROKEN"),
            json!(3)
        )
    );

    // Nothing else was sent, and no event carried a value.
    assert_eq!(
        ws.recv_within(std::time::Duration::from_millis(500)).await,
        None
    );
    let logs = cluster.listener_logs();
    for value in ["postgres://v1", "postgres://v2", "postgres://v3"] {
        assert!(!logs.contains(value), "a value reached the logs");
    }
}

impl Cluster {
    fn listener_logs(&self) -> String {
        self.replica
            .as_ref()
            .map_or_else(|| self.app.logs(), Replica::logs)
    }
}

/// Updates racing from several clients (through two replicas on PostgreSQL) reach a
/// subscriber as versions 2, 3, 4, … with none missing, none repeated and none out of
/// order: the order in which they committed.
async fn racing_updates_arrive_in_commit_order(store: Store) {
    const UPDATES: usize = 40;
    let cluster = Cluster::start(store).await;
    let app = &cluster.app;
    let mut ws = Subscriber::start(cluster.listener(), &app.admin_token).await;
    let secrets = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["HOT"] }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    // Created once the subscriber listens (an event of a secret made earlier may still be
    // on its way to another replica's subscribers).
    app.create_secret("HOT", "v1").await;
    assert_eq!(ws.next_event(&secrets).await["kind"], "CREATED");

    let writers: Vec<&Api> = [Some(&app.api), cluster.replica.as_ref().map(|r| &r.api)]
        .into_iter()
        .flatten()
        .collect();
    let requests = (0..UPDATES)
        .map(|i| {
            let input = json!({ "input": { "name": "HOT", "value": format!("v-{i}") } });
            (
                writers[i % writers.len()].clone(),
                app.admin_token.clone(),
                UPDATE_SECRET,
                input,
            )
        })
        .collect();
    let responses = crate::helpers::all_at_once(requests).await;
    for response in &responses {
        data(response);
    }

    let mut versions = Vec::new();
    for _ in 0..UPDATES {
        let event = ws.next_event(&secrets).await;
        assert_eq!(event["kind"], "UPDATED");
        versions.push(event["version"].as_i64().expect("a version"));
    }
    let expected: Vec<i64> = (2..).take(UPDATES).collect();
    assert_eq!(versions, expected);
}

/// The subscription fields, read by introspection (a new one is covered without a change
/// here).
async fn subscription_fields(app: &TestApp) -> Vec<String> {
    let query = "{ __schema { subscriptionType { fields { name } } } }";
    let response = app.admin(query, json!({}));
    let fields: Vec<String> = data(&response.await)["__schema"]["subscriptionType"]["fields"]
        .as_array()
        .expect("subscription fields")
        .iter()
        .map(|f| f["name"].as_str().expect("a name").to_owned())
        .collect();
    assert!(fields.len() >= 2, "{fields:?}");
    fields
}

/// Like the queries they mirror, every subscription is ADMIN-only, so a member's or a
/// viewer's valid token is refused at `connection_init` (never acknowledged): closed with
/// 4403 and a reason that says who may subscribe, each refusal audited; the admin's
/// subscriptions of every field run.
async fn members_and_viewers_are_refused(store: Store) {
    let app = TestApp::spawn(store).await;
    let fields = subscription_fields(&app).await;
    for role in ["MEMBER", "VIEWER"] {
        let token = app.new_principal_token(role).await;
        let mut ws = Subscriber::connect(&app.api, None).await;
        ws.send_init(bearer(&token)).await;
        match ws.raw_within(std::time::Duration::from_secs(30)).await {
            Some(Err((code, reason))) => {
                assert_eq!(code, 4403, "{role}: {reason}");
                assert!(
                    reason.contains("members and viewers may not subscribe"),
                    "{role}: {reason}"
                );
            }
            other => panic!("{role}: expected the connection closed, got {other:?}"),
        }
    }
    // The admin's run: no refusal arrives before the probe's event, which is only
    // delivered once every earlier subscription of the connection has started.
    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    for field in &fields {
        ws.subscribe(
            &format!("subscription {{ {field} {{ __typename }} }}"),
            json!({}),
        )
        .await;
    }
    ws.ready(&app.api, &app.admin_token).await;

    // The refusals reach the audit log (written within about a second).
    let audited = json!({ "filter": { "outcome": "DENIED" } });
    let query = "query($filter: AuditFilter) {
        auditEvents(first: 50, filter: $filter) { nodes { action outcome } } }";
    let expected = vec!["connection_init".to_owned(); 2];
    let mut actions = Vec::new();
    for _ in 0..100 {
        let response = app.admin(query, audited.clone()).await;
        actions = data(&response)["auditEvents"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["action"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>();
        if actions.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    actions.sort();
    assert_eq!(actions, expected, "one DENIED row per refused connection");
}

/// The token comes in `connection_init`'s payload or the upgrade request's header; none
/// closes with 4401, a bad one with 4403, and a `subscribe` before `connection_init` is
/// refused.
async fn credentials_decide_the_connection(store: Store) {
    let app = TestApp::spawn(store).await;

    let mut ws = Subscriber::connect(&app.api, None).await;
    ws.send_init(json!({})).await;
    assert_eq!(ws.closed().await.0, 4401, "no credentials");

    let mut ws = Subscriber::connect(&app.api, None).await;
    ws.send_init(bearer("sr_not_a_real_token")).await;
    assert_eq!(ws.closed().await.0, 4403, "an unknown token");

    let mut ws = Subscriber::connect(&app.api, None).await;
    ws.subscribe(SECRET_EVENTS, json!({})).await;
    assert_eq!(
        ws.closed().await.0,
        4401,
        "subscribe before connection_init"
    );

    // The upgrade request's header, with an empty init payload.
    let mut ws = Subscriber::connect(&app.api, Some(&app.admin_token)).await;
    ws.send_init(json!({})).await;
    ws.expect_ack().await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["HEADER"] }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    app.create_secret("HEADER", "x").await;
    assert_eq!(ws.next_event(&sub).await["kind"], "CREATED");

    // Under `headers`, as some Apollo Client setups send it.
    let mut ws = Subscriber::connect(&app.api, None).await;
    let nested = format!("Bearer {}", app.admin_token);
    ws.send_init(json!({ "headers": { "authorization": nested } }))
        .await;
    ws.expect_ack().await;

    // A bad token in the payload is not rescued by a good header.
    let mut ws = Subscriber::connect(&app.api, Some(&app.admin_token)).await;
    ws.send_init(bearer("sr_not_a_real_token")).await;
    assert_eq!(ws.closed().await.0, 4403, "the payload's token decides");
}

/// An admin of one organization hears nothing of another's, even about a secret of the
/// same name: the first events it receives are its own organization's.
async fn another_organizations_events_never_arrive(store: Store) {
    let cluster = Cluster::start(store).await;
    let app = &cluster.app;
    let other = &app.other_admin_token;
    let mut ws = Subscriber::start(cluster.listener(), other).await;
    let all_secrets = ws.subscribe(SECRET_EVENTS, json!({})).await;
    let named = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["SHARED"] }))
        .await;
    let dependents = ws.subscribe(DEPENDENT_EVENTS, json!({})).await;
    ws.ready(&app.api, other).await;

    // acme's changes, with a secret named like globex's.
    app.create_secret("SHARED", "acme").await;
    let resource_id = upsert_and_deploy(app, "acme-etl", &[("SHARED", "URL")]).await;
    data(&update(app, "SHARED", "acme-2").await);
    data(
        &app.admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
            .await,
    );
    let input = json!({ "input": { "name": "SHARED", "force": true } });
    data(&app.admin(DELETE_SECRET, input).await);

    // globex's own change, last.
    let input = json!({ "input": { "name": "SHARED", "value": "globex" } });
    data(&app.gql(Some(other), CREATE_SECRET, input).await);
    let input = json!({ "input": resource_input("PIPELINE", "globex-etl", &[("SHARED", "URL")]) });
    let upserted = app.gql(Some(other), UPSERT_RESOURCE, input).await;
    let globex_resource = id(&data(&upserted)["upsertResource"]["resource"]);
    let deployed = app
        .gql(
            Some(other),
            DEPLOY_RESOURCE,
            json!({ "id": globex_resource }),
        )
        .await;
    data(&deployed);

    let mut received = Vec::new();
    for _ in 0..3 {
        match ws.recv().await {
            Incoming::Next { id, payload } => received.push((id, payload["data"].clone())),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    received.sort_by(|a, b| a.0.cmp(&b.0));
    let globex = Some(json!("globex-etl"));
    assert_eq!(received[0].0, all_secrets);
    assert_eq!(received[0].1["secretEvents"]["kind"], "CREATED");
    assert_eq!(received[1].0, named);
    assert_eq!(received[1].1["secretEvents"]["secretName"], "SHARED");
    assert_eq!(received[1].1["secretEvents"]["principal"]["name"], "admin");
    assert_eq!(received[2].0, dependents);
    let resource = &received[2].1["dependentEvents"]["dependent"]["resource"];
    assert_eq!(Some(resource["name"].clone()), globex);
    assert_eq!(resource["id"], globex_resource.as_str());
    assert_eq!(
        ws.recv_within(std::time::Duration::from_millis(500)).await,
        None
    );
}

/// A subscriber whose token is revoked is disconnected with 4403 (within a few seconds;
/// the test waits for the close, not for a deadline).
async fn a_revoked_token_is_disconnected(store: Store) {
    let app = TestApp::spawn(store).await;
    let account = app.create_service_account("ADMIN").await;
    let input = json!({ "input": { "principalId": account.id, "description": "watcher" } });
    let created = app.admin(CREATE_API_TOKEN, input).await;
    let created = &data(&created)["createApiToken"];
    let token = created["token"].as_str().expect("a token");

    let mut ws = Subscriber::start(&app.api, token).await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["WATCHED"] }))
        .await;
    ws.ready(&app.api, token).await;
    app.create_secret("WATCHED", "v1").await;
    assert_eq!(ws.next_event(&sub).await["kind"], "CREATED");

    let input = json!({ "input": { "id": created["apiToken"]["id"] } });
    data(&app.admin(REVOKE_API_TOKEN, input).await);
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4403, "closed as Forbidden: {reason}");

    // Operators see it: the close is counted, and the connection is gone once the
    // server's side of it has finished.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app
            .get_raw("/metrics", Some(crate::helpers::METRICS_TOKEN))
            .await
            .1;
        if metrics.contains("strongroom_subscription_connections 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("strongroom_subscription_closes_total{code=\"4403\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strongroom_subscription_connections 0"),
        "{metrics}"
    );
}

/// A subscriber that never reads holds up neither writers nor other subscribers: a burst
/// of updates all commit, and a reading subscriber receives every one, in order.
async fn a_subscriber_that_never_reads_stalls_no_one(store: Store) {
    const UPDATES: usize = 300;
    let app = TestApp::spawn(store).await;
    let mut idle = Subscriber::start(&app.api, &app.admin_token).await;
    idle.subscribe(SECRET_EVENTS, json!({})).await;
    idle.ready(&app.api, &app.admin_token).await;
    let mut reader = Subscriber::start(&app.api, &app.admin_token).await;
    let sub = reader
        .subscribe(SECRET_EVENTS, json!({ "names": ["BUSY"] }))
        .await;
    reader.ready(&app.api, &app.admin_token).await;
    // Created once both listen: on PostgreSQL an event reaches a replica's subscribers a
    // moment after its commit, so one made earlier could still arrive inside `ready`.
    app.create_secret("BUSY", "v1").await;
    let created = reader.next_event(&sub).await;
    assert_eq!(
        (&created["kind"], &created["version"]),
        (&json!("CREATED"), &json!(1))
    );

    for chunk in (0..UPDATES).collect::<Vec<_>>().chunks(20) {
        let requests = chunk
            .iter()
            .map(|i| {
                let input = json!({ "input": { "name": "BUSY", "value": format!("v-{i}") } });
                (app.admin_token.clone(), UPDATE_SECRET, input)
            })
            .collect();
        for response in app.gql_all(requests).await {
            data(&response);
        }
    }
    for version in 2..=(UPDATES as i64 + 1) {
        let event = reader.next_event(&sub).await;
        assert_eq!(event["version"], version);
    }
    drop(idle);
}

/// A subscription sent to `/graphql` over HTTP (GraphiQL does this when run is clicked
/// before it has parsed the new text) is the client's mistake, with a pointer to the
/// WebSocket: `BAD_REQUEST`, not a server fault; over GET as well.
async fn a_subscription_over_http_is_pointed_to_the_websocket(store: Store) {
    let app = TestApp::spawn(store).await;
    let query = "subscription { secretEvents { kind } }";
    let response = app.admin(query, json!({})).await;
    crate::helpers::assert_code(&response, "BAD_REQUEST");
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("/graphql/ws"), "{message}");
    assert!(
        response.get("data").is_none(),
        "a request error: {response}"
    );

    let path = format!(
        "/graphql?query={}",
        "subscription%20%7B%20secretEvents%20%7B%20kind%20%7D%20%7D"
    );
    let (status, body) = app.get_raw(&path, Some(&app.admin_token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("BAD_REQUEST") && body.contains("/graphql/ws"),
        "{body}"
    );
}

/// Bounds: a connection runs at most `STRONGROOM_MAX_SUBSCRIPTIONS_PER_CONNECTION`
/// subscriptions (one more is refused with `RATE_LIMITED`, and completing one makes room),
/// and the server holds at most `STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS` connections (one
/// more is refused with 503 before the upgrade). SQLite only: no store is involved.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_and_connections_are_capped() {
    let limits = [
        ("STRONGROOM_MAX_SUBSCRIPTIONS_PER_CONNECTION", "2"),
        ("STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS", "1"),
    ];
    let app = TestApp::spawn_with(Store::Sqlite, &limits).await;
    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    let first = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["CAPPED"] }))
        .await;
    let second = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["OTHER"] }))
        .await;
    let third = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["THIRD"] }))
        .await;
    match ws.recv().await {
        Incoming::Error { id, payload } if id == third => {
            assert_eq!(
                payload[0]["extensions"]["code"], "RATE_LIMITED",
                "{payload}"
            );
        }
        other => panic!("expected the third subscription refused, got {other:?}"),
    }
    // Completing one makes room (the probe of `ready` is the second now).
    ws.complete(&second).await;
    ws.ready(&app.api, &app.admin_token).await;
    app.create_secret("CAPPED", "v").await;
    assert_eq!(ws.next_event(&first).await["kind"], "CREATED");

    // A second connection is refused while the first is open...
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            app.ws_url(),
        )
        .expect("a request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("graphql-transport-ws"),
    );
    match tokio_tungstenite::connect_async(request.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected a 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    // ...and accepted once it closed.
    drop(ws);
    let mut accepted = false;
    for _ in 0..100 {
        if tokio_tungstenite::connect_async(request.clone())
            .await
            .is_ok()
        {
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        accepted,
        "a connection is accepted once the first one closed"
    );
}

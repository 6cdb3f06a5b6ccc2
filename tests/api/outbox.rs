//! The events outbox (DESIGN §7, §13 "Events cannot be forged"; issue 15): every change
//! writes its events as rows in its own transaction, on both stores, and old rows are
//! pruned; on PostgreSQL a `NOTIFY` carries only outbox ids, so a forged one delivers
//! nothing, and a replica whose listening connection failed — its backend terminated, or
//! the whole database stopped and started — replays from the outbox what it missed instead
//! of ending its subscriptions with `EVENTS_MISSED`.
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, DELETE_SECRET, DEPENDENT_EVENTS, Incoming, PostgresCluster, SECRET_EVENTS,
    Store, Subscriber, TestApp, UPDATE_SECRET, UPSERT_RESOURCE, assert_code, both_stores, data,
    resource_input,
};

both_stores!(
    every_change_writes_its_events_to_the_outbox,
    events_past_the_retention_are_pruned,
);

/// The kinds of the outbox rows about secret `name`, in id order.
async fn outbox_kinds(app: &TestApp, name: &str) -> Vec<String> {
    app.sql_strings(&format!(
        "SELECT kind FROM event_outbox WHERE payload LIKE '%\"secretName\":\"{name}\"%' ORDER BY id"
    ))
    .await
}

async fn update(app: &TestApp, name: &str, value: &str) -> Value {
    let input = json!({ "input": { "name": name, "value": value } });
    app.admin(UPDATE_SECRET, input).await
}

/// A create, a deploy, an update and a forced delete each leave exactly their events in
/// the outbox, in order, with the organization and never a value; a refused update
/// (`VERSION_CONFLICT`, rolled back) leaves none.
async fn every_change_writes_its_events_to_the_outbox(store: Store) {
    let app = TestApp::spawn(store).await;
    let values = ["outbox-v1-5d1e", "outbox-v2-9a4c", "outbox-v3-17fb"];
    app.create_secret("OUTBOXED", values[0]).await;
    assert_eq!(outbox_kinds(&app, "OUTBOXED").await, ["secret.created"]);

    app.deploy_pipeline("outboxed-etl", &[("OUTBOXED", "URL")])
        .await;
    data(&update(&app, "OUTBOXED", values[1]).await);
    let input =
        json!({ "input": { "name": "OUTBOXED", "value": values[2], "expectedVersion": 1 } });
    assert_code(&app.admin(UPDATE_SECRET, input).await, "VERSION_CONFLICT");
    let input = json!({ "input": { "name": "OUTBOXED", "force": true } });
    data(&app.admin(DELETE_SECRET, input).await);
    assert_eq!(
        outbox_kinds(&app, "OUTBOXED").await,
        [
            "secret.created",
            "dependent.up_to_date",
            "secret.updated",
            "dependent.stale",
            "secret.deleted",
            "dependent.broken",
        ]
    );

    let acme = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM event_outbox e JOIN organizations o ON o.id = e.org_id
             WHERE o.name = 'acme' AND e.payload LIKE '%\"secretName\":\"OUTBOXED\"%'",
        )
        .await;
    assert_eq!(acme, 6, "every row names acme");
    let payloads = app
        .sql_strings("SELECT payload FROM event_outbox ORDER BY id")
        .await
        .join("\n");
    for value in values {
        assert!(!payloads.contains(value), "a value in the outbox");
    }
    // The payload is the notice as subscribers' replicas read it back.
    let first: Value = serde_json::from_str(
        &app.sql_strings(
            "SELECT payload FROM event_outbox
             WHERE payload LIKE '%\"secretName\":\"OUTBOXED\"%' ORDER BY id LIMIT 1",
        )
        .await[0],
    )
    .expect("a JSON payload");
    assert_eq!(first["change"]["type"], "secret");
    assert_eq!(first["change"]["kind"], "CREATED");
    assert_eq!(first["change"]["version"], 1);
    assert!(first["orgId"].is_string(), "{first:#}");
}

/// With a retention of an hour and a sweep every second, rows written more than an hour
/// ago (backdated here, 2,500 of them: more than one prune batch) are deleted, and the
/// rows of a change made now stay.
async fn events_past_the_retention_are_pruned(store: Store) {
    let settings = [
        ("STRONGROOM_EVENTS_RETENTION_SECS", "3600"),
        ("STRONGROOM_SWEEP_INTERVAL_SECS", "1"),
    ];
    let app = TestApp::spawn_with(store, &settings).await;
    app.create_secret("PRUNED", "old").await;
    let two_hours_ago = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    let backdated = app
        .sql_with(
            "UPDATE event_outbox SET created_at = $1 WHERE payload LIKE '%\"PRUNED\"%'",
            vec![two_hours_ago.into()],
        )
        .await;
    assert_eq!(backdated, 1);
    // A backlog of old rows.
    let backlog = match store {
        Store::Postgres => {
            "INSERT INTO event_outbox (org_id, kind, payload, occurred_at, created_at)
             SELECT org_id, kind, payload, occurred_at, created_at FROM event_outbox,
                 generate_series(1, 2500) WHERE payload LIKE '%\"PRUNED\"%'"
        }
        Store::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
             INSERT INTO event_outbox (org_id, kind, payload, occurred_at, created_at)
             SELECT org_id, kind, payload, occurred_at, created_at FROM event_outbox, n
             WHERE payload LIKE '%\"PRUNED\"%'"
        }
    };
    assert_eq!(app.sql(backlog).await, 2500);
    app.create_secret("KEPT", "new").await;

    let old = "SELECT COUNT(*) FROM event_outbox WHERE payload LIKE '%\"PRUNED\"%'";
    let mut left = app.sql_query_one_i64(old).await;
    for _ in 0..600 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = app.sql_query_one_i64(old).await;
    }
    assert_eq!(left, 0, "old rows left after a minute of sweeps");
    assert_eq!(outbox_kinds(&app, "KEPT").await, ["secret.created"]);
    assert!(
        app.server_logs()
            .contains("pruned events past their retention"),
        "the sweep reports what it pruned"
    );
}

/// The listeners' connections (`application_name` `strongroom-events`) on the app's
/// database: their backend pids.
async fn listener_backends(app: &TestApp) -> Vec<String> {
    app.sql_strings(
        "SELECT CAST(pid AS TEXT) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'strongroom-events'",
    )
    .await
}

/// PostgreSQL: a subscriber on a replica. From a separate connection, as any role that can
/// connect could: a notification in the old format (a notice for a real secret, saying it
/// was deleted), one naming an id that does not exist, and one repeating every real id
/// (twice each). Then a real update: the subscriber's next event is that update, and
/// nothing else arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_notify_delivers_nothing() {
    let app = TestApp::spawn(Store::Postgres).await;
    let replica = app.start_replica(&[] as &[(&str, &str)]);
    let mut ws = Subscriber::start(&replica.api, &app.admin_token).await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["FORGED"] }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    app.create_secret("FORGED", "real-v1").await;
    assert_eq!(ws.next_event(&sub).await["kind"], "CREATED");

    let ids = app
        .sql_strings("SELECT CAST(org_id AS TEXT) || ' ' || CAST(id AS TEXT) FROM secrets WHERE name = 'FORGED'")
        .await;
    let (org_id, secret_id) = ids[0].split_once(' ').expect("two ids");
    let old_format = json!([{
        "orgId": org_id, "secretName": "FORGED", "occurredAt": "2026-12-03T00:00:00Z",
        "change": { "type": "secret", "kind": "DELETED", "secretId": secret_id,
                    "version": 9, "principalId": null } }]);
    app.sql(&format!("NOTIFY strongroom_events, '{old_format}'"))
        .await;
    app.sql("NOTIFY strongroom_events, '[999999]'").await;
    app.sql(
        "SELECT pg_notify('strongroom_events',
            '[' || string_agg(CAST(id AS TEXT) || ',' || CAST(id AS TEXT), ',') || ']')
         FROM event_outbox",
    )
    .await;

    data(&update(&app, "FORGED", "real-v2").await);
    let event = ws.next_event(&sub).await;
    assert_eq!(
        (&event["kind"], &event["version"]),
        (&json!("UPDATED"), &json!(2)),
        "the real change, not a forged one: {event:#}"
    );
    assert_eq!(ws.recv_within(Duration::from_millis(500)).await, None);
    assert!(
        replica
            .logs()
            .contains("ignored a notification that is not a list of event ids"),
        "the replica logs the forgery it ignored"
    );
}

/// PostgreSQL, two replicas on one database, a subscriber on replica A: A is frozen
/// (SIGSTOP), every listening backend is terminated (A's and the writer's; each replica
/// reconnects on its own), five changes are made through the other server while A's
/// listener is gone, and A is let run again. The subscriber receives all five, in order,
/// and no `EVENTS_MISSED`: A replayed them from the outbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_listener_replays_what_it_missed() {
    const CHANGES: usize = 5;
    let app = TestApp::spawn(Store::Postgres).await;
    let replica = app.start_replica(&[] as &[(&str, &str)]);
    let mut ws = Subscriber::start(&replica.api, &app.admin_token).await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["REPLAYED"] }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    let before = listener_backends(&app).await;
    assert_eq!(before.len(), 2, "one listener per server: {before:?}");

    replica.pause();
    app.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'strongroom-events'",
    )
    .await;
    // Gone for good before the changes: no notification of theirs reaches A's old session.
    let gone = format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE pid IN ({})",
        before.join(",")
    );
    let mut left = app.sql_query_one_i64(&gone).await;
    for _ in 0..300 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = app.sql_query_one_i64(&gone).await;
    }
    assert_eq!(left, 0, "the terminated backends are gone");

    app.create_secret("REPLAYED", "v1").await;
    for i in 2..=CHANGES {
        data(&update(&app, "REPLAYED", &format!("v{i}")).await);
    }
    replica.resume();

    for version in 1..=CHANGES {
        match ws.recv().await {
            Incoming::Next { id, payload } if id == sub => {
                assert!(payload.get("errors").is_none(), "{payload:#}");
                let event = &payload["data"]["secretEvents"];
                let kind = if version == 1 { "CREATED" } else { "UPDATED" };
                assert_eq!(
                    (&event["kind"], &event["version"]),
                    (&json!(kind), &json!(version)),
                    "{event:#}"
                );
            }
            other => panic!("expected version {version}'s event, got {other:?}"),
        }
    }
    // Live again: a change after the replay arrives once, and nothing else.
    data(&update(&app, "REPLAYED", "after").await);
    let event = ws.next_event(&sub).await;
    assert_eq!(event["version"], CHANGES + 1);
    assert_eq!(ws.recv_within(Duration::from_millis(500)).await, None);
    assert_eq!(listener_backends(&app).await.len(), 2, "both listen again");
    assert!(
        replica.logs().contains("replayed what committed meanwhile"),
        "the replica says it replayed"
    );
}

/// PostgreSQL stopped under a server with a subscriber (a private cluster, `pg_ctl stop -m
/// fast`: every session ends) and started again. The subscription is not ended: a change
/// made once the database is back (retried while it answers `DATABASE_UNAVAILABLE`)
/// reaches it, and no `EVENTS_MISSED` comes first — the design resumes rather than telling
/// subscribers they missed events, since nothing can commit while the database is down and
/// the replay after the reconnect reads what committed before the listener was back.
#[tokio::test(flavor = "multi_thread")]
async fn subscribers_resume_across_a_postgresql_outage() {
    let cluster = PostgresCluster::start();
    let app = TestApp::spawn_on(&cluster, &[] as &[(&str, &str)]).await;
    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["AFTER_OUTAGE"] }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;

    cluster.stop();
    cluster.resume();
    let started = std::time::Instant::now();
    let input = json!({ "input": { "name": "AFTER_OUTAGE", "value": "after" } });
    loop {
        let body = json!({ "query": CREATE_SECRET, "variables": input });
        let (_, created) = app.api.post_raw(Some(&app.admin_token), body).await;
        if created.get("errors").is_none() {
            break;
        }
        assert_code(&created, "DATABASE_UNAVAILABLE");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writes still refused a minute after PostgreSQL came back: {created:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match ws.recv().await {
        Incoming::Next { id, payload } if id == sub => {
            assert!(
                payload.get("errors").is_none(),
                "resumed, not EVENTS_MISSED: {payload:#}"
            );
            assert_eq!(payload["data"]["secretEvents"]["kind"], "CREATED");
        }
        other => panic!("expected the change after the outage, got {other:?}"),
    }
    assert_eq!(ws.recv_within(Duration::from_millis(500)).await, None);
}

/// PostgreSQL: one change announcing more events than one notification's ids can hold (a
/// forced delete breaking 400 deployed pipelines: 401 events) still reaches a subscriber on
/// another replica whole: every pipeline `BROKEN` once, then nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_with_hundreds_of_events_reaches_another_replica_whole() {
    const PIPELINES: usize = 400;
    let app = TestApp::spawn(Store::Postgres).await;
    let replica = app.start_replica(&[] as &[(&str, &str)]);
    app.create_secret("WIDE", "wide-v1").await;
    let upserts = (0..PIPELINES)
        .map(|i| {
            let input = resource_input("PIPELINE", &format!("wide-{i:03}"), &[("WIDE", "URL")]);
            (UPSERT_RESOURCE, json!({ "input": input }))
        })
        .collect();
    let upserted = app.admin_batches(upserts).await;
    app.deploy_upserted(&upserted).await;

    let mut ws = Subscriber::start(&replica.api, &app.admin_token).await;
    let sub = ws
        .subscribe(DEPENDENT_EVENTS, json!({ "secretName": "WIDE" }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    let input = json!({ "input": { "name": "WIDE", "force": true } });
    data(&app.admin(DELETE_SECRET, input).await);

    let mut broken = Vec::new();
    for _ in 0..PIPELINES {
        let event = ws.next_event(&sub).await;
        assert_eq!(event["dependent"]["state"], "BROKEN", "{event:#}");
        broken.push(
            event["dependent"]["resource"]["name"]
                .as_str()
                .expect("a name")
                .to_owned(),
        );
    }
    let expected: Vec<String> = (0..PIPELINES).map(|i| format!("wide-{i:03}")).collect();
    let mut sorted = broken.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "each pipeline once");
    assert_eq!(ws.recv_within(Duration::from_millis(500)).await, None);
}

//! Hostile WebSocket clients (DESIGN §13): the bounds of `/graphql/ws` against the real
//! binary. A principal whose role may not subscribe is refused at `connection_init`, and so
//! is a connection whose role is taken away; one principal, or one client address, cannot
//! take every connection; the legacy `start` message counts like `subscribe`; a client
//! that answers pings stays, one that sends nothing is closed. The tests that involve a
//! principal run on both stores; the pure socket bounds (address, `start`, pings) touch
//! no store and run on SQLite only.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use serde_json::{Value, json};

use crate::helpers::{
    CREATE_API_TOKEN, Incoming, SECRET_EVENTS, Store, Subscriber, TestApp, bearer, both_stores,
    data,
};

both_stores!(
    only_a_principal_that_may_subscribe_is_acknowledged,
    one_principal_cannot_take_every_connection,
);

/// The close counts of `/metrics`, read until `expected` of `code` were counted (the
/// server counts a close as it sends it).
async fn wait_for_closes(app: &TestApp, code: u16, expected: u64) -> String {
    let line = format!("strongroom_subscription_closes_total{{code=\"{code}\"}} {expected}");
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app
            .get_raw("/metrics", Some(crate::helpers::METRICS_TOKEN))
            .await
            .1;
        if metrics.contains(&line) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.contains(&line), "expected `{line}` in {metrics}");
    metrics
}

/// Initialises with `token` and returns how the server closed the connection; fails if
/// it acknowledged instead.
async fn refused_at_init(app: &TestApp, token: &str) -> (u16, String) {
    let mut ws = Subscriber::connect(&app.api, None).await;
    ws.send_init(bearer(token)).await;
    match ws.raw_within(Duration::from_secs(30)).await {
        Some(Err(closed)) => closed,
        other => panic!("expected the connection closed at connection_init, got {other:?}"),
    }
}

/// A viewer's and a member's valid tokens are closed at `connection_init` with 4403 and a
/// reason that says who may subscribe (before the change they were acknowledged,
/// and only each subscription was refused); an inspector is acknowledged and receives
/// events; an admin service account is acknowledged, and
/// when its role is taken away (here by the database, as no mutation changes a role yet)
/// its open connection is closed with the same code and reason. Every close is counted.
async fn only_a_principal_that_may_subscribe_is_acknowledged(store: Store) {
    let app = TestApp::spawn(store).await;
    for role in ["VIEWER", "MEMBER"] {
        let token = app.new_principal_token(role).await;
        let (code, reason) = refused_at_init(&app, &token).await;
        assert_eq!(code, 4403, "{role}: {reason}");
        assert_eq!(
            reason,
            "Forbidden: members and viewers may not subscribe; connect with an ADMIN, \
             INSPECTOR or RUNTIME token",
            "{role}"
        );
    }
    // An inspector watches without being able to change anything (the probe's changes are
    // the admin's).
    let inspector = app.create_service_account("INSPECTOR").await;
    let mut watcher = Subscriber::start(&app.api, &inspector.token).await;
    let watched = watcher
        .subscribe(SECRET_EVENTS, json!({ "names": ["INSPECTED"] }))
        .await;
    watcher.ready(&app.api, &app.admin_token).await;
    app.create_secret("INSPECTED", "v1").await;
    assert_eq!(watcher.next_event(&watched).await["kind"], "CREATED");

    let account = app.create_service_account("ADMIN").await;
    let mut ws = Subscriber::start(&app.api, &account.token).await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["WATCHED"] }))
        .await;
    ws.ready(&app.api, &account.token).await;
    app.create_secret("WATCHED", "v1").await;
    assert_eq!(ws.next_event(&sub).await["kind"], "CREATED");

    let demoted = app
        .sql("UPDATE principals SET role = 'VIEWER' WHERE name LIKE 'sa_admin_%'")
        .await;
    assert_eq!(demoted, 1, "the service account's role changed");
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4403, "{reason}");
    assert!(
        reason.contains("members and viewers may not subscribe"),
        "{reason}"
    );
    // And it cannot come back.
    let (code, _) = refused_at_init(&app, &account.token).await;
    assert_eq!(code, 4403);
    wait_for_closes(&app, 4403, 4).await;
}

/// "A per-principal share that leaves an admin room": with a per-principal cap of 3 under a
/// server-wide cap of 6, principal A (an admin service account, over two of its tokens:
/// the cap is the principal's, not a token's) holds 3 connections and its fourth is closed
/// with 4429 and a reason naming the cap; admin B still connects, subscribes and receives
/// an event; once one of A's connections closes, A may open another.
async fn one_principal_cannot_take_every_connection(store: Store) {
    let limits = [
        ("STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS", "6"),
        ("STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_PRINCIPAL", "3"),
    ];
    let app = TestApp::spawn_with(store, &limits).await;
    let account = app.create_service_account("ADMIN").await;
    let input = json!({ "input": { "principalId": account.id, "description": "second" } });
    let created = app.admin(CREATE_API_TOKEN, input).await;
    let second_token = data(&created)["createApiToken"]["token"]
        .as_str()
        .expect("a token")
        .to_owned();

    let mut held = vec![
        Subscriber::start(&app.api, &account.token).await,
        Subscriber::start(&app.api, &account.token).await,
        Subscriber::start(&app.api, &second_token).await,
    ];
    for token in [&account.token, &second_token] {
        let (code, reason) = refused_at_init(&app, token).await;
        assert_eq!(code, 4429, "{reason}");
        assert!(
            reason.contains("this principal holds 3, its limit"),
            "{reason}"
        );
    }

    // Admin B has room.
    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    let sub = ws
        .subscribe(SECRET_EVENTS, json!({ "names": ["ROOM"] }))
        .await;
    ws.ready(&app.api, &app.admin_token).await;
    app.create_secret("ROOM", "v1").await;
    assert_eq!(ws.next_event(&sub).await["kind"], "CREATED");

    // A's place comes back when one of its connections closes.
    drop(held.pop());
    // The server may not have seen the close yet: a try refused meanwhile is one more 4429.
    let mut acknowledged = false;
    let mut refused_meanwhile = 0;
    for _ in 0..100 {
        let mut again = Subscriber::connect(&app.api, None).await;
        again.send_init(bearer(&account.token)).await;
        match again.raw_within(Duration::from_secs(30)).await {
            Some(Ok(message)) if message["type"] == "connection_ack" => {
                acknowledged = true;
                break;
            }
            Some(Err((4429, _))) => {
                refused_meanwhile += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected an ack or 4429, got {other:?}"),
        }
    }
    assert!(
        acknowledged,
        "A connects again once one of its connections closed"
    );
    wait_for_closes(&app, 4429, 2 + refused_meanwhile).await;
}

/// Per client address: with a cap of 2, a third upgrade from 127.0.0.1 is refused before
/// the upgrade with 429 `RATE_LIMITED`, `Retry-After` and a message naming the setting,
/// while another address (127.0.0.2) still connects and is acknowledged; once one of the
/// first address's connections closes, it may open another.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_take_every_connection() {
    let limits = [("STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_ADDRESS", "2")];
    let app = TestApp::spawn_with(Store::Sqlite, &limits).await;
    let first = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let other = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let connect = |local| Subscriber::try_connect_from(&app.api, local, None);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(first).await.expect("within the address's cap");
        ws.send_init(bearer(&app.admin_token)).await;
        ws.expect_ack().await;
        held.push(ws);
    }
    let refused = match connect(first).await {
        Err(refused) => refused,
        Ok(_) => panic!("a third connection from one address was upgraded"),
    };
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.retry_after.as_deref(), Some("5"), "{refused:?}");
    let error = &refused.body["errors"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{refused:?}");
    assert_eq!(error["extensions"]["retryAfterSeconds"], 5, "{refused:?}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_ADDRESS"),
        "{message}"
    );

    let mut ws = connect(other).await.expect("another address has room");
    ws.send_init(bearer(&app.admin_token)).await;
    ws.expect_ack().await;

    drop(held.pop());
    let mut upgraded = false;
    for _ in 0..100 {
        if connect(first).await.is_ok() {
            upgraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        upgraded,
        "the address connects again once one of its connections closed"
    );
}

/// async-graphql's driver takes the legacy `start` as `subscribe` and `stop` as
/// `complete`: with a cap of 2 subscriptions per connection, a third `start` is refused
/// with exactly the error a third `subscribe` gets, a `stop` makes room again, and the
/// subscriptions that were started deliver their events.
#[tokio::test(flavor = "multi_thread")]
async fn start_is_counted_like_subscribe() {
    let limits = [("STRONGROOM_MAX_SUBSCRIPTIONS_PER_CONNECTION", "2")];
    let app = TestApp::spawn_with(Store::Sqlite, &limits).await;
    let message = |kind: &str, id: &str, name: &str| {
        json!({
            "id": id, "type": kind,
            "payload": { "query": SECRET_EVENTS, "variables": { "names": [name] } },
        })
    };
    let third_refused = |ws_id: &str, incoming: Incoming| -> Value {
        match incoming {
            Incoming::Error { id, payload } if id == ws_id => payload,
            other => panic!("expected subscription {ws_id} refused, got {other:?}"),
        }
    };

    // The `subscribe` path, for the error to compare with.
    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    for (id, name) in [("s1", "A"), ("s2", "B"), ("s3", "C")] {
        ws.send(message("subscribe", id, name)).await;
    }
    let by_subscribe = third_refused("s3", ws.recv().await);
    assert_eq!(by_subscribe[0]["extensions"]["code"], "RATE_LIMITED");
    drop(ws);

    let mut ws = Subscriber::start(&app.api, &app.admin_token).await;
    for (id, name) in [("s1", "STARTED"), ("s2", "B"), ("s3", "C")] {
        ws.send(message("start", id, name)).await;
    }
    let by_start = third_refused("s3", ws.recv().await);
    assert_eq!(by_start, by_subscribe, "the same refusal");

    // `stop` frees a place: the probe of `ready` is a third subscription.
    ws.send(json!({ "id": "s2", "type": "stop" })).await;
    assert_eq!(ws.recv().await, Incoming::Complete { id: s("s2") });
    ws.ready(&app.api, &app.admin_token).await;
    app.create_secret("STARTED", "v1").await;
    assert_eq!(ws.next_event("s1").await["kind"], "CREATED");
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// Pings and the idle timeout, set to 1 s and 3 s: a client that answers the server's
/// `ping`s is still connected well past the idle timeout (an event reaches it), and one
/// that sends nothing after its `connection_init` receives pings, then is closed with
/// 3008 and a reason that says what to do; the close is counted.
#[tokio::test(flavor = "multi_thread")]
async fn pings_keep_a_client_and_silence_closes_it() {
    let limits = [
        ("STRONGROOM_SUBSCRIPTION_PING_SECS", "1"),
        ("STRONGROOM_SUBSCRIPTION_IDLE_TIMEOUT_SECS", "3"),
    ];
    let app = TestApp::spawn_with(Store::Sqlite, &limits).await;
    let mut talker = Subscriber::start(&app.api, &app.admin_token).await;
    let mut silent = Subscriber::start(&app.api, &app.admin_token).await;

    // The silent client reads without answering: pings, then the close. Meanwhile the
    // talker answers its pings (`recv_within` does) and sends nothing else.
    let silenced = AtomicBool::new(false);
    let listening = async {
        let mut pings = 0;
        let closed = loop {
            match silent.raw_within(Duration::from_secs(30)).await {
                Some(Ok(message)) if message["type"] == "ping" => pings += 1,
                Some(Err(closed)) => break closed,
                other => panic!("expected pings, then the close; got {other:?}"),
            }
        };
        silenced.store(true, Ordering::SeqCst);
        (pings, closed)
    };
    let talking = async {
        while !silenced.load(Ordering::SeqCst) {
            if let Some(incoming) = talker.recv_within(Duration::from_millis(100)).await {
                panic!("the talker expected only pings, got {incoming:?}");
            }
        }
    };
    let ((pings, closed), ()) = tokio::join!(listening, talking);
    assert!(pings >= 1, "the server pinged before closing");
    assert_eq!(closed.0, 3008, "{closed:?}");
    assert_eq!(
        closed.1,
        "Idle timeout: nothing received for 3 s; answer pings with pong"
    );
    wait_for_closes(&app, 3008, 1).await;

    // The talker, connected before the silent one, has outlived the idle timeout, and an
    // event still reaches it.
    let sub = talker
        .subscribe(SECRET_EVENTS, json!({ "names": ["ALIVE"] }))
        .await;
    talker.ready(&app.api, &app.admin_token).await;
    app.create_secret("ALIVE", "v1").await;
    assert_eq!(talker.next_event(&sub).await["kind"], "CREATED");
}

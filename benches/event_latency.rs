//! Measures how long a change takes to reach a subscriber: subscribes to `secretEvents`
//! on one server (`--listener`), makes `--updates` value updates one after another through
//! another (`--writer`; on PostgreSQL a second replica, so each event crosses processes by
//! LISTEN/NOTIFY), and prints percentiles of two spans per update:
//!
//! - **committed → delivered**: from the moment the writer's response arrived (the
//!   change had committed by then) to the event's arrival; negative when the event beat the
//!   response, reported as 0 — a lower bound of the real delay;
//! - **stamped → delivered**: from the event's `occurredAt` (stamped before the writing
//!   transaction began) to its arrival — an upper bound, as it includes the transaction.
//!
//! The token comes in `STRONGROOM_BENCH_TOKEN`. Run by `benches/events`; not a test.
use std::{env, time::Duration};

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message,
    client::IntoClientRequest,
    http::{HeaderValue, header},
};

const NAME: &str = "BENCH_EVENT_LATENCY";

#[tokio::main]
async fn main() {
    let args: Vec<String> = env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let writer = arg("--writer").expect("--writer http://host:port");
    let listener = arg("--listener").unwrap_or_else(|| writer.clone());
    let updates: usize = arg("--updates").map_or(1000, |n| n.parse().expect("a count"));
    let token = env::var("STRONGROOM_BENCH_TOKEN").expect("STRONGROOM_BENCH_TOKEN");

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let graphql = |query: &'static str, variables: Value| {
        let request = http
            .post(format!("{writer}/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": query, "variables": variables }));
        async move {
            let body: Value = request
                .send()
                .await
                .expect("the writer answers")
                .json()
                .await
                .expect("a JSON answer");
            assert!(body.get("errors").is_none(), "{body}");
            body
        }
    };

    let mut request = format!("{}/graphql/ws", listener.replacen("http", "ws", 1))
        .into_client_request()
        .expect("a WebSocket URL");
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket upgrade");
    let send = |message: Value| Message::text(message.to_string());
    ws.send(send(json!({ "type": "connection_init",
        "payload": { "Authorization": format!("Bearer {token}") } })))
        .await
        .expect("init");
    ws.send(send(json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($names: [String!]) {
            secretEvents(names: $names) { kind version occurredAt } }",
        "variables": { "names": [NAME] } } })))
        .await
        .expect("subscribe");

    let create =
        "mutation($input: CreateSecretInput!) { createSecret(input: $input) { secret { id } } }";
    let update = "mutation($input: UpdateSecretInput!) {
        updateSecret(input: $input) { secret { currentVersion } } }";
    graphql(create, json!({ "input": { "name": NAME, "value": "v1" } })).await;
    // The subscription is live once an event arrives: touch the secret until one does.
    loop {
        let input = json!({ "input": { "name": NAME, "description": "warm-up" } });
        graphql(update, input).await;
        if next_event(&mut ws, Duration::from_millis(500))
            .await
            .is_some()
        {
            break;
        }
    }
    // Drain the warm-up's other events.
    while next_event(&mut ws, Duration::from_millis(300))
        .await
        .is_some()
    {}

    let mut after_commit = Vec::with_capacity(updates);
    let mut after_stamp = Vec::with_capacity(updates);
    for i in 0..updates {
        let input = json!({ "input": { "name": NAME, "value": format!("bench-{i}") } });
        let sent = async {
            let response = graphql(update, input).await;
            (response, Utc::now())
        };
        let ((response, committed), event) =
            tokio::join!(sent, next_event(&mut ws, Duration::from_secs(30)));
        let (event, received) = event.expect("the event arrives");
        let version = &response["data"]["updateSecret"]["secret"]["currentVersion"];
        assert_eq!(event["version"], *version, "events arrive in order");
        let stamped: DateTime<Utc> = event["occurredAt"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("occurredAt");
        after_commit.push(
            (received - committed)
                .num_microseconds()
                .unwrap_or(0)
                .max(0),
        );
        after_stamp.push((received - stamped).num_microseconds().unwrap_or(0).max(0));
    }
    report("committed → delivered (lower bound)", &mut after_commit);
    report("stamped → delivered (upper bound)", &mut after_stamp);
}

/// The next `next` payload's event and when it arrived, answering pings.
async fn next_event<S>(ws: &mut S, limit: Duration) -> Option<(Value, DateTime<Utc>)>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + SinkExt<Message>
        + Unpin,
{
    loop {
        let message = tokio::time::timeout(limit, ws.next()).await.ok()??.ok()?;
        let received = Utc::now();
        let Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).ok()?;
        match message["type"].as_str() {
            Some("next") => {
                let event = message["payload"]["data"]["secretEvents"].clone();
                assert!(event.is_object(), "an event: {message}");
                return Some((event, received));
            }
            Some("ping") => {
                let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
            }
            Some("connection_ack" | "pong") => {}
            _ => panic!("unexpected message: {message}"),
        }
    }
}

fn report(what: &str, micros: &mut [i64]) {
    micros.sort_unstable();
    let at = |p: f64| {
        let index = ((micros.len() as f64 - 1.0) * p).round() as usize;
        micros[index] as f64 / 1000.0
    };
    println!(
        "{what}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        micros.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
}

//! `--watch`: the resource's `dependentEvents` over a graphql-transport-ws WebSocket to
//! `{server}/graphql/ws` (the only subscription a RUNTIME account may hold, DESIGN §9).
//!
//! A task of its own keeps the subscription up and tells the supervisor what it hears
//! ([`Heard`]). The token travels in `connection_init`'s payload, as the server reads it
//! (never in the URL). A dropped connection — the network, a server restart, a token that
//! expired, events the server says were missed — is reconnected with backoff, and every
//! subscription after the first is announced as [`Heard::Resubscribed`], since changes may
//! have been missed meanwhile and the supervisor should fetch again. Before an exchanged
//! token expires the connection is reopened with a fresh one.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    net::TcpStream,
    sync::mpsc,
    time::{sleep, sleep_until, timeout},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::{HeaderValue, header},
    },
};

use super::{
    Failure,
    credentials::{Credentials, bearer},
    fetch::endpoint,
    say,
};

const PROTOCOL: &str = "graphql-transport-ws";
const SUBSCRIPTION: &str = "subscription($resourceId: ID!) {
    dependentEvents(resourceId: $resourceId) {
        secretName previousState
        dependent { field state deployedVersion deployedAt } } }";
/// The longest connecting and `connection_init` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the watcher tells the supervisor.
#[derive(Debug)]
pub enum Heard {
    /// The first subscription is live.
    Subscribed,
    /// A later one is: something may have been missed while there was none.
    Resubscribed,
    /// The first attempt failed (the reason is reported); attempts go on.
    Unavailable,
    /// A reference of the resource changed state.
    Change(Change),
}

/// A `DependentEvent`, as much of it as `run` acts on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub secret_name: String,
    pub previous_state: Option<String>,
    pub dependent: Dependent,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependent {
    pub field: String,
    pub state: String,
    pub deployed_version: Option<i64>,
    pub deployed_at: Option<DateTime<Utc>>,
}

/// Watches `resource` until the receiver is dropped.
pub fn spawn(
    server: &Url,
    resource: String,
    credentials: Arc<Credentials>,
) -> Result<mpsc::Receiver<Heard>, Failure> {
    let mut url = endpoint(server, &["graphql", "ws"])?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| Failure::new("BAD_SERVER_URL", format!("no WebSocket URL for {server}")))?;
    let (heard, receiver) = mpsc::channel(64);
    tokio::spawn(keep_watching(url, resource, credentials, heard));
    Ok(receiver)
}

/// Why a connection ended.
enum Ended {
    /// The token is due for an exchange: reconnect at once.
    Refresh,
    /// Lost; reconnect after a pause.
    Lost(String),
    /// The supervisor is gone.
    Done,
}

async fn keep_watching(
    url: Url,
    resource: String,
    credentials: Arc<Credentials>,
    heard: mpsc::Sender<Heard>,
) {
    let mut subscribed_before = false;
    let mut told_unavailable = false;
    let mut retry = FIRST_RETRY;
    loop {
        let mut subscribed = false;
        let began = tokio::time::Instant::now();
        let ended = watch_once(
            &url,
            &resource,
            &credentials,
            &heard,
            &mut subscribed,
            subscribed_before,
        )
        .await;
        subscribed_before |= subscribed;
        // Only a connection that lasted starts the backoff over: one the server refuses
        // right after the subscription (say, a resource deleted since) must not be retried,
        // and fetched again, twice a second.
        if subscribed && began.elapsed() >= LONGEST_RETRY {
            retry = FIRST_RETRY;
        }
        match ended {
            Ended::Done => return,
            Ended::Refresh => {}
            Ended::Lost(why) => {
                if subscribed_before {
                    say(&format!(
                        "lost the event stream ({why}); reconnecting in {:.1}s",
                        retry.as_secs_f32()
                    ));
                } else {
                    say(&format!(
                        "cannot watch the resource yet ({why}); trying again in {:.1}s",
                        retry.as_secs_f32()
                    ));
                    if !told_unavailable && heard.send(Heard::Unavailable).await.is_err() {
                        return;
                    }
                    told_unavailable = true;
                }
                tokio::select! {
                    () = sleep(retry) => {}
                    () = heard.closed() => return,
                }
                retry = (retry * 2).min(LONGEST_RETRY);
            }
        }
    }
}

/// One connection: connect, init, subscribe, then relay events until it ends.
async fn watch_once(
    url: &Url,
    resource: &str,
    credentials: &Credentials,
    heard: &mpsc::Sender<Heard>,
    subscribed: &mut bool,
    resubscribing: bool,
) -> Ended {
    let token = match credentials.token().await {
        Ok(token) => token,
        Err(failure) => return Ended::Lost(failure.to_string()),
    };
    let (mut refresh_at, generation) = credentials.schedule().await;
    let mut socket = match timeout(CONNECT_TIMEOUT, connect(url, &token)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(why)) => return Ended::Lost(why),
        Err(_) => return Ended::Lost("the server did not accept the connection in time".into()),
    };
    let subscribe = json!({
        "id": "1", "type": "subscribe",
        "payload": { "query": SUBSCRIPTION, "variables": { "resourceId": resource } },
    });
    if let Err(e) = socket.send(Message::text(subscribe.to_string())).await {
        return Ended::Lost(format!("could not subscribe: {e}"));
    }
    *subscribed = true;
    let news = if resubscribing {
        Heard::Resubscribed
    } else {
        Heard::Subscribed
    };
    if heard.send(news).await.is_err() {
        return Ended::Done;
    }
    loop {
        let refresh = async {
            match refresh_at {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            message = socket.next() => message,
            () = refresh => {
                // Exchanged again: reconnect with the new token before the old one expires
                // (the server closes a connection whose token has). Not exchanged (it
                // failed and is reported; the token still works): try again later.
                if let Err(failure) = credentials.token().await {
                    return Ended::Lost(failure.to_string());
                }
                let (next, now) = credentials.schedule().await;
                if now != generation {
                    let _ = socket.close(None).await;
                    return Ended::Refresh;
                }
                refresh_at = next;
                continue;
            }
            () = heard.closed() => {
                let _ = socket.close(None).await;
                return Ended::Done;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Ended::Lost(match frame {
                    Some(frame) => format!("closed by the server: {} {}", frame.code, frame.reason),
                    None => "closed by the server".into(),
                });
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Ended::Lost(e.to_string()),
            None => return Ended::Lost("the connection closed".into()),
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            return Ended::Lost("the server sent something that is not JSON".into());
        };
        match message["type"].as_str() {
            Some("ping") => {
                if let Err(e) = socket.send(pong()).await {
                    return Ended::Lost(e.to_string());
                }
            }
            Some("next") => match event(&message["payload"]) {
                Ok(change) => {
                    if heard.send(Heard::Change(change)).await.is_err() {
                        return Ended::Done;
                    }
                }
                Err(why) => return Ended::Lost(why),
            },
            Some("error") => {
                return Ended::Lost(format!(
                    "subscription refused: {}",
                    errors(&message["payload"])
                ));
            }
            Some("complete") => return Ended::Lost("the server ended the subscription".into()),
            _ => {}
        }
    }
}

/// Opens the socket and has `connection_init` acknowledged.
async fn connect(url: &Url, token: &secrecy::SecretString) -> Result<Socket, String> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad WebSocket URL: {e}"))?;
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(PROTOCOL),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let init = json!({
        "type": "connection_init",
        "payload": { "Authorization": bearer(token).as_str() },
    });
    socket
        .send(Message::text(init.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                match message["type"].as_str() {
                    Some("connection_ack") => return Ok(socket),
                    Some("ping") => socket.send(pong()).await.map_err(|e| e.to_string())?,
                    _ => {}
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return Err(format!("refused: {} {}", frame.code, frame.reason));
            }
            Some(Ok(Message::Close(None))) | None => {
                return Err("closed before connection_ack".into());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}

fn pong() -> Message {
    Message::text(json!({ "type": "pong" }).to_string())
}

/// The change a `next` payload carries, or why it carries none (`EVENTS_MISSED`...).
fn event(payload: &Value) -> Result<Change, String> {
    if payload.get("errors").is_some_and(|e| !e.is_null()) {
        return Err(format!("the subscription failed: {}", errors(payload)));
    }
    serde_json::from_value(payload["data"]["dependentEvents"].clone())
        .map_err(|e| format!("an event that cannot be read: {e}"))
}

/// `CODE: message` of each GraphQL error in `payload` (an `errors` list, or one error).
fn errors(payload: &Value) -> String {
    let list = match payload.get("errors") {
        Some(Value::Array(list)) => list.clone(),
        _ => match payload {
            Value::Array(list) => list.clone(),
            other => vec![other.clone()],
        },
    };
    list.iter()
        .map(|e| {
            let code = e["extensions"]["code"].as_str().unwrap_or("ERROR");
            let message = e["message"].as_str().unwrap_or("no message");
            format!("{code}: {message}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

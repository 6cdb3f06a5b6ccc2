//! A `graphql-transport-ws` client over a real WebSocket, as Apollo Client's
//! `GraphQLWsLink` speaks it, with what the tests assert on: the messages received, in
//! order, and how the server closed the connection.
use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderValue, header},
        protocol::frame::coding::CloseCode,
    },
};

use super::{Api, CREATE_SECRET, UPDATE_SECRET, data, short_id};

/// How long any one message may take to arrive before the test fails: generous, since a
/// test asserts what arrives, never how fast.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Names of the secrets [`Subscriber::ready`] makes; their events are not the tests'.
pub const PROBE_PREFIX: &str = "PROBE_";

pub const SECRET_EVENTS: &str = "subscription($names: [String!]) {
    secretEvents(names: $names) { kind secretName version occurredAt principal { name } } }";
pub const DEPENDENT_EVENTS: &str = "subscription($secretName: String, $resourceId: ID) {
    dependentEvents(secretName: $secretName, resourceId: $resourceId) {
        secretName previousState occurredAt
        dependent { field state deployedVersion resource { id name } } } }";

/// How the server refused an upgrade: before any WebSocket, an HTTP answer.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// What the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Next { id: String, payload: Value },
    Error { id: String, payload: Value },
    Complete { id: String },
    Closed { code: u16, reason: String },
}

pub struct Subscriber {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    /// Subscriptions completed by the client: their late messages are dropped.
    finished: HashSet<String>,
}

impl Api {
    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base_url.replacen("http", "ws", 1))
    }
}

impl Subscriber {
    /// Opens the socket (subprotocol `graphql-transport-ws`), with `Authorization` on the
    /// upgrade request if given. Nothing is sent yet.
    pub async fn connect(api: &Api, header_token: Option<&str>) -> Self {
        match Self::try_connect_from(api, None, header_token).await {
            Ok(subscriber) => subscriber,
            Err(refused) => panic!("the WebSocket upgrade was refused: {refused:?}"),
        }
    }

    /// [`Self::connect`] from the local address `local` if given (any of 127.0.0.0/8 is
    /// this host's, so a test can be several clients), or how the upgrade was refused.
    pub async fn try_connect_from(
        api: &Api,
        local: Option<IpAddr>,
        header_token: Option<&str>,
    ) -> Result<Self, Refused> {
        Self::try_connect_with(api, local, header_token, &[]).await
    }

    /// [`Self::try_connect_from`], with `extra` headers on the upgrade request (a
    /// browser's `Origin` and `Cookie`, say).
    pub async fn try_connect_with(
        api: &Api,
        local: Option<IpAddr>,
        header_token: Option<&str>,
        extra: &[(&'static str, &str)],
    ) -> Result<Self, Refused> {
        let mut request = api.ws_url().into_client_request().expect("a WebSocket URL");
        let headers = request.headers_mut();
        for (name, value) in extra {
            headers.insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("graphql-transport-ws"),
        );
        if let Some(token) = header_token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header");
            headers.insert(header::AUTHORIZATION, value);
        }
        let server: SocketAddr = api
            .base_url()
            .trim_start_matches("http://")
            .parse()
            .expect("the server's address");
        let tcp = if server.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .expect("a TCP socket");
        if let Some(local) = local {
            tcp.bind(SocketAddr::new(local, 0))
                .expect("binds the local address");
        }
        let stream = tcp.connect(server).await.expect("connects to the server");
        let (socket, response) =
            match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await {
                Ok(upgraded) => upgraded,
                Err(tungstenite::Error::Http(response)) => {
                    let text = |name| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    return Err(Refused {
                        status: response.status().as_u16(),
                        retry_after: text(header::RETRY_AFTER),
                        body: response
                            .body()
                            .as_deref()
                            .and_then(|body| serde_json::from_slice(body).ok())
                            .unwrap_or(Value::Null),
                    });
                }
                Err(e) => panic!("the WebSocket upgrade failed: {e}"),
            };
        assert_eq!(
            response
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .map(|v| v.as_bytes()),
            Some(&b"graphql-transport-ws"[..]),
            "the server picks the graphql-transport-ws subprotocol"
        );
        Ok(Self {
            socket,
            next_id: 0,
            finished: HashSet::new(),
        })
    }

    /// Connects and initialises with `{"Authorization": "Bearer <token>"}`; asserts the
    /// server acknowledged.
    pub async fn start(api: &Api, token: &str) -> Self {
        let mut subscriber = Self::connect(api, None).await;
        subscriber.send_init(bearer(token)).await;
        subscriber.expect_ack().await;
        subscriber
    }

    pub async fn send_init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
    }

    pub async fn expect_ack(&mut self) {
        let message = self.raw().await;
        assert_eq!(
            message.as_ref().map(|m| m["type"].clone()),
            Ok(json!("connection_ack")),
            "the server acknowledges connection_init"
        );
    }

    /// Sends a `subscribe`; returns its id.
    pub async fn subscribe(&mut self, query: &str, variables: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.send(json!({
            "id": id, "type": "subscribe",
            "payload": { "query": query, "variables": variables },
        }))
        .await;
        id
    }

    /// Ends a subscription from the client's side.
    pub async fn complete(&mut self, id: &str) {
        self.finished.insert(id.to_owned());
        self.send(json!({ "id": id, "type": "complete" })).await;
    }

    /// The next message of interest: pings are answered, and neither pongs, messages of
    /// subscriptions the client completed, nor events about probe secrets are returned.
    pub async fn recv(&mut self) -> Incoming {
        self.recv_within(RECEIVE_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("nothing arrived within {RECEIVE_TIMEOUT:?}"))
    }

    /// [`Self::recv`], or `None` if nothing arrives within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Incoming> {
        loop {
            let message = match tokio::time::timeout(limit, self.raw()).await {
                Ok(message) => message,
                Err(_) => return None,
            };
            let message = match message {
                Ok(message) => message,
                Err((code, reason)) => return Some(Incoming::Closed { code, reason }),
            };
            let id = message["id"].as_str().unwrap_or_default().to_owned();
            let incoming = match message["type"].as_str() {
                Some("ping") => {
                    self.send(json!({ "type": "pong" })).await;
                    continue;
                }
                Some("pong") => continue,
                Some("next") => Incoming::Next {
                    id,
                    payload: message["payload"].clone(),
                },
                Some("error") => Incoming::Error {
                    id,
                    payload: message["payload"].clone(),
                },
                Some("complete") => Incoming::Complete { id },
                _ => panic!("not a graphql-transport-ws message: {message}"),
            };
            match &incoming {
                Incoming::Next { id, .. }
                | Incoming::Error { id, .. }
                | Incoming::Complete { id }
                    if self.finished.contains(id) => {}
                Incoming::Next { payload, .. } if about_probe(payload) => {}
                _ => return Some(incoming),
            }
        }
    }

    /// The next event of subscription `id`: its `data` object's one field. Fails on an
    /// error, a completion, a close, or another subscription's message.
    pub async fn next_event(&mut self, id: &str) -> Value {
        match self.recv().await {
            Incoming::Next { id: got, payload } if got == id => {
                assert!(
                    payload.get("errors").is_none(),
                    "subscription {id} reported errors: {payload:#}"
                );
                let fields = payload["data"].as_object().expect("data is an object");
                fields.values().next().expect("one root field").clone()
            }
            other => panic!("expected an event of subscription {id}, got {other:?}"),
        }
    }

    /// The next event of each of `ids`, in the order of `ids`. Subscriptions of one
    /// connection interleave as the server happens to run them; within one subscription the
    /// order is the commit order, which asking for one event of each at a time keeps.
    pub async fn next_of(&mut self, ids: &[&str]) -> Vec<Value> {
        let mut events: Vec<Option<Value>> = vec![None; ids.len()];
        while events.iter().any(Option::is_none) {
            let incoming = self.recv().await;
            let Incoming::Next { id, payload } = &incoming else {
                panic!("expected events of subscriptions {ids:?}, got {incoming:?}");
            };
            let slot = ids.iter().position(|wanted| wanted == id);
            let Some(slot) = slot.filter(|&slot| events[slot].is_none()) else {
                panic!("expected one event of each of {ids:?}, got {incoming:?}");
            };
            assert!(payload.get("errors").is_none(), "errors: {payload:#}");
            let fields = payload["data"].as_object().expect("data is an object");
            events[slot] = fields.values().next().cloned();
        }
        events.into_iter().flatten().collect()
    }

    /// Waits for the server to close the connection: `(code, reason)`.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.recv().await {
                Incoming::Closed { code, reason } => return (code, reason),
                Incoming::Next { .. } | Incoming::Error { .. } | Incoming::Complete { .. } => {}
            }
        }
    }

    /// Returns once every subscription sent so far is live, so that a change made after
    /// this is delivered: subscribes to the events of a fresh probe secret, changes it
    /// through `api` until one of its events arrives, then ends that subscription. (The
    /// protocol has no acknowledgement of a `subscribe`; the server starts listening when it
    /// first runs the subscription, and runs those of one connection in the order sent.)
    pub async fn ready(&mut self, api: &Api, token: &str) {
        let name = format!("{PROBE_PREFIX}{}", short_id());
        let id = self
            .subscribe(SECRET_EVENTS, json!({ "names": [name] }))
            .await;
        let created = api
            .gql(
                Some(token),
                CREATE_SECRET,
                json!({ "input": { "name": name, "value": "probe" } }),
            )
            .await;
        data(&created);
        for attempt in 0..100 {
            match self.raw_within(Duration::from_millis(200)).await {
                Some(Ok(message)) if message["id"] == id.as_str() => {
                    assert_eq!(message["type"], "next", "the probe's event: {message}");
                    self.complete(&id).await;
                    return;
                }
                // Late messages of a subscription the client completed (its `complete`
                // is acknowledged with one).
                Some(Ok(message))
                    if message["id"]
                        .as_str()
                        .is_some_and(|id| self.finished.contains(id)) => {}
                Some(Ok(message)) if message["type"] == "ping" => {
                    self.send(json!({ "type": "pong" })).await;
                }
                // Another (unfiltered) subscription seeing the probe, or one that selects
                // too little to tell (`{ __typename }`): an event, not a refusal.
                Some(Ok(message))
                    if message["type"] == "next"
                        && message["payload"].get("errors").is_none()
                        && (about_probe(&message["payload"])
                            || secret_name_of(&message["payload"]).is_none()) => {}
                Some(Ok(message)) => panic!("a message arrived before the probe's: {message}"),
                Some(Err(close)) => panic!("the server closed the connection: {close:?}"),
                None => {
                    let input = json!({ "input": {
                        "name": name, "description": format!("probe {attempt}") } });
                    data(&api.gql(Some(token), UPDATE_SECRET, input).await);
                }
            }
        }
        panic!("the probe subscription never delivered an event");
    }

    /// Sends any message as text: a legacy `start`, a `pong`, something malformed.
    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("the socket accepts a message");
    }

    /// The next message as sent (pings too, unanswered), or the close `(code, reason)`;
    /// `None` if nothing arrives within `limit`.
    pub async fn raw_within(&mut self, limit: Duration) -> Option<Result<Value, (u16, String)>> {
        tokio::time::timeout(limit, self.raw()).await.ok()
    }

    /// The next protocol message, or the close `(code, reason)`.
    async fn raw(&mut self) -> Result<Value, (u16, String)> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("a JSON message"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err((u16::from(CloseCode::Abnormal), e.to_string())),
                None => return Err((u16::from(CloseCode::Abnormal), "closed".to_owned())),
            }
        }
    }
}

/// Whether a `next` payload is an event about a probe secret.
fn about_probe(payload: &Value) -> bool {
    secret_name_of(payload).is_some_and(|name| name.starts_with(PROBE_PREFIX))
}

/// The `secretName` of a `next` payload's event, if it selects one.
fn secret_name_of(payload: &Value) -> Option<&str> {
    payload["data"]
        .as_object()
        .and_then(|fields| fields.values().next())
        .and_then(|event| event["secretName"].as_str())
}

/// The `connection_init` payload that carries a token.
pub fn bearer(token: &str) -> Value {
    json!({ "Authorization": format!("Bearer {token}") })
}

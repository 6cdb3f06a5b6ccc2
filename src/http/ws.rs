//! `GET /graphql/ws`: subscriptions over the `graphql-transport-ws` protocol (what
//! Apollo Client's `GraphQLWsLink` and the `graphql-ws` library speak), DESIGN §7.
//!
//! async-graphql runs the protocol; this module owns the connection around it:
//!
//! - **Credentials** come in `connection_init`'s payload (`{"Authorization": "Bearer …"}`)
//!   or, failing that, the upgrade request's `Authorization` header. No credentials close
//!   the socket with 4401 (Unauthorized); an unknown, revoked or expired token with 4403
//!   (Forbidden), as the protocol recommends for a refused `connection_init`.
//! - **Revocation**: the token is checked again every second (through the same cache as
//!   HTTP requests, whose entries live at most a second), so a revoked or expired token, or
//!   one whose principal changed role, is disconnected with 4403 within about two seconds.
//! - **No init** within [`INIT_TIMEOUT`] closes with 4408, per the protocol.
//! - A client that stops reading is disconnected once a send has waited [`SEND_TIMEOUT`];
//!   it never holds up publishers or other subscribers (see [`crate::events`]).
//! - Guard refusals are written to the audit log once a second, like an HTTP request's.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_graphql::{
    Data,
    futures_util::{SinkExt, StreamExt, future},
    http::{WebSocket as Protocol, WebSocketProtocols, WsMessage},
};
use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{AUTHORIZATION, RETRY_AFTER},
    },
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::{
    sync::{Semaphore, mpsc, watch},
    time::{Instant, MissedTickBehavior, interval, timeout},
};

use super::{AppState, REQUEST_ID, authenticate, bearer_token, media::Media};
use crate::{
    domain::{Principal, audit},
    graphql::{Auth, Denials, RequestCtx, request_loaders},
};

/// The only subprotocol spoken (the legacy `graphql-ws` of subscriptions-transport-ws is
/// not: its errors and close codes differ).
const PROTOCOL: &str = "graphql-transport-ws";
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often credentials are checked again.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// WebSocket's own close code for a server going down.
const GOING_AWAY: u16 = 1001;

/// Close codes of the protocol.
mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const INTERNAL: u16 = 4500;
}

/// The server's live subscription connections: told when the server shuts down, and
/// counted so that shutdown can wait for their close frames to go out.
#[derive(Clone, Debug)]
pub struct Sessions {
    closing: watch::Receiver<bool>,
    live: Arc<()>,
    /// One permit per open connection (`STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS`).
    slots: Arc<Semaphore>,
    /// `STRONGROOM_MAX_SUBSCRIPTIONS_PER_CONNECTION`.
    per_connection: usize,
}

impl Sessions {
    /// The sessions, and the switch that closes them all.
    pub fn new(max_connections: u32, per_connection: u32) -> (Self, watch::Sender<bool>) {
        let (close, closing) = watch::channel(false);
        let sessions = Self {
            closing,
            live: Arc::new(()),
            slots: Arc::new(Semaphore::new(max_connections as usize)),
            per_connection: per_connection as usize,
        };
        (sessions, close)
    }

    /// Waits (at most `limit`) until every session has closed.
    pub async fn drained(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Arc::strong_count(&self.live) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub async fn graphql_ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let offered = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !offered {
        return Media::for_refusal(&headers).refusal(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "subscriptions speak the graphql-transport-ws protocol: send \
             `Sec-WebSocket-Protocol: graphql-transport-ws`",
        );
    }
    let Ok(slot) = state.sessions.slots.clone().try_acquire_owned() else {
        let mut refused = Media::for_refusal(&headers).refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "the server has as many subscription connections open as it allows; retry later",
        );
        refused
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        return refused;
    };
    let max_message = state.limits.max_body_bytes;
    let (mut closing, live) = (state.sessions.closing.clone(), state.sessions.live.clone());
    let session = Arc::new(Session {
        header_auth: headers.get(AUTHORIZATION).cloned(),
        request_id: headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        state,
        stage: Mutex::new(Stage::Waiting),
    });
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let metrics = session.state.metrics.clone();
            metrics.subscription_connections.inc();
            session.run(socket, &mut closing).await;
            metrics.subscription_connections.dec();
            drop((live, slot));
        })
        .into_response()
}

struct Session {
    state: Arc<AppState>,
    header_auth: Option<HeaderValue>,
    request_id: Option<String>,
    stage: Mutex<Stage>,
}

enum Stage {
    Waiting,
    Accepted(Accepted),
    /// `connection_init` was refused: the close code and reason to send.
    Refused(u16, &'static str),
}

#[derive(Clone)]
struct Accepted {
    token: Arc<SecretString>,
    principal: Principal,
    denials: Arc<Denials>,
}

impl Session {
    fn stage(&self) -> std::sync::MutexGuard<'_, Stage> {
        lock(&self.stage)
    }

    fn accepted(&self) -> Option<Accepted> {
        match &*self.stage() {
            Stage::Accepted(accepted) => Some(accepted.clone()),
            _ => None,
        }
    }

    async fn run(self: Arc<Self>, socket: WebSocket, closing: &mut watch::Receiver<bool>) {
        let (mut sink, incoming) = socket.split();
        // Subscriptions running on this connection, by id, to cap them: a `subscribe`
        // beyond the cap is answered here with an error and never reaches the executor.
        let running = Arc::new(Mutex::new(HashSet::<String>::new()));
        let cap = self.state.sessions.per_connection;
        let (refuse, mut refused) = mpsc::unbounded_channel::<String>();
        let counted = running.clone();
        let incoming = incoming
            .take_while(|m| future::ready(m.is_ok()))
            .filter_map(move |m| {
                let bytes = match m {
                    Ok(Message::Text(text)) => text.as_bytes().to_vec(),
                    Ok(Message::Binary(bytes)) => bytes.to_vec(),
                    _ => return future::ready(None),
                };
                let admitted = match client_message(&bytes) {
                    Some((kind, id)) if kind == "subscribe" => {
                        let mut running = lock(&counted);
                        if running.len() >= cap && !running.contains(&id) {
                            let _ = refuse.send(id);
                            false
                        } else {
                            running.insert(id);
                            true
                        }
                    }
                    Some((kind, id)) if kind == "complete" => {
                        lock(&counted).remove(&id);
                        true
                    }
                    _ => true,
                };
                future::ready(admitted.then_some(bytes))
            });
        let session = self.clone();
        let mut protocol = Protocol::new(
            self.state.schema.clone(),
            incoming,
            WebSocketProtocols::GraphQLWS,
        )
        .on_connection_init(move |payload| async move { session.init(payload).await });
        let opened = Instant::now();
        let mut recheck = interval(RECHECK_EVERY);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let outgoing = tokio::select! {
                message = protocol.next() => match message {
                    Some(WsMessage::Text(text)) => {
                        // A subscription that ended (completed or failed) frees its place.
                        if (text.contains("\"complete\"") || text.contains("\"error\""))
                            && let Some((kind, id)) = client_message(text.as_bytes())
                            && (kind == "complete" || kind == "error")
                        {
                            lock(&running).remove(&id);
                        }
                        Message::Text(text.into())
                    }
                    Some(WsMessage::Close(code, reason)) => self.close_frame(code, reason),
                    None => break,
                },
                Some(id) = refused.recv() => {
                    let message = format!(
                        "at most {cap} subscriptions may run on one connection; complete one first"
                    );
                    let error = serde_json::json!({
                        "id": id,
                        "type": "error",
                        "payload": [{ "message": message, "extensions": { "code": "RATE_LIMITED" } }],
                    });
                    Message::Text(error.to_string().into())
                }
                // Only ever switched on (or dropped, at exit).
                _ = closing.changed() => {
                    close_frame(GOING_AWAY, "the server is shutting down")
                }
                _ = recheck.tick() => match self.recheck(opened).await {
                    Some((code, reason)) => close_frame(code, reason),
                    None => continue,
                },
            };
            let closing = match &outgoing {
                Message::Close(frame) => {
                    let code = frame.as_ref().map_or(1005, |f| f.code);
                    self.state.metrics.subscription_closed(code);
                    true
                }
                _ => false,
            };
            match timeout(SEND_TIMEOUT, sink.send(outgoing)).await {
                Ok(Ok(())) if !closing => {}
                _ => break,
            }
        }
        self.flush_denials().await;
    }

    /// `connection_init`: who is this?
    async fn init(&self, payload: serde_json::Value) -> async_graphql::Result<Data> {
        let value = match payload_authorization(&payload) {
            Some(value) => Some(value),
            None => self.header_auth.clone(),
        };
        let refuse = |code, reason: &'static str| {
            *self.stage() = Stage::Refused(code, reason);
            Err(async_graphql::Error::new(reason))
        };
        let Some(value) = value else {
            return refuse(
                close::UNAUTHORIZED,
                "Unauthorized: send {\"Authorization\": \"Bearer <token>\"} in connection_init",
            );
        };
        let token = bearer_token(&value).map(|t| Arc::new(SecretString::from(t.to_owned())));
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        // Only whether it failed matters here, not how an HTTP answer would look.
        let caller = match authenticate(&self.state, None, &headers, Media::Json).await {
            Ok(caller) => caller,
            Err(_) => return refuse(close::INTERNAL, "the server cannot check credentials now"),
        };
        let (Auth::Principal(principal), Some(token)) = (caller.auth, token) else {
            return refuse(
                close::FORBIDDEN,
                "Forbidden: unknown, revoked or expired token",
            );
        };
        let denials = Arc::new(Denials::default());
        let ctx = RequestCtx {
            auth: Auth::Principal(principal.clone()),
            request_id: self.request_id.clone(),
            denials: denials.clone(),
        };
        // One loader for the connection's life: no cache, or its events would show rows
        // as they were when first loaded.
        let loader = request_loaders(&self.state.data);
        loader.enable_all_cache(false);
        let mut data = Data::default();
        data.insert(ctx);
        data.insert(loader);
        *self.stage() = Stage::Accepted(Accepted {
            token,
            principal,
            denials,
        });
        Ok(data)
    }

    /// The close frame for a close the protocol layer decided, with the protocol's codes.
    fn close_frame(&self, code: u16, reason: String) -> Message {
        if let Stage::Refused(code, reason) = &*self.stage() {
            return close_frame(*code, reason);
        }
        match code {
            // A message that is not valid JSON or not a protocol message.
            1002 => close_frame(
                close::BAD_REQUEST,
                "Bad request: not a graphql-transport-ws message",
            ),
            // `subscribe` before `connection_ack`.
            1011 => close_frame(close::UNAUTHORIZED, "Unauthorized: connection_init first"),
            _ => close_frame(code, &reason),
        }
    }

    /// Once a second: the init deadline, the token's validity, and the audit of refusals.
    async fn recheck(&self, opened: Instant) -> Option<(u16, &'static str)> {
        let Some(accepted) = self.accepted() else {
            return (opened.elapsed() >= INIT_TIMEOUT)
                .then_some((close::INIT_TIMEOUT, "Connection initialisation timeout"));
        };
        self.flush_denials().await;
        let data = &self.state.data;
        let found = data
            .tokens
            .authenticate(data.db.read(), accepted.token.expose_secret())
            .await;
        match found {
            Ok(Some(found)) if found.principal.role == accepted.principal.role => None,
            Ok(Some(_)) => Some((close::FORBIDDEN, "Forbidden: the token's role changed")),
            Ok(None) => Some((
                close::FORBIDDEN,
                "Forbidden: the token was revoked or expired",
            )),
            // The database is unreachable for now: keep the connection, check again.
            Err(e) => {
                tracing::warn!(error = %e, "could not recheck a subscriber's token");
                None
            }
        }
    }

    async fn flush_denials(&self) {
        let Some(accepted) = self.accepted() else {
            return;
        };
        let refused = accepted.denials.take();
        if refused.is_empty() {
            return;
        }
        let (db, budget) = (self.state.data.db.write(), &self.state.data.denials);
        let request_id = self.request_id.as_deref();
        let principal = &accepted.principal;
        if let Err(e) =
            audit::record_denials_within(db, budget, principal, request_id, refused).await
        {
            tracing::error!(error = %e, "could not record denied subscriptions");
        }
    }
}

/// The `type` and `id` of a protocol message, if it has both.
fn client_message(bytes: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        id: String,
    }
    serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .map(|e| (e.kind, e.id))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// `Authorization` from an init payload (any case), as a header value: at the top level
/// (`{"Authorization": "Bearer …"}`, what GraphiQL sends from its header editor) or under
/// `headers` (`{"headers": {"Authorization": …}}`, a common Apollo Client setup).
fn payload_authorization(payload: &serde_json::Value) -> Option<HeaderValue> {
    let find = |object: &serde_json::Value| {
        object
            .as_object()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.clone())
    };
    let value = find(payload).or_else(|| find(payload.get("headers")?))?;
    // Not a string, or not a valid header value: a bad credential, not a missing one.
    let text = value.as_str().unwrap_or("invalid");
    Some(HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid")))
}

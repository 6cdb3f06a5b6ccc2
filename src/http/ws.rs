//! `GET /graphql/ws`: subscriptions over the `graphql-transport-ws` protocol (what
//! Apollo Client's `GraphQLWsLink` and the `graphql-ws` library speak), DESIGN §7.
//!
//! async-graphql runs the protocol; this module owns the connection around it:
//!
//! - **Credentials** come in `connection_init`'s payload (`{"Authorization": "Bearer …"}`)
//!   or, failing that, the upgrade request's `Authorization` header. No credentials close
//!   the socket with 4401 (Unauthorized); an unknown, revoked or expired token with 4403
//!   (Forbidden), as the protocol recommends for a refused `connection_init`. An init
//!   without a valid token is charged to the client's address like an HTTP request
//!   (`STRONGROOM_UNAUTHENTICATED_RATE_LIMIT`); past it, 4429 before any token lookup.
//! - **Revocation**: the token is checked again every second (through the same cache as
//!   HTTP requests, whose entries live at most a second), so a revoked or expired token, or
//!   one whose principal changed role, is disconnected with 4403 within about two seconds.
//! - **No init** within [`INIT_TIMEOUT`] closes with 4408, per the protocol.
//! - A client that stops reading is disconnected once a send has waited [`SEND_TIMEOUT`];
//!   it never holds up publishers or other subscribers (see [`crate::events`]).
//! - Guard refusals are written to the audit log once a second, like an HTTP request's.
//!
//! Hostile clients (DESIGN §13) are bounded here, each with its own answer:
//!
//! - **Who may subscribe**: only a principal whose role
//!   [`may_subscribe`](crate::domain::Role::may_subscribe) is
//!   acknowledged; any other valid token is closed at `connection_init` with 4403 (and the
//!   refusal audited, action `connection_init`), as is a connection whose token's role
//!   later changes.
//! - **Connections per client address**
//!   (`STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_ADDRESS`, by the peer's IPv4 address or
//!   IPv6 /64) are counted at the upgrade, before anyone is known: one more is refused
//!   with HTTP 429 `RATE_LIMITED` and `Retry-After`, like the server-wide
//!   `STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS` (503 `OVERLOADED`). Behind a proxy every
//!   client has the proxy's address: raise it there.
//! - **Connections per principal** (`STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_PRINCIPAL`,
//!   whichever of its tokens) are counted at `connection_init`: one more is closed with
//!   4429, HTTP's "too many requests" in the protocol's 4000 + status scheme (the code the
//!   protocol also uses for a second `connection_init`; the reason tells them apart).
//!   `graphql-ws` clients do not retry a 4429 by themselves, which is what is wanted: a
//!   retry cannot succeed until one of the principal's connections closes. So one
//!   principal, a viewer's or an admin's, cannot take every slot of the server.
//! - **Subscriptions per connection** (`STRONGROOM_MAX_SUBSCRIPTIONS_PER_CONNECTION`) are
//!   counted on the messages as async-graphql's driver parses them, so the legacy `start`
//!   (an alias of `subscribe`) counts, and `stop` (of `complete`) frees a place.
//! - **Pings and the idle timeout**: every `STRONGROOM_SUBSCRIPTION_PING_SECS` the server
//!   sends the protocol's `{"type":"ping"}` (not a WebSocket ping frame: a browser answers
//!   those by itself, which proves only that the tab's socket is open; the protocol's ping
//!   is answered by the client library, and `graphql-ws` and Apollo Client do so
//!   unasked). A connection from which nothing at all arrived (no `pong`, no message, no
//!   frame) for `STRONGROOM_SUBSCRIPTION_IDLE_TIMEOUT_SECS` is closed with 3008 ("Idle
//!   timeout: …"), the code async-graphql's own keep-alive timeout sends (3000–3999 is the
//!   libraries' range, so no application code is taken); `graphql-ws` clients reconnect
//!   after it, as they should: the connection may only have been stalled. The driver
//!   answers a client's `ping` with a `pong`; either counts as a sign of life.
//!
//! Every close the server sends is counted in `strongroom_subscription_closes_total{code}`.
use crate::error::Code;
use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    hash::Hash,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_graphql::{
    Data,
    futures_util::{SinkExt, StreamExt, future},
    http::{ClientMessage, WebSocket as Protocol, WebSocketProtocols, WsMessage},
};
use axum::{
    extract::{
        ConnectInfo, State, WebSocketUpgrade,
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
    time::{Instant, MissedTickBehavior, interval, interval_at, timeout},
};
use uuid::Uuid;

use super::{
    AppState, REQUEST_ID, authenticate, authenticate_session, bearer_token, media::Media, sso,
};
use crate::{
    Error,
    config::Limits,
    domain::{Actor, Principal, audit},
    graphql::{Auth, Denials, RequestCtx, error_response, request_loaders},
};

/// The only subprotocol spoken (the legacy `graphql-ws` of subscriptions-transport-ws is
/// not: its errors and close codes differ).
const PROTOCOL: &str = "graphql-transport-ws";
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often credentials (and the idle clock) are checked again.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// What a client over the per-address cap is told to wait.
const RETRY_AFTER_SECS: u16 = 5;

/// WebSocket's own close code for a server going down.
const GOING_AWAY: u16 = 1001;

/// Close codes of the protocol (4000 + the HTTP status), and the idle timeout's.
mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const TOO_MANY: u16 = 4429;
    pub const INTERNAL: u16 = 4500;
    /// Nothing arrived for the idle timeout (what async-graphql's keep-alive sends).
    pub const IDLE: u16 = 3008;
}

/// The close reason for a principal whose role may not subscribe: at `connection_init`
/// and when a connected token's role changes.
const MAY_NOT_SUBSCRIBE: &str = "Forbidden: members and viewers may not subscribe; connect with an ADMIN, INSPECTOR or RUNTIME token";

/// The server's live subscription connections: told when the server shuts down, counted
/// so that shutdown can wait for their close frames to go out, and capped.
#[derive(Clone, Debug)]
pub struct Sessions {
    closing: watch::Receiver<bool>,
    live: Arc<()>,
    /// One permit per open connection (`STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS`).
    slots: Arc<Semaphore>,
    /// `STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_ADDRESS`, by peer IP.
    per_address: Arc<Tally<IpAddr>>,
    /// `STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_PRINCIPAL`, by principal id.
    per_principal: Arc<Tally<Uuid>>,
    /// `STRONGROOM_MAX_SUBSCRIPTIONS_PER_CONNECTION`.
    per_connection: usize,
    ping_every: Duration,
    idle_timeout: Duration,
}

impl Sessions {
    /// The sessions, and the switch that closes them all.
    pub fn new(limits: &Limits) -> crate::Result<(Self, watch::Sender<bool>)> {
        if limits.subscription_idle_timeout_secs <= limits.subscription_ping_secs {
            return Err(Error::Internal(format!(
                "STRONGROOM_SUBSCRIPTION_IDLE_TIMEOUT_SECS ({}) must be longer than \
                 STRONGROOM_SUBSCRIPTION_PING_SECS ({}), or clients that answer every ping \
                 are closed as idle",
                limits.subscription_idle_timeout_secs, limits.subscription_ping_secs
            )));
        }
        let (close, closing) = watch::channel(false);
        let sessions = Self {
            closing,
            live: Arc::new(()),
            slots: Arc::new(Semaphore::new(limits.max_subscription_connections as usize)),
            per_address: Tally::new(limits.max_subscription_connections_per_address),
            per_principal: Tally::new(limits.max_subscription_connections_per_principal),
            per_connection: limits.max_subscriptions_per_connection as usize,
            ping_every: Duration::from_secs(limits.subscription_ping_secs),
            idle_timeout: Duration::from_secs(limits.subscription_idle_timeout_secs),
        };
        Ok((sessions, close))
    }

    /// Waits (at most `limit`) until every session has closed.
    pub async fn drained(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Arc::strong_count(&self.live) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Connections held per key (a client address, a principal), at most `cap` each. Only
/// keys with a connection open have an entry, so it is bounded by the open connections.
#[derive(Debug)]
struct Tally<K> {
    cap: usize,
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Copy + Eq + Hash> Tally<K> {
    fn new(cap: u32) -> Arc<Self> {
        Arc::new(Self {
            cap: cap as usize,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// One more connection for `key`, or `None` if it holds its cap.
    fn take(self: &Arc<Self>, key: K) -> Option<Held<K>> {
        let mut held = lock(&self.held);
        let count = held.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Held {
            tally: self.clone(),
            key,
        })
    }
}

/// A place in a [`Tally`], given back when dropped.
struct Held<K: Copy + Eq + Hash> {
    tally: Arc<Tally<K>>,
    key: K,
}

impl<K: Copy + Eq + Hash> Drop for Held<K> {
    fn drop(&mut self) {
        let mut held = lock(&self.tally.held);
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

pub async fn graphql_ws(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
            Code::BadRequest,
            "subscriptions speak the graphql-transport-ws protocol: send \
             `Sec-WebSocket-Protocol: graphql-transport-ws`",
        );
    }
    // The address first: a client over its own share is told so, not that the server is
    // full.
    let Some(address_slot) = state.sessions.per_address.take(client_key(peer.ip())) else {
        let cap = state.sessions.per_address.cap;
        let message = format!(
            "this client address holds {cap} subscription connections, the most one address \
             may (STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_ADDRESS): close one, or run \
             more subscriptions on one connection; retry in {RETRY_AFTER_SECS} s"
        );
        return refused(
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            &message,
        );
    };
    let Ok(slot) = state.sessions.slots.clone().try_acquire_owned() else {
        return refused(
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Overloaded,
            "the server has as many subscription connections open as it allows; retry later",
        );
    };
    // The console's session cookie stands in for a token, from this server's pages only.
    let cookie = state
        .sso
        .as_ref()
        .and_then(|sso| sso::session_cookie(&headers).map(|cookie| (sso, cookie)));
    if let Some((sso, _)) = &cookie
        && !sso::upgrade_from_own_origin(&headers, &sso.settings.origin)
    {
        return Media::for_refusal(&headers).refusal(
            StatusCode::FORBIDDEN,
            Code::Forbidden,
            "a subscription signed in with the console's session cookie must come from this \
             server's own pages (its Origin); other clients send a token in connection_init",
        );
    }
    let cookie = cookie.map(|(_, cookie)| Arc::new(cookie));
    let max_message = state.limits.max_body_bytes;
    let (mut closing, live) = (state.sessions.closing.clone(), state.sessions.live.clone());
    let session = Arc::new(Session {
        peer: peer.ip(),
        header_auth: headers.get(AUTHORIZATION).cloned(),
        cookie,
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
            drop((live, slot, address_slot));
        })
        .into_response()
}

/// What the per-address cap counts a peer as: an IPv4 address (also when it arrives
/// IPv4-mapped on a dual-stack socket) or an IPv6 /64, the block one host or site is
/// given, from which it could otherwise pick a fresh address per connection.
fn client_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A refused upgrade, with `Retry-After` (and the same in `extensions.retryAfterSeconds`,
/// as the rate limit's refusals have it).
fn refused(headers: &HeaderMap, status: StatusCode, code: Code, message: &str) -> Response {
    let mut body = error_response(code, message);
    body["errors"][0]["extensions"]["retryAfterSeconds"] = RETRY_AFTER_SECS.into();
    let mut refused = Media::for_refusal(headers).respond(status, &body);
    refused
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    refused
}

struct Session {
    state: Arc<AppState>,
    /// The client's address, charged for an init without a valid token.
    peer: IpAddr,
    header_auth: Option<HeaderValue>,
    /// The console session's id from the upgrade's cookie (its origin checked).
    cookie: Option<Arc<SecretString>>,
    request_id: Option<String>,
    stage: Mutex<Stage>,
}

/// What the connection was authenticated with, to check again every second.
#[derive(Clone)]
enum Presented {
    Token(Arc<SecretString>),
    Session(Arc<SecretString>),
}

enum Stage {
    Waiting,
    Accepted(Accepted),
    /// `connection_init` was refused: the close code and reason to send.
    Refused(u16, Cow<'static, str>),
    /// The connection is over.
    Done,
}

#[derive(Clone)]
struct Accepted {
    presented: Presented,
    principal: Principal,
    credential: Option<crate::domain::Credential>,
    denials: Arc<Denials>,
    /// The connection's place in its principal's share, given back with the last clone.
    _share: Arc<Held<Uuid>>,
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
        // Subscriptions running on this connection, by id, to cap them: a `subscribe` (or
        // its legacy alias `start`) beyond the cap is answered here with an error and never
        // reaches the executor. Messages are parsed here exactly as the driver parses them,
        // so no spelling the driver accepts escapes the count.
        let running = Arc::new(Mutex::new(HashSet::<String>::new()));
        let cap = self.state.sessions.per_connection;
        let (refuse, mut refused) = mpsc::unbounded_channel::<String>();
        let counted = running.clone();
        // When the client last sent anything: any frame is a sign of life.
        let heard = Arc::new(Mutex::new(Instant::now()));
        let hearing = heard.clone();
        let incoming = incoming
            .take_while(|m| future::ready(m.is_ok()))
            .filter_map(move |m| {
                *lock(&hearing) = Instant::now();
                let bytes = match m {
                    Ok(Message::Text(text)) => text.as_bytes().to_vec(),
                    Ok(Message::Binary(bytes)) => bytes.to_vec(),
                    _ => return future::ready(None),
                };
                let message = ClientMessage::from_bytes(&bytes);
                let admitted = match &message {
                    Ok(ClientMessage::Start { id, .. }) => {
                        let mut running = lock(&counted);
                        if running.len() >= cap && !running.contains(id) {
                            let _ = refuse.send(id.clone());
                            false
                        } else {
                            running.insert(id.clone());
                            true
                        }
                    }
                    Ok(ClientMessage::Stop { id }) => {
                        lock(&counted).remove(id);
                        true
                    }
                    _ => true,
                };
                future::ready(admitted.then_some(message))
            });
        let session = self.clone();
        let mut protocol = Protocol::from_message_stream(
            self.state.schema.clone(),
            incoming,
            WebSocketProtocols::GraphQLWS,
        )
        .on_connection_init(move |payload| async move { session.init(payload).await });
        let opened = Instant::now();
        let mut recheck = interval(RECHECK_EVERY);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ping_every = self.state.sessions.ping_every;
        let mut ping = interval_at(opened + ping_every, ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle_timeout = self.state.sessions.idle_timeout;
        loop {
            let outgoing = tokio::select! {
                message = protocol.next() => match message {
                    Some(WsMessage::Text(text)) => {
                        // A subscription that ended (completed or failed) frees its place.
                        if (text.contains("\"complete\"") || text.contains("\"error\""))
                            && let Some((kind, id)) = server_message(text.as_bytes())
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
                        "payload": [{ "message": message, "extensions": { "code": Code::RateLimited.as_str() } }],
                    });
                    Message::Text(error.to_string().into())
                }
                // Only ever switched on (or dropped, at exit).
                _ = closing.changed() => {
                    close_frame(GOING_AWAY, "the server is shutting down")
                }
                // Pings keep an acknowledged connection's client talking; before the ack
                // the init timeout governs.
                _ = ping.tick() => {
                    if self.accepted().is_none() {
                        continue;
                    }
                    Message::Text(r#"{"type":"ping"}"#.into())
                }
                _ = recheck.tick() => {
                    if lock(&heard).elapsed() >= idle_timeout {
                        let reason = format!(
                            "Idle timeout: nothing received for {} s; answer pings with pong",
                            idle_timeout.as_secs()
                        );
                        close_frame(close::IDLE, &reason)
                    } else {
                        match self.recheck(opened).await {
                            Some((code, reason)) => close_frame(code, reason),
                            None => continue,
                        }
                    }
                }
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
        // Gives the principal's place back now, whoever still holds the session.
        *self.stage() = Stage::Done;
    }

    /// `connection_init`: who is this, and may they subscribe?
    async fn init(&self, payload: serde_json::Value) -> async_graphql::Result<Data> {
        let value = match payload_authorization(&payload) {
            Some(value) => Some(value),
            None => self.header_auth.clone(),
        };
        let refuse = |code, reason: Cow<'static, str>| {
            let error = async_graphql::Error::new(reason.as_ref());
            *self.stage() = Stage::Refused(code, reason);
            Err(error)
        };
        // Only why it failed matters here, not how an HTTP answer would look.
        let (authenticated, presented) = match (value, &self.cookie, &self.state.sso) {
            (Some(value), ..) => {
                let token = bearer_token(&value)
                    .map(|t| Presented::Token(Arc::new(SecretString::from(t.to_owned()))));
                let mut headers = HeaderMap::new();
                headers.insert(AUTHORIZATION, value);
                let caller =
                    authenticate(&self.state, Some(self.peer), &headers, Media::Json).await;
                (caller, token)
            }
            (None, Some(cookie), Some(sso)) => {
                let caller =
                    authenticate_session(&self.state, Some(self.peer), sso, cookie, Media::Json)
                        .await;
                (caller, Some(Presented::Session(cookie.clone())))
            }
            (None, ..) => {
                return refuse(
                    close::UNAUTHORIZED,
                    "Unauthorized: send {\"Authorization\": \"Bearer <token>\"} in connection_init"
                        .into(),
                );
            }
        };
        let caller = match authenticated {
            Ok(caller) => caller,
            Err(refused) if refused.status() == StatusCode::TOO_MANY_REQUESTS => {
                return refuse(
                    close::TOO_MANY,
                    "Too many requests without a valid token from this address; retry later \
                     with a valid token"
                        .into(),
                );
            }
            Err(_) => {
                return refuse(
                    close::INTERNAL,
                    "the server cannot check credentials now".into(),
                );
            }
        };
        let credential = caller.credential;
        let (Auth::Principal(principal), Some(presented)) = (caller.auth, presented) else {
            return refuse(
                close::FORBIDDEN,
                "Forbidden: unknown, revoked or expired token or session".into(),
            );
        };
        if !principal.role.may_subscribe() {
            // Audited like a field a guard refused, one row per refused connection.
            let (db, budget) = (self.state.data.db.write(), &self.state.data.denials);
            let refusal = vec![("connection_init".to_owned(), 1)];
            let actor = Actor {
                principal,
                request_id: self.request_id.clone(),
                credential,
            };
            if let Err(e) = audit::record_denials_within(db, budget, &actor, refusal).await {
                tracing::error!(error = %e, "could not record a refused subscriber");
            }
            return refuse(close::FORBIDDEN, MAY_NOT_SUBSCRIBE.into());
        }
        let Some(share) = self.state.sessions.per_principal.take(principal.id) else {
            let cap = self.state.sessions.per_principal.cap;
            return refuse(
                close::TOO_MANY,
                format!(
                    "Too many connections: this principal holds {cap}, its limit; close one \
                     or subscribe on an open one"
                )
                .into(),
            );
        };
        let denials = Arc::new(Denials::default());
        let ctx = RequestCtx {
            auth: Auth::Principal(principal.clone()),
            request_id: self.request_id.clone(),
            denials: denials.clone(),
            credential: credential.clone(),
        };
        // One loader for the connection's life: no cache, or its events would show rows
        // as they were when first loaded.
        let loader = request_loaders(&self.state.data);
        loader.enable_all_cache(false);
        let mut data = Data::default();
        data.insert(ctx);
        data.insert(loader);
        *self.stage() = Stage::Accepted(Accepted {
            presented,
            principal,
            credential,
            denials,
            _share: Arc::new(share),
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
        let found = match (&accepted.presented, &self.state.sso) {
            (Presented::Token(token), _) => data
                .tokens
                .authenticate(data.db.read(), token.expose_secret())
                .await
                .map(|found| found.map(|f| f.principal.role)),
            // Not a use of the session: an open page alone does not keep it from idling.
            (Presented::Session(session), Some(sso)) => {
                let lifetimes = sso.settings.lifetimes;
                crate::domain::sessions::find(&data.db, session.expose_secret(), lifetimes, false)
                    .await
                    .map(|found| found.map(|f| f.principal.role))
            }
            (Presented::Session(_), None) => Ok(None),
        };
        match found {
            Ok(Some(role)) if role == accepted.principal.role => None,
            // The connection's context holds the role it was acknowledged with, so any
            // change ends it; one that took the right to subscribe says so.
            Ok(Some(role)) if !role.may_subscribe() => Some((close::FORBIDDEN, MAY_NOT_SUBSCRIBE)),
            Ok(Some(_)) => Some((
                close::FORBIDDEN,
                "Forbidden: the token's role changed; connect again",
            )),
            Ok(None) => Some((
                close::FORBIDDEN,
                "Forbidden: the token or session was revoked or expired",
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
        let actor = Actor {
            principal: accepted.principal.clone(),
            request_id: self.request_id.clone(),
            credential: accepted.credential.clone(),
        };
        if let Err(e) = audit::record_denials_within(db, budget, &actor, refused).await {
            tracing::error!(error = %e, "could not record denied subscriptions");
        }
    }
}

/// The `type` and `id` of a message the server sends, if it has both.
fn server_message(bytes: &[u8]) -> Option<(String, String)> {
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

/// A close frame; the reason cut (at a character) to the 123 bytes a frame can carry.
fn close_frame(code: u16, reason: &str) -> Message {
    const MAX_REASON: usize = 123;
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_gives_places_back_and_forgets_empty_keys() {
        let tally = Tally::new(2);
        let first = tally.take(1).expect("a first place");
        let second = tally.take(1).expect("a second place");
        assert!(tally.take(1).is_none(), "the cap holds");
        let other = tally.take(2).expect("another key has its own share");
        drop(first);
        let again = tally.take(1).expect("a place given back is taken again");
        drop((second, again, other));
        assert!(
            lock(&tally.held).is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn addresses_count_by_ipv4_address_or_ipv6_block() {
        let key = |text: &str| client_key(text.parse().expect("an address"));
        assert_eq!(key("192.0.2.7"), key("::ffff:192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn the_idle_timeout_must_outlast_the_ping_interval() {
        let mut limits = Limits::default();
        assert!(Sessions::new(&limits).is_ok(), "the defaults hold together");
        limits.subscription_ping_secs = 30;
        limits.subscription_idle_timeout_secs = 30;
        let refused = Sessions::new(&limits).err().map(|e| e.to_string());
        assert!(
            refused.is_some_and(|e| e.contains("STRONGROOM_SUBSCRIPTION_IDLE_TIMEOUT_SECS")),
            "an idle timeout no longer than the ping interval is refused"
        );
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let reason = |message: Message| match message {
            Message::Close(Some(frame)) => frame.reason.to_string(),
            other => panic!("not a close frame: {other:?}"),
        };
        assert_eq!(
            reason(close_frame(4403, MAY_NOT_SUBSCRIBE)),
            MAY_NOT_SUBSCRIBE
        );
        let long = "é".repeat(100);
        let cut = reason(close_frame(4400, &long));
        assert!(cut.len() <= 123 && long.starts_with(&cut), "{cut}");
    }
}

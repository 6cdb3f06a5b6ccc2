//! The HTTP surface (axum): `POST /graphql`, `GET /graphql` (queries only), the GraphiQL
//! playground at `/`, the console at `/console`, `/healthz`, `/readyz` and `/metrics`.
mod console;
mod cors;
mod guarded;
mod limits;
mod media;
mod oauth;
mod params;
mod playground;
mod probes;
pub mod server;
mod sso;
mod v1;
mod ws;

use crate::error::Code;
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use async_graphql::{BatchRequest, parser::types::OperationType};
use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State},
    http::{
        HeaderMap, HeaderName, HeaderValue, StatusCode, Uri,
        header::{ALLOW, AUTHORIZATION, CACHE_CONTROL},
        request::Parts,
    },
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use tower::{BoxError, ServiceBuilder};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::{Level, Span, field::Empty};

use self::media::Media;
pub use self::{
    limits::{AddressRateLimiter, TokenRateLimiter},
    probes::{KeyCheck, MetricsAccess, metrics_router},
    ws::Sessions,
};
use crate::{
    auth::{Checked, Refusal},
    config::{CorsOrigin, Limits},
    domain::audit,
    graphql::{AppData, AppSchema, Auth, Denials, OverHttp, RequestCtx, request_loaders},
    metrics::Metrics,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub struct AppState {
    pub schema: AppSchema,
    pub data: AppData,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub rate_limiter: Arc<TokenRateLimiter>,
    /// Requests without a valid token, per client address.
    pub address_limiter: Arc<AddressRateLimiter>,
    /// Who may read `/metrics` here.
    pub metrics_access: MetricsAccess,
    pub key_check: KeyCheck,
    /// Browser origins allowed to call the API (empty: CORS off).
    pub cors_origins: Vec<CorsOrigin>,
    /// Subscription connections (`/graphql/ws`).
    pub sessions: Sessions,
    /// Verifies workload JWTs for `POST /oauth/token`.
    pub oidc: Arc<crate::oidc::Verifier>,
    /// People's single sign-on to the console, when a provider is configured.
    pub sso: Option<Arc<crate::sso::Sso>>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.limits.max_body_bytes;
    let timeout = Duration::from_secs(state.limits.request_timeout_secs);
    let in_flight = usize::try_from(state.limits.max_concurrent_requests).unwrap_or(usize::MAX);
    let graphql = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .layer(
            ServiceBuilder::new()
                // A response can carry a value: no cache may keep any of them.
                .layer(SetResponseHeaderLayer::overriding(
                    CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                .layer(HandleErrorLayer::new(
                    move |headers: HeaderMap, error: BoxError| {
                        limits::load_refusal(timeout, Media::for_refusal(&headers), error)
                    },
                ))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(in_flight))
                .timeout(timeout),
        );
    let cors = cors::layer(&state.cors_origins);
    let router = Router::new()
        .merge(playground::routes())
        .merge(console::routes())
        .merge(sso::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .merge(graphql)
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/oauth/token", axum::routing::post(oauth::token))
        .route("/v1/resources/{id}/secrets", get(v1::resource_secrets))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(drop_unusable_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        // One access-log line per request, in the request's span.
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // Enforced where a body is read, so `/graphql` can refuse in GraphQL's shape.
                .layer(DefaultBodyLimit::max(max_body)),
        );
    // Outermost: a preflight is answered before routing (no route takes OPTIONS).
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// One span per request: its id, method and path now; the operation name and the
/// principal once known. Never a variable's value or the query text (which may hold
/// inline values).
fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        path = %request.uri().path(),
        operation = Empty,
        principal = Empty,
    )
}

/// Keeps a client's `x-request-id` only if it is short and plain, so it can neither
/// forge log lines nor bloat the audit log; otherwise a fresh one is made.
async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let usable = request.headers().get(REQUEST_ID).is_some_and(|v| {
        let bytes = v.as_bytes();
        (1..=64).contains(&bytes.len()) && bytes.iter().all(|&b| is_plain(b))
    });
    if !usable {
        request.headers_mut().remove(REQUEST_ID);
    }
    next.run(request).await
}

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.')
}

/// The client's address, as the server loop recorded it (`None` when the router runs
/// without it).
struct Peer(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Self(address.map(|ConnectInfo(address)| address.ip())))
    }
}

/// A caller, and the token (or console session) that identified it.
struct Caller {
    auth: Auth,
    /// The token's or the session's id: what the per-token rate limit counts by.
    token_id: Option<uuid::Uuid>,
    credential: Option<crate::domain::Credential>,
}

/// Resolves the bearer token. A database failure is a 503, not a silent anonymous.
/// Requests from `peer` without a valid token are charged to its address, and refused
/// (429) before any lookup once it is over its limit.
async fn authenticate(
    state: &AppState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    media: Media,
) -> Result<Caller, Response> {
    let data = &state.data;
    let limiter = &state.address_limiter;
    let Some(value) = headers.get(AUTHORIZATION) else {
        // No token: the console's session cookie, if single sign-on is on, from this
        // server's own pages only (CSRF).
        if let Some(sso) = &state.sso
            && let Some(session) = sso::session_cookie(headers)
        {
            if !sso::from_own_origin(headers, &sso.settings.origin) {
                return Err(media.refusal(
                    StatusCode::FORBIDDEN,
                    Code::Forbidden,
                    "a request signed in with the console's session cookie must come from \
                     this server's own pages (its Origin); other clients send a token",
                ));
            }
            return authenticate_session(state, peer, sso, &session, media).await;
        }
        return without_token(limiter, peer, Auth::Anonymous).map_err(|r| r.answer(media));
    };
    let Some(token) = bearer_token(value) else {
        return without_token(limiter, peer, Auth::Invalid).map_err(|r| r.answer(media));
    };
    if let Some(peer) = peer
        && let Err(refusal) = limiter.check_blocked(peer)
        && !data.tokens.known_valid(token).await
    {
        return Err(refusal.answer(media));
    }
    match data.tokens.check(data.db.read(), token).await {
        Ok(Checked::Valid(found)) => {
            let credential = found.credential();
            let principal = found.principal;
            Span::current().record("principal", tracing::field::display(principal.id));
            Ok(Caller {
                auth: Auth::Principal(principal),
                token_id: Some(found.token_id),
                credential: Some(credential),
            })
        }
        Ok(Checked::Refused(found, refusal)) => {
            refused_token(state, &found, refusal, headers).await;
            without_token(limiter, peer, Auth::Invalid).map_err(|r| r.answer(media))
        }
        Ok(Checked::Unknown) => {
            tracing::info!("request with an unknown token");
            without_token(limiter, peer, Auth::Invalid).map_err(|r| r.answer(media))
        }
        Err(e) => Err(lookup_failed(&e, media)),
    }
}

/// A credential lookup failed: a 503, always worth retrying.
fn lookup_failed(e: &crate::Error, media: Media) -> Response {
    tracing::error!(error = %e, "authentication lookup failed");
    // The database's state when it is the cause (`DATABASE_UNAVAILABLE`,
    // `STORAGE_FULL`).
    let code = if e.is_retryable() {
        e.code()
    } else {
        Code::InternalServerError
    };
    let mut body = crate::graphql::error_response(
        code,
        "the server cannot check credentials right now; try again later",
    );
    body["errors"][0]["extensions"]["retryable"] = serde_json::Value::Bool(true);
    media.respond(StatusCode::SERVICE_UNAVAILABLE, &body)
}

/// Resolves a console session (the cookie's id; its origin already checked). An ended or
/// unknown session is a request without a valid credential.
async fn authenticate_session(
    state: &AppState,
    peer: Option<IpAddr>,
    sso: &crate::sso::Sso,
    session: &secrecy::SecretString,
    media: Media,
) -> Result<Caller, Response> {
    use secrecy::ExposeSecret as _;
    // As a valid token's, a live session's requests are not held back by its address's
    // failures; an ended session's are charged to it.
    let limiter = &state.address_limiter;
    let lifetimes = sso.settings.lifetimes;
    let db = &state.data.db;
    match crate::domain::sessions::find(db, session.expose_secret(), lifetimes, true).await {
        Ok(Some(found)) => {
            Span::current().record("principal", tracing::field::display(found.principal.id));
            Ok(Caller {
                credential: Some(found.credential()),
                token_id: Some(found.session_id),
                auth: Auth::Principal(found.principal),
            })
        }
        Ok(None) => {
            tracing::info!("request with an ended or unknown session");
            without_token(limiter, peer, Auth::Invalid).map_err(|r| r.answer(media))
        }
        Err(e) => Err(lookup_failed(&e, media)),
    }
}

/// A caller without a valid token, once its address has paid for the request.
fn without_token(
    limiter: &AddressRateLimiter,
    peer: Option<IpAddr>,
    auth: Auth,
) -> Result<Caller, limits::RateLimited> {
    if let Some(peer) = peer {
        limiter.charge(peer)?;
    }
    Ok(Caller {
        auth,
        token_id: None,
        credential: None,
    })
}

/// A revoked or expired token was presented: logged by its prefix, counted, and audited
/// (`auth.refused`, at most once per token per minute, so a client retrying in a loop
/// costs one row a minute). The request goes on as one without a valid token.
async fn refused_token(
    state: &AppState,
    found: &crate::domain::identity::Authenticated,
    refusal: Refusal,
    headers: &HeaderMap,
) {
    let reason = refusal.as_str();
    tracing::warn!(
        token_prefix = %found.prefix,
        principal = %found.principal.id,
        reason,
        "request with a {reason} token"
    );
    state.metrics.auth_refused(reason);
    if !state.data.tokens.first_refusal_this_minute(found.token_id) {
        return;
    }
    let actor = crate::domain::Actor {
        principal: found.principal.clone(),
        request_id: headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        credential: Some(found.credential()),
    };
    let event = audit::Event::denied("auth.refused", audit::Target::token(found.token_id))
        .with_detail(serde_json::json!({ "reason": reason, "prefix": found.prefix }));
    if let Err(e) = audit::record(state.data.db.write(), &actor, event).await {
        tracing::error!(error = %e, "could not audit a refused token");
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The operation names of a batch for the request span: GraphQL names only (anything
/// else is the client's free text and stays out of the logs).
fn operation_names(batch: &BatchRequest) -> String {
    let names: Vec<&str> = batch
        .iter()
        .map(|r| match r.operation_name.as_deref() {
            Some(name) if name.len() <= 64 && name.bytes().all(is_plain) => name,
            Some(_) => "?",
            None => "-",
        })
        .collect();
    names.join(",")
}

/// Runs a batch read from a request and answers it in `media`.
async fn execute(
    state: &AppState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    media: Media,
    batch: BatchRequest,
) -> Response {
    match authenticate(state, peer, headers, media).await {
        Ok(caller) => execute_as(state, caller, headers, media, batch).await,
        Err(response) => response,
    }
}

/// Runs a batch for an authenticated (or anonymous) caller.
async fn execute_as(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    media: Media,
    batch: BatchRequest,
) -> Response {
    if let Some(token_id) = caller.token_id
        && let Err(refusal) = state.rate_limiter.check(token_id, batch.iter().count())
    {
        return refusal.answer(media);
    }
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Span::current().record("operation", operation_names(&batch).as_str());
    let denials = Arc::new(Denials::default());
    let ctx = RequestCtx {
        auth: caller.auth,
        request_id,
        denials: denials.clone(),
        credential: caller.credential,
    };
    let mut batch = batch.data(ctx.clone());
    for request in batch.iter_mut() {
        request.data.insert(request_loaders(&state.data));
        request.data.insert(OverHttp);
    }
    let response = state.schema.execute_batch(batch).await;
    record_denials(state, &ctx, &denials).await;
    media.graphql(response)
}

/// Writes the refusals of a request to the audit log: a row per refused field.
async fn record_denials(state: &AppState, ctx: &RequestCtx, denials: &Denials) {
    let refused = denials.take();
    let Some(actor) = ctx.actor() else {
        return;
    };
    if refused.is_empty() {
        return;
    }
    let (db, budget) = (state.data.db.write(), &state.data.denials);
    if let Err(e) = audit::record_denials_within(db, budget, &actor, refused).await {
        // The refusal stands either way; a lost audit row must be visible to operators.
        tracing::error!(error = %e, "could not record denied attempts");
    }
}

/// `POST /graphql`: a JSON body, one request or a batch. The `Accept` header is settled
/// first (406), then the body's type (415), then the body itself (413, 400).
async fn graphql_post(
    State(state): State<Arc<AppState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let Some(media) = Media::negotiate(&headers) else {
        return media::not_acceptable();
    };
    if !media::is_json_body(&headers) {
        return media.refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BadRequest,
            "send the request as JSON, with `Content-Type: application/json`",
        );
    }
    let batch = match params::from_body(request, state.limits.max_body_bytes).await {
        Ok(batch) => batch,
        Err(unreadable) => return unreadable.answer(media),
    };
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > state.limits.max_batch
    {
        let message = format!(
            "a batch may hold at most {} operations; this one holds {}",
            state.limits.max_batch,
            requests.len()
        );
        return media.refusal(StatusCode::BAD_REQUEST, Code::BadRequest, &message);
    }
    execute(&state, peer, &headers, media, batch).await
}

/// `GET /graphql`: queries only (cacheable, bookmarkable); mutations must use POST.
async fn graphql_get(
    State(state): State<Arc<AppState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(media) = Media::negotiate(&headers) else {
        return media::not_acceptable();
    };
    let mut request = match params::from_uri(&uri) {
        Ok(request) => request,
        Err(unreadable) => return unreadable.answer(media),
    };
    // A query sent by its hash (APQ) is checked like one sent in full: no mutation over
    // GET. Persisted queries are the caller's organization's, so the caller comes first.
    let caller = match authenticate(&state, peer, &headers, media).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if let Some(org) = caller.auth.org()
        && let Some(query) = state.data.persisted.lookup(org, &request)
    {
        request.query = query.to_string();
    }
    // Parsed (or found parsed) here; the pipeline finds it kept (and reports a parse error
    // itself).
    let wanted = request.operation_name.clone();
    if let Ok(document) = state.data.parsed.parse(caller.auth.org(), &request.query) {
        let operation = document
            .operations
            .iter()
            .find(|(name, _)| wanted.is_none() || name.map(|n| n.as_str()) == wanted.as_deref())
            .map(|(_, op)| op.node.ty);
        if operation == Some(OperationType::Mutation) {
            let mut response = media.refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::BadRequest,
                "mutations are only accepted over POST",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    execute_as(
        &state,
        caller,
        &headers,
        media,
        BatchRequest::Single(request),
    )
    .await
}

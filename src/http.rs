//! The HTTP surface (axum): `POST /graphql`, `GET /graphql` (queries only), the GraphiQL
//! playground at `/`, `/healthz` and `/readyz`.
use std::{sync::Arc, time::Duration};

use async_graphql::{BatchRequest, http::GraphiQLSource, parser::types::OperationType};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLRequest, GraphQLResponse};
use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header::AUTHORIZATION},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::{Level, Span, field::Empty};

use crate::{
    config::Limits,
    domain::identity,
    graphql::{AppData, AppSchema, Auth, RequestCtx, error_response, request_loaders},
    metrics::Metrics,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub struct AppState {
    pub schema: AppSchema,
    pub data: AppData,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .route("/", get(graphiql))
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
                .layer(RequestBodyLimitLayer::new(max_body)),
        )
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
        (1..=64).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if !usable {
        request.headers_mut().remove(REQUEST_ID);
    }
    next.run(request).await
}

async fn graphiql() -> Html<String> {
    // GraphiQL's "Headers" tab takes `{"Authorization": "Bearer <token>"}`.
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .title("strongroom")
            .finish(),
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let database = state.data.db.ping().await;
    let keys = tokio::time::timeout(Duration::from_secs(5), state.data.keys.health()).await;
    let database_ok = database.is_ok();
    let keys_ok = matches!(keys, Ok(Ok(())));
    if let Err(e) = &database {
        tracing::warn!(error = %e, "readiness: database unreachable");
    }
    let status = if database_ok && keys_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = serde_json::json!({
        "database": word(database_ok),
        "keyProvider": word(keys_ok),
        "keyProviderKind": state.data.keys.kind(),
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.render() {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(error_response(code, message))).into_response()
}

/// Resolves the bearer token. A database failure is a 503, not a silent anonymous.
async fn authenticate(data: &AppData, headers: &HeaderMap) -> Result<Auth, Response> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(Auth::Anonymous);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return Ok(Auth::Invalid);
    };
    match identity::authenticate(&data.db, token).await {
        Ok(Some(principal)) => {
            Span::current().record("principal", tracing::field::display(principal.id));
            Ok(Auth::Principal(principal))
        }
        Ok(None) => {
            tracing::info!("request with an unknown, revoked or expired token");
            Ok(Auth::Invalid)
        }
        Err(e) => {
            tracing::error!(error = %e, "authentication lookup failed");
            Err(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "INTERNAL_SERVER_ERROR",
                "the server cannot check credentials right now; try again later",
            ))
        }
    }
}

async fn execute(state: &AppState, headers: &HeaderMap, batch: BatchRequest) -> Response {
    let auth = match authenticate(&state.data, headers).await {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let operations: Vec<&str> = batch
        .iter()
        .map(|r| r.operation_name.as_deref().unwrap_or("-"))
        .collect();
    Span::current().record("operation", operations.join(",").as_str());
    let mut batch = batch.data(RequestCtx { auth, request_id });
    for request in batch.iter_mut() {
        request.data.insert(request_loaders(&state.data));
    }
    GraphQLResponse::from(state.schema.execute_batch(batch).await).into_response()
}

async fn graphql_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    batch: GraphQLBatchRequest,
) -> Response {
    let batch = batch.into_inner();
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > state.limits.max_batch
    {
        let message = format!(
            "a batch may hold at most {} operations; this one holds {}",
            state.limits.max_batch,
            requests.len()
        );
        return refusal(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message);
    }
    execute(&state, &headers, batch).await
}

/// Queries over GET (cacheable, bookmarkable); mutations must use POST.
async fn graphql_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let request = request.into_inner();
    if let Ok(document) = async_graphql::parser::parse_query(&request.query) {
        let operation = document
            .operations
            .iter()
            .find(|(name, _)| {
                request.operation_name.is_none()
                    || name.map(|n| n.as_str()) == request.operation_name.as_deref()
            })
            .map(|(_, op)| op.node.ty);
        if operation == Some(OperationType::Mutation) {
            let mut response = refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_REQUEST",
                "mutations are only accepted over POST",
            );
            response
                .headers_mut()
                .insert("allow", HeaderValue::from_static("POST"));
            return response;
        }
    }
    execute(&state, &headers, BatchRequest::Single(request)).await
}

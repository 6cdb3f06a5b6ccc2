//! `POST /oauth/token`: RFC 8693 token exchange of a workload's JWT for a short-lived
//! strongroom token (DESIGN §10). Refusals are RFC 6749 §5.2 errors; every exchange,
//! granted or refused, is audited in the organizations that trust the issuer. The caller
//! holds no strongroom credential yet, so the endpoint is charged to its address like any
//! request without a valid token.
use std::{collections::HashMap, sync::Arc};

use axum::{
    Form,
    extract::{State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{AppState, Peer, REQUEST_ID};
use crate::{
    domain::workload,
    oidc::{Refused, Verifier},
};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An RFC 6749 §5.2 error answer.
fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({ "error": code, "error_description": description });
    no_store((status, axum::Json(body)).into_response())
}

/// Token answers are never cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub async fn token(
    State(state): State<Arc<AppState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(peer) = peer
        && let Err(refusal) = state.address_limiter.charge(peer)
    {
        return refusal.answer(super::media::Media::Json);
    }
    let Ok(Form(form)) = form else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send application/x-www-form-urlencoded parameters (RFC 8693)",
        );
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some(TOKEN_EXCHANGE) {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange",
        );
    }
    if !matches!(field("subject_token_type"), Some(JWT | ID_TOKEN)) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token_type must be urn:ietf:params:oauth:token-type:jwt",
        );
    }
    let Some(jwt) = field("subject_token").filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token is missing",
        );
    };
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    exchange(&state, jwt, request_id).await
}

async fn exchange(state: &AppState, jwt: &str, request_id: Option<String>) -> Response {
    let db = &state.data.db;
    let refuse = |description: &str| error(StatusCode::BAD_REQUEST, "invalid_grant", description);
    let issuer = match Verifier::issuer_of(jwt) {
        Ok(issuer) => issuer,
        Err(e) => return refuse(&e.to_string()),
    };
    let candidates = match workload::trusting(db.read(), &issuer).await {
        Ok(candidates) => candidates,
        Err(e) => {
            tracing::error!(error = %e, "looking up workload identities");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the server cannot check workload identities now; try again later",
            );
        }
    };
    if candidates.is_empty() {
        tracing::info!(
            issuer,
            "token exchange for an issuer no workload identity trusts"
        );
        return refuse("no workload identity trusts this issuer");
    }
    let verified = match state.oidc.verify(jwt, &issuer).await {
        Ok(verified) => verified,
        Err(refused) => {
            let reason = refused.to_string();
            workload::audit_refusal(db, &candidates, &issuer, None, &reason).await;
            return match refused {
                Refused::Invalid(_) => refuse(&reason),
                Refused::Unavailable(_) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    &reason,
                ),
            };
        }
    };
    let matching = workload::matching(&candidates, &verified);
    let identity = match matching.as_slice() {
        [one] => *one,
        [] => {
            let reason = "the JWT matches no workload identity (audience or bound claims)";
            workload::audit_refusal(db, &candidates, &issuer, Some(&verified), reason).await;
            return refuse(reason);
        }
        _ => {
            let reason = "the JWT matches more than one workload identity; make their bound \
                          claims exclusive";
            workload::audit_refusal(db, &candidates, &issuer, Some(&verified), reason).await;
            return refuse(reason);
        }
    };
    match workload::exchange(db, identity, &verified, request_id).await {
        Ok(issued) => {
            let expires_in = issued
                .record
                .expires_at
                .map(|at| (at - chrono::Utc::now()).num_seconds().max(0))
                .unwrap_or(0);
            let body = json!({
                "access_token": issued.token.expose_secret(),
                "issued_token_type": ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": expires_in,
            });
            no_store((StatusCode::OK, axum::Json(body)).into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "issuing an exchanged token");
            let status = if e.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            error(status, "temporarily_unavailable", &e.public_message())
        }
    }
}

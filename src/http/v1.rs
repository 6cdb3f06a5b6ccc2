//! Plain HTTP for tools that do not speak GraphQL (DESIGN §11): shell steps, External
//! Secrets Operator's webhook provider. `GET /v1/resources/{id}/secrets` answers what
//! `resourceSecrets` answers — the values the resource's current deployment pins — with
//! the same authorization, audit and usage; refusals are HTTP statuses with
//! `{"error": {"code", "message"}}`; nothing is cacheable.
use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{AppState, Peer, REQUEST_ID, media::Media};
use crate::{
    Error,
    domain::{Permission, audit},
    error::Code,
    graphql::{Auth, ids},
};

/// `{"error": {"code", "message", …}}` with `status`, never cached.
fn refusal(
    status: StatusCode,
    code: Code,
    message: &str,
    extra: Option<(&str, Value)>,
) -> Response {
    let mut error = json!({ "code": code.as_str(), "message": message });
    if let Some((name, value)) = extra {
        error[name] = value;
    }
    no_store((status, Json(json!({ "error": error }))).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A refusal the GraphQL path shaped (`{"errors": [...]}`: a rate limit, an outage), in
/// this endpoint's shape, with its status and headers (`Retry-After`).
async fn reshaped(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let graphql: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let first = &graphql["errors"][0];
    let error = json!({
        "code": first["extensions"]["code"].as_str().unwrap_or(Code::InternalServerError.as_str()),
        "message": first["message"].as_str().unwrap_or("the request was refused"),
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&json!({ "error": error })).unwrap_or_default();
    no_store(Response::from_parts(parts, axum::body::Body::from(body)))
}

/// The status an error of the domain answers with here.
fn status_of(error: &Error) -> StatusCode {
    match error.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Forbidden => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::MissingSecrets | Code::SecretDisabled => StatusCode::CONFLICT,
        Code::BadUserInput => StatusCode::BAD_REQUEST,
        code if error.is_retryable() || code == Code::KmsUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub async fn resource_secrets(
    State(state): State<Arc<AppState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match super::authenticate(&state, peer, &headers, Media::Json).await {
        Ok(caller) => caller,
        Err(refused) => return reshaped(refused).await,
    };
    let Auth::Principal(principal) = caller.auth else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            &Error::Unauthenticated.to_string(),
            None,
        );
    };
    if let Some(token_id) = caller.token_id
        && let Err(limited) = state.rate_limiter.check(token_id, 1)
    {
        return reshaped(limited.answer(Media::Json)).await;
    }
    let actor = crate::domain::Actor {
        principal,
        request_id: headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        credential: caller.credential,
    };
    if !actor.principal.role.allows(Permission::FetchPinned) {
        // Audited like a field a guard refused.
        let refused = vec![("v1.resourceSecrets".to_owned(), 1)];
        let (db, budget) = (state.data.db.write(), &state.data.denials);
        if let Err(e) = audit::record_denials_within(db, budget, &actor, refused).await {
            tracing::error!(error = %e, "could not record a denied fetch");
        }
        return refusal(
            StatusCode::FORBIDDEN,
            Code::Forbidden,
            &Error::Forbidden.to_string(),
            None,
        );
    }
    let Ok(resource_id) = ids::decode_as(&id, ids::RESOURCE) else {
        return refusal(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "resource not found",
            None,
        );
    };
    match state.data.plaintext().resolve(&actor, resource_id).await {
        Ok(resolved) => {
            let secrets: Vec<Value> = resolved
                .secrets
                .iter()
                .map(|s| {
                    json!({ "name": s.name, "field": s.field, "version": s.version,
                            "value": s.value.expose() })
                })
                .collect();
            let body = json!({
                "resource": {
                    "id": ids::encode(ids::RESOURCE, resolved.resource.id),
                    "kind": resolved.resource.kind,
                    "name": resolved.resource.name,
                },
                "deployment": {
                    "id": ids::encode(ids::DEPLOYMENT, resolved.deployment.id),
                    "deployedAt": resolved.deployment.deployed_at,
                },
                "secrets": secrets,
            });
            no_store((StatusCode::OK, Json(body)).into_response())
        }
        Err(e) => {
            if e.is_internal() {
                tracing::error!(code = e.code().as_str(), error = %e, "a v1 fetch failed");
            }
            let extra = match &e {
                Error::MissingSecrets(names) => Some(("missingSecrets", json!(names))),
                Error::SecretDisabled(names) => Some(("disabledSecrets", json!(names))),
                _ => None,
            };
            refusal(status_of(&e), e.code(), &e.public_message(), extra)
        }
    }
}

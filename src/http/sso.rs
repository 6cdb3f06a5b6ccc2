//! People's sign-in to the console (DESIGN §10 "People"), when an OpenID provider is
//! configured:
//!
//! - `GET /auth/login`: to the provider (authorization code + PKCE, see [`crate::sso`]),
//!   with a short-lived `__Host-strongroom_login` cookie binding the login to this browser
//!   (`SameSite=Lax`: it must come back on the provider's redirect).
//! - `GET /auth/callback`: the provider's answer. The person's principal and a session are
//!   made, and the session id set in `__Host-strongroom_session` (HttpOnly, Secure,
//!   SameSite=Strict, Path=/, no Domain; it lasts as long as the session may), then to
//!   `/console`.
//! - `POST /auth/logout`: revokes the session and clears the cookie (CSRF-checked).
//! - `GET /auth/session`: `{"sso": true|false}`, whether the console offers single sign-on.
//!
//! A cookie-authenticated request ([`session_cookie`]) must come from this server's own
//! pages ([`from_own_origin`]): its `Origin` is the server's origin, or, without one (a
//! same-origin GET), `Sec-Fetch-Site: same-origin`. A WebSocket upgrade must have the
//! server's `Origin`. Requests with an `Authorization` header are not concerned.
use std::sync::Arc;

use axum::{
    Router,
    extract::{Query, State},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE},
    },
    response::{IntoResponse, Response},
    routing::{get, post},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{AppState, REQUEST_ID};
use crate::{domain::sessions, sso::SsoError};

pub const SESSION_COOKIE: &str = "__Host-strongroom_session";
const LOGIN_COOKIE: &str = "__Host-strongroom_login";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/session", get(status))
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie(headers: &HeaderMap, name: &str) -> Option<SecretString> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| SecretString::from(value.trim().to_owned()))
}

/// The console session's id, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<SecretString> {
    cookie(headers, SESSION_COOKIE)
}

/// Whether a cookie-authenticated request comes from this server's own pages.
pub fn from_own_origin(headers: &HeaderMap, origin: &str) -> bool {
    match headers.get(ORIGIN) {
        Some(sent) => sent.as_bytes() == origin.as_bytes(),
        None => headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes() == b"same-origin"),
    }
}

/// Whether a WebSocket upgrade comes from this server's own pages (browsers always send
/// `Origin` there).
pub fn upgrade_from_own_origin(headers: &HeaderMap, origin: &str) -> bool {
    headers
        .get(ORIGIN)
        .is_some_and(|sent| sent.as_bytes() == origin.as_bytes())
}

fn set_cookie(name: &str, value: &str, same_site: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite={same_site}"
    ))
    .ok()
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A short page for a person whose sign-in did not happen.
fn problem(status: StatusCode, message: &str) -> Response {
    let body = format!("Sign-in did not happen: {message}.\n\nBack to the console: /console\n");
    (
        status,
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn redirect(to: &str, cookies: impl IntoIterator<Item = Option<HeaderValue>>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, location);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies.into_iter().flatten() {
        headers.append(SET_COOKIE, cookie);
    }
    response
}

async fn status(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({ "sso": state.sso.is_some() });
    ([(CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

async fn login(State(state): State<Arc<AppState>>) -> Response {
    let Some(sso) = &state.sso else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match sso.begin().await {
        Ok(begun) => {
            let max_age = i64::try_from(crate::sso::LOGIN_TTL.as_secs()).unwrap_or(600);
            let binding = set_cookie(LOGIN_COOKIE, begun.binding.expose_secret(), "Lax", max_age);
            redirect(&begun.authorize_url, [binding])
        }
        Err(e) => {
            tracing::warn!(error = %e, "a sign-in could not begin");
            problem(StatusCode::BAD_GATEWAY, &e.to_string())
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(answer): Query<Answer>,
) -> Response {
    let Some(sso) = &state.sso else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(error) = &answer.error {
        // The provider's own code (`access_denied`…), never its free text.
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(error, "the provider refused a sign-in");
        return problem(
            StatusCode::FORBIDDEN,
            &format!("the provider answered {error}"),
        );
    }
    let (Some(code), Some(login_state)) = (&answer.code, &answer.state) else {
        return problem(StatusCode::BAD_REQUEST, "the provider's answer has no code");
    };
    let binding = cookie(&headers, LOGIN_COOKIE);
    let person = match sso
        .finish(
            login_state,
            code,
            binding.as_ref().map(|b| b.expose_secret()),
        )
        .await
    {
        Ok(person) => person,
        Err(e) => {
            let status = match e {
                SsoError::Refused(_) => StatusCode::FORBIDDEN,
                SsoError::Unavailable(_) => StatusCode::BAD_GATEWAY,
            };
            tracing::warn!(error = %e, "a sign-in was refused");
            return problem(status, &e.to_string());
        }
    };
    let settings = &sso.settings;
    let lifetimes = settings.lifetimes;
    let signed_in = sessions::sign_in(
        &state.data.db,
        settings.organization.as_deref(),
        &person,
        lifetimes,
        request_id(&headers),
    )
    .await;
    let (principal, issued) = match signed_in {
        Ok(signed_in) => signed_in,
        Err(e) => {
            tracing::error!(error = %e, "a verified sign-in could not open a session");
            return match &e {
                crate::Error::Denied(why) | crate::Error::AlreadyExists(why) => {
                    problem(StatusCode::FORBIDDEN, why)
                }
                _ => problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server could not open a session now; try again later",
                ),
            };
        }
    };
    tracing::info!(principal = %principal.id, role = principal.role.as_str(), "signed in");
    // A session this browser held before ends now: one person, one session per browser.
    if let Some(old) = session_cookie(&headers)
        && let Err(e) =
            sessions::sign_out(&state.data.db, old.expose_secret(), lifetimes, None).await
    {
        tracing::warn!(error = %e, "could not end the browser's previous session");
    }
    let max_age = lifetimes.absolute.num_seconds();
    let session = set_cookie(SESSION_COOKIE, issued.id.expose_secret(), "Strict", max_age);
    let clear_login = set_cookie(LOGIN_COOKIE, "", "Lax", 0);
    redirect("/console", [session, clear_login])
}

async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(sso) = &state.sso else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !from_own_origin(&headers, &sso.settings.origin) {
        return (
            StatusCode::FORBIDDEN,
            [(CACHE_CONTROL, "no-store")],
            "sign out from this server's own pages",
        )
            .into_response();
    }
    let lifetimes = sso.settings.lifetimes;
    if let Some(presented) = session_cookie(&headers)
        && let Err(e) = sessions::sign_out(
            &state.data.db,
            presented.expose_secret(),
            lifetimes,
            request_id(&headers),
        )
        .await
    {
        tracing::error!(error = %e, "could not revoke a session");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(CACHE_CONTROL, "no-store")],
            "the session could not be ended now; try again",
        )
            .into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(clear) = set_cookie(SESSION_COOKIE, "", "Strict", 0) {
        headers.insert(SET_COOKIE, clear);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let found = session_cookie(&headers(&[(
            "cookie",
            "a=1; __Host-strongroom_session=srs_x; b=2",
        )]));
        assert_eq!(found.as_ref().map(|s| s.expose_secret()), Some("srs_x"));
        let other = session_cookie(&headers(&[("cookie", "strongroom_session=srs_x")]));
        assert!(other.is_none());
    }

    #[test]
    fn only_this_origin_or_a_same_origin_fetch_passes() {
        let own = "http://127.0.0.1:8080";
        assert!(from_own_origin(
            &headers(&[("origin", "http://127.0.0.1:8080")]),
            own
        ));
        assert!(from_own_origin(
            &headers(&[("sec-fetch-site", "same-origin")]),
            own
        ));
        for foreign in [
            headers(&[("origin", "http://evil.test")]),
            headers(&[("origin", "null")]),
            headers(&[
                ("origin", "http://evil.test"),
                ("sec-fetch-site", "same-origin"),
            ]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[]),
        ] {
            assert!(!from_own_origin(&foreign, own), "{foreign:?}");
        }
        assert!(!upgrade_from_own_origin(
            &headers(&[("sec-fetch-site", "same-origin")]),
            own
        ));
    }
}

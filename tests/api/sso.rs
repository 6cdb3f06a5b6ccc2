//! People's single sign-on to the console (DESIGN §10 "People", §12), through a real
//! OpenID provider (`tests/node/people_oidc.js`, npm `oidc-provider`) in the system's
//! headless Chromium: login and consent at the provider, back on the console; the session
//! cookie's flags; the role read from the `groups` claim at every sign-in; sign-out
//! revoking the session; the CSRF checks on cookie-authenticated requests and WebSocket
//! upgrades; the idle timeout; the audit trail.
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Page, PeopleProvider, Store, Subscriber, TestApp, both_stores, data, error_code, whole_page,
};

const COOKIE: &str = "__Host-strongroom_session";
const VIEWER: &str = "query SsoTestViewer { viewer { role principal { name kind } } }";
const SIGN_INS: &str = "query SsoTestAudit($action: String) {
    auditEvents(first: 20, filter: { action: $action }) {
        edges { node { action outcome principal { name } targetName
                       credential { kind id issuer subject } detail } } } }";

/// A server whose console offers single sign-on at a provider started for it, in the
/// organization `acme`, `strongroom-admins` → ADMIN and `strongroom-members` → MEMBER.
async fn spawn(store: Store, extra: &[(&str, &str)]) -> (TestApp, PeopleProvider) {
    let port = PeopleProvider::free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut env = vec![
        ("STRONGROOM_OIDC_ISSUER", issuer.as_str()),
        ("STRONGROOM_OIDC_CLIENT_ID", PeopleProvider::CLIENT_ID),
        (
            "STRONGROOM_OIDC_CLIENT_SECRET",
            PeopleProvider::CLIENT_SECRET,
        ),
        ("STRONGROOM_OIDC_ORGANIZATION", "acme"),
        ("STRONGROOM_OIDC_ADMIN_VALUES", "strongroom-admins"),
        ("STRONGROOM_OIDC_MEMBER_VALUES", "strongroom-members,other"),
    ];
    env.extend_from_slice(extra);
    let app = TestApp::spawn_with(store, &env).await;
    let provider = PeopleProvider::start_on(port, &format!("{}/auth/callback", app.base_url()));
    assert_eq!(provider.issuer, issuer);
    (app, provider)
}

/// Signs `login` in from the console's sign-in page: the provider's login and consent
/// pages, as a person fills them; waits for `then` on the console.
async fn sign_in(page: &mut Page, login: &str, then: &str) {
    page.goto("/console").await;
    page.step(json!({ "step": "click", "role": "link", "name": "Sign in with single sign-on", "exact": true }))
        .await;
    page.expect_text(whole_page(), "Sign in to the test provider")
        .await;
    page.fill(whole_page(), "Username", login).await;
    page.click("Log in").await;
    page.expect_text(whole_page(), "Allow strongroom").await;
    page.click("Allow").await;
    page.expect_text(whole_page(), then).await;
}

/// The session cookie the browser holds.
async fn session_cookie(page: &mut Page) -> Value {
    let cookies = page.step(json!({ "step": "cookies" })).await;
    cookies
        .as_array()
        .expect("cookies")
        .iter()
        .find(|c| c["name"] == COOKIE)
        .cloned()
        .unwrap_or_else(|| panic!("no {COOKIE} among the cookies"))
}

/// A GraphQL POST with `cookie` as the session, from `origin` (if any).
async fn post_with_cookie(
    app: &TestApp,
    cookie: &str,
    origin: Option<&str>,
    query: &str,
) -> (StatusCode, Value) {
    let (status, _, body) = app
        .send(
            |http, url| {
                let request = http
                    .post(url)
                    .header("cookie", format!("{COOKIE}={cookie}"))
                    .json(&json!({ "query": query }));
                match origin {
                    Some(origin) => request.header("origin", origin),
                    None => request,
                }
            },
            "/graphql",
        )
        .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let answer = app.admin(SIGN_INS, json!({ "action": action })).await;
    data(&answer)["auditEvents"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// Sign in, the cookie, the session over HTTP and WebSocket, CSRF, sign out, and a role
/// that changes with the claim.
async fn a_person_signs_in_with_single_sign_on(store: Store) {
    let (app, provider) = spawn(store, &[]).await;
    app.create_secret("DB_URL", "postgres://one").await;
    provider.set_groups("alice", &["strongroom-admins"]).await;
    let origin = app.base_url().to_owned();

    let mut page = Page::launch(&origin).await;
    page.goto("/console").await;
    page.expect_text(whole_page(), "Sign in with single sign-on")
        .await;
    page.assert_accessible("the sign-in page with single sign-on")
        .await;
    sign_in(&mut page, "alice", "Live updates on").await;
    assert_eq!(page.rows().await, ["DB_URL"]);
    assert!(
        page.step(json!({ "step": "url" }))
            .await
            .as_str()
            .is_some_and(|url| url.starts_with(&format!("{origin}/console"))),
        "back on the console"
    );
    // The session is the server's: a reload keeps the person signed in.
    page.step(json!({ "step": "reload" })).await;
    page.expect_text(whole_page(), "Live updates on").await;
    assert_eq!(page.rows().await, ["DB_URL"]);

    // The cookie: `__Host-` (Secure, Path=/, no Domain), HttpOnly, SameSite=Strict, for
    // at most 8 h.
    let cookie = session_cookie(&mut page).await;
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["secure"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(cookie["path"], "/", "{cookie}");
    assert_eq!(cookie["domain"], "127.0.0.1", "host-only: {cookie}");
    let expires = cookie["expires"].as_f64().expect("a persistent cookie");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        expires > now && expires <= now + 8.0 * 3600.0 + 60.0,
        "{cookie}"
    );
    let value = cookie["value"].as_str().expect("a value").to_owned();
    assert!(value.starts_with("srs_"), "a session id");

    // Over the API: alice, a USER, ADMIN by her claim; her sign-in audited as a SESSION.
    let (status, me) = post_with_cookie(&app, &value, Some(&origin), VIEWER).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        data(&me)["viewer"],
        json!({ "role": "ADMIN", "principal": { "name": "alice", "kind": "USER" } })
    );
    let created = audit(&app, "session.create").await;
    assert_eq!(created.len(), 1, "{created:#?}");
    let credential = &created[0]["credential"];
    assert_eq!(credential["kind"], "SESSION", "{created:#?}");
    assert_eq!(credential["issuer"], provider.issuer.as_str());
    assert_eq!(credential["subject"], "alice");
    assert_eq!(credential["id"], Value::Null, "a session is no API object");
    assert_eq!(created[0]["principal"]["name"], "alice");
    assert_eq!(created[0]["detail"]["role"], "ADMIN");

    // CSRF: with the cookie, only this server's own pages are heard.
    for foreign in [Some("http://evil.test"), Some("null"), None] {
        let (status, refused) = post_with_cookie(&app, &value, foreign, VIEWER).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "Origin {foreign:?}: {refused}"
        );
        assert_eq!(
            error_code(&refused).as_deref(),
            Some("FORBIDDEN"),
            "{refused}"
        );
    }
    let (status, _, body) = app
        .send(
            |http, url| {
                let url =
                    reqwest::Url::parse_with_params(&url, [("query", VIEWER)]).expect("a URL");
                http.get(url)
                    .header("cookie", format!("{COOKIE}={value}"))
                    .header("sec-fetch-site", "cross-site")
            },
            "/graphql",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "GET from elsewhere: {body}");
    // A token is unaffected by any Origin.
    let (status, _, body) = app
        .send(
            |http, url| {
                http.post(url)
                    .bearer_auth(&app.admin_token)
                    .header("origin", "http://evil.test")
                    .json(&json!({ "query": VIEWER }))
            },
            "/graphql",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The WebSocket upgrade: the cookie from a foreign page is refused before any socket.
    let cookie_header = format!("{COOKIE}={value}");
    let refused = Subscriber::try_connect_with(
        &app.api,
        None,
        None,
        &[("origin", "http://evil.test"), ("cookie", &cookie_header)],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(refused.status, 403, "{refused:?}");
    let mut own = Subscriber::try_connect_with(
        &app.api,
        None,
        None,
        &[("origin", &origin), ("cookie", &cookie_header)],
    )
    .await
    .unwrap_or_else(|refused| panic!("from the server's own origin: {refused:?}"));
    own.send_init(json!({})).await;
    own.expect_ack().await;

    // Sign-out is CSRF-checked too: a foreign page cannot end the session.
    let (status, _, _) = app
        .send(
            |http, url| {
                http.post(url)
                    .header("cookie", format!("{COOKIE}={value}"))
                    .header("origin", "http://evil.test")
            },
            "/auth/logout",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, me) = post_with_cookie(&app, &value, Some(&origin), VIEWER).await;
    assert_eq!(
        (status, &data(&me)["viewer"]["role"]),
        (StatusCode::OK, &json!("ADMIN"))
    );
    // A callback that no login of this browser began is refused (login CSRF, replays).
    let (status, body) = app
        .get_raw("/auth/callback?code=made-up&state=made-up", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("was already used"), "{body}");
    // One whose state is not the one the browser's login cookie stands for, likewise.
    let response = reqwest::Client::new()
        .get(format!(
            "{}/auth/callback?code=made-up&state=made-up",
            app.base_url()
        ))
        .header(
            "cookie",
            "__Host-strongroom_login=a-login-this-state-is-not-of",
        )
        .send()
        .await
        .expect("GET /auth/callback");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.expect("a body");
    assert!(body.contains("started in another browser"), "{body}");

    // Sign out: the session is revoked; the old cookie, replayed, is refused.
    page.click("Sign out").await;
    page.expect_text(whole_page(), "Sign in with single sign-on")
        .await;
    let (_, refused) = post_with_cookie(&app, &value, Some(&origin), VIEWER).await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("UNAUTHENTICATED"),
        "{refused}"
    );
    let (code, _) = own.closed().await;
    assert_eq!(code, 4403, "the open subscription ends with the session");
    let revoked = audit(&app, "session.revoke").await;
    assert_eq!(revoked.len(), 1, "{revoked:#?}");
    assert_eq!(revoked[0]["credential"]["kind"], "SESSION");
    assert_eq!(revoked[0]["principal"]["name"], "alice");
    let cookies = page.step(json!({ "step": "cookies" })).await;
    assert!(
        cookies
            .as_array()
            .expect("cookies")
            .iter()
            .all(|c| c["name"] != COOKIE),
        "the cookie is cleared: {cookies}"
    );
    page.finish(&[]).await;

    // The claim is read again at every sign-in: now a member, alice sees the no-access page.
    provider.set_groups("alice", &["strongroom-members"]).await;
    let mut page = Page::launch(&origin).await;
    sign_in(&mut page, "alice", "No access to secrets").await;
    let text = page.step(json!({ "step": "text" })).await;
    assert!(
        !text.as_str().unwrap_or_default().contains("DB_URL"),
        "{text}"
    );
    let cookie = session_cookie(&mut page).await;
    let value = cookie["value"].as_str().expect("a value").to_owned();
    let (_, me) = post_with_cookie(&app, &value, Some(&origin), VIEWER).await;
    assert_eq!(data(&me)["viewer"]["role"], "MEMBER", "{me}");
    let created = audit(&app, "session.create").await;
    assert_eq!(created.len(), 2, "{created:#?}");
    assert_eq!(
        created[0]["detail"]["previousRole"], "ADMIN",
        "{created:#?}"
    );
    // Still one principal for her: found again by issuer and subject.
    let principals = app
        .admin(
            "{ principals(first: 50) { edges { node { name role } } } }",
            json!({}),
        )
        .await;
    let alices: Vec<&Value> = data(&principals)["principals"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter(|e| e["node"]["name"] == "alice")
        .collect();
    assert_eq!(alices.len(), 1, "{principals}");
    assert_eq!(alices[0]["node"]["role"], "MEMBER");
    page.finish(&[]).await;
    let logs = app.server_logs();
    assert!(!logs.contains(&value), "a session id in the logs");
}

/// A session unused for the idle timeout ends (`STRONGROOM_SESSION_IDLE_SECS`).
async fn an_idle_session_ends(store: Store) {
    let (app, provider) = spawn(store, &[("STRONGROOM_SESSION_IDLE_SECS", "3")]).await;
    provider.set_groups("bob", &["strongroom-admins"]).await;
    let origin = app.base_url().to_owned();
    let mut page = Page::launch(&origin).await;
    sign_in(&mut page, "bob", "Create").await;
    let value = session_cookie(&mut page).await["value"]
        .as_str()
        .expect("a value")
        .to_owned();
    page.finish(&[]).await;
    let (_, me) = post_with_cookie(&app, &value, Some(&origin), VIEWER).await;
    assert_eq!(data(&me)["viewer"]["role"], "ADMIN", "{me}");
    // Unused for longer than the idle timeout (a wait, not a measurement).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, refused) = post_with_cookie(&app, &value, Some(&origin), VIEWER).await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("UNAUTHENTICATED"),
        "{refused}"
    );
}

/// Without a provider the console offers the token form alone, and `/auth/*` is not there.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_provider_there_is_no_single_sign_on() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let (status, body) = app.get_raw("/auth/session", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).ok(),
        Some(json!({ "sso": false }))
    );
    let (status, _) = app.get_raw("/auth/login", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A cookie means nothing then: the request is anonymous.
    let (status, answer) =
        post_with_cookie(&app, "srs_whatever", Some("http://evil.test"), VIEWER).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(error_code(&answer).as_deref(), Some("UNAUTHENTICATED"));
}

both_stores!(a_person_signs_in_with_single_sign_on, an_idle_session_ends);

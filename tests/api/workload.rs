//! Workload identity (DESIGN §10) against a real OpenID provider (`oidc-provider`): a CI
//! job's JWT exchanged at `POST /oauth/token` for a short-lived token of a RUNTIME service
//! account, and everything an attacker holding some other JWT would try.
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{OidcProvider, Store, TestApp, both_stores, data};

both_stores!(a_workload_exchanges_its_jwt_and_nothing_else_is_exchanged);

const CREATE: &str = "mutation($input: CreateWorkloadIdentityInput!) {
    createWorkloadIdentity(input: $input) { workloadIdentity { id issuer audience
        boundClaims { claim pattern } tokenLifetimeSeconds principal { name } } } }";
const DELETE: &str = "mutation($id: ID!) { deleteWorkloadIdentity(input: { id: $id }) {
    deletedId } }";
const BIND: &str = "mutation($resourceId: ID!, $principalId: ID!) {
    bindRuntime(input: { resourceId: $resourceId, principalId: $principalId }) {
        resource { name } } }";
const FETCH: &str = "query($id: ID!) { resourceSecrets(resourceId: $id) { name value } }";
const STRONGROOM: &str = "https://strongroom.test/";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// `POST /oauth/token` with `subject_token`: the status, the `Cache-Control` and the body.
async fn exchange(app: &TestApp, subject_token: &str) -> (StatusCode, String, Value) {
    exchange_form(
        app,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token_type", JWT),
            ("subject_token", subject_token),
        ],
    )
    .await
}

async fn exchange_form(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, String, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.base_url()))
        .form(form)
        .send()
        .await
        .expect("POST /oauth/token");
    crate::helpers::status_cache_body(response).await
}

/// A RUNTIME account bound to a deployed pipeline, and an identity for `provider`'s
/// tokens of acme/etl on main acting as it; the pipeline's and the identity's ids.
async fn pipeline_identity(app: &TestApp, provider: &OidcProvider) -> (String, String) {
    app.create_secret("ETL_PASSWORD", "etl-password-value")
        .await;
    let pipeline = app
        .deploy_pipeline("etl", &[("ETL_PASSWORD", "db.password")])
        .await;
    let runtime = app.create_service_account("RUNTIME").await;
    data(
        &app.admin(
            BIND,
            json!({ "resourceId": pipeline, "principalId": runtime.id }),
        )
        .await,
    );
    let input = json!({ "input": {
        "issuer": provider.issuer, "audience": "strongroom", "principalId": runtime.id,
        "tokenLifetimeSeconds": 120,
        "boundClaims": [
            { "claim": "repository", "pattern": "acme/etl" },
            { "claim": "ref", "pattern": "refs/heads/main" },
        ],
    } });
    let created = app.admin(CREATE, input).await;
    let identity = &data(&created)["createWorkloadIdentity"]["workloadIdentity"];
    assert_eq!(identity["tokenLifetimeSeconds"], 120);
    (pipeline, identity["id"].as_str().expect("an id").to_owned())
}

#[track_caller]
fn assert_refused(answer: &(StatusCode, String, Value), error: &str, why: &str) {
    let (status, cache, body) = answer;
    assert_eq!(body["error"], error, "{why}: {body}");
    assert!(status.is_client_error(), "{why}: {status}");
    assert!(body.get("access_token").is_none(), "{why}: {body}");
    assert_eq!(cache, "no-store", "{why}");
}

async fn a_workload_exchanges_its_jwt_and_nothing_else_is_exchanged(store: Store) {
    let app = TestApp::spawn(store).await;
    let provider = OidcProvider::start();
    let (pipeline, identity) = pipeline_identity(&app, &provider).await;

    // Granted: a short-lived token that fetches the pipeline's values and nothing else.
    let jwt = provider.token("etl-main", STRONGROOM).await;
    let (status, cache, body) = exchange(&app, &jwt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(cache, "no-store");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!((1..=120).contains(&expires_in), "{body}");
    let token = body["access_token"].as_str().expect("a token").to_owned();
    let fetched = app
        .gql(Some(&token), FETCH, json!({ "id": pipeline }))
        .await;
    assert_eq!(
        data(&fetched)["resourceSecrets"],
        json!([{ "name": "ETL_PASSWORD", "value": "etl-password-value" }])
    );
    let refused = app
        .gql(Some(&token), "query { secrets { totalCount } }", json!({}))
        .await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");

    // Audited with the JWT's iss, sub and jti; the fetch names the OIDC credential.
    let trail = app
        .admin(
            "query { auditEvents(first: 50) { nodes { action outcome detail
                credential { kind issuer subject } } } }",
            json!({}),
        )
        .await;
    let nodes = data(&trail)["auditEvents"]["nodes"]
        .as_array()
        .expect("nodes")
        .clone();
    let granted = nodes
        .iter()
        .find(|n| n["action"] == "token.exchange" && n["outcome"] == "ALLOWED")
        .expect("the exchange audited");
    let claims: Value =
        serde_json::from_slice(&base64_url(jwt.split('.').nth(1).expect("a payload")))
            .expect("claims");
    assert_eq!(granted["detail"]["iss"], provider.issuer.as_str());
    assert_eq!(granted["detail"]["sub"], "etl-main");
    assert_eq!(granted["detail"]["jti"], claims["jti"]);
    let oidc = json!({ "kind": "OIDC", "issuer": provider.issuer, "subject": "etl-main" });
    let fetch = nodes
        .iter()
        .find(|n| n["action"] == "resource.fetch_secrets")
        .expect("the fetch audited");
    assert_eq!(
        fetch["credential"], oidc,
        "the fetch names the JWT it came from"
    );
    assert_eq!(granted["credential"], oidc);

    // Everything else is refused, and issues nothing.
    let tokens_before = app
        .sql_query_one_i64("SELECT COUNT(*) FROM api_tokens")
        .await;
    let now = chrono::Utc::now().timestamp();
    let valid = json!({ "iss": provider.issuer, "sub": "etl-main", "aud": "strongroom",
        "repository": "acme/etl", "ref": "refs/heads/main", "iat": now, "exp": now + 300 });
    let with = |changes: Value| {
        let mut claims = valid.clone();
        if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
            claims.extend(changes.clone());
        }
        provider.sign(&claims)
    };
    let no_match = "matches no workload identity";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            provider.token("etl-dev", STRONGROOM).await,
            "a bound claim that does not match",
            no_match,
        ),
        (
            provider.token("other-repo", STRONGROOM).await,
            "another repository",
            no_match,
        ),
        (
            provider.token("etl-main", "https://elsewhere.test/").await,
            "the wrong audience",
            no_match,
        ),
        (
            with(json!({ "exp": now - 120, "iat": now - 420 })),
            "expired beyond the leeway",
            "Expired",
        ),
        (
            with(json!({ "nbf": now + 600 })),
            "not yet valid",
            "Immature",
        ),
        (
            with(json!({ "iat": now + 600, "exp": now + 900 })),
            "issued in the future",
            "`iat`",
        ),
        (
            with(json!({ "iss": "http://127.0.0.1:9" })),
            "an untrusted issuer",
            "trusts this issuer",
        ),
        (unsigned(&valid), "alg: none", "`none` is never accepted"),
        (
            hs256_with_public_key(&provider, &valid).await,
            "HS256 keyed with the issuer's key",
            "only asymmetric",
        ),
        ("not.a.jwt".to_owned(), "not a JWT", "not a JWT"),
    ];
    for (jwt, why, reason) in &cases {
        let answer = exchange(&app, jwt).await;
        assert_refused(&answer, "invalid_grant", why);
        let description = answer.2["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(reason), "{why}: {description}");
    }
    // A tampered signature of a good token.
    let mut tampered = provider.token("etl-main", STRONGROOM).await;
    tampered.push('A');
    assert_refused(
        &exchange(&app, &tampered).await,
        "invalid_grant",
        "a tampered signature",
    );
    assert_refused(
        &exchange_form(&app, &[("grant_type", "client_credentials")]).await,
        "unsupported_grant_type",
        "another grant type",
    );
    assert_refused(
        &exchange_form(
            &app,
            &[("grant_type", EXCHANGE), ("subject_token_type", JWT)],
        )
        .await,
        "invalid_request",
        "no subject_token",
    );
    assert_eq!(
        app.sql_query_one_i64("SELECT COUNT(*) FROM api_tokens")
            .await,
        tokens_before,
        "no refused exchange issued a token"
    );

    // Two identities matching one JWT: neither acts.
    let runtime = app.create_service_account("RUNTIME").await;
    let broad = json!({ "input": { "issuer": provider.issuer, "audience": "strongroom",
        "principalId": runtime.id,
        "boundClaims": [{ "claim": "repository", "pattern": "acme/*" }] } });
    let broad = app.admin(CREATE, broad).await;
    let broad = data(&broad)["createWorkloadIdentity"]["workloadIdentity"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let jwt = provider.token("etl-main", STRONGROOM).await;
    let answer = exchange(&app, &jwt).await;
    assert_refused(&answer, "invalid_grant", "two identities match");
    assert!(
        answer.2["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("more than one")
    );
    data(&app.admin(DELETE, json!({ "id": broad })).await);
    assert_eq!(exchange(&app, &jwt).await.0, StatusCode::OK);

    let denied = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'token.exchange' AND outcome = 'DENIED'",
        )
        .await;
    // Every refusal of a JWT naming a trusted issuer is audited (the untrusted issuer's
    // and the one that is not a JWT have no organization to go to).
    assert!(denied >= 10, "{denied} refused exchanges audited");

    // Bad identities are refused.
    for (input, why) in [
        (
            json!({ "issuer": "http://issuer.example", "audience": "a", "principalId": runtime.id }),
            "plain http off loopback",
        ),
        (
            json!({ "issuer": provider.issuer, "audience": "a", "principalId": runtime.id,
                 "tokenLifetimeSeconds": 7200 }),
            "a lifetime over an hour",
        ),
    ] {
        let refused = app.admin(CREATE, json!({ "input": input })).await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{why}"
        );
    }
    let listed = app
        .admin(
            "query { workloadIdentities { totalCount nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&listed)["workloadIdentities"]["totalCount"], 1);
    assert_eq!(
        data(&listed)["workloadIdentities"]["nodes"][0]["id"],
        identity.as_str()
    );
}

/// The issuer rotates its key (a restart on the same port: a new `kid`), then goes away:
/// the new key is fetched on first sight, the cached keys serve while the cache lasts, and
/// then exchanges fail closed (503 `temporarily_unavailable`).
#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_and_an_unreachable_issuer() {
    let settings = [
        ("STRONGROOM_OIDC_JWKS_CACHE_MIN_SECS", "10"),
        ("STRONGROOM_OIDC_JWKS_CACHE_MAX_SECS", "10"),
        ("STRONGROOM_OIDC_JWKS_REFETCH_SECS", "1"),
    ];
    let app = TestApp::spawn_with(Store::Sqlite, &settings).await;
    let mut provider = OidcProvider::start();
    pipeline_identity(&app, &provider).await;
    let jwt = provider.token("etl-main", STRONGROOM).await;
    assert_eq!(exchange(&app, &jwt).await.0, StatusCode::OK);

    let port = provider.port;
    let old_kid = provider.kid.clone();
    provider.stop();
    // Past the refetch interval, so the unknown key may be fetched.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut provider = OidcProvider::start_on(port);
    assert_ne!(provider.kid, old_kid, "a new key");
    let rotated = provider.token("etl-main", STRONGROOM).await;
    let fetched_at = std::time::Instant::now();
    let (status, _, body) = exchange(&app, &rotated).await;
    assert_eq!(status, StatusCode::OK, "the new key was fetched: {body}");

    provider.stop();
    let cached = provider.token_signed_now();
    let (status, _, body) = exchange(&app, &cached).await;
    assert!(
        fetched_at.elapsed() < Duration::from_secs(10),
        "the machine was too slow to see the cache serve"
    );
    assert_eq!(
        status,
        StatusCode::OK,
        "cached keys serve while the issuer is down: {body}"
    );
    tokio::time::sleep(
        Duration::from_secs(10).saturating_sub(fetched_at.elapsed()) + Duration::from_secs(1),
    )
    .await;
    let answer = exchange(&app, &cached).await;
    assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE, "{:?}", answer.2);
    assert_eq!(answer.2["error"], "temporarily_unavailable");
    assert!(answer.2.get("access_token").is_none());
}

impl OidcProvider {
    /// A valid token for etl-main on main, signed with the current key.
    fn token_signed_now(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(
            &json!({ "iss": self.issuer, "sub": "etl-main", "aud": "strongroom",
            "repository": "acme/etl", "ref": "refs/heads/main", "iat": now, "exp": now + 300 }),
        )
    }
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `claims` with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", b64(claims.to_string().as_bytes()))
}

/// The classic confusion attack: HS256, keyed with the issuer's published key (its JWKS
/// document, as anyone can fetch it).
async fn hs256_with_public_key(provider: &OidcProvider, claims: &Value) -> String {
    let published = reqwest::get(format!("{}/jwks", provider.issuer))
        .await
        .expect("the provider's JWKS")
        .text()
        .await
        .expect("its text");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(provider.kid.clone());
    let key = jsonwebtoken::EncodingKey::from_secret(published.as_bytes()).expect("a key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

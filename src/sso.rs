//! People's single sign-on (DESIGN §10 "People"): this server as an OpenID Connect relying
//! party, running the authorization code flow with PKCE (S256) itself, so no token ever
//! reaches the browser.
//!
//! - [`Sso::begin`] makes 256 random bits that the browser holds for [`LOGIN_TTL`] (10 min)
//!   in a short-lived HttpOnly cookie, and derives from them (SHA-256 under distinct
//!   labels) the login's `state`, its `nonce` and its PKCE verifier; it answers the
//!   provider's authorization URL with the state, the nonce and the verifier's S256
//!   challenge.
//! - [`Sso::finish`] derives them again from the cookie the callback brings: a `state`
//!   that is not the cookie's is refused (a callback URL made for one browser — a login
//!   CSRF — fails in another, and one without the cookie fails). It exchanges the code at
//!   the provider's token endpoint (with the verifier, and the client secret for a
//!   confidential client), and verifies the ID token: signature by a key from the issuer's
//!   JWKS with an asymmetric algorithm, `iss`, `exp`/`nbf`/`iat` (through
//!   [`crate::oidc::Verifier`], the workload path's checks and key cache), then `aud`
//!   (holds the client id; with several audiences `azp` is the client id) and `nonce`.
//!
//! So a pending login is held by the browser alone, never by a replica: behind a balancer
//! the callback may reach any replica. The verifier never leaves the cookie but for the
//! token endpoint; `state` and the challenge reveal nothing of it. A login is used once:
//! the callback clears the cookie, and the provider redeems a code once.
//!
//! Why not the `openidconnect` crate: it brings a second digest stack (sha2 0.10, hmac 0.12
//! beside our 0.11/0.13), RSA and elliptic-curve crates of its own and a second way of
//! verifying JWTs; the verification here is `jsonwebtoken`'s (aws-lc) with the JWKS cache
//! already tested against a real provider, and PKCE's S256 is SHA-256 and base64url.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::{
    crypto::random_bytes,
    domain::{
        Role,
        sessions::{Lifetimes, Person},
    },
    oidc::{Refused, Verifier, check_issuer_url},
};

/// How long a begun login may take to come back.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// How long the provider's endpoints (from its discovery document) are trusted.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);

/// What the operator configured.
pub struct SsoSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub scopes: String,
    /// `STRONGROOM_PUBLIC_URL` + `/auth/callback`.
    pub redirect_uri: String,
    /// This server's origin (`scheme://host[:port]`), which cookie-authenticated requests
    /// must come from.
    pub origin: String,
    pub organization: Option<String>,
    pub role_claim: String,
    pub admin_values: Vec<String>,
    pub member_values: Vec<String>,
    pub lifetimes: Lifetimes,
}

/// Why a sign-in did not happen; the message is for the person (no secret in it).
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The login is not acceptable (expired, replayed, from another browser, refused by
    /// the provider, or an ID token that does not verify).
    #[error("{0}")]
    Refused(String),
    /// The provider cannot be reached or answered nonsense: try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// What a login is bound to, all derived from the browser's login cookie.
struct Login {
    state: String,
    nonce: SecretString,
    verifier: SecretString,
}

impl Login {
    fn of(binding: &str) -> Self {
        let derive =
            |label: &str| URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{label}:{binding}")));
        Self {
            state: derive("strongroom/sso-state"),
            nonce: SecretString::from(derive("strongroom/sso-nonce")),
            // 43 base64url characters: a valid PKCE verifier (RFC 7636 §4.1).
            verifier: SecretString::from(derive("strongroom/sso-pkce")),
        }
    }
}

#[derive(Clone)]
struct Endpoints {
    authorization: String,
    token: String,
}

/// A begun login: where to send the browser, and what its login cookie holds.
pub struct Begun {
    pub authorize_url: String,
    pub binding: SecretString,
}

pub struct Sso {
    pub settings: SsoSettings,
    http: reqwest::Client,
    verifier: Arc<Verifier>,
    endpoints: Mutex<Option<(Endpoints, Instant)>>,
}

impl Sso {
    pub fn new(settings: SsoSettings, verifier: Arc<Verifier>) -> crate::Result<Self> {
        check_issuer_url(&settings.issuer).map_err(crate::Error::Internal)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::Error::Internal(format!("the OIDC HTTP client: {e}")))?;
        Ok(Self {
            settings,
            http,
            verifier,
            endpoints: Mutex::default(),
        })
    }

    /// Starts a login: the provider's authorization URL (code flow, S256 PKCE).
    pub async fn begin(&self) -> Result<Begun, SsoError> {
        let endpoints = self.endpoints().await?;
        let binding = random_text()?;
        let login = Login::of(binding.expose_secret());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(login.verifier.expose_secret()));
        let mut url = reqwest::Url::parse(&endpoints.authorization)
            .map_err(|e| SsoError::Unavailable(format!("the authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("scope", &scopes(&self.settings.scopes))
            .append_pair("state", &login.state)
            .append_pair("nonce", login.nonce.expose_secret())
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Begun {
            authorize_url: url.into(),
            binding,
        })
    }

    /// Finishes a login: who the provider says signed in, with the role their claim maps
    /// to. `binding` is the login cookie's value.
    pub async fn finish(
        &self,
        state: &str,
        code: &str,
        binding: Option<&str>,
    ) -> Result<Person, SsoError> {
        let start_again = "sign in again from the console";
        let Some(binding) = binding else {
            return Err(SsoError::Refused(format!(
                "this sign-in expired, was already used or was started in another browser; \
                 {start_again}"
            )));
        };
        let login = Login::of(binding);
        if digest(state) != digest(&login.state) {
            return Err(SsoError::Refused(format!(
                "this sign-in was started in another browser; {start_again}"
            )));
        }
        let endpoints = self.endpoints().await?;
        let id_token = self.exchange(&endpoints, code, &login).await?;
        let verified = self
            .verifier
            .verify(&id_token, &self.settings.issuer)
            .await
            .map_err(|e| match e {
                Refused::Invalid(why) => SsoError::Refused(format!("the ID token: {why}")),
                Refused::Unavailable(why) => SsoError::Unavailable(why),
            })?;
        let client_id = &self.settings.client_id;
        if !verified.audiences.iter().any(|a| a == client_id) {
            return Err(SsoError::Refused(
                "the ID token is not for this server (`aud`)".into(),
            ));
        }
        let azp = verified.claims.get("azp").and_then(Value::as_str);
        if (verified.audiences.len() > 1 || azp.is_some()) && azp != Some(client_id.as_str()) {
            return Err(SsoError::Refused(
                "the ID token was issued to another client (`azp`)".into(),
            ));
        }
        let nonce = verified.claims.get("nonce").and_then(Value::as_str);
        if nonce != Some(login.nonce.expose_secret()) {
            return Err(SsoError::Refused(
                "the ID token does not answer this sign-in (`nonce`)".into(),
            ));
        }
        if verified.subject.is_empty() {
            return Err(SsoError::Refused("the ID token names no subject".into()));
        }
        let text = |name: &str| {
            verified
                .claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok(Person {
            role: self.role(verified.claims.get(&self.settings.role_claim)),
            name_hint: text("preferred_username").or_else(|| text("email")),
            issuer: verified.issuer,
            subject: verified.subject,
        })
    }

    /// The role a claim's value maps to: ADMIN if any of its values is an admin value,
    /// else MEMBER if any is a member value, else VIEWER.
    pub fn role(&self, claim: Option<&Value>) -> Role {
        let values: Vec<&str> = match claim {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let any = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v));
        if any(&self.settings.admin_values) {
            Role::Admin
        } else if any(&self.settings.member_values) {
            Role::Member
        } else {
            Role::Viewer
        }
    }

    /// The code for the ID token, at the token endpoint.
    async fn exchange(
        &self,
        endpoints: &Endpoints,
        code: &str,
        login: &Login,
    ) -> Result<String, SsoError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_uri.as_str()),
            ("code_verifier", login.verifier.expose_secret()),
        ];
        let mut request = self.http.post(&endpoints.token);
        match &self.settings.client_secret {
            // RFC 6749 §2.3.1: both form-encoded, then HTTP Basic.
            Some(secret) => {
                request = request.basic_auth(
                    form_encoded(&self.settings.client_id),
                    Some(form_encoded(secret.expose_secret())),
                );
            }
            None => form.push(("client_id", self.settings.client_id.as_str())),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| SsoError::Unavailable(format!("the token endpoint: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            SsoError::Unavailable(format!("the token endpoint answered {status}: {e}"))
        })?;
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("?");
            return Err(SsoError::Refused(format!(
                "the provider refused the code ({status}, {error})"
            )));
        }
        body["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SsoError::Refused("the provider answered no ID token".into()))
    }

    /// The provider's authorization and token endpoints, from its discovery document.
    async fn endpoints(&self) -> Result<Endpoints, SsoError> {
        let mut cached = self.endpoints.lock().await;
        if let Some((endpoints, fetched)) = cached.as_ref()
            && fetched.elapsed() < DISCOVERY_TTL
        {
            return Ok(endpoints.clone());
        }
        let issuer = &self.settings.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let unavailable = |why: String| SsoError::Unavailable(format!("the provider: {why}"));
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("GET {url}: {}", response.status())));
        }
        let document: Value = response
            .json()
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
        if document["issuer"].as_str() != Some(issuer.as_str()) {
            return Err(unavailable(
                "its discovery document names another issuer".into(),
            ));
        }
        let endpoint = |name: &str| {
            let found = document[name]
                .as_str()
                .ok_or_else(|| unavailable(format!("its discovery document has no {name}")))?;
            check_issuer_url(found).map_err(unavailable)?;
            Ok::<_, SsoError>(found.to_owned())
        };
        let endpoints = Endpoints {
            authorization: endpoint("authorization_endpoint")?,
            token: endpoint("token_endpoint")?,
        };
        *cached = Some((endpoints.clone(), Instant::now()));
        Ok(endpoints)
    }
}

/// 256 random bits, base64url (43 characters: also a valid PKCE verifier).
fn random_text() -> Result<SecretString, SsoError> {
    let bytes =
        random_bytes::<32>().map_err(|e| SsoError::Unavailable(format!("no randomness: {e}")))?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The configured scopes, with `openid` first whatever was written.
fn scopes(configured: &str) -> String {
    let mut scopes = vec!["openid"];
    scopes.extend(configured.split_whitespace().filter(|s| *s != "openid"));
    scopes.join(" ")
}

/// `text` as `application/x-www-form-urlencoded` encodes it.
fn form_encoded(text: &str) -> String {
    reqwest::Url::parse_with_params("x:", [("v", text)])
        .ok()
        .and_then(|url| url.query().map(|q| q.trim_start_matches("v=").to_owned()))
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sso() -> Sso {
        let verifier = Verifier::new(crate::oidc::OidcSettings {
            cache_min: Duration::from_secs(60),
            cache_max: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(10),
        })
        .expect("a verifier");
        let settings = SsoSettings {
            issuer: "https://id.example.com".into(),
            client_id: "strongroom".into(),
            client_secret: None,
            scopes: "openid".into(),
            redirect_uri: "https://vault.example.com/auth/callback".into(),
            origin: "https://vault.example.com".into(),
            organization: None,
            role_claim: "groups".into(),
            admin_values: vec!["admins".into()],
            member_values: vec!["devs".into(), "admins-to-be".into()],
            lifetimes: Lifetimes {
                absolute: chrono::TimeDelta::hours(8),
                idle: chrono::TimeDelta::hours(1),
            },
        };
        Sso::new(settings, Arc::new(verifier)).expect("settings")
    }

    #[test]
    fn roles_follow_the_claim_and_default_to_viewer() {
        let sso = sso();
        let role = |claim: Value| sso.role(Some(&claim));
        assert_eq!(role(serde_json::json!("admins")), Role::Admin);
        assert_eq!(role(serde_json::json!(["devs", "admins"])), Role::Admin);
        assert_eq!(role(serde_json::json!(["devs"])), Role::Member);
        assert_eq!(role(serde_json::json!(["ADMINS", "admin"])), Role::Viewer);
        assert_eq!(role(serde_json::json!(["RUNTIME"])), Role::Viewer);
        assert_eq!(role(serde_json::json!(7)), Role::Viewer);
        assert_eq!(sso.role(None), Role::Viewer);
    }

    #[test]
    fn scopes_always_start_with_openid() {
        assert_eq!(scopes("profile email"), "openid profile email");
        assert_eq!(scopes("email openid"), "openid email");
        assert_eq!(scopes(""), "openid");
    }

    #[test]
    fn client_credentials_are_form_encoded() {
        assert_eq!(form_encoded("plain-id_1.2"), "plain-id_1.2");
        assert_eq!(form_encoded("a b:c%"), "a+b%3Ac%25");
    }

    #[test]
    fn pkce_s256_matches_rfc_7636() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier)),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}

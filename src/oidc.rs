//! Verifying workload JWTs (DESIGN §10): the issuer's keys found through its discovery
//! document and JWKS, cached; asymmetric algorithms only; `exp`/`nbf`/`iat` with a bounded
//! leeway. Which identity a verified token matches is the domain's
//! (`domain::workload`).
//!
//! The JWKS of each issuer is cached for its `Cache-Control: max-age`, clamped to
//! [`OidcSettings::cache_min`, `cache_max`] (1 min – 1 h by default). A token naming a key
//! the cache lacks refetches at most once per `refetch_interval` (10 s) per issuer, so a
//! flood of made-up `kid`s costs the issuer one request per interval. While an issuer is
//! unreachable its cached keys keep working until they expire; then exchanges fail closed.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

/// At most this much clock skew between the issuer and this server.
pub const LEEWAY_SECS: u64 = 60;

#[derive(Clone, Copy, Debug)]
pub struct OidcSettings {
    pub cache_min: Duration,
    pub cache_max: Duration,
    pub refetch_interval: Duration,
}

/// Why a JWT was not accepted; the message is the RFC 6749 `error_description`.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Not acceptable as it is (RFC 6749 `invalid_grant`).
    #[error("{0}")]
    Invalid(String),
    /// The issuer's keys cannot be had now (fail closed; retry later).
    #[error("{0}")]
    Unavailable(String),
}

/// A verified JWT's claims.
#[derive(Debug)]
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    pub jwt_id: Option<String>,
    pub audiences: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    pub claims: Map<String, Value>,
}

/// An issuer's keys as last fetched.
struct Keys {
    set: JwkSet,
    fetched: Instant,
    fresh_for: Duration,
}

/// Verifies JWTs against their issuers' published keys.
pub struct Verifier {
    http: reqwest::Client,
    settings: OidcSettings,
    /// Per issuer: its keys, and when they were last fetched (for the refetch bound).
    issuers: Mutex<HashMap<String, Arc<Mutex<Option<Keys>>>>>,
}

impl Verifier {
    pub fn new(settings: OidcSettings) -> crate::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| crate::Error::Internal(format!("the OIDC HTTP client: {e}")))?;
        Ok(Self {
            http,
            settings,
            issuers: Mutex::default(),
        })
    }

    /// The unverified `iss` of `token`, to find the identities that trust it (nothing is
    /// believed until [`Verifier::verify`]).
    pub fn issuer_of(token: &str) -> Result<String, Refused> {
        let payload = token
            .split('.')
            .nth(1)
            .ok_or_else(|| Refused::Invalid("the subject_token is not a JWT".into()))?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| Refused::Invalid("the subject_token is not a JWT".into()))?;
        let claims: Value = serde_json::from_slice(&bytes)
            .map_err(|_| Refused::Invalid("the subject_token is not a JWT".into()))?;
        claims["iss"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Refused::Invalid("the JWT has no `iss`".into()))
    }

    /// Verifies `token`, which claims to come from `issuer` (a trusted one): signature by
    /// one of the issuer's keys with an asymmetric algorithm, `iss`, `exp`, `nbf` and `iat`.
    pub async fn verify(&self, token: &str, issuer: &str) -> Result<Verified, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            Refused::Invalid(
                "the JWT's header is malformed or names no supported algorithm (`none` is \
                 never accepted)"
                    .into(),
            )
        })?;
        if !asymmetric(header.alg) {
            return Err(Refused::Invalid(format!(
                "the JWT is signed with {:?}; only asymmetric algorithms (RS*, PS*, ES*, \
                 EdDSA) are accepted",
                header.alg
            )));
        }
        let key = self.key(issuer, header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false; // matched per identity
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| Refused::Invalid(format!("the JWT was refused: {e}")))?;
        let claims = data.claims;
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(60);
        if claims
            .get("iat")
            .and_then(Value::as_i64)
            .is_some_and(|iat| iat > now + leeway)
        {
            return Err(Refused::Invalid(
                "the JWT was issued in the future (`iat`)".into(),
            ));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let audiences = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Verified {
            issuer: issuer.to_owned(),
            subject: text("sub").unwrap_or_default(),
            jwt_id: text("jti"),
            audiences,
            expires_at: claims.get("exp").and_then(Value::as_i64).unwrap_or(now),
            claims,
        })
    }

    /// The issuer's key for `kid` (or its only key of a fitting type, without a `kid`).
    async fn key(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, Refused> {
        let slot = {
            let mut issuers = self.issuers.lock().await;
            issuers.entry(issuer.to_owned()).or_default().clone()
        };
        // One fetch at a time per issuer; others wait for its result.
        let mut keys = slot.lock().await;
        let expired = keys
            .as_ref()
            .is_none_or(|k| k.fetched.elapsed() >= k.fresh_for);
        let missing = keys
            .as_ref()
            .is_some_and(|k| find(&k.set, kid, alg).is_none());
        let may_refetch = keys
            .as_ref()
            .is_none_or(|k| k.fetched.elapsed() >= self.settings.refetch_interval);
        if expired || (missing && may_refetch) {
            match self.fetch(issuer).await {
                Ok(fetched) => *keys = Some(fetched),
                // Unreachable: cached keys serve until they expire, then nothing does.
                Err(e) if expired => {
                    tracing::warn!(issuer, error = %e, "the issuer's keys cannot be fetched");
                    *keys = None;
                    return Err(Refused::Unavailable(format!(
                        "the issuer's signing keys cannot be fetched now ({e}); try again later"
                    )));
                }
                Err(e) => tracing::warn!(issuer, error = %e, "refetching the issuer's keys"),
            }
        }
        let set = &keys
            .as_ref()
            .ok_or_else(|| Refused::Unavailable("the issuer's keys are unknown".into()))?
            .set;
        let jwk = find(set, kid, alg).ok_or_else(|| {
            Refused::Invalid("the JWT names a key its issuer does not publish".into())
        })?;
        DecodingKey::from_jwk(jwk)
            .map_err(|e| Refused::Invalid(format!("the issuer's key is unusable: {e}")))
    }

    /// The issuer's discovery document, then its JWKS.
    async fn fetch(&self, issuer: &str) -> Result<Keys, String> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document: Value = self.get_json(&discovery).await?.0;
        if document["issuer"].as_str() != Some(issuer) {
            return Err("the discovery document names another issuer".into());
        }
        let jwks_uri = document["jwks_uri"]
            .as_str()
            .ok_or("the discovery document has no jwks_uri")?;
        check_issuer_url(jwks_uri)?;
        let (set, max_age) = self.get_json(jwks_uri).await?;
        let set: JwkSet = serde_json::from_value(set).map_err(|e| format!("the JWKS: {e}"))?;
        let fresh_for = max_age
            .unwrap_or(self.settings.cache_min)
            .clamp(self.settings.cache_min, self.settings.cache_max);
        Ok(Keys {
            set,
            fetched: Instant::now(),
            fresh_for,
        })
    }

    async fn get_json(&self, url: &str) -> Result<(Value, Option<Duration>), String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = response
            .json::<Value>()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((body, max_age))
    }
}

fn asymmetric(alg: Algorithm) -> bool {
    use jsonwebtoken::AlgorithmFamily;
    matches!(
        alg.family(),
        AlgorithmFamily::Rsa | AlgorithmFamily::Ec | AlgorithmFamily::Ed
    )
}

/// The key `kid` names, of the algorithm's family; without a `kid`, the only such key.
fn find<'s>(
    set: &'s JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Option<&'s jsonwebtoken::jwk::Jwk> {
    let fits = |jwk: &&jsonwebtoken::jwk::Jwk| {
        DecodingKey::from_jwk(jwk).is_ok_and(|key| key.family() == alg.family())
            && jwk
                .common
                .key_algorithm
                .is_none_or(|declared| declared.to_string() == format!("{alg:?}"))
    };
    match kid {
        Some(kid) => set.find(kid).filter(fits),
        None => {
            let mut fitting = set.keys.iter().filter(fits);
            let only = fitting.next()?;
            fitting.next().is_none().then_some(only)
        }
    }
}

/// `max-age` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let seconds = directive.trim().strip_prefix("max-age=")?;
        seconds.parse().ok().map(Duration::from_secs)
    })
}

/// Issuers (and their key URLs) are `https://`, or `http://` on a loopback host.
pub fn check_issuer_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{url:?} must be https:// (http:// only on a loopback host)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls() {
        for ok in [
            "https://token.actions.githubusercontent.com",
            "http://127.0.0.1:8080",
            "http://localhost:9000/realms/ci",
            "http://[::1]:8080",
        ] {
            assert_eq!(check_issuer_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com",
            "ftp://127.0.0.1",
            "not a url",
            "http://10.0.0.1",
        ] {
            assert!(check_issuer_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), None);
    }
}

//! The strongroom token `run` acts with: `STRONGROOM_TOKEN` as given, or a workload's JWT
//! (`--oidc-token-file`, `--oidc-token-env`) exchanged at `POST /oauth/token` (RFC 8693,
//! DESIGN §10) for a short-lived token. An exchanged token is exchanged again once three
//! quarters of its life have passed, re-reading the JWT file first, so a long `--watch`
//! run keeps working while a platform rotates projected tokens under it.
use std::{path::PathBuf, time::Duration};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::{sync::Mutex, time::Instant};
use zeroize::Zeroizing;

use super::{Failure, args::RunArgs, args::TOKEN_VAR, fetch::endpoint, say};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// An exchange that failed while the token still works is tried again this soon.
const RETRY_EXCHANGE: Duration = Duration::from_secs(10);
/// Refreshing sooner than this after an exchange would only hammer the server.
const MIN_REFRESH: Duration = Duration::from_secs(5);

/// Where a JWT to exchange comes from.
enum Jwt {
    File(PathBuf),
    Env(String),
}

struct Current {
    token: SecretString,
    /// When to exchange again (`None`: a given token, never).
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
    /// Counts the exchanges: a holder of an older token can tell it was replaced.
    generation: u64,
}

pub struct Credentials {
    jwt: Option<Jwt>,
    http: reqwest::Client,
    exchange_url: Url,
    current: Mutex<Current>,
}

#[derive(Deserialize)]
struct Granted {
    access_token: SecretString,
    expires_in: u64,
}

#[derive(Deserialize)]
struct Refused {
    error: String,
    error_description: Option<String>,
}

impl Credentials {
    /// The token given, or the first exchange's.
    pub async fn from_args(args: &RunArgs, http: reqwest::Client) -> Result<Self, Failure> {
        let given = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
        let jwt = match (&args.oidc_token_file, &args.oidc_token_env) {
            (Some(path), _) => Some(Jwt::File(path.clone())),
            (None, Some(var)) => Some(Jwt::Env(var.clone())),
            (None, None) => None,
        };
        let exchange_url = endpoint(&args.server, &["oauth", "token"])?;
        let current = match (given, &jwt) {
            (Some(_), Some(_)) => {
                return Err(Failure::new(
                    "CREDENTIALS",
                    format!(
                        "{TOKEN_VAR} is set and an OIDC token is given too; use one of them, so \
                         it is clear who the command acts as"
                    ),
                ));
            }
            (None, None) => {
                return Err(Failure::new(
                    "CREDENTIALS",
                    format!(
                        "no credentials: set {TOKEN_VAR}, or give --oidc-token-file or \
                         --oidc-token-env"
                    ),
                ));
            }
            (Some(token), None) => Current {
                token: SecretString::from(token),
                refresh_at: None,
                expires_at: None,
                generation: 0,
            },
            (None, Some(jwt)) => exchange(&http, &exchange_url, jwt).await?,
        };
        Ok(Self {
            jwt,
            http,
            exchange_url,
            current: Mutex::new(current),
        })
    }

    /// The environment variables that hold a credential, which the command must not get.
    pub fn variables(args: &RunArgs) -> Vec<String> {
        let mut names = vec![TOKEN_VAR.to_owned()];
        names.extend(args.oidc_token_env.clone());
        names
    }

    /// A token to use now: exchanged again first if that is due. A failed re-exchange
    /// while the token still works is reported and the token used.
    pub async fn token(&self) -> Result<SecretString, Failure> {
        let mut current = self.current.lock().await;
        let (Some(jwt), Some(refresh_at)) = (&self.jwt, current.refresh_at) else {
            return Ok(current.token.clone());
        };
        if Instant::now() < refresh_at {
            return Ok(current.token.clone());
        }
        match exchange(&self.http, &self.exchange_url, jwt).await {
            Ok(fresh) => {
                let generation = current.generation + 1;
                *current = Current {
                    generation,
                    ..fresh
                };
            }
            Err(failure) => {
                let usable = current.expires_at.is_some_and(|at| Instant::now() < at);
                if !usable {
                    return Err(failure);
                }
                say(&format!(
                    "{failure}; the current token still works, trying again in {}s",
                    RETRY_EXCHANGE.as_secs()
                ));
                current.refresh_at = Some(Instant::now() + RETRY_EXCHANGE);
            }
        }
        Ok(current.token.clone())
    }

    /// When the token should next be exchanged (`None`: never), and how many exchanges
    /// have replaced the token so far.
    pub async fn schedule(&self) -> (Option<Instant>, u64) {
        let current = self.current.lock().await;
        (current.refresh_at, current.generation)
    }
}

/// Reads the JWT and exchanges it.
async fn exchange(http: &reqwest::Client, url: &Url, jwt: &Jwt) -> Result<Current, Failure> {
    let subject = read(jwt)?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token_type", JWT),
        ("subject_token", subject.as_str()),
    ];
    let started = Instant::now();
    let response = http
        .post(url.clone())
        .form(&form)
        .send()
        .await
        .map_err(|e| Failure::unreachable(url, e))?;
    let status = response.status();
    let body = Zeroizing::new(
        response
            .bytes()
            .await
            .map_err(|e| Failure::unreachable(url, e))?
            .to_vec(),
    );
    if status.is_success() {
        let granted: Granted = serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                "BAD_RESPONSE",
                format!("{url} granted no usable token ({status}): {e}"),
            )
        })?;
        let lifetime = Duration::from_secs(granted.expires_in);
        return Ok(Current {
            token: granted.access_token,
            refresh_at: Some(started + (lifetime * 3 / 4).max(MIN_REFRESH)),
            expires_at: Some(started + lifetime),
            generation: 0,
        });
    }
    match serde_json::from_slice::<Refused>(&body) {
        Ok(refused) => Err(Failure::new(
            refused.error,
            format!(
                "the token exchange was refused: {}",
                refused
                    .error_description
                    .as_deref()
                    .unwrap_or("no reason given")
            ),
        )),
        Err(_) => Err(Failure::new(
            "BAD_RESPONSE",
            format!("{url} answered {status} without an OAuth error"),
        )),
    }
}

/// The JWT as it stands now, whitespace trimmed (files often end in a newline).
fn read(jwt: &Jwt) -> Result<Zeroizing<String>, Failure> {
    let text = match jwt {
        Jwt::File(path) => std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                "OIDC_TOKEN",
                format!("cannot read the OIDC token file {}: {e}", path.display()),
            )
        })?,
        Jwt::Env(var) => std::env::var(var).map_err(|_| {
            Failure::new(
                "OIDC_TOKEN",
                format!("the OIDC token variable {var} is not set (or not UTF-8)"),
            )
        })?,
    };
    let text = Zeroizing::new(text);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Failure::new("OIDC_TOKEN", "the OIDC token is empty"));
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([REDACTED])")
    }
}

/// The token's text for an `Authorization` header value or payload.
pub fn bearer(token: &SecretString) -> Zeroizing<String> {
    Zeroizing::new(format!("Bearer {}", token.expose_secret()))
}

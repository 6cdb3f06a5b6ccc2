//! The pinned values of a resource's current deployment, from `GET /v1/resources/{id}/secrets`
//! (audited and recorded as usage on the server, like `resourceSecrets`). Values are read
//! straight into [`SecretString`]s; a refusal becomes a [`Failure`] with the server's code
//! and message.
use std::{fmt, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::Failure;

/// The longest a fetch may take, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// What the current deployment pins.
#[derive(Debug, Deserialize)]
pub struct Pins {
    pub deployment: Deployment,
    pub secrets: Vec<Pinned>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub deployed_at: DateTime<Utc>,
}

/// One reference's pinned value. `Debug` shows everything but the value.
#[derive(Deserialize)]
pub struct Pinned {
    pub name: String,
    pub field: String,
    pub version: i64,
    pub value: SecretString,
}

impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinned")
            .field("name", &self.name)
            .field("field", &self.field)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Refusal {
    error: RefusalBody,
}

#[derive(Deserialize)]
struct RefusalBody {
    code: String,
    message: String,
}

/// The HTTP client of `strongroom run`: rustls, the system's proxies, bounded in time.
pub fn client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("strongroom-run/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::new("CLIENT", format!("cannot build the HTTP client: {e}")))
}

/// `server` with `segments` appended to its path.
pub fn endpoint(server: &Url, segments: &[&str]) -> Result<Url, Failure> {
    let mut url = server.clone();
    url.path_segments_mut()
        .map_err(|()| Failure::new("BAD_SERVER_URL", format!("{server} cannot take a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

pub async fn pins(
    http: &reqwest::Client,
    server: &Url,
    resource: &str,
    token: &SecretString,
) -> Result<Pins, Failure> {
    let url = endpoint(server, &["v1", "resources", resource, "secrets"])?;
    let response = http
        .get(url.clone())
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(|e| Failure::unreachable(&url, e))?;
    let status = response.status();
    let body = Zeroizing::new(
        response
            .bytes()
            .await
            .map_err(|e| Failure::unreachable(&url, e))?
            .to_vec(),
    );
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                "BAD_RESPONSE",
                format!("{url} answered {status} with a body that is not the pinned values: {e}"),
            )
        });
    }
    match serde_json::from_slice::<Refusal>(&body) {
        Ok(Refusal { error }) => Err(Failure::new(error.code, error.message)),
        Err(_) => Err(Failure::new(
            "BAD_RESPONSE",
            format!(
                "{url} answered {status} without a strongroom error (is it a strongroom server?)"
            ),
        )),
    }
}

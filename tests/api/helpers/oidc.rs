//! A real OpenID provider for the workload identity tests: `tests/node/oidc.js`
//! (panva's `oidc-provider`, pinned in `tests/node/package-lock.json`) on a loopback port.
use std::process::{Child, Stdio};

use serde_json::Value;

use super::{node_script, start_node_service};

pub struct OidcProvider {
    child: Option<Child>,
    pub port: u16,
    pub issuer: String,
    /// The id and private key (PKCS#8 PEM) it signs with now.
    pub kid: String,
    pem: String,
}

impl OidcProvider {
    /// A provider on a free loopback port.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    /// A provider on `port`, with a key of its own (a restart there is a key rotation).
    pub fn start_on(port: u16) -> Self {
        let mut command = node_script("oidc.js");
        command.env("PORT", port.to_string()).stderr(Stdio::null());
        let (child, started) =
            start_node_service(command, &format!("tests/node/oidc.js on port {port}"));
        let text = |name: &str| started[name].as_str().expect("a string").to_owned();
        Self {
            child: Some(child),
            port,
            issuer: text("issuer"),
            kid: text("kid"),
            pem: text("pem"),
        }
    }

    /// Stops it (SIGKILL: an issuer gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A JWT access token for `client` (client credentials) for `resource`.
    pub async fn token(&self, client: &str, resource: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await
            .expect("the provider's token endpoint");
        let body: Value = response.json().await.expect("a JSON answer");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {body}"))
            .to_owned()
    }

    /// A token of the test's own making, signed with the provider's current key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.pem.as_bytes()).expect("the key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real OpenID provider for people's sign-in to the console: `tests/node/people_oidc.js`,
/// with login and consent pages a browser fills in, one confidential client
/// (`strongroom-console`) whose only redirect URI is `redirect_uri`, PKCE required.
pub struct PeopleProvider {
    child: Option<Child>,
    pub issuer: String,
}

impl PeopleProvider {
    pub const CLIENT_ID: &str = "strongroom-console";
    pub const CLIENT_SECRET: &str = "strongroom-console-secret";

    /// A free loopback port for a provider started later (strongroom is told its issuer
    /// first, and the provider strongroom's redirect URI once strongroom listens).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    pub fn start_on(port: u16, redirect_uri: &str) -> Self {
        let mut command = node_script("people_oidc.js");
        command
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .stderr(Stdio::null());
        let (child, started) = start_node_service(
            command,
            &format!("tests/node/people_oidc.js on port {port}"),
        );
        Self {
            child: Some(child),
            issuer: started["issuer"].as_str().expect("the issuer").to_owned(),
        }
    }

    /// The groups `login`'s ID tokens carry from now on.
    pub async fn set_groups(&self, login: &str, groups: &[&str]) {
        let response = reqwest::Client::new()
            .post(format!("{}/test/groups", self.issuer))
            .json(&serde_json::json!({ "login": login, "groups": groups }))
            .send()
            .await
            .expect("the provider's test endpoint");
        assert!(response.status().is_success(), "{}", response.status());
    }
}

impl Drop for PeopleProvider {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

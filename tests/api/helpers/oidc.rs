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

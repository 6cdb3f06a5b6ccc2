//! Standard Webhooks signatures (standardwebhooks.com): a `whsec_`-prefixed base64
//! secret, shown once; each request signed with HMAC-SHA256 over `id.timestamp.body`,
//! sent as `webhook-signature: v1,<base64>`. The secret is stored like a value: sealed
//! under a fresh data key from the key provider, bound to the organization, the endpoint
//! and the key row a rotation renews ([`seal`], [`open`]).
use base64::{Engine, engine::general_purpose::STANDARD};
use entity::webhook_endpoint;
use hmac::{Hmac, KeyInit, Mac};
#[cfg(test)]
use secrecy::ExposeSecret;
use secrecy::SecretString;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{
    Error, Result,
    crypto::{self, EncryptionContext, KeyProvider, SCHEME, Sealed, StoredEnvelope, WrappedKey},
};

const PREFIX: &str = "whsec_";
/// Bytes of a signing key (the specification asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// A signing key. `Debug` is redacted; the bytes are zeroized on drop.
pub struct SigningKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self> {
        let bytes = crypto::random_bytes::<KEY_BYTES>()
            .map_err(|e| Error::Internal(format!("signing key: {e}")))?;
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The secret as a receiver configures it: `whsec_<base64>`.
    pub fn to_secret(&self) -> SecretString {
        SecretString::from(format!("{PREFIX}{}", STANDARD.encode(self.0.as_slice())))
    }

    /// The `webhook-signature` header value for one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> Result<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .map_err(|e| Error::Internal(format!("signing key: {e}")))?;
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        Ok(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ))
    }
}

/// What a signing key is bound to: the endpoint (in the place of a secret) and its key
/// row; no version number.
fn context(org_id: Uuid, endpoint_id: Uuid, key_row: Uuid, scheme: &str) -> EncryptionContext {
    EncryptionContext::stored(org_id, endpoint_id, 0, key_row, scheme)
}

/// Seals `key` for the endpoint's key row `key_row`.
pub async fn seal(
    keys: &dyn KeyProvider,
    org_id: Uuid,
    endpoint_id: Uuid,
    key_row: Uuid,
    key: &SigningKey,
) -> Result<Sealed> {
    let context = context(org_id, endpoint_id, key_row, SCHEME);
    crypto::seal(keys, &context, key.0.as_slice()).await
}

/// The endpoint's signing key, decrypted.
pub async fn open(keys: &dyn KeyProvider, row: &webhook_endpoint::Model) -> Result<SigningKey> {
    let context = context(row.org_id, row.id, row.signing_key_row, &row.signing_scheme);
    let stored = StoredEnvelope {
        ciphertext: &row.signing_ciphertext,
        nonce: &row.signing_nonce,
        wrapped_key: WrappedKey {
            key_id: row.signing_key_id.clone(),
            blob: row.signing_wrapped_key.clone(),
        },
        scheme: &row.signing_scheme,
    };
    Ok(SigningKey(crypto::open(keys, &context, &stored).await?))
}

/// For tests of this module only: the raw secret a receiver would decode.
#[cfg(test)]
fn decode(secret: &SecretString) -> Vec<u8> {
    let text = secret.expose_secret();
    STANDARD
        .decode(text.strip_prefix(PREFIX).expect("prefixed"))
        .expect("base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own test vector (standard-webhooks/spec, "Signature scheme").
    #[test]
    fn signs_the_specification_example() {
        let key = SigningKey(Zeroizing::new(
            STANDARD
                .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .expect("base64"),
        ));
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
                .expect("signs"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let secret = key.to_secret();
        assert!(secret.expose_secret().starts_with("whsec_"));
        assert_eq!(decode(&secret), key.0.to_vec());
        assert_eq!(format!("{key:?}"), "SigningKey([REDACTED])");
    }
}

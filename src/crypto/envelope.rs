//! Sealing and opening values under per-version data keys.
use aes_gcm::{
    Aes256Gcm,
    aead::{Aead, KeyInit, Nonce, Payload},
};
use zeroize::Zeroizing;

use super::{DataKey, EncryptionContext, KeyError, KeyProvider, WrappedKey, random_bytes};
use crate::{Error, Result};

/// Format tag stored with every version written now: AES-256-GCM value, 96-bit random
/// nonce, tag appended, associated data from [`EncryptionContext::to_aad`] (organization,
/// secret, version, row), data key wrapped by the provider and bound to the version's row
/// (see [`EncryptionContext`]).
pub const SCHEME: &str = "aes256gcm-dek/v2";

/// The scheme of versions written before: the same, with the data key bound to the
/// version number instead of the row. Still read and rotated; never written.
pub const SCHEME_V1: &str = "aes256gcm-dek/v1";

/// A sealed value, ready to store.
#[derive(Debug)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub wrapped_key: WrappedKey,
    pub scheme: &'static str,
}

/// The stored parts needed to open a value.
#[derive(Debug)]
pub struct StoredEnvelope<'a> {
    pub ciphertext: &'a [u8],
    pub nonce: &'a [u8],
    pub wrapped_key: WrappedKey,
    pub scheme: &'a str,
}

/// A fresh data key for one version row, generated (a KMS call) before the transaction
/// that writes the row; the value is sealed under it once the version number is known
/// ([`PreparedKey::seal`], local AES only). `Debug` is redacted (see [`DataKey`]).
#[derive(Debug)]
pub struct PreparedKey {
    org_id: uuid::Uuid,
    secret_id: uuid::Uuid,
    row_id: uuid::Uuid,
    key: super::GeneratedKey,
}

/// Generates the data key for the version row `row_id` of a secret.
pub async fn prepare(
    keys: &dyn KeyProvider,
    org_id: uuid::Uuid,
    secret_id: uuid::Uuid,
    row_id: uuid::Uuid,
) -> Result<PreparedKey> {
    // The data key's binding names no version number (see `EncryptionContext`).
    let context = EncryptionContext::new(org_id, secret_id, 0, row_id);
    let key = keys.generate_data_key(&context).await?;
    Ok(PreparedKey {
        org_id,
        secret_id,
        row_id,
        key,
    })
}

impl PreparedKey {
    /// The version row this key is for.
    pub fn row_id(&self) -> uuid::Uuid {
        self.row_id
    }

    /// Seals `plaintext` as `version` of the secret, bound to the row.
    pub fn seal(self, version: i32, plaintext: &[u8]) -> Result<Sealed> {
        let context = EncryptionContext::new(self.org_id, self.secret_id, version, self.row_id);
        let nonce = random_bytes::<12>().map_err(|e| Error::Internal(format!("nonce: {e}")))?;
        let ciphertext = aead_seal(
            &self.key.plaintext,
            &nonce[..],
            &context.to_aad(),
            plaintext,
        )?;
        Ok(Sealed {
            ciphertext,
            nonce: nonce.to_vec(),
            wrapped_key: self.key.wrapped,
            scheme: SCHEME,
        })
    }
}

/// Encrypts `plaintext` under a fresh data key bound to `context` (whose `row_id` names
/// the version row it will be stored in).
pub async fn seal(
    keys: &dyn KeyProvider,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Sealed> {
    let row_id = context
        .row_id
        .ok_or_else(|| Error::Internal("new versions are sealed bound to their row".into()))?;
    prepare(keys, context.org_id, context.secret_id, row_id)
        .await?
        .seal(context.version, plaintext)
}

/// Decrypts a stored value. Any mismatch of context, key or bytes is an
/// [`Error::Integrity`], never garbage.
pub async fn open(
    keys: &dyn KeyProvider,
    context: &EncryptionContext,
    stored: &StoredEnvelope<'_>,
) -> Result<Zeroizing<Vec<u8>>> {
    if stored.scheme != SCHEME && stored.scheme != SCHEME_V1 {
        return Err(Error::Integrity(format!(
            "unknown envelope scheme {:?}",
            stored.scheme
        )));
    }
    let data_key = keys.decrypt_data_key(&stored.wrapped_key, context).await?;
    aead_open(
        &data_key,
        stored.nonce,
        &context.to_aad(),
        stored.ciphertext,
    )
    .map_err(|e| Error::Integrity(e.to_string()))
}

pub(super) fn aead_seal(key: &DataKey, nonce: &[u8], aad: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let cipher = cipher(key.expose())?;
    let nonce = Nonce::<Aes256Gcm>::try_from(nonce)
        .map_err(|_| Error::Internal("nonce must be 12 bytes".into()))?;
    cipher
        .encrypt(&nonce, Payload { msg, aad })
        .map_err(|_| Error::Internal("AES-GCM encryption failed".into()))
}

pub(super) fn aead_open(
    key: &DataKey,
    nonce: &[u8],
    aad: &[u8],
    msg: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let cipher = cipher(key.expose()).map_err(|e| KeyError::Provider(e.to_string()))?;
    let nonce = Nonce::<Aes256Gcm>::try_from(nonce)
        .map_err(|_| KeyError::Integrity("stored nonce has the wrong length".into()))?;
    cipher
        .decrypt(&nonce, Payload { msg, aad })
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Integrity("AES-GCM authentication failed".into()))
}

fn cipher(key: &[u8; 32]) -> Result<Aes256Gcm> {
    Aes256Gcm::new_from_slice(key)
        .map_err(|_| Error::Internal("AES-256 key must be 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{LocalKeyProvider, MasterKey};
    use uuid::Uuid;

    fn context(version: i32) -> EncryptionContext {
        EncryptionContext {
            org_id: Uuid::from_u128(1),
            secret_id: Uuid::from_u128(2),
            version,
            row_id: Some(Uuid::from_u128(3)),
        }
    }

    /// What the version row of `sealed` would hold.
    fn stored(sealed: &Sealed) -> StoredEnvelope<'_> {
        StoredEnvelope {
            ciphertext: &sealed.ciphertext,
            nonce: &sealed.nonce,
            wrapped_key: sealed.wrapped_key.clone(),
            scheme: sealed.scheme,
        }
    }

    fn provider() -> LocalKeyProvider {
        LocalKeyProvider::new(
            vec![MasterKey::generate().expect("rng")],
            crate::metrics::ProviderCalls::detached("local"),
        )
    }

    #[tokio::test]
    async fn round_trip() {
        let keys = provider();
        let sealed = seal(&keys, &context(1), b"hunter2").await.expect("seal");
        assert_ne!(sealed.ciphertext, b"hunter2");
        let stored = stored(&sealed);
        let opened = open(&keys, &context(1), &stored).await.expect("open");
        assert_eq!(opened.as_slice(), b"hunter2");
    }

    #[tokio::test]
    async fn another_context_fails_as_integrity_error() {
        let keys = provider();
        let sealed = seal(&keys, &context(1), b"hunter2").await.expect("seal");
        let stored = stored(&sealed);
        let err = open(&keys, &context(2), &stored)
            .await
            .expect_err("must fail");
        assert!(matches!(err, Error::Integrity(_)), "{err:?}");
    }

    /// A version's key and ciphertext copied to another row of the same secret and
    /// version number fail: the data key is bound to its row.
    #[tokio::test]
    async fn another_row_fails_as_integrity_error() {
        let keys = provider();
        let sealed = seal(&keys, &context(1), b"hunter2").await.expect("seal");
        let stored = stored(&sealed);
        let other_row = EncryptionContext {
            row_id: Some(Uuid::from_u128(4)),
            ..context(1)
        };
        let err = open(&keys, &other_row, &stored)
            .await
            .expect_err("must fail");
        assert!(matches!(err, Error::Integrity(_)), "{err:?}");
        // Relabelled as the older scheme (no row binding), it fails too.
        let relabelled = StoredEnvelope {
            scheme: SCHEME_V1,
            ..stored
        };
        let v1 = EncryptionContext {
            row_id: None,
            ..context(1)
        };
        let err = open(&keys, &v1, &relabelled).await.expect_err("must fail");
        assert!(matches!(err, Error::Integrity(_)), "{err:?}");
    }

    /// Versions written before the row binding (scheme v1) still open.
    #[tokio::test]
    async fn scheme_v1_versions_still_open() {
        let keys = provider();
        let v1 = EncryptionContext {
            row_id: None,
            ..context(3)
        };
        let key = keys.generate_data_key(&v1).await.expect("data key");
        let ciphertext =
            aead_seal(&key.plaintext, &[7; 12], &v1.to_aad(), b"written long ago").expect("seal");
        let stored = StoredEnvelope {
            ciphertext: &ciphertext,
            nonce: &[7; 12],
            wrapped_key: key.wrapped,
            scheme: SCHEME_V1,
        };
        let opened = open(&keys, &v1, &stored).await.expect("open");
        assert_eq!(opened.as_slice(), b"written long ago");
    }

    #[tokio::test]
    async fn flipped_ciphertext_bit_fails_as_integrity_error() {
        let keys = provider();
        let mut sealed = seal(&keys, &context(1), b"hunter2").await.expect("seal");
        sealed.ciphertext[0] ^= 1;
        let stored = stored(&sealed);
        let err = open(&keys, &context(1), &stored)
            .await
            .expect_err("must fail");
        assert!(matches!(err, Error::Integrity(_)), "{err:?}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// The async provider is in-memory; one runtime serves every case.
        fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime")
                .block_on(future)
        }

        fn sealed(keys: &LocalKeyProvider) -> Sealed {
            block_on(seal(keys, &context(1), b"the genuine value")).expect("seal")
        }

        proptest! {
            /// Arbitrary stored bytes under the real key id and scheme never decrypt, and
            /// never panic.
            #[test]
            fn arbitrary_envelopes_never_open(
                ciphertext in proptest::collection::vec(any::<u8>(), 0..128),
                nonce in proptest::collection::vec(any::<u8>(), 0..24),
                blob in proptest::collection::vec(any::<u8>(), 0..96),
                scheme in prop_oneof![Just(SCHEME.to_owned()), any::<String>()],
            ) {
                let keys = provider();
                let genuine = sealed(&keys);
                let stored = StoredEnvelope {
                    ciphertext: &ciphertext,
                    nonce: &nonce,
                    wrapped_key: WrappedKey { key_id: genuine.wrapped_key.key_id.clone(), blob },
                    scheme: &scheme,
                };
                let opened = block_on(open(&keys, &context(1), &stored));
                prop_assert!(matches!(opened, Err(Error::Integrity(_))), "{opened:?}");
            }

            /// Any change to a genuine envelope — a flipped bit anywhere, a cut, an
            /// extension — fails its integrity check.
            #[test]
            fn a_changed_genuine_envelope_never_opens(
                part in 0usize..3,
                at in any::<prop::sample::Index>(),
                bit in 0u8..8,
                cut in any::<bool>(),
            ) {
                let keys = provider();
                let genuine = sealed(&keys);
                let (mut ciphertext, mut nonce, mut blob) =
                    (genuine.ciphertext.clone(), genuine.nonce.clone(), genuine.wrapped_key.blob.clone());
                let target = match part {
                    0 => &mut ciphertext,
                    1 => &mut nonce,
                    _ => &mut blob,
                };
                if cut {
                    let keep = at.index(target.len());
                    target.truncate(keep);
                } else {
                    let i = at.index(target.len());
                    target[i] ^= 1 << bit;
                }
                let stored = StoredEnvelope {
                    ciphertext: &ciphertext,
                    nonce: &nonce,
                    wrapped_key: WrappedKey { key_id: genuine.wrapped_key.key_id.clone(), blob },
                    scheme: genuine.scheme,
                };
                let opened = block_on(open(&keys, &context(1), &stored));
                prop_assert!(matches!(opened, Err(Error::Integrity(_))), "{opened:?}");
            }
        }
    }
}

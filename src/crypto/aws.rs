//! AWS KMS key provider (`aws-sdk-kms`). Region, credentials and endpoint come from the
//! SDK's standard chain (so `AWS_ENDPOINT_URL_KMS` points it at an emulator). The client
//! is built once and shared; every call has connect, per-attempt and whole-operation
//! timeouts, because the SDK has none by default and a hung KMS would hang requests.
use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_kms::{
    Client,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::Blob,
    types::{DataKeySpec, KeyState},
};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::{DataKey, EncryptionContext, GeneratedKey, KeyError, KeyProvider, WrappedKey};
use crate::metrics::ProviderCalls;

/// Client settings. Defaults make an unreachable or hung KMS fail within seconds.
#[derive(Clone, Copy, Debug)]
pub struct AwsSettings {
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_attempts: u32,
}

/// Data keys from AWS KMS under one KMS key (id, alias or ARN).
///
/// `Decrypt` is only ever asked of the keys it is configured with: the active key and the
/// retired ones (still being rotated away from), resolved to key ARNs (what a stored
/// version records) on first use. A row naming any other key — planted or copied from
/// elsewhere — is an integrity error before KMS is called: otherwise a key that someone
/// else controls, and that our role may use, could choose the plaintext we serve.
#[derive(Clone)]
pub struct AwsKmsProvider {
    client: Client,
    key_id: String,
    retired_key_ids: Vec<String>,
    allowed: Arc<OnceCell<HashSet<String>>>,
    calls: ProviderCalls,
}

impl fmt::Debug for AwsKmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsProvider")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn context_map(context: &EncryptionContext) -> HashMap<String, String> {
    context
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Sorts an SDK error into what callers can act on. Matches on the error code, not on
/// display text.
fn classify<E, R>(operation: &str, error: &SdkError<E, R>) -> KeyError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let detail = format!("{operation}: {}", DisplayErrorContext(error));
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            KeyError::Unavailable(detail)
        }
        SdkError::ServiceError(_) => match error.code() {
            Some("InvalidCiphertextException" | "IncorrectKeyException") => {
                KeyError::Integrity(detail)
            }
            Some(
                "KMSInternalException"
                | "DependencyTimeoutException"
                | "ThrottlingException"
                | "KeyUnavailableException"
                | "LimitExceededException"
                | "DisabledException"
                | "KMSInvalidStateException"
                | "NotFoundException",
            ) => KeyError::Unavailable(detail),
            _ => KeyError::Provider(detail),
        },
        _ => KeyError::Provider(detail),
    }
}

/// Moves a plaintext data key out of an SDK blob into zeroizing storage.
fn take_data_key(blob: Option<Blob>) -> Result<DataKey, KeyError> {
    let bytes = Zeroizing::new(blob.map(Blob::into_inner).unwrap_or_default());
    DataKey::from_slice(&bytes).ok_or_else(|| {
        KeyError::Integrity(format!(
            "KMS returned a {}-byte data key; expected 32",
            bytes.len()
        ))
    })
}

impl AwsKmsProvider {
    /// Builds the shared client from the SDK's standard configuration chain.
    pub async fn connect(
        key_id: String,
        retired_key_ids: Vec<String>,
        settings: AwsSettings,
        calls: ProviderCalls,
    ) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_attempt_timeout(settings.attempt_timeout)
            .operation_timeout(settings.operation_timeout)
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
            .load()
            .await;
        Self {
            client: Client::new(&config),
            key_id,
            retired_key_ids,
            allowed: Arc::default(),
            calls,
        }
    }

    /// The same client wrapping under another KMS key (the target of a rotation).
    pub fn with_key(&self, key_id: String) -> Self {
        Self {
            key_id,
            allowed: Arc::default(),
            ..self.clone()
        }
    }

    /// The ARN of the configured key (what KMS records as the wrapping key).
    pub async fn key_arn(&self) -> Result<String, KeyError> {
        self.describe(&self.key_id, true).await
    }

    /// The ARN of `key_id` (an id, alias or ARN); with `enabled`, only if it is enabled.
    async fn describe(&self, key_id: &str, enabled: bool) -> Result<String, KeyError> {
        self.calls.count("DescribeKey");
        let output = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| classify("DescribeKey", &e))?;
        let metadata = output
            .key_metadata()
            .ok_or_else(|| KeyError::Provider("DescribeKey returned no metadata".into()))?;
        if enabled && metadata.key_state() != Some(&KeyState::Enabled) {
            return Err(KeyError::Unavailable(format!(
                "KMS key {key_id} is not enabled ({:?})",
                metadata.key_state()
            )));
        }
        metadata
            .arn()
            .map(str::to_owned)
            .ok_or_else(|| KeyError::Provider("DescribeKey returned no ARN".into()))
    }

    /// The ARNs `Decrypt` may name: the active key's and the retired keys'. Resolved once;
    /// a failed resolution (KMS unreachable) is retried on the next call.
    pub async fn allowed_key_arns(&self) -> Result<&HashSet<String>, KeyError> {
        self.allowed
            .get_or_try_init(|| async {
                let mut arns = HashSet::new();
                for key_id in std::iter::once(&self.key_id).chain(&self.retired_key_ids) {
                    // A retired key may be disabled already; it must still be ours.
                    arns.insert(self.describe(key_id, false).await?);
                }
                tracing::info!(keys = ?arns, "KMS keys this server unwraps data keys with");
                Ok(arns)
            })
            .await
    }
}

#[async_trait]
impl KeyProvider for AwsKmsProvider {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn active_key_id(&self) -> &str {
        &self.key_id
    }

    fn owns_key(&self, key_id: &str) -> bool {
        !key_id.starts_with(super::local::KEY_ID_PREFIX)
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KeyError> {
        self.calls.count("GenerateDataKey");
        let mut output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| classify("GenerateDataKey", &e))?;
        let plaintext = take_data_key(output.plaintext.take())?;
        let blob = output
            .ciphertext_blob
            .take()
            .map(Blob::into_inner)
            .ok_or_else(|| KeyError::Provider("GenerateDataKey returned no ciphertext".into()))?;
        let key_id = output
            .key_id
            .take()
            .ok_or_else(|| KeyError::Provider("GenerateDataKey returned no key id".into()))?;
        Ok(GeneratedKey {
            plaintext,
            wrapped: WrappedKey { key_id, blob },
        })
    }

    async fn wrap_data_key(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KeyError> {
        self.calls.count("Encrypt");
        let mut output = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key.expose().to_vec()))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| classify("Encrypt", &e))?;
        let blob = output
            .ciphertext_blob
            .take()
            .map(Blob::into_inner)
            .ok_or_else(|| KeyError::Provider("Encrypt returned no ciphertext".into()))?;
        let key_id = output
            .key_id
            .take()
            .ok_or_else(|| KeyError::Provider("Encrypt returned no key id".into()))?;
        Ok(WrappedKey { key_id, blob })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        if !self.allowed_key_arns().await?.contains(&wrapped.key_id) {
            return Err(KeyError::Integrity(format!(
                "a stored data key names KMS key {}, which is neither STRONGROOM_KMS_KEY_ID \
                 nor one of STRONGROOM_KMS_RETIRED_KEY_IDS",
                wrapped.key_id
            )));
        }
        self.calls.count("Decrypt");
        // Naming the key that wrapped the blob is AWS's recommendation for symmetric keys.
        let mut output = self
            .client
            .decrypt()
            .key_id(&wrapped.key_id)
            .ciphertext_blob(Blob::new(wrapped.blob.clone()))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| classify("Decrypt", &e))?;
        take_data_key(output.plaintext.take())
    }

    async fn health(&self) -> Result<(), KeyError> {
        self.key_arn().await.map(|_| ())
    }
}

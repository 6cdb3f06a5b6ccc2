//! moto's KMS emulator, one process per test, spoken to over real HTTP.
//!
//! moto is installed on first use into a virtualenv under the target directory
//! (`target/tmp/moto-venv`, see [`crate::helpers::moto_python`]), so `cargo test --workspace`
//! works on a fresh machine with `python3` and PyPI.
use std::{
    process::Child,
    thread,
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, timeout::TimeoutConfig};
use aws_sdk_kms::{
    Client,
    config::Credentials,
    error::{DisplayErrorContext, ProvideErrorMetadata},
    primitives::Blob,
};

use crate::helpers::{Output, clean_command, moto_python, signal, spawn_logged, wait_for_address};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const REGION: &str = "us-east-1";
const LOG_LINES_ON_FAILURE: usize = 50;

/// A running moto server, killed on drop, with a KMS client of the tests' own.
pub struct Moto {
    process: Child,
    logs: Output,
    endpoint: String,
    kms: Client,
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> Self {
        let python = tokio::task::spawn_blocking(moto_python)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let mut command = clean_command(python);
        // Port 0: the kernel picks a free port and werkzeug logs it, so parallel tests
        // never race for one.
        command
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .env("NO_COLOR", "1");
        let (mut process, logs) = spawn_logged(command, "moto");
        let marker = "Running on http://";
        let address = wait_for_address("moto", &mut process, &logs, marker, STARTUP_TIMEOUT);
        let endpoint = format!("http://{address}");
        let kms = kms_client(&endpoint).await;
        let moto = Self {
            process,
            logs,
            endpoint,
            kms,
        };
        moto.wait_until_answering().await;
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Freezes the process (SIGSTOP): connections are still accepted by the kernel, but
    /// nothing answers — a hung KMS.
    pub fn stop_responding(&self) {
        signal(&self.process, "STOP");
    }

    /// Undoes [`Moto::stop_responding`] (SIGCONT).
    pub fn resume(&self) {
        signal(&self.process, "CONT");
    }

    /// The environment for a `strongroom` process whose key provider is this moto, with
    /// new data keys wrapped under `key_id` (a key id, alias or ARN).
    pub fn server_env(&self, key_id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("STRONGROOM_KMS", "aws".to_owned()),
            ("STRONGROOM_KMS_KEY_ID", key_id.to_owned()),
            ("AWS_ENDPOINT_URL_KMS", self.endpoint().to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
        ]
    }

    /// A new symmetric key: `(key id, ARN)`.
    pub async fn create_key(&self) -> (String, String) {
        let created = self.kms.create_key().send().await;
        let created = created.unwrap_or_else(|e| panic!("CreateKey: {}", DisplayErrorContext(e)));
        let metadata = created
            .key_metadata()
            .expect("CreateKey returns the key metadata");
        let arn = metadata.arn().expect("CreateKey returns the key ARN");
        (metadata.key_id().to_owned(), arn.to_owned())
    }

    /// Points `alias` (`alias/...`) at `key_id`.
    pub async fn create_alias(&self, alias: &str, key_id: &str) {
        let created = self
            .kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await;
        created.unwrap_or_else(|e| panic!("CreateAlias {alias}: {}", DisplayErrorContext(e)));
    }

    /// `Decrypt` with the given encryption context and, optionally, `KeyId`: the plaintext,
    /// or the error code (`InvalidCiphertextException`, `AccessDeniedException`...).
    pub async fn decrypt(
        &self,
        blob: &[u8],
        context: &[(impl AsRef<str>, impl AsRef<str>)],
        key_id: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let mut request = self
            .kms
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .set_key_id(key_id.map(str::to_owned));
        for (key, value) in context {
            request = request.encryption_context(key.as_ref(), value.as_ref());
        }
        match request.send().await {
            Ok(output) => Ok(output
                .plaintext()
                .expect("Decrypt returns the plaintext")
                .as_ref()
                .to_vec()),
            Err(e) => Err(e.code().map_or_else(
                || format!("no error code: {}", DisplayErrorContext(&e)),
                str::to_owned,
            )),
        }
    }

    /// A data key under `key_id` bound to `context`, as `GenerateDataKey` wraps it (what an
    /// attacker with access to another key of the account could plant).
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        context: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> Vec<u8> {
        let mut request = self
            .kms
            .generate_data_key()
            .key_id(key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256);
        for (key, value) in context {
            request = request.encryption_context(key.as_ref(), value.as_ref());
        }
        let output = request.send().await;
        let output =
            output.unwrap_or_else(|e| panic!("GenerateDataKey: {}", DisplayErrorContext(e)));
        output
            .ciphertext_blob()
            .expect("GenerateDataKey returns the wrapped key")
            .as_ref()
            .to_vec()
    }

    /// Polls `GET /moto-api/` until it answers.
    async fn wait_until_answering(&self) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("build the HTTP client");
        let url = format!("{}/moto-api/", self.endpoint);
        let started = Instant::now();
        loop {
            match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return,
                _ if started.elapsed() > STARTUP_TIMEOUT => panic!(
                    "moto did not answer GET {url} within {STARTUP_TIMEOUT:?}; logs:\n{}",
                    self.logs.text()
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        let _ = self.process.kill();
        let _ = self.process.wait();
        if thread::panicking() {
            let logs = self.logs.text();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_LINES_ON_FAILURE)..];
            eprintln!("--- moto, last log lines ---\n{}", tail.join("\n"));
        }
    }
}

async fn kms_client(endpoint: &str) -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(30))
        .build();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(REGION)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        .timeout_config(timeouts)
        .load()
        .await;
    Client::new(&config)
}

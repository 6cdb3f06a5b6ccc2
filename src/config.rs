//! Command line and environment configuration. Every option is a flag with a
//! `STRONGROOM_*` environment variable (the database URL uses the conventional
//! `DATABASE_URL`), a default and a line of help; the README lists them all.
use std::{fmt, net::SocketAddr, num::NonZeroU32, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{
    crypto::{AwsSettings, CacheLimits},
    telemetry::LogFormat,
};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://strongroom.db?mode=rwc";

#[derive(Debug, Parser)]
#[command(
    name = "strongroom",
    version,
    about = "A secrets service for data pipelines that knows who depends on each secret",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The subcommand to run: `serve` (configured from the environment) when none is given.
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or_else(|| {
            #[derive(Parser)]
            struct ServeFromEnv {
                #[command(flatten)]
                serve: ServeArgs,
            }
            Command::Serve(Box::new(ServeFromEnv::parse_from(["strongroom"]).serve))
        })
    }
}

#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Run the GraphQL server (the default).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) to stdout.
    Schema,
    /// Create an organization (if new) and an admin; print a new admin token on the last line.
    Bootstrap(BootstrapArgs),
    /// Re-wrap every stored data key under another key; values are not re-encrypted.
    RotateKeys(RotateKeysArgs),
    /// Run a command with a resource's deployed values in its environment (a client of
    /// a strongroom server: `strongroom run --server URL --resource ID -- CMD ARGS…`).
    Run(Box<crate::run::RunArgs>),
}

#[derive(Clone, Debug, Args)]
pub struct GlobalArgs {
    /// Database: `sqlite://PATH?mode=rwc` (embedded) or `postgres://USER:PASS@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: String,
    /// Maximum connections in the database pool.
    #[arg(
        long,
        env = "STRONGROOM_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub db_max_connections: u32,
    /// Log format on stderr (`RUST_LOG` sets the filter).
    #[arg(
        long,
        env = "STRONGROOM_LOG_FORMAT",
        value_enum,
        default_value_t,
        global = true
    )]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum KmsKind {
    /// A master key on this machine wraps the data keys.
    #[default]
    Local,
    /// AWS KMS wraps the data keys (key from STRONGROOM_KMS_KEY_ID).
    Aws,
}

#[derive(Clone, Debug, Args)]
pub struct KeyArgs {
    /// Key provider that wraps data keys.
    #[arg(
        long,
        env = "STRONGROOM_KMS",
        value_enum,
        default_value_t,
        global = true
    )]
    pub kms: KmsKind,
    /// Local provider: file holding the base64 master key; created (mode 0600) on first start.
    #[arg(
        long,
        env = "STRONGROOM_MASTER_KEY_FILE",
        default_value = "strongroom.key",
        global = true
    )]
    pub master_key_file: PathBuf,
    /// Local provider: the base64 master key itself (overrides the file).
    #[arg(
        long,
        env = "STRONGROOM_MASTER_KEY",
        global = true,
        hide_env_values = true
    )]
    pub master_key: Option<MasterKeyText>,
    /// AWS provider: KMS key for new data keys (key id, alias such as `alias/strongroom`, or
    /// ARN). Region, credentials and endpoint (`AWS_ENDPOINT_URL_KMS`) come from the AWS
    /// SDK's standard environment and files.
    #[arg(long, env = "STRONGROOM_KMS_KEY_ID", global = true)]
    pub kms_key_id: Option<String>,
    /// AWS provider: older KMS keys (ids, aliases or ARNs, comma-separated) whose data keys
    /// may still be unwrapped while `rotate-keys` moves them to STRONGROOM_KMS_KEY_ID. A
    /// stored data key naming any other KMS key is refused (`INTEGRITY_ERROR`).
    #[arg(
        long,
        env = "STRONGROOM_KMS_RETIRED_KEY_IDS",
        value_delimiter = ',',
        global = true
    )]
    pub kms_retired_key_ids: Vec<String>,
    /// AWS provider: TCP connect timeout, milliseconds.
    #[arg(
        long,
        env = "STRONGROOM_KMS_CONNECT_TIMEOUT_MS",
        default_value_t = 2_000,
        global = true
    )]
    pub kms_connect_timeout_ms: u64,
    /// AWS provider: timeout of one attempt, milliseconds.
    #[arg(
        long,
        env = "STRONGROOM_KMS_ATTEMPT_TIMEOUT_MS",
        default_value_t = 2_000,
        global = true
    )]
    pub kms_attempt_timeout_ms: u64,
    /// AWS provider: timeout of a whole call including retries, milliseconds.
    #[arg(
        long,
        env = "STRONGROOM_KMS_OPERATION_TIMEOUT_MS",
        default_value_t = 8_000,
        global = true
    )]
    pub kms_operation_timeout_ms: u64,
    /// AWS provider: attempts per call (the first one included).
    #[arg(
        long,
        env = "STRONGROOM_KMS_MAX_ATTEMPTS",
        default_value_t = 3,
        global = true
    )]
    pub kms_max_attempts: u32,
    /// Data key cache: seconds an unwrapped data key may be reused (0 turns the cache off).
    #[arg(
        long,
        env = "STRONGROOM_KEY_CACHE_MAX_AGE_SECS",
        default_value_t = 300,
        global = true
    )]
    pub key_cache_max_age_secs: u64,
    /// Data key cache: reads one cached data key may serve (0 turns the cache off).
    #[arg(
        long,
        env = "STRONGROOM_KEY_CACHE_MAX_USES",
        default_value_t = 1_000,
        global = true
    )]
    pub key_cache_max_uses: u32,
    /// Data key cache: data keys held at most (0 turns the cache off).
    #[arg(
        long,
        env = "STRONGROOM_KEY_CACHE_MAX_ENTRIES",
        default_value_t = 1_000,
        global = true
    )]
    pub key_cache_max_entries: usize,
}

impl KeyArgs {
    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            connect_timeout: Duration::from_millis(self.kms_connect_timeout_ms),
            attempt_timeout: Duration::from_millis(self.kms_attempt_timeout_ms),
            operation_timeout: Duration::from_millis(self.kms_operation_timeout_ms),
            max_attempts: self.kms_max_attempts,
        }
    }

    pub fn cache_limits(&self) -> CacheLimits {
        CacheLimits {
            max_age: Duration::from_secs(self.key_cache_max_age_secs),
            max_uses: self.key_cache_max_uses,
            max_entries: self.key_cache_max_entries,
        }
    }
}

/// The master key as given on the command line or in the environment. Zeroized on drop,
/// redacted in `Debug`.
#[derive(Clone)]
pub struct MasterKeyText(pub Zeroizing<String>);

impl From<String> for MasterKeyText {
    fn from(text: String) -> Self {
        Self(Zeroizing::new(text))
    }
}

impl fmt::Debug for MasterKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKeyText([REDACTED])")
    }
}

/// `STRONGROOM_METRICS_TOKEN`: only its SHA-256 is kept, so neither `Debug` nor a memory
/// dump of the settings shows the token. An empty value is no token.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken(Option<[u8; 32]>);

impl MetricsToken {
    /// At least 16 characters, printable ASCII without spaces (it travels as a bearer
    /// token); or empty, for none.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self(None));
        }
        let usable = text.len() >= 16 && text.bytes().all(|b| b.is_ascii_graphic());
        if !usable {
            return Err(
                "the metrics token must be at least 16 printable ASCII characters \
                        without spaces"
                    .to_owned(),
            );
        }
        Ok(Self(Some(Sha256::digest(text.as_bytes()).into())))
    }

    /// The token, unless the setting was empty.
    pub fn configured(&self) -> Option<&Self> {
        self.0.is_some().then_some(self)
    }

    /// Whether `presented` is the token. Digests are compared, so the comparison's time
    /// says nothing about the token's characters.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0 == Some(digest)
    }
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken([REDACTED])")
    }
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is logged).
    #[arg(long, env = "STRONGROOM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Old versions kept per secret (the newest N, counting the current one).
    #[arg(long, env = "STRONGROOM_VERSION_RETENTION", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub version_retention: u32,
    /// Seconds an issuer's JWKS is kept at least (workload identity), whatever its
    /// `Cache-Control` says (1–3600).
    #[arg(long, env = "STRONGROOM_OIDC_JWKS_CACHE_MIN_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub oidc_jwks_cache_min_secs: u64,
    /// Seconds an issuer's JWKS is kept at most (60–86400).
    #[arg(long, env = "STRONGROOM_OIDC_JWKS_CACHE_MAX_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub oidc_jwks_cache_max_secs: u64,
    /// Seconds between refetches of an issuer's JWKS for a key it does not hold (1–3600).
    #[arg(long, env = "STRONGROOM_OIDC_JWKS_REFETCH_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub oidc_jwks_refetch_secs: u64,
    /// The access of a new secret: ALL_RESOURCES (every resource may be deployed with it)
    /// or SELECTED_RESOURCES (none until `setSecretAccess` lists some).
    #[arg(
        long,
        env = "STRONGROOM_DEFAULT_SECRET_ACCESS",
        default_value = "ALL_RESOURCES"
    )]
    pub default_secret_access: crate::domain::access::SecretAccess,
    /// Milliseconds a token lookup is cached (0–1000; 0 turns the cache off). A revoked or
    /// expired token is refused by every replica within this time.
    #[arg(long, env = "STRONGROOM_AUTH_CACHE_MILLIS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub auth_cache_millis: u64,
    /// Days a deleted secret stays restorable before it is purged (0–30; 0 shreds at
    /// once). A `deleteSecret` call may choose its own with `recoveryWindowDays`.
    #[arg(long, env = "STRONGROOM_RECOVERY_WINDOW_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..=30))]
    pub recovery_window_days: u32,
    /// The default recovery window in seconds instead of days (for tests and short-lived
    /// environments); overrides `STRONGROOM_RECOVERY_WINDOW_DAYS` when set.
    #[arg(long, env = "STRONGROOM_RECOVERY_WINDOW_SECS", value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    pub recovery_window_secs: Option<u64>,
    /// Seconds between background sweeps: purging secrets whose recovery window ended, and
    /// announcing rotations that came due.
    #[arg(long, env = "STRONGROOM_SWEEP_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sweep_interval_secs: u64,
    /// Seconds the events outbox keeps each event (the sweep deletes older rows). A replica
    /// whose listening connection was lost for longer tells its subscribers they missed
    /// events instead of replaying; give every replica the same value.
    #[arg(long, env = "STRONGROOM_EVENTS_RETENTION_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub events_retention_secs: u64,
    /// Seconds a graceful shutdown (SIGTERM, SIGINT) waits for open requests and
    /// connections before closing what is left; pending usage is written either way.
    #[arg(long, env = "STRONGROOM_SHUTDOWN_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub shutdown_grace_secs: u64,
    /// Open connections (HTTP and upgraded WebSocket) the server holds at once; at the cap
    /// it stops accepting until one closes, and new connections wait in the kernel's
    /// backlog. Keep it under the process's file limit (`ulimit -n`).
    #[arg(long, env = "STRONGROOM_MAX_CONNECTIONS", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Seconds a connection has to deliver a complete request head, counted from when the
    /// server starts waiting for it: on a new connection, and on a keep-alive connection
    /// between requests (so it is also the idle timeout). Slowloris clients are closed by it.
    #[arg(long, env = "STRONGROOM_HTTP_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub header_read_timeout_secs: u64,
    /// A bearer token `GET /metrics` requires (at least 16 characters). Without it and
    /// without `STRONGROOM_METRICS_LISTEN`, `/metrics` is not served.
    #[arg(long, env = "STRONGROOM_METRICS_TOKEN", hide_env_values = true, value_parser = MetricsToken::parse)]
    pub metrics_token: Option<MetricsToken>,
    /// An address of its own for `GET /metrics` (say a port only the scraper can reach);
    /// the main address then does not serve it. The token, if set, is required there too.
    #[arg(long, env = "STRONGROOM_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Origins whose browser pages may call the API (CORS), comma-separated, each exactly
    /// `scheme://host[:port]` as browsers send it. Empty (the default): CORS is off.
    #[arg(long, env = "STRONGROOM_CORS_ORIGINS", value_delimiter = ',', value_parser = CorsOrigin::parse)]
    pub cors_origins: Vec<CorsOrigin>,
    /// Seconds between writes of who fetched what (`Dependent.lastFetchedAt`...) and of
    /// `Secret.lastAccessedAt`: fetches are coalesced in memory meanwhile, so each resource
    /// and secret costs at most one write per interval. A crash loses at most this much.
    #[arg(long, env = "STRONGROOM_USAGE_FLUSH_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub usage_flush_seconds: u64,
    /// Webhook attempts this replica makes at once; 0: it neither queues nor posts
    /// webhooks (another replica must).
    #[arg(long, env = "STRONGROOM_WEBHOOK_WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub webhook_workers: u32,
    /// Seconds to wait before each retry of a failed webhook attempt, comma-separated
    /// (±20 % jitter); after the last, the message is FAILED. The default is the
    /// Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    #[arg(long, env = "STRONGROOM_WEBHOOK_RETRY_SCHEDULE", value_delimiter = ',', default_value = "5,300,1800,7200,18000,36000,36000", value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub webhook_retry_schedule: Vec<u64>,
    /// Hosts webhooks may be posted to over `http://` and at private, loopback or
    /// link-local addresses, comma-separated (names or addresses as written in URLs).
    /// Empty (the default): `https://` to public addresses only.
    #[arg(long, env = "STRONGROOM_WEBHOOK_ALLOW_HOSTS", value_delimiter = ',')]
    pub webhook_allow_hosts: Vec<String>,
    /// Seconds one webhook attempt may take, connecting included.
    #[arg(long, env = "STRONGROOM_WEBHOOK_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub webhook_timeout_secs: u64,
    /// Seconds every attempt to an endpoint may fail before the endpoint is disabled.
    #[arg(long, env = "STRONGROOM_WEBHOOK_DISABLE_AFTER_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub webhook_disable_after_secs: u64,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub sso: SsoArgs,
}

/// People's single sign-on to the console (DESIGN §10 "People"): OpenID Connect's
/// authorization code flow with PKCE, run by the server; off without an issuer.
#[derive(Clone, Debug, Args)]
pub struct SsoArgs {
    /// The OpenID provider people sign in to the console with (its issuer URL, `https://`
    /// except on a loopback host). Unset (the default): the console asks for an API token.
    #[arg(long, env = "STRONGROOM_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// This server's client id at that provider (required with the issuer).
    #[arg(long, env = "STRONGROOM_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The client's secret, for a confidential client (sent with HTTP Basic); unset for a
    /// public client (PKCE alone).
    #[arg(long, env = "STRONGROOM_OIDC_CLIENT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub oidc_client_secret: Option<SecretString>,
    /// The scopes asked for, space-separated (`openid` is always among them).
    #[arg(
        long,
        env = "STRONGROOM_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub oidc_scopes: String,
    /// The organization a person who signs in belongs to (by name). Unset: the only
    /// organization there is (sign-in is refused while there are several).
    #[arg(long, env = "STRONGROOM_OIDC_ORGANIZATION")]
    pub oidc_organization: Option<String>,
    /// The ID token claim the role is read from at every sign-in: a string or a list of
    /// strings (such as `groups`).
    #[arg(long, env = "STRONGROOM_OIDC_ROLE_CLAIM", default_value = "groups")]
    pub oidc_role_claim: String,
    /// Values of the role claim that make a person an ADMIN, comma-separated.
    #[arg(long, env = "STRONGROOM_OIDC_ADMIN_VALUES", value_delimiter = ',')]
    pub oidc_admin_values: Vec<String>,
    /// Values of the role claim that make a person a MEMBER, comma-separated (ADMIN
    /// values win). Anyone else is a VIEWER.
    #[arg(long, env = "STRONGROOM_OIDC_MEMBER_VALUES", value_delimiter = ',')]
    pub oidc_member_values: Vec<String>,
    /// This server's URL as browsers reach it (`scheme://host[:port]`): the redirect URI
    /// is this + `/auth/callback`, and cookie-authenticated requests must come from its
    /// origin. Unset: `http://` + the address it listens on (for local use only).
    #[arg(long, env = "STRONGROOM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a console session lasts at most after sign-in (60–86400; 8 h by default).
    #[arg(long, env = "STRONGROOM_SESSION_MAX_SECS", default_value_t = 28_800, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub session_max_secs: u64,
    /// Seconds a console session may go unused before it ends (1–86400; 1 h by default).
    #[arg(long, env = "STRONGROOM_SESSION_IDLE_SECS", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub session_idle_secs: u64,
}

impl SsoArgs {
    /// The single sign-on settings, if an issuer is configured; `listening` is the bound
    /// address (the public URL's default).
    pub fn settings(
        &self,
        listening: SocketAddr,
    ) -> crate::Result<Option<crate::sso::SsoSettings>> {
        let Some(issuer) = self.oidc_issuer.clone() else {
            return Ok(None);
        };
        let invalid = |why: String| crate::Error::Internal(why);
        let client_id = self
            .oidc_client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                invalid("STRONGROOM_OIDC_ISSUER needs STRONGROOM_OIDC_CLIENT_ID".into())
            })?;
        let public_url = match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{listening}"),
        };
        let origin = origin_of(&public_url).map_err(invalid)?;
        let seconds = |s: u64| chrono::TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        let values = |all: &[String]| {
            all.iter()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        };
        Ok(Some(crate::sso::SsoSettings {
            issuer,
            client_id,
            client_secret: self.oidc_client_secret.clone(),
            scopes: self.oidc_scopes.clone(),
            redirect_uri: format!("{public_url}/auth/callback"),
            origin,
            organization: self.oidc_organization.clone(),
            role_claim: self.oidc_role_claim.clone(),
            admin_values: values(&self.oidc_admin_values),
            member_values: values(&self.oidc_member_values),
            lifetimes: crate::domain::sessions::Lifetimes {
                absolute: seconds(self.session_max_secs),
                idle: seconds(self.session_idle_secs),
            },
        }))
    }
}

/// The origin (`scheme://host[:port]`, as browsers send it in `Origin`) of a public URL,
/// which may have a path (a server behind a proxy's prefix).
fn origin_of(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("STRONGROOM_PUBLIC_URL {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "STRONGROOM_PUBLIC_URL {url:?} must be an http:// or https:// URL"
        ));
    }
    Ok(parsed.origin().ascii_serialization())
}

fn parse_secret(text: &str) -> Result<SecretString, String> {
    if text.is_empty() {
        return Err("the client secret is empty; unset it for a public client".to_owned());
    }
    Ok(SecretString::from(text.to_owned()))
}

/// Abuse limits, enforced before any resolver runs.
#[derive(Clone, Debug, Args)]
pub struct Limits {
    /// Maximum selection depth of a GraphQL operation.
    #[arg(long, env = "STRONGROOM_MAX_DEPTH", default_value_t = 16)]
    pub max_depth: usize,
    /// Maximum complexity (weighted field count; a page multiplies its children).
    #[arg(long, env = "STRONGROOM_MAX_COMPLEXITY", default_value_t = 5_000)]
    pub max_complexity: usize,
    /// Maximum recursive depth while parsing (nested lists, objects, fragments).
    #[arg(long, env = "STRONGROOM_MAX_RECURSIVE_DEPTH", default_value_t = 32)]
    pub max_recursive_depth: usize,
    /// Maximum aliases in one operation (fragments count each time they are spread).
    #[arg(long, env = "STRONGROOM_MAX_ALIASES", default_value_t = 15)]
    pub max_aliases: usize,
    /// Maximum root fields in one operation.
    #[arg(long, env = "STRONGROOM_MAX_ROOT_FIELDS", default_value_t = 10)]
    pub max_root_fields: usize,
    /// Maximum directives on one field.
    #[arg(long, env = "STRONGROOM_MAX_DIRECTIVES", default_value_t = 4)]
    pub max_directives: usize,
    /// Maximum operations in one batched POST.
    #[arg(long, env = "STRONGROOM_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,
    /// Maximum HTTP request body size in bytes.
    #[arg(long, env = "STRONGROOM_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a `/graphql` request may take before it is abandoned (`TIMEOUT`).
    #[arg(long, env = "STRONGROOM_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,
    /// `/graphql` requests served at once; more are refused at once (`OVERLOADED`, 503).
    #[arg(long, env = "STRONGROOM_MAX_CONCURRENT_REQUESTS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent_requests: u64,
    /// Subscription (WebSocket) connections open at once; more are refused with 503.
    #[arg(long, env = "STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscription_connections: u32,
    /// Subscriptions running at once on one connection; more are refused (`RATE_LIMITED`).
    #[arg(long, env = "STRONGROOM_MAX_SUBSCRIPTIONS_PER_CONNECTION", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscriptions_per_connection: u32,
    /// Subscription connections one principal may hold at once (counted at
    /// `connection_init`, whichever of its tokens); one more is closed with 4429.
    #[arg(long, env = "STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_PRINCIPAL", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscription_connections_per_principal: u32,
    /// Subscription connections one client address may hold at once (counted at the
    /// upgrade); one more is refused with 429 `RATE_LIMITED` before the upgrade.
    #[arg(long, env = "STRONGROOM_MAX_SUBSCRIPTION_CONNECTIONS_PER_ADDRESS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscription_connections_per_address: u32,
    /// Seconds between the server's `ping` messages on a subscription connection.
    #[arg(long, env = "STRONGROOM_SUBSCRIPTION_PING_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub subscription_ping_secs: u64,
    /// Seconds a subscription connection may send nothing (no `pong`, no message) before it
    /// is closed with 3008; longer than `STRONGROOM_SUBSCRIPTION_PING_SECS`.
    #[arg(long, env = "STRONGROOM_SUBSCRIPTION_IDLE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub subscription_idle_timeout_secs: u64,
    /// Per-token rate limit: `RATE` or `RATE:BURST` operations per second (a batch counts
    /// each operation); `off` (the default) turns it off. Each replica counts on its own.
    #[arg(long, env = "STRONGROOM_RATE_LIMIT", default_value = "off")]
    pub rate_limit: RateLimit,
    /// Requests without a valid token (none, malformed, unknown, revoked or expired) per
    /// client address: `RATE` or `RATE:BURST` per second, or `off`. Past it the address is
    /// answered 429 before any token lookup. Each replica counts on its own.
    #[arg(
        long,
        env = "STRONGROOM_UNAUTHENTICATED_RATE_LIMIT",
        default_value = "10:100"
    )]
    pub unauthenticated_rate_limit: RateLimit,
}

/// `STRONGROOM_RATE_LIMIT`: operations per second per token, and the burst allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    Off,
    PerSecond { rate: NonZeroU32, burst: NonZeroU32 },
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let number = |part: &str| {
            part.trim().parse::<NonZeroU32>().map_err(|_| {
                format!("{text:?}: give `RATE` or `RATE:BURST` (whole numbers above 0), or `off`")
            })
        };
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => (number(rate)?, number(burst)?),
            None => (number(text)?, number(text)?),
        };
        Ok(Self::PerSecond { rate, burst })
    }
}

impl Default for Limits {
    fn default() -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            limits: Limits,
        }
        Defaults::parse_from(["strongroom"]).limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_exact_browser_origins() {
        for good in [
            "https://app.example.com",
            "http://localhost:3000",
            "http://[::1]:8080",
        ] {
            assert_eq!(CorsOrigin::parse(good).map(|o| o.0), Ok(good.to_owned()));
        }
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://App.example.com",
            "https://*.example.com",
            "ftp://files.example.com",
            "https://app.example.com?x=1",
            "https://",
        ] {
            assert!(CorsOrigin::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rate_limits_parse() {
        let per = |rate: u32, burst: u32| RateLimit::PerSecond {
            rate: NonZeroU32::new(rate).expect("non-zero"),
            burst: NonZeroU32::new(burst).expect("non-zero"),
        };
        assert_eq!("off".parse(), Ok(RateLimit::Off));
        assert_eq!("20".parse(), Ok(per(20, 20)));
        assert_eq!("20:50".parse(), Ok(per(20, 50)));
        for bad in ["", "0", "-1", "20:", "x:1", "1.5"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct RotateKeysArgs {
    /// Target key: an AWS KMS key id, alias or ARN, or a local key id (`local:<hex>`, the
    /// id of a key in the master key file).
    #[arg(long)]
    pub to: String,
    /// Data keys re-wrapped per database round trip.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
}

#[derive(Clone, Debug, Args)]
pub struct BootstrapArgs {
    /// Organization name (created if it does not exist).
    #[arg(long)]
    pub org: String,
    /// Name of the admin user (created if it does not exist; must be an admin if it does).
    #[arg(long, default_value = "admin")]
    pub name: String,
}

/// One origin of the CORS allowlist, in the form browsers send in `Origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsOrigin(String);

impl CorsOrigin {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let refuse = |why: &str| {
            Err(format!(
                "{text:?} is not a CORS origin ({why}); write it as a browser sends it, \
                 e.g. https://app.example.com or http://localhost:3000"
            ))
        };
        let Some((scheme, authority)) = text.split_once("://") else {
            return refuse("no scheme");
        };
        if scheme != "https" && scheme != "http" {
            return refuse("the scheme is http or https");
        }
        let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b);
        if authority.is_empty() || !authority.bytes().all(plain) {
            return refuse("a lowercase host and an optional port, with no path, `*` or query");
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ServeArgs {
    pub fn oidc_settings(&self) -> crate::oidc::OidcSettings {
        let min = Duration::from_secs(self.oidc_jwks_cache_min_secs);
        crate::oidc::OidcSettings {
            cache_min: min,
            cache_max: Duration::from_secs(self.oidc_jwks_cache_max_secs).max(min),
            refetch_interval: Duration::from_secs(self.oidc_jwks_refetch_secs),
        }
    }

    /// The default recovery window of a delete.
    pub fn recovery_window(&self) -> chrono::TimeDelta {
        match self.recovery_window_secs {
            Some(secs) => chrono::TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
            None => chrono::TimeDelta::days(i64::from(self.recovery_window_days)),
        }
    }

    /// How this replica delivers webhooks.
    pub fn webhook_settings(&self) -> crate::webhooks::Settings {
        crate::webhooks::Settings {
            workers: self.webhook_workers as usize,
            retry_schedule: self
                .webhook_retry_schedule
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            policy: crate::webhooks::TargetPolicy::new(&self.webhook_allow_hosts),
            timeout: Duration::from_secs(self.webhook_timeout_secs),
            disable_after: chrono::TimeDelta::seconds(
                i64::try_from(self.webhook_disable_after_secs).unwrap_or(i64::MAX),
            ),
        }
    }

    /// How long the events outbox keeps an event.
    pub fn events_retention(&self) -> Duration {
        Duration::from_secs(self.events_retention_secs)
    }
}

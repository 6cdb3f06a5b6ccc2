//! Spawns the real `strongroom` binary against a fresh database (a SQLite file or a new
//! PostgreSQL database) and talks to it over HTTP, as a client would.
//!
//! - [`process`]: the binary, its output, PostgreSQL databases;
//! - [`client`]: the HTTP/GraphQL client and its assertions;
//! - [`sql`]: direct SQL on an app's database;
//! - [`documents`]: shared GraphQL documents;
//! - [`introspection`]: the schema, read by introspection into typed data;
//! - [`tools`]: moto and the Node tools, installed on first use;
//! - [`ws`]: a `graphql-transport-ws` client for subscriptions;
//! - [`page`]: a page in headless Chromium, driven step by step.
mod client;
mod documents;
mod introspection;
mod oidc;
mod page;
mod process;
mod sql;
mod tools;
mod ws;

use std::{ffi::OsStr, ops::Deref, path::PathBuf, process::Stdio, thread, time::Duration};

use serde_json::{Value, json};
use tempfile::TempDir;

pub use client::*;
pub use documents::*;
pub use introspection::*;
pub use oidc::*;
pub use page::*;
pub use process::*;
pub use sql::*;
pub use tools::*;
pub use ws::*;

/// What every test server's `/metrics` asks for (`STRONGROOM_METRICS_TOKEN`).
pub const METRICS_TOKEN: &str = "test-metrics-token-5f0c2a9e";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_LINES_ON_FAILURE: usize = 200;

/// For tests that count statements: every request looks its token up (one statement,
/// cache or no cache, made deterministic — with the cache on, whether a request finds its
/// token cached depends on how long the one before took). And no background task writes
/// meanwhile — the usage `resourceSecrets` records is flushed hourly, the purge and
/// rotation sweep daily (its first pass runs at start, long before the measurements), and
/// no webhook dispatcher or deliverer polls (`STRONGROOM_WEBHOOK_WORKERS=0`): a
/// statement landing inside a measured request would count against it.
pub const QUIET: [(&str, &str); 4] = [
    ("STRONGROOM_AUTH_CACHE_MILLIS", "0"),
    ("STRONGROOM_WEBHOOK_WORKERS", "0"),
    ("STRONGROOM_USAGE_FLUSH_SECONDS", "3600"),
    ("STRONGROOM_SWEEP_INTERVAL_SECS", "86400"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// Declares each named `async fn(Store)` test once per store:
/// `both_stores!(lifecycle)` gives `lifecycle::sqlite` and `lifecycle::postgres`.
macro_rules! both_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            use $crate::helpers::Store;

            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                $crate::helpers::bounded(stringify!($test), super::$test(Store::Sqlite)).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                $crate::helpers::bounded(stringify!($test), super::$test(Store::Postgres)).await
            }
        }
    )+};
}
pub(crate) use both_stores;

/// The longest any one test may run: far beyond the slowest on a loaded 2-core machine
/// (about a minute), so that a hang fails its test, with the server's logs, instead of
/// stalling the whole run until CI's own limit.
const TEST_LIMIT: Duration = Duration::from_secs(300);

/// Runs the test `test` within `TEST_LIMIT`.
pub async fn bounded(test: &str, body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("{test} did not finish within {TEST_LIMIT:?}: something waits forever");
    }
}

pub struct ServiceAccount {
    pub id: String,
    pub token: String,
}

/// One running server with its own database, master key and organizations `acme` (whose
/// admin is `admin_token`) and `globex` (`other_admin_token`).
pub struct TestApp {
    pub api: Api,
    pub admin_token: String,
    pub other_admin_token: String,
    /// What every `strongroom` process of this app gets: database and master key file.
    env: Vec<(&'static str, String)>,
    database_url: String,
    sqlite_path: Option<PathBuf>,
    bootstrap_stdout: String,
    bootstrap_stderr: String,
    server: Server,
    /// The logs of servers stopped by `restart_with`.
    earlier_server_logs: String,
    // Dropped after `server` is killed (see `Drop`), in this order.
    _postgres: Option<PostgresDatabase>,
    _dir: TempDir,
}

/// The request methods are the `Api`'s; `app.api.clone()` is for spawned tasks.
impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    pub async fn spawn(store: Store) -> Self {
        Self::spawn_with(store, &[] as &[(&str, &str)]).await
    }

    /// Spawns the server with `extra_env` on top of the test configuration.
    pub async fn spawn_with(
        store: Store,
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> Self {
        Self::spawn_in(store, None, extra_env).await
    }

    /// Spawns the server on SQLite with its database file in `db_dir` (a disk of the
    /// test's making), with `extra_env` on top of the test configuration.
    pub async fn spawn_sqlite_in(
        db_dir: &std::path::Path,
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> Self {
        Self::spawn_in(Store::Sqlite, Some(db_dir), extra_env).await
    }

    /// A server on a database of its own on `cluster` (a private PostgreSQL server).
    pub async fn spawn_on(
        cluster: &PostgresCluster,
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> Self {
        let database = PostgresDatabase::create_on(cluster.admin_url()).await;
        Self::spawn_in_database(Store::Postgres, None, Some(database), extra_env).await
    }

    async fn spawn_in(
        store: Store,
        db_dir: Option<&std::path::Path>,
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> Self {
        Self::spawn_in_database(store, db_dir, None, extra_env).await
    }

    async fn spawn_in_database(
        store: Store,
        db_dir: Option<&std::path::Path>,
        database: Option<(PostgresDatabase, String)>,
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (database_url, sqlite_path, postgres) = match store {
            Store::Sqlite => {
                let path = db_dir.unwrap_or(dir.path()).join("strongroom.db");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (url, Some(path), None)
            }
            Store::Postgres => {
                let (database, url) = match database {
                    Some(created) => created,
                    None => PostgresDatabase::create().await,
                };
                (url, None, Some(database))
            }
        };
        let master_key_file = dir.path().join("master.key");
        let env = vec![
            ("DATABASE_URL", database_url.clone()),
            (
                "STRONGROOM_MASTER_KEY_FILE",
                master_key_file.to_str().expect("UTF-8 path").to_owned(),
            ),
            ("STRONGROOM_LOG_FORMAT", "text".to_owned()),
            ("STRONGROOM_METRICS_TOKEN", METRICS_TOKEN.to_owned()),
            ("RUST_LOG", "debug".to_owned()),
            // Plain text, so a leaked value cannot hide between colour codes.
            ("NO_COLOR", "1".to_owned()),
        ];

        let mut bootstrap_stdout = String::new();
        let mut bootstrap_stderr = String::new();
        let mut bootstrap = |org: &str| {
            let output = strongroom(&env)
                .args(["bootstrap", "--org", org])
                .output()
                .expect("run `strongroom bootstrap`");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            bootstrap_stdout.push_str(&stdout);
            bootstrap_stderr.push_str(&stderr);
            assert!(
                output.status.success(),
                "`strongroom bootstrap --org {org}` failed ({}):\n{stdout}\n{stderr}",
                output.status
            );
            let token = stdout.lines().map(str::trim).rfind(|line| !line.is_empty());
            token
                .unwrap_or_else(|| panic!("`bootstrap --org {org}` printed no token:\n{stderr}"))
                .to_owned()
        };
        let admin_token = bootstrap("acme");
        let other_admin_token = bootstrap("globex");

        let (server, address) = Server::start(&env, extra_env);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            // Under every test's STRONGROOM_HTTP_HEADER_READ_TIMEOUT_SECS (which is also the
            // server's keep-alive idle timeout), so a pooled connection is never reused just
            // as the server closes it.
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .expect("build the HTTP client");
        Self {
            api: Api {
                http,
                base_url: format!("http://{address}"),
            },
            admin_token,
            other_admin_token,
            env,
            database_url,
            sqlite_path,
            bootstrap_stdout,
            bootstrap_stderr,
            server,
            earlier_server_logs: String::new(),
            _postgres: postgres,
            _dir: dir,
        }
    }

    /// Stops the server (SIGTERM, then waits for it to exit) and starts it again on the
    /// same database and master key file, with `extra_env` instead of the previous extra
    /// environment. Tokens stay valid; the address changes (`app.api` follows it).
    pub async fn restart_with(&mut self, extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)]) {
        self.server.stop();
        self.start_again(extra_env);
    }

    /// Sends `signal` (`TERM`, `STOP`...) to the server, without waiting for anything.
    pub fn signal_server(&self, signal: &str) {
        self.server.signal(signal);
    }

    /// SIGTERM to the server: its exit status if it exits within `limit` (else it is
    /// killed and this is `None`), then a new server on the same database with
    /// `extra_env`.
    pub fn terminate_and_restart(
        &mut self,
        limit: Duration,
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> Option<std::process::ExitStatus> {
        let status = self.server.terminate_within(limit);
        self.start_again(extra_env);
        status
    }

    fn start_again(&mut self, extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)]) {
        self.earlier_server_logs.push_str(&self.server.logs());
        self.earlier_server_logs
            .push_str("--- strongroom serve restarted ---\n");
        let (server, address) = Server::start(&self.env, extra_env);
        self.server = server;
        self.api.base_url = format!("http://{address}");
    }

    /// Runs `strongroom ARGS` against this app's database and master key file, with
    /// `extra_env` on top; returns whether it exited successfully, its stdout and stderr.
    pub fn run_cli(
        &self,
        args: &[&str],
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> (bool, String, String) {
        let mut process = strongroom(&self.env)
            .envs(pairs(extra_env))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `strongroom {args:?}`: {e}"));
        let (mut stdout, mut stderr) = (Output::default(), Output::default());
        stdout.capture(process.stdout.take().expect("piped stdout"));
        stderr.capture(process.stderr.take().expect("piped stderr"));
        let Some(status) = wait_with_timeout(&mut process, COMMAND_TIMEOUT) else {
            let _ = process.kill();
            panic!(
                "`strongroom {args:?}` did not finish within {COMMAND_TIMEOUT:?}; output:\n{}\n{}",
                stdout.text(),
                stderr.text()
            );
        };
        (status.success(), stdout.finish(), stderr.finish())
    }

    /// Everything captured so far: the bootstrap commands' output (which includes the
    /// admin tokens they print on purpose) and the server's stdout and stderr.
    pub fn logs(&self) -> String {
        format!(
            "{}{}{}",
            self.bootstrap_stdout,
            self.bootstrap_stderr,
            self.server_logs()
        )
    }

    /// What the `serve` processes wrote so far, both streams (every server this app ran).
    pub fn server_logs(&self) -> String {
        format!("{}{}", self.earlier_server_logs, self.server.logs())
    }

    /// What the bootstrap commands logged (stderr), without the tokens they print on stdout.
    pub fn bootstrap_logs(&self) -> &str {
        &self.bootstrap_stderr
    }

    /// Upserts pipeline `name` with `references` (`(secretName, field)`) and deploys it
    /// as the admin, asserting the deployment is active; returns the resource's id.
    pub async fn deploy_pipeline(&self, name: &str, references: &[(&str, &str)]) -> String {
        let input = resource_input("PIPELINE", name, references);
        let upserted = self.admin(UPSERT_RESOURCE, json!({ "input": input })).await;
        let resource_id = id(&data(&upserted)["upsertResource"]["resource"]);
        let deployed = self
            .admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
            .await;
        assert_eq!(
            data(&deployed)["deployResource"]["deployment"]["state"],
            "ACTIVE",
            "deploy {name}: {deployed:#}"
        );
        resource_id
    }

    /// A GraphQL request as the `acme` admin.
    pub async fn admin(&self, query: &str, variables: Value) -> Value {
        self.gql(Some(&self.admin_token), query, variables).await
    }

    /// Runs `(query, variables)` operations as the `acme` admin in batched POSTs and
    /// returns each operation's `data`, in order, asserting that none failed.
    pub async fn admin_batches(&self, operations: Vec<(&str, Value)>) -> Vec<Value> {
        self.batches(&self.admin_token, operations).await
    }

    /// Deploys, as the admin and in batches, every resource that `upserted` (the `data` of
    /// `upsertResource` operations) returned; returns each deploy's `data`.
    pub async fn deploy_upserted(&self, upserted: &[Value]) -> Vec<Value> {
        let deploys = upserted
            .iter()
            .map(|upserted| {
                let resource_id = id(&upserted["upsertResource"]["resource"]);
                (DEPLOY_RESOURCE, json!({ "id": resource_id }))
            })
            .collect();
        self.admin_batches(deploys).await
    }

    /// Creates a secret as the `acme` admin and returns it (`id name description
    /// currentVersion`).
    pub async fn create_secret(&self, name: &str, value: &str) -> Value {
        let input = json!({ "input": { "name": name, "value": value } });
        let response = self.admin(CREATE_SECRET, input).await;
        data(&response)["createSecret"]["secret"].clone()
    }

    /// The current value of a secret, read as the `acme` admin.
    pub async fn reveal(&self, name: &str) -> String {
        let response = self.admin(SECRET_VALUE, json!({ "name": name })).await;
        let value = &data(&response)["secretValue"]["value"];
        value.as_str().expect("value is a string").to_owned()
    }

    /// `secrets.totalCount` as the `acme` admin.
    pub async fn secret_count(&self) -> i64 {
        let response = self.admin(SECRET_COUNT, json!({})).await;
        let total = &data(&response)["secrets"]["totalCount"];
        total.as_i64().expect("totalCount is an integer")
    }

    /// Creates a service account with `role` in `acme`; returns its id and first token.
    pub async fn create_service_account(&self, role: &str) -> ServiceAccount {
        let name = format!("sa_{}_{}", role.to_lowercase(), short_id());
        let input = json!({ "input": { "name": name, "role": role } });
        let response = self.admin(CREATE_SERVICE_ACCOUNT, input).await;
        let created = &data(&response)["createServiceAccount"];
        let text = |value: &Value| value.as_str().expect("a string").to_owned();
        ServiceAccount {
            id: text(&created["serviceAccount"]["id"]),
            token: text(&created["token"]),
        }
    }

    pub async fn new_principal_token(&self, role: &str) -> String {
        self.create_service_account(role).await.token
    }
}

/// Another `strongroom serve` process on a [`TestApp`]'s database and master key: a
/// replica, as several servers behind a load balancer share one PostgreSQL database.
pub struct Replica {
    pub api: Api,
    server: Server,
}

impl Deref for Replica {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    /// Starts a replica with `extra_env` on top of the test configuration.
    pub fn start_replica(&self, extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)]) -> Replica {
        let (server, address) = Server::start(&self.env, extra_env);
        Replica {
            api: Api {
                http: self.api.http.clone(),
                base_url: format!("http://{address}"),
            },
            server,
        }
    }
}

impl Replica {
    /// Stops the replica gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// The replica's server log so far.
    pub fn logs(&self) -> String {
        self.server.logs()
    }

    /// Freezes the replica's process (SIGSTOP): it reads nothing, answers nothing, until
    /// [`Self::resume`].
    pub fn pause(&self) {
        self.server.signal("STOP");
    }

    /// Lets a paused replica run again (SIGCONT).
    pub fn resume(&self) {
        self.server.signal("CONT");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.server.kill();
        if thread::panicking() {
            print_tail("strongroom serve (replica)", &self.server.logs());
        }
    }
}

/// The last lines of a server's log, shown with a failed test's output.
fn print_tail(what: &str, logs: &str) {
    let lines: Vec<&str> = logs.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_LINES_ON_FAILURE)..];
    eprintln!("--- {what}, last log lines ---\n{}", tail.join("\n"));
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Kill before the fields drop: the PostgreSQL database and the directory go next.
        self.server.kill();
        if thread::panicking() {
            // Shown with the failed test's output: the server's side of the story.
            print_tail("strongroom serve", &self.server_logs());
        }
    }
}

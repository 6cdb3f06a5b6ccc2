//! Spawns the real `strongroom` binary against a fresh database (a SQLite file or a new
//! PostgreSQL database) and talks to it over HTTP, as a client would.
use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Read},
    ops::Deref,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use reqwest::{StatusCode, Url};
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

const STRONGROOM: &str = env!("CARGO_BIN_EXE_strongroom");
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const LOG_LINES_ON_FAILURE: usize = 200;

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
                super::$test(Store::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$test(Store::Postgres).await
            }
        }
    )+};
}
pub(crate) use both_stores;

// GraphQL documents that several test files share.
pub const VIEWER: &str =
    "query { viewer { role principal { id kind name role } organization { id name } } }";
pub const CREATE_SECRET: &str = "mutation($input: CreateSecretInput!) {
    createSecret(input: $input) { secret { id name description currentVersion } } }";
pub const UPDATE_SECRET: &str = "mutation($input: UpdateSecretInput!) {
    updateSecret(input: $input) { secret { id name currentVersion } } }";
pub const DELETE_SECRET: &str = "mutation($input: DeleteSecretInput!) {
    deleteSecret(input: $input) { deletedSecretId } }";
pub const SECRET: &str =
    "query($name: String!) { secret(name: $name) { id name description currentVersion } }";
pub const SECRET_VALUE: &str = "query($name: String!, $version: Int) {
    secretValue(name: $name, version: $version) { name version value } }";
pub const SECRET_COUNT: &str = "query { secrets { totalCount } }";
pub const CREATE_SERVICE_ACCOUNT: &str = "mutation($input: CreateServiceAccountInput!) {
    createServiceAccount(input: $input) { serviceAccount { id kind name role } token } }";
pub const CREATE_API_TOKEN: &str = "mutation($input: CreateApiTokenInput!) {
    createApiToken(input: $input) {
        apiToken { id prefix description expiresAt revokedAt } token } }";

/// The `extensions.code` of the first error, if any.
pub fn error_code(response: &Value) -> Option<String> {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

/// The `extensions.code` of every error, in order.
pub fn error_codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["extensions"]["code"].as_str().map(str::to_owned))
        .collect()
}

/// Asserts that the response failed with `code` (first error).
#[track_caller]
pub fn assert_code(response: &Value, code: &str) {
    assert_eq!(
        error_code(response).as_deref(),
        Some(code),
        "expected error code {code}; response: {response:#}"
    );
}

/// The response's `data`, asserting that it carries no error.
#[track_caller]
pub fn data(response: &Value) -> &Value {
    assert!(
        response.get("errors").is_none() && response["data"].is_object(),
        "expected a successful response; got: {response:#}"
    );
    &response["data"]
}

/// A cheap, cloneable HTTP client for one server: what concurrent tasks take with them.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base_url: String,
}

impl Api {
    /// POSTs one GraphQL operation and returns the body, asserting HTTP 200.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .post_raw(token, json!({ "query": query, "variables": variables }))
            .await;
        assert_eq!(status, StatusCode::OK, "HTTP status; body: {body:#}");
        body
    }

    /// POSTs any JSON body (a batch, say) to `/graphql`. A body that is not JSON comes
    /// back as a JSON string.
    pub async fn post_raw(&self, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let request = self.http.post(format!("{}/graphql", self.base_url));
        let response = with_token(request, token)
            .json(&body)
            .send()
            .await
            .expect("POST /graphql");
        let status = response.status();
        let text = response.text().await.expect("read response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn get_raw(&self, path_and_query: &str, token: Option<&str>) -> (StatusCode, String) {
        let request = self.http.get(format!("{}{path_and_query}", self.base_url));
        let response = with_token(request, token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        let status = response.status();
        (status, response.text().await.expect("read response body"))
    }

    /// `GET /readyz`: the status and the JSON body.
    pub async fn readyz(&self) -> (StatusCode, Value) {
        let (status, body) = self.get_raw("/readyz", None).await;
        let body = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/readyz answered {status} with non-JSON ({e}): {body}"));
        (status, body)
    }

    /// The counter `strongroom_key_provider_calls_total{provider, operation}` from
    /// `/metrics`; a label combination not (yet) exported counts 0.
    pub async fn provider_calls(&self, provider: &str, operation: &str) -> u64 {
        const METRIC: &str = "strongroom_key_provider_calls_total{";
        let (status, text) = self.get_raw("/metrics", None).await;
        assert_eq!(status, StatusCode::OK, "GET /metrics: {text}");
        let wanted = |labels: &str| {
            let (mut provider_ok, mut operation_ok) = (false, false);
            for (key, value) in labels.split(',').filter_map(|pair| pair.split_once('=')) {
                let value = value.trim_matches('"');
                match key.trim() {
                    "provider" => provider_ok = value == provider,
                    "operation" => operation_ok = value == operation,
                    _ => {}
                }
            }
            provider_ok && operation_ok
        };
        text.lines()
            .filter_map(|line| line.strip_prefix(METRIC)?.split_once('}'))
            .filter(|(labels, _)| wanted(labels))
            .map(|(_, sample)| {
                let value = sample.split_whitespace().next().unwrap_or_default();
                value
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("counter value {value:?} in /metrics: {e}"))
                    as u64
            })
            .sum()
    }
}

fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// One row of `secret_versions`: which key wrapped its data key, and what it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    pub secret_name: String,
    pub org_id: Uuid,
    pub secret_id: Uuid,
    pub version: i32,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

impl StoredVersion {
    /// The encryption context its data key is bound to (DESIGN.md §4).
    pub fn context(&self) -> [(&'static str, String); 3] {
        [
            ("strongroom:org", self.org_id.hyphenated().to_string()),
            ("strongroom:secret", self.secret_id.hyphenated().to_string()),
            ("strongroom:version", self.version.to_string()),
        ]
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
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (database_url, sqlite_path, postgres) = match store {
            Store::Sqlite => {
                let path = dir.path().join("strongroom.db");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (url, Some(path), None)
            }
            Store::Postgres => {
                let (database, url) = PostgresDatabase::create().await;
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

    /// A GraphQL request as the `acme` admin.
    pub async fn admin(&self, query: &str, variables: Value) -> Value {
        self.gql(Some(&self.admin_token), query, variables).await
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

    /// Runs a statement against the app's database; returns the rows affected.
    pub async fn sql(&self, sql: &str) -> u64 {
        let db = self.database().await;
        let result = db.execute_unprepared(sql).await;
        let _ = db.close().await;
        result
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// The first column of every row, as text.
    pub async fn sql_strings(&self, sql: &str) -> Vec<String> {
        let db = self.database().await;
        let statement = Statement::from_string(db.get_database_backend(), sql);
        let rows = db.query_all_raw(statement).await;
        let _ = db.close().await;
        let rows = rows.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                let text: Option<String> = row.try_get_by_index(0).expect("a text column");
                text.unwrap_or_default()
            })
            .collect()
    }

    /// The single integer a query like `SELECT COUNT(*) ...` returns.
    pub async fn sql_query_one_i64(&self, sql: &str) -> i64 {
        let db = self.database().await;
        let statement = Statement::from_string(db.get_database_backend(), sql);
        let row = db.query_one_raw(statement).await;
        let _ = db.close().await;
        let row = row.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let row = row.unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index(0).expect("an integer column")
    }

    /// Runs one statement with parameters written `$1`, `$2`... (on SQLite they become
    /// `?1`, `?2`...); returns the rows affected.
    pub async fn sql_with(&self, sql: &str, values: Vec<sea_orm::Value>) -> u64 {
        let db = self.database().await;
        let backend = db.get_database_backend();
        let sql = match backend {
            DatabaseBackend::Sqlite => sql.replace('$', "?"),
            _ => sql.to_owned(),
        };
        let result = db
            .execute_raw(Statement::from_sql_and_values(backend, &sql, values))
            .await;
        let _ = db.close().await;
        result
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// Every stored secret version with its wrapping facts, by secret name then version.
    pub async fn stored_versions(&self) -> Vec<StoredVersion> {
        const SQL: &str = "SELECT s.name, v.org_id, v.secret_id, v.version, v.key_id, v.wrapped_key
            FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
            ORDER BY s.name, v.version";
        let db = self.database().await;
        let statement = Statement::from_string(db.get_database_backend(), SQL);
        let rows = db.query_all_raw(statement).await;
        let _ = db.close().await;
        let rows = rows.unwrap_or_else(|e| panic!("{SQL}: {e}"));
        rows.iter()
            .map(|row| {
                let column = "a secret_versions column of the expected type";
                StoredVersion {
                    secret_name: row.try_get_by_index(0).expect(column),
                    org_id: row.try_get_by_index(1).expect(column),
                    secret_id: row.try_get_by_index(2).expect(column),
                    version: row.try_get_by_index(3).expect(column),
                    key_id: row.try_get_by_index(4).expect(column),
                    wrapped_key: row.try_get_by_index(5).expect(column),
                }
            })
            .collect()
    }

    /// Overwrites the wrapping facts of one stored version, as an attacker with database
    /// access could.
    pub async fn set_wrapped_key(&self, version: &StoredVersion, key_id: &str, wrapped_key: &[u8]) {
        let updated = self
            .sql_with(
                "UPDATE secret_versions SET key_id = $1, wrapped_key = $2
                 WHERE secret_id = $3 AND version = $4",
                vec![
                    key_id.into(),
                    wrapped_key.to_vec().into(),
                    version.secret_id.into(),
                    version.version.into(),
                ],
            )
            .await;
        assert_eq!(updated, 1, "update the wrapped key of {version:?}");
    }

    /// The SQLite database file and its `-wal` / `-shm` companions that exist.
    pub fn sqlite_files(&self) -> Vec<PathBuf> {
        let Some(path) = &self.sqlite_path else {
            return Vec::new();
        };
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
            .filter(|path| path.exists())
            .collect()
    }

    async fn database(&self) -> DatabaseConnection {
        Database::connect(&self.database_url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test database: {e}"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Kill before the fields drop: the PostgreSQL database and the directory go next.
        self.server.kill();
        if thread::panicking() {
            // Shown with the failed test's output: the server's side of the story.
            let logs = self.server_logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_LINES_ON_FAILURE)..];
            eprintln!(
                "--- strongroom serve, last log lines ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// The `serve` process of a [`TestApp`].
struct Server {
    process: Child,
    logs: Output,
}

impl Server {
    /// Starts `strongroom serve` on a free port; returns it with the address it listens on.
    fn start(
        env: &[(&str, String)],
        extra_env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
    ) -> (Self, String) {
        let mut command = strongroom(env);
        command
            .envs(pairs(extra_env))
            .args(["serve", "--listen", "127.0.0.1:0"]);
        let (mut process, logs) = spawn_logged(command, "strongroom serve");
        let address = wait_for_address(
            "strongroom serve",
            &mut process,
            &logs,
            "listening on http://",
            STARTUP_TIMEOUT,
        );
        (Self { process, logs }, address)
    }

    fn logs(&self) -> String {
        self.logs.text()
    }

    /// SIGTERM, then waits for the exit (killing it if it takes too long) and its output.
    fn stop(&mut self) {
        signal(&self.process, "TERM");
        if wait_with_timeout(&mut self.process, SHUTDOWN_TIMEOUT).is_none() {
            self.kill();
        }
        self.logs.join();
    }

    fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// What background threads read from a child's output streams (one or several).
#[derive(Default)]
pub struct Output {
    text: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Output {
    /// Appends every line of `stream` to this output from a background thread.
    pub fn capture(&mut self, stream: impl Read + Send + 'static) {
        let text = Arc::clone(&self.text);
        self.readers.push(thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                text.lock()
                    .expect("output buffer")
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        }));
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.text.lock().expect("output buffer").clone()
    }

    /// Waits until the streams are closed (the process has exited) and read to the end.
    pub fn join(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Everything, once the streams are closed.
    pub fn finish(mut self) -> String {
        self.join();
        self.text()
    }
}

/// Spawns `command` with stdout and stderr both captured into one [`Output`].
pub fn spawn_logged(mut command: Command, what: &str) -> (Child, Output) {
    let mut process = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut output = Output::default();
    output.capture(process.stdout.take().expect("piped stdout"));
    output.capture(process.stderr.take().expect("piped stderr"));
    (process, output)
}

/// `Some(status)` once `process` has exited, `None` if it is still running after `timeout`.
pub fn wait_with_timeout(process: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = process.try_wait().expect("wait for a child process") {
            return Some(status);
        }
        if started.elapsed() > timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`...) to `process` with kill(1).
pub fn signal(process: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(process.id().to_string())
        .status()
        .expect("run kill(1)");
    assert!(
        status.success(),
        "kill -{signal} {}: {status}",
        process.id()
    );
}

/// A command for `program` that inherits no configuration meant for the tests' own
/// environment: no `STRONGROOM_*`, `DATABASE_URL` or `AWS_*` (profiles, endpoints,
/// credentials) from the parent.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let inherited_config = key.to_str().is_some_and(|key| {
            key.starts_with("STRONGROOM_") || key.starts_with("AWS_") || key == "DATABASE_URL"
        });
        if inherited_config {
            command.env_remove(&key);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// A `strongroom` command with exactly the configuration given.
fn strongroom(env: &[(&str, String)]) -> Command {
    let mut command = clean_command(STRONGROOM);
    command.envs(pairs(env));
    command
}

/// Environment pairs of any string types, as `Command::envs` takes them.
fn pairs(env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)]) -> impl Iterator<Item = (&OsStr, &OsStr)> {
    env.iter()
        .map(|(key, value)| (key.as_ref(), value.as_ref()))
}

/// Waits for a log line with `marker` (say `listening on http://`) followed by an address
/// and returns that address (`127.0.0.1:PORT`). Panics with the logs if the process exits
/// first or nothing shows within `timeout`.
pub fn wait_for_address(
    what: &str,
    process: &mut Child,
    logs: &Output,
    marker: &str,
    timeout: Duration,
) -> String {
    let started = Instant::now();
    loop {
        if let Some(address) = logs.text().split(marker).nth(1) {
            return address
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
                .collect();
        }
        if let Ok(Some(status)) = process.try_wait() {
            thread::sleep(Duration::from_millis(200)); // let the readers drain the pipes
            panic!(
                "{what} exited ({status}) before logging `{marker}...`; logs:\n{}",
                logs.text()
            );
        }
        if started.elapsed() > timeout {
            panic!(
                "{what} did not log `{marker}...` within {timeout:?}; logs:\n{}",
                logs.text()
            );
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn short_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()[24..].to_owned()
}

/// A PostgreSQL database created for one test and dropped (forcibly) with it.
struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl PostgresDatabase {
    /// Creates `sr_test_<uuid>` on the server at `STRONGROOM_TEST_POSTGRES_URL`; returns
    /// it with its URL.
    async fn create() -> (Self, String) {
        let admin_url = std::env::var("STRONGROOM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("sr_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {admin_url}: {e}\n\
                 The tests need a PostgreSQL server; point STRONGROOM_TEST_POSTGRES_URL at one."
            )
        });
        admin
            .execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;

        let mut url = Url::parse(&admin_url).expect("STRONGROOM_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        (Self { admin_url, name }, url.to_string())
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Drop is synchronous and may run on a runtime thread: use a thread of our own.
        let admin_url = self.admin_url.clone();
        let sql = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
        let dropped = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = Database::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                let result = admin.execute_unprepared(&sql).await;
                let _ = admin.close().await;
                result.map(drop).map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

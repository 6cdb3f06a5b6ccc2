//! Spawns the real `strongroom` binary against a fresh database (a SQLite file or a new
//! PostgreSQL database) and talks to it over HTTP, as a client would.
use std::{
    io::{BufRead, BufReader, Read},
    ops::Deref,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use reqwest::{StatusCode, Url};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tempfile::TempDir;

const STRONGROOM: &str = env!("CARGO_BIN_EXE_strongroom");
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
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
}

fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
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
    database_url: String,
    sqlite_path: Option<PathBuf>,
    bootstrap_stdout: String,
    bootstrap_stderr: String,
    server_logs: Arc<Mutex<String>>,
    server: Child,
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
        Self::spawn_with(store, &[]).await
    }

    pub async fn spawn_with(store: Store, extra_env: &[(&str, &str)]) -> Self {
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
        let env = [
            ("DATABASE_URL", database_url.as_str()),
            (
                "STRONGROOM_MASTER_KEY_FILE",
                master_key_file.to_str().expect("UTF-8 path"),
            ),
            ("STRONGROOM_LOG_FORMAT", "text"),
            ("RUST_LOG", "debug"),
            // Plain text, so a leaked value cannot hide between colour codes.
            ("NO_COLOR", "1"),
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

        let mut server = strongroom(&env)
            .envs(extra_env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn `strongroom serve`");
        let server_logs = Arc::new(Mutex::new(String::new()));
        capture(server.stdout.take().expect("piped stdout"), &server_logs);
        capture(server.stderr.take().expect("piped stderr"), &server_logs);
        let address = wait_until_listening(&mut server, &server_logs);

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
            database_url,
            sqlite_path,
            bootstrap_stdout,
            bootstrap_stderr,
            server_logs,
            server,
            _postgres: postgres,
            _dir: dir,
        }
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

    /// What the `serve` process wrote so far, both streams.
    pub fn server_logs(&self) -> String {
        self.server_logs.lock().expect("log buffer").clone()
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
        let _ = self.server.kill();
        let _ = self.server.wait();
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

/// A `strongroom` command with exactly the configuration given: nothing inherited from
/// the parent's `STRONGROOM_*` or `DATABASE_URL`.
fn strongroom(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(STRONGROOM);
    for (key, _) in std::env::vars_os() {
        let inherited_config = key
            .to_str()
            .is_some_and(|key| key.starts_with("STRONGROOM_") || key == "DATABASE_URL");
        if inherited_config {
            command.env_remove(&key);
        }
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    command
}

/// Appends every line of `stream` to `logs` from a background thread.
fn capture(stream: impl Read + Send + 'static, logs: &Arc<Mutex<String>>) {
    let logs = Arc::clone(logs);
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            logs.lock()
                .expect("log buffer")
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
}

/// Waits for the `listening on http://ADDRESS` log line and returns the address.
fn wait_until_listening(server: &mut Child, logs: &Mutex<String>) -> String {
    const MARKER: &str = "listening on http://";
    let started = Instant::now();
    loop {
        if let Some(address) = logs.lock().expect("log buffer").split(MARKER).nth(1) {
            let address: String = address
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
                .collect();
            return address;
        }
        if let Ok(Some(status)) = server.try_wait() {
            thread::sleep(Duration::from_millis(200)); // let the readers drain the pipes
            panic!(
                "strongroom serve exited ({status}) before listening; logs:\n{}",
                logs.lock().expect("log buffer")
            );
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            panic!(
                "strongroom serve did not log `{MARKER}...` within {STARTUP_TIMEOUT:?}; logs:\n{}",
                logs.lock().expect("log buffer")
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

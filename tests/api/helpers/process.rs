//! Process control: the `strongroom` binary, its output, and the PostgreSQL databases the
//! tests create.
use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use reqwest::Url;
use sea_orm::{ConnectionTrait, Database};

const STRONGROOM: &str = env!("CARGO_BIN_EXE_strongroom");
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The `serve` process of a [`TestApp`].
pub(super) struct Server {
    process: Child,
    logs: Output,
}

impl Server {
    /// Starts `strongroom serve` on a free port; returns it with the address it listens on.
    pub(super) fn start(
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

    pub(super) fn logs(&self) -> String {
        self.logs.text()
    }

    /// SIGTERM, then waits for the exit (killing it if it takes too long) and its output.
    pub(super) fn stop(&mut self) {
        signal(&self.process, "TERM");
        if wait_with_timeout(&mut self.process, SHUTDOWN_TIMEOUT).is_none() {
            self.kill();
        }
        self.logs.join();
    }

    /// SIGTERM, then `Some(status)` if it exits within `limit` (its output read to the
    /// end), `None` if it is still running then (it is killed).
    pub(super) fn terminate_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        signal(&self.process, "TERM");
        let status = wait_with_timeout(&mut self.process, limit);
        if status.is_none() {
            self.kill();
        }
        self.logs.join();
        status
    }

    /// Sends `name` (`STOP`, `CONT`...) to the server.
    pub(super) fn signal(&self, name: &str) {
        signal(&self.process, name);
    }

    pub(super) fn kill(&mut self) {
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
pub(super) fn strongroom(env: &[(&str, String)]) -> Command {
    let mut command = clean_command(STRONGROOM);
    command.envs(pairs(env));
    command
}

/// Environment pairs of any string types, as `Command::envs` takes them.
pub(super) fn pairs(
    env: &[(impl AsRef<OsStr>, impl AsRef<OsStr>)],
) -> impl Iterator<Item = (&OsStr, &OsStr)> {
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

pub fn short_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()[24..].to_owned()
}

/// A PostgreSQL database created for one test and dropped (forcibly) with it.
pub(super) struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl PostgresDatabase {
    /// Creates `sr_test_<uuid>` on the server at `STRONGROOM_TEST_POSTGRES_URL`; returns
    /// it with its URL.
    pub(super) async fn create() -> (Self, String) {
        let admin_url = std::env::var("STRONGROOM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        Self::create_on(admin_url).await
    }

    /// Creates `sr_test_<uuid>` on the server at `admin_url`.
    pub(super) async fn create_on(admin_url: String) -> (Self, String) {
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

/// The PostgreSQL server programs: Debian's, of the one major version installed.
fn postgres_bin(program: &str) -> std::path::PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs under /usr/lib/postgresql (Debian's postgresql package)");
    let version = versions
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .max()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    version.join("bin").join(program)
}

/// A private PostgreSQL server for one test, to stop and start (never the shared one):
/// made with `initdb` in a temporary directory, run with `pg_ctl` as the `postgres` user
/// on a free loopback port, removed with the test.
pub struct PostgresCluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl PostgresCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        run_checked(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()),
        );
        let cluster = Self { dir, port };
        cluster.as_postgres(|c| {
            c.arg(postgres_bin("initdb")).args([
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ])
        });
        cluster.resume();
        cluster
    }

    /// The URL of its `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (`pg_ctl stop -m fast`: open sessions are ended).
    pub fn stop(&self) {
        self.as_postgres(|c| {
            c.arg(postgres_bin("pg_ctl"))
                .args(["stop", "-w", "-m", "fast", "-D", &self.data()])
        });
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.as_postgres(|c| {
            c.arg(postgres_bin("pg_ctl"))
                .args(["start", "-w", "-D", &self.data(), "-o", &options, "-l"])
                .arg(&log)
        });
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, build: impl FnOnce(&mut Command) -> &mut Command) {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]);
        build(&mut command);
        run_checked(&mut command);
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(postgres_bin("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D", &self.data()])
            .output();
    }
}

fn run_checked(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

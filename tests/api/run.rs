//! `strongroom run` (DESIGN §11): the real binary as a client of a real server, running
//! `sh` scripts as the command. The scripts print hashes of what they find in their
//! environment (never a value, which would then be in their argv or output), and the tests
//! compare them with hashes of the values they expect.
use std::{
    path::Path,
    process::{Child, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::helpers::{
    COMMAND_TIMEOUT, DEPLOY_RESOURCE, OidcProvider, Output, ServiceAccount, Store, TestApp,
    UPDATE_SECRET, both_stores, bounded, clean_command, data, signal, wait_with_timeout,
};

both_stores!(
    the_command_gets_the_pinned_values_and_nothing_else,
    a_refused_fetch_starts_nothing,
    watch_restarts_on_a_new_deployment_and_only_reports_a_disabled_secret,
    a_workload_token_file_is_exchanged_through_the_openid_provider,
);

const STRONGROOM: &str = env!("CARGO_BIN_EXE_strongroom");
/// How long anything `run` is expected to do may take before the test fails: generous,
/// since the tests assert what happens, never how fast.
const PATIENCE: Duration = Duration::from_secs(60);

const BIND: &str = "mutation($resourceId: ID!, $principalId: ID!) {
    bindRuntime(input: { resourceId: $resourceId, principalId: $principalId }) {
        resource { name } } }";
const DISABLE: &str = "mutation($name: String!) {
    disableSecret(input: { name: $name, reason: \"scream test\" }) { secret { state } } }";
const CREATE_IDENTITY: &str = "mutation($input: CreateWorkloadIdentityInput!) {
    createWorkloadIdentity(input: $input) { workloadIdentity { id } } }";

/// The command's report of its environment: a hash per variable (`-` when unset), then
/// whether it holds a strongroom token. `$1` names a file it writes its pid to, then it
/// waits until that file is gone (so the test can look at it running).
const REPORT: &str = r#"
    h() { if [ -n "${1+x}" ]; then printf %s "$1" | sha256sum | cut -c1-16; else echo -; fi; }
    echo "API_KEY=$(h ${API_KEY+"$API_KEY"})"
    echo "PGPASSWORD=$(h ${PGPASSWORD+"$PGPASSWORD"})"
    echo "DB_PASSWORD=$(h ${DB_PASSWORD+"$DB_PASSWORD"})"
    echo "token=${STRONGROOM_TOKEN:+present}"
    echo $$ > "$1"
    while [ -e "$1" ]; do sleep 0.05; done
    exit 7
"#;

/// What the command started under `--watch` does: says which value it has, then runs until
/// SIGTERM, which it answers by saying so and exiting 0.
const SERVICE: &str = r#"
    trap 'echo "stopping"; exit 0' TERM
    echo "started $(printf %s "$API_KEY" | sha256sum | cut -c1-16)"
    while :; do sleep 0.05; done
"#;

fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..16].to_owned()
}

/// `--server SERVER --resource RESOURCE`, then `rest`.
fn arguments<'a>(server: &'a str, resource: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--server", server, "--resource", resource];
    all.extend(rest);
    all
}

/// `strongroom run` as a process: its stdout (where the command writes) and stderr apart.
struct Run {
    process: Child,
    stdout: Output,
    stderr: Output,
}

impl Run {
    /// `strongroom run ARGS` with exactly `env` (and PATH): no token the test does not give.
    fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut command = clean_command(STRONGROOM);
        command
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = command.spawn().expect("spawn strongroom run");
        let (mut stdout, mut stderr) = (Output::default(), Output::default());
        stdout.capture(process.stdout.take().expect("piped stdout"));
        stderr.capture(process.stderr.take().expect("piped stderr"));
        Self {
            process,
            stdout,
            stderr,
        }
    }

    /// Waits until `wanted` says yes to (stdout, stderr); panics with both after PATIENCE.
    fn wait_for(&mut self, what: &str, mut wanted: impl FnMut(&str, &str) -> bool) {
        let started = Instant::now();
        while !wanted(&self.stdout.text(), &self.stderr.text()) {
            if started.elapsed() > PATIENCE {
                panic!(
                    "waited {PATIENCE:?} for {what}; stdout:\n{}\nstderr:\n{}",
                    self.stdout.text(),
                    self.stderr.text()
                );
            }
            if let Ok(Some(status)) = self.process.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "strongroom run exited ({status}) before {what}; stdout:\n{}\nstderr:\n{}",
                    self.stdout.text(),
                    self.stderr.text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn wait_for_stderr(&mut self, text: &str) {
        self.wait_for(&format!("{text:?} on stderr"), |_, err| err.contains(text));
    }

    /// Its exit status and everything it wrote, once it exits.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let Some(status) = wait_with_timeout(&mut self.process, COMMAND_TIMEOUT) else {
            let _ = self.process.kill();
            panic!(
                "strongroom run did not exit; stdout:\n{}\nstderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            );
        };
        (status, self.stdout.finish(), self.stderr.finish())
    }
}

/// `/proc/<pid>/cmdline`, its NULs as spaces.
fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read a cmdline");
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

/// Polls `file` until it holds a pid.
fn read_pid(file: &Path, run: &mut Run) -> u32 {
    let mut pid = None;
    run.wait_for("the command's pid", |_, _| {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    });
    pid.expect("a pid")
}

/// Secrets `(name, value)` and a pipeline `etl` referencing them as `(name, field)`,
/// deployed, with a RUNTIME account bound to it; the pipeline's id and the account.
async fn bound_pipeline(
    app: &TestApp,
    secrets: &[(&str, &str)],
    references: &[(&str, &str)],
) -> (String, ServiceAccount) {
    for (name, value) in secrets {
        app.create_secret(name, value).await;
    }
    let pipeline = app.deploy_pipeline("etl", references).await;
    let runtime = app.create_service_account("RUNTIME").await;
    let bound = app
        .admin(
            BIND,
            json!({ "resourceId": pipeline, "principalId": runtime.id }),
        )
        .await;
    data(&bound);
    (pipeline, runtime)
}

async fn update(app: &TestApp, name: &str, value: &str) {
    let input = json!({ "input": { "name": name, "value": value } });
    data(&app.admin(UPDATE_SECRET, input).await);
}

async fn redeploy(app: &TestApp, resource: &str) {
    let deployed = app.admin(DEPLOY_RESOURCE, json!({ "id": resource })).await;
    assert_eq!(
        data(&deployed)["deployResource"]["deployment"]["state"],
        "ACTIVE"
    );
}

async fn the_command_gets_the_pinned_values_and_nothing_else(store: Store) {
    let app = TestApp::spawn(store).await;
    let (pipeline, runtime) = bound_pipeline(
        &app,
        &[("API", "api-v1-9d8c"), ("DB", "db-pass-4b7e")],
        &[("API", "api.key"), ("DB", "db.password")],
    )
    .await;
    // The current version moves on; the deployment still pins version 1.
    update(&app, "API", "api-v2-1f2a").await;

    let dir = tempfile::tempdir().expect("a directory");
    let pid_file = dir.path().join("pid");
    let pid_path = pid_file.to_str().expect("UTF-8");
    let server = app.base_url().to_owned();
    let rest = [
        "--env",
        "PGPASSWORD=db.password",
        "--",
        "sh",
        "-c",
        REPORT,
        "report",
        pid_path,
    ];
    let mut run = Run::start(
        &[("STRONGROOM_TOKEN", &runtime.token)],
        &arguments(&server, &pipeline, &rest),
    );
    let child = read_pid(&pid_file, &mut run);
    let values = ["api-v1-9d8c", "api-v2-1f2a", "db-pass-4b7e", &runtime.token];
    for pid in [run.process.id(), child] {
        let seen = cmdline(pid);
        for value in values {
            assert!(!seen.contains(value), "a value in {pid}'s cmdline: {seen}");
        }
    }
    std::fs::remove_file(&pid_file).expect("let the command finish");
    let (status, stdout, stderr) = run.finish();

    assert_eq!(
        status.code(),
        Some(7),
        "the command's status; stderr:\n{stderr}"
    );
    let expected = format!(
        "API_KEY={}\nPGPASSWORD={}\nDB_PASSWORD=-\ntoken=\n",
        hash("api-v1-9d8c"),
        hash("db-pass-4b7e")
    );
    assert_eq!(stdout, expected, "stderr:\n{stderr}");
    for value in values {
        assert!(
            !stdout.contains(value) && !stderr.contains(value),
            "{stdout}{stderr}"
        );
    }
    assert_eq!(stderr, "", "nothing to report");
}

async fn a_refused_fetch_starts_nothing(store: Store) {
    let app = TestApp::spawn(store).await;
    let (pipeline, runtime) =
        bound_pipeline(&app, &[("API", "api-v1-9d8c")], &[("API", "api.key")]).await;
    let other = app.deploy_pipeline("billing", &[("API", "api.key")]).await;
    let dir = tempfile::tempdir().expect("a directory");
    let marker = dir.path().join("started");
    let marker_path = marker.to_str().expect("UTF-8");
    let server = app.base_url().to_owned();
    let attempt = |token: Option<&str>, server: &str, resource: &str, extra: &[&str]| {
        let mut args = arguments(server, resource, extra);
        args.extend(["--", "sh", "-c", "touch \"$1\"", "cmd", marker_path]);
        let env: Vec<(&str, &str)> = token.map(|t| ("STRONGROOM_TOKEN", t)).into_iter().collect();
        Run::start(&env, &args).finish()
    };
    let refused = |outcome: (ExitStatus, String, String), code: &str| {
        let (status, stdout, stderr) = outcome;
        assert_eq!(status.code(), Some(125), "{code}: {stderr}");
        assert!(
            stderr.starts_with(&format!("strongroom run: {code}: ")),
            "{code}: {stderr}"
        );
        assert_eq!(stdout, "");
        assert!(!marker.exists(), "{code}: the command was started");
        assert!(!stderr.contains("api-v1-9d8c"));
    };
    let token = Some(runtime.token.as_str());

    // A resource not bound to the account, a token that is no token, no token at all.
    refused(attempt(token, &server, &other, &[]), "NOT_FOUND");
    let forged = Some("srt_not-a-token");
    refused(attempt(forged, &server, &pipeline, &[]), "UNAUTHENTICATED");
    refused(attempt(None, &server, &pipeline, &[]), "CREDENTIALS");
    // A field the deployment does not have.
    let misnamed = ["--env", "X=api.kee"];
    refused(
        attempt(token, &server, &pipeline, &misnamed),
        "UNKNOWN_FIELD",
    );
    // A server that is not there.
    let nowhere = "http://127.0.0.1:9";
    refused(attempt(token, nowhere, &pipeline, &[]), "UNREACHABLE");
    // A disabled secret (409).
    data(&app.admin(DISABLE, json!({ "name": "API" })).await);
    refused(attempt(token, &server, &pipeline, &[]), "SECRET_DISABLED");
}

/// SIGTERM to `run` reaches the command, whose own exit status `run` returns; a command
/// killed by a signal makes `run` exit 128 + its number, as a shell does. (SQLite only: no
/// store involved.)
#[tokio::test(flavor = "multi_thread")]
async fn signals_reach_the_command_and_its_status_comes_back() {
    bounded("signals_reach_the_command", async {
        let app = TestApp::spawn(Store::Sqlite).await;
        let (pipeline, runtime) =
            bound_pipeline(&app, &[("API", "api-v1-9d8c")], &[("API", "api.key")]).await;
        let server = app.base_url().to_owned();
        let env = [("STRONGROOM_TOKEN", runtime.token.as_str())];
        let args =
            |script: &'static str| arguments(&server, &pipeline, &["--", "sh", "-c", script]);

        let trapping = "trap 'echo got TERM; exit 3' TERM; echo ready; \
                        while :; do sleep 0.05; done";
        let mut run = Run::start(&env, &args(trapping));
        run.wait_for("the command to start", |out, _| out.contains("ready"));
        signal(&run.process, "TERM");
        let (status, stdout, stderr) = run.finish();
        assert_eq!(
            status.code(),
            Some(3),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert_eq!(stdout, "ready\ngot TERM\n");

        let mut run = Run::start(&env, &args("echo ready; exec sleep 60"));
        run.wait_for("the command to start", |out, _| out.contains("ready"));
        signal(&run.process, "TERM");
        let (status, _, stderr) = run.finish();
        assert_eq!(status.code(), Some(128 + 15), "{stderr}");

        let (status, _, _) = Run::start(&env, &args("exit 42")).finish();
        assert_eq!(status.code(), Some(42));

        // A command that is not there: 127, as a shell says.
        let missing = arguments(&server, &pipeline, &["--", "/nonexistent/command"]);
        let (status, _, stderr) = Run::start(&env, &missing).finish();
        assert_eq!(status.code(), Some(127), "{stderr}");
        assert!(
            stderr.starts_with("strongroom run: COMMAND_NOT_FOUND: "),
            "{stderr}"
        );
    })
    .await;
}

/// A signal that arrives while `run` is still getting the values (here: waiting on a
/// server that accepts connections and never answers) ends it with nothing started, as
/// the signal would have ended the command (128 + 15). No strongroom server needed.
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_before_the_command_starts_starts_nothing() {
    bounded("a_signal_before_the_command_starts", async {
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let server = format!("http://{}", silent.local_addr().expect("an address"));
        let dir = tempfile::tempdir().expect("a directory");
        let marker = dir.path().join("started");
        let marker_path = marker.to_str().expect("UTF-8");
        let rest = ["--watch", "--", "touch", marker_path];
        let run = Run::start(
            &[("STRONGROOM_TOKEN", "srt_whatever")],
            &arguments(&server, "some-resource", &rest),
        );
        // `run` is connecting: hold the connection open, unanswered.
        let (_held, _) = tokio::time::timeout(PATIENCE, silent.accept())
            .await
            .expect("run connects")
            .expect("a connection");
        signal(&run.process, "TERM");
        let (status, stdout, stderr) = run.finish();
        assert_eq!(status.code(), Some(128 + 15), "{stderr}");
        assert!(stderr.contains("strongroom run: INTERRUPTED: "), "{stderr}");
        assert_eq!(stdout, "");
        assert!(!marker.exists(), "the command was started");
    })
    .await;
}

/// A TCP proxy in front of the server whose connections the test can cut (as a network
/// or a load balancer would), while new ones still get through.
struct Proxy {
    address: String,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address").to_string();
        let (cut, _) = watch::channel(0);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut upstream) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { address, cut }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Drops every connection open now.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn watch_restarts_on_a_new_deployment_and_only_reports_a_disabled_secret(store: Store) {
    let app = TestApp::spawn(store).await;
    let (pipeline, runtime) =
        bound_pipeline(&app, &[("API", "api-v1-9d8c")], &[("API", "api.key")]).await;
    let target = app.base_url().trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(target).await;
    let server = proxy.url();
    let mut run = Run::start(
        &[("STRONGROOM_TOKEN", &runtime.token)],
        &arguments(
            &server,
            &pipeline,
            &[
                "--watch",
                "--debounce",
                "1",
                "--grace",
                "5",
                "--",
                "sh",
                "-c",
                SERVICE,
            ],
        ),
    );
    let first = format!("started {}\n", hash("api-v1-9d8c"));
    run.wait_for("the command and the watch", |out, err| {
        out.contains(&first) && err.contains("watching resource")
    });

    // A new version alone is reported; the command keeps its values.
    update(&app, "API", "api-v2-1f2a").await;
    run.wait_for_stderr("has a newer version than the deployment pins");
    // Redeployed: the command is stopped (it says so) and started with the new value.
    redeploy(&app, &pipeline).await;
    let second = format!("{first}stopping\nstarted {}\n", hash("api-v2-1f2a"));
    run.wait_for("the restart", |out, _| out == second);
    run.wait_for_stderr("restarting the command");

    // Disabled: nothing is killed. The watch learns of it when it next fetches — here
    // after its connection was cut (changes may have been missed meanwhile).
    data(&app.admin(DISABLE, json!({ "name": "API" })).await);
    proxy.cut();
    run.wait_for_stderr("lost the event stream");
    run.wait_for_stderr("for new deployments again");
    run.wait_for_stderr("SECRET_DISABLED: ");
    assert_eq!(run.stdout.text(), second, "the command was not restarted");
    assert!(run.stderr.text().contains("the command keeps running"));

    signal(&run.process, "TERM");
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(0), "the command's own status: {stderr}");
    assert_eq!(stdout, format!("{second}stopping\n"));
    for value in ["api-v1-9d8c", "api-v2-1f2a", &runtime.token] {
        assert!(!stderr.contains(value), "{stderr}");
    }
}

/// A bound pipeline as in [`bound_pipeline`] whose RUNTIME account `provider`'s tokens of
/// acme/etl act as, for `lifetime` seconds; the pipeline's id.
async fn workload_pipeline(app: &TestApp, provider: &OidcProvider, lifetime: u32) -> String {
    let (pipeline, runtime) =
        bound_pipeline(app, &[("API", "api-v1-9d8c")], &[("API", "api.key")]).await;
    let input = json!({ "input": {
        "issuer": provider.issuer, "audience": "strongroom", "principalId": runtime.id,
        "tokenLifetimeSeconds": lifetime,
        "boundClaims": [{ "claim": "repository", "pattern": "acme/etl" }],
    } });
    data(&app.admin(CREATE_IDENTITY, input).await);
    pipeline
}

/// A JWT of the provider for the acme/etl job on main (the audience `strongroom`).
async fn job_jwt(provider: &OidcProvider) -> String {
    provider.token("etl-main", "https://strongroom.test/").await
}

async fn a_workload_token_file_is_exchanged_through_the_openid_provider(store: Store) {
    let app = TestApp::spawn(store).await;
    let provider = OidcProvider::start();
    let pipeline = workload_pipeline(&app, &provider, 120).await;
    let jwt = job_jwt(&provider).await;
    let dir = tempfile::tempdir().expect("a directory");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{jwt}\n")).expect("write the token file");

    let server = app.base_url().to_owned();
    let file = token_file.to_str().expect("UTF-8");
    let with_token_file = |script: &str| {
        let rest = ["--oidc-token-file", file, "--", "sh", "-c", script];
        Run::start(&[], &arguments(&server, &pipeline, &rest)).finish()
    };
    let script =
        r#"echo "$(printf %s "$API_KEY" | sha256sum | cut -c1-16) ${STRONGROOM_TOKEN:-none}""#;
    let (status, stdout, stderr) = with_token_file(script);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, format!("{} none\n", hash("api-v1-9d8c")));
    assert!(!stderr.contains(&jwt));

    // The fetch was made as the workload: an OIDC credential, audited.
    let trail = app
        .admin(
            "query { auditEvents(first: 50) { nodes { action credential { kind subject } } } }",
            json!({}),
        )
        .await;
    let nodes = data(&trail)["auditEvents"]["nodes"].clone();
    let fetched = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["action"] == "resource.fetch_secrets")
        .unwrap_or_else(|| panic!("the fetch audited: {nodes}"))
        .clone();
    assert_eq!(
        fetched["credential"],
        json!({ "kind": "OIDC", "subject": "etl-main" })
    );

    // A JWT the provider never signed is refused by the exchange: nothing starts.
    std::fs::write(&token_file, "eyJhbGciOiJub25lIn0.e30.").expect("write the token file");
    let (status, stdout, stderr) = with_token_file("echo started");
    assert_eq!(status.code(), Some(125), "{stderr}");
    assert!(
        stderr.starts_with("strongroom run: invalid_grant: "),
        "{stderr}"
    );
    assert_eq!(stdout, "");
}

/// A long `--watch` outlives its exchanged token: three quarters into the token's 60 s the
/// JWT file is read again (the provider's newer JWT now) and exchanged, and the watch goes
/// on with the new token. (SQLite only: the exchange is the same on both stores, and this
/// test waits out most of a token's life.)
#[tokio::test(flavor = "multi_thread")]
async fn a_long_watch_exchanges_the_rewritten_token_file_again() {
    bounded("a_long_watch", async {
        let app = TestApp::spawn(Store::Sqlite).await;
        let provider = OidcProvider::start();
        let pipeline = workload_pipeline(&app, &provider, 60).await;
        let dir = tempfile::tempdir().expect("a directory");
        let token_file = dir.path().join("token");
        let first = job_jwt(&provider).await;
        std::fs::write(&token_file, &first).expect("write the token file");

        let server = app.base_url().to_owned();
        let file = token_file.to_str().expect("UTF-8");
        let rest = [
            "--watch",
            "--oidc-token-file",
            file,
            "--",
            "sh",
            "-c",
            SERVICE,
        ];
        let mut run = Run::start(&[], &arguments(&server, &pipeline, &rest));
        run.wait_for_stderr("for new deployments (running");
        // The platform rotates the projected token.
        let second = job_jwt(&provider).await;
        std::fs::write(&token_file, &second).expect("rewrite the token file");
        run.wait_for_stderr("for new deployments again");

        let trail = app
            .admin(
                "query { auditEvents(first: 100) { nodes { action outcome detail } } }",
                json!({}),
            )
            .await;
        let exchanged: Vec<String> = data(&trail)["auditEvents"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| n["action"] == "token.exchange" && n["outcome"] == "ALLOWED")
            .map(|n| n["detail"]["jti"].as_str().unwrap_or_default().to_owned())
            .collect();
        let jti = |jwt: &str| {
            let payload = jwt.split('.').nth(1).expect("a payload");
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                    .expect("base64url"),
            )
            .expect("claims");
            claims["jti"].as_str().expect("a jti").to_owned()
        };
        let mut expected = vec![jti(&first), jti(&second)];
        let mut got = exchanged.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "one exchange of each JWT");

        signal(&run.process, "TERM");
        let (status, stdout, stderr) = run.finish();
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert_eq!(
            stdout,
            format!("started {}\nstopping\n", hash("api-v1-9d8c"))
        );
        assert!(
            !stderr.contains("SECRET") && !stderr.contains("invalid"),
            "{stderr}"
        );
    })
    .await;
}
